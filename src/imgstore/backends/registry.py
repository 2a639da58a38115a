"""Which store classes exist: a lazy registry of ``name -> "module:Class"``.

Built-in stores are listed below; other packages add theirs with an entry point in the
group ``imgstore.backends`` (``name = "package.module:StoreClass"``) or, at run time, with
:func:`register`. Nothing is imported until a class is asked for, so ``import imgstore``
never imports PyAV. The factory (:func:`imgstore.new_for_format`,
:func:`imgstore.new_for_filename`), :func:`imgstore.get_supported_formats` and the command
line ask this module; adding a backend is one module plus one :func:`register` call or
entry point.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import ImgStore

__all__ = ["ENTRY_POINT_GROUP", "class_for_format", "class_for_name", "register", "reread_entry_points",
           "resolve_format", "store_classes", "unregister", "write_options"]

log = logging.getLogger("imgstore.registry")

#: entry-point group other packages register their store classes in
ENTRY_POINT_GROUP = "imgstore.backends"

#: name written to ``__store.class`` -> where its store class lives; asked in this order
_TARGETS: dict[str, str] = {
    "DirectoryImgStore": "imgstore.backends.directory:DirectoryImgStore",
    "VideoImgStore": "imgstore.backends.video:VideoImgStore",
}
#: ``__store.class`` values written by other software -> the name of the class that reads them
_ALIASES: dict[str, str] = {"VideoImgStoreFFMPEG": "VideoImgStore"}
_loaded: dict[str, type[ImgStore]] = {}
_entry_points_read = False


def register(name: str, target: str, aliases: tuple[str, ...] = ()) -> None:
    """Make the store class at ``target`` (``"module:Class"``) known as ``name`` (and ``aliases``)."""
    if ":" not in target:
        raise ValueError(f"target {target!r} must be 'module:Class'")
    _TARGETS[name] = target
    _loaded.pop(name, None)
    for alias in aliases:
        _ALIASES[alias] = name


def unregister(name: str) -> None:
    """Forget a registered store class (and its aliases)."""
    _TARGETS.pop(name, None)
    _loaded.pop(name, None)
    for alias in [a for a, n in _ALIASES.items() if n == name]:
        del _ALIASES[alias]


def reread_entry_points() -> None:
    """Look at the installed packages' entry points again (after installing a plug-in at run time)."""
    global _entry_points_read
    _entry_points_read = False
    _read_entry_points()


def _read_entry_points() -> None:
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    # importlib.metadata costs ~12 ms to import: only when a store class is first looked up
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _TARGETS.setdefault(ep.name, ep.value)


def _load(name: str) -> type[ImgStore] | None:
    cls = _loaded.get(name)
    if cls is None:
        module_name, _, attr = _TARGETS[name].partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            # a plug-in that cannot be imported must not break the stores that work
            log.warning("store class %s (%s) cannot be loaded: %s", name, _TARGETS[name], exc)
            return None
        _loaded[name] = cls
    return cls


def aliases_of(cls: type) -> set[str]:
    """The ``__store.class`` names registered as aliases of the store class ``cls``."""
    return {alias for alias, name in _ALIASES.items() if _loaded.get(name) is cls}


def store_classes() -> list[type[ImgStore]]:
    """Every store class, in the order they are asked whether they support a format."""
    _read_entry_points()
    return [cls for cls in (_load(name) for name in list(_TARGETS)) if cls is not None]


def class_for_name(name: str) -> type[ImgStore] | None:
    """The store class that reads stores whose ``__store.class`` is ``name``, or None."""
    name = _ALIASES.get(name, name)
    if name not in _TARGETS:
        # plug-ins never replace a class already known (setdefault): reading the installed
        # packages' entry points (~35 ms per process, a first open's largest cost) is only
        # needed for other names
        _read_entry_points()
        name = _ALIASES.get(name, name)
    if name in _TARGETS:
        return _load(name)
    for cls in store_classes():
        if name in cls.readable_class_names:
            return cls
    return None


def _writes(cls: type[ImgStore], fmt: str) -> bool:
    try:
        return bool(cls.supports_writing and cls.supports_format(fmt))
    except ImportError as exc:  # its layer (e.g. PyAV) cannot be loaded: it writes nothing here
        log.debug("store class %s cannot tell its formats: %s", cls.__name__, exc)
        return False


def class_for_format(fmt: str) -> type[ImgStore] | None:
    """The store class that writes ``fmt``, or None."""
    # the classes known already are asked first, as they are in store_classes(): the entry
    # points (importlib.metadata, ~130 ms in a fresh process, a third of writing a first small
    # store) are read only when none of them writes fmt
    asked = set()
    for name in list(_TARGETS):
        cls = _load(name)
        asked.add(name)
        if cls is not None and _writes(cls, fmt):
            return cls
    _read_entry_points()
    for name in [n for n in _TARGETS if n not in asked]:
        cls = _load(name)
        if cls is not None and _writes(cls, fmt):
            return cls
    return None


def resolve_format(fmt: str) -> str:
    """The name ``fmt`` is written under (aliases resolved); ``fmt`` itself if no class writes it."""
    cls = class_for_format(fmt)
    return cls.backend_class.canonical_format(fmt) if cls is not None else fmt


def write_options(fmt: str) -> frozenset[str]:
    """Names of the writing options ``fmt`` takes (``fps``, ``quality``...); empty if unknown."""
    cls = class_for_format(fmt)
    return cls.backend_class.write_options(fmt) if cls is not None else frozenset()
