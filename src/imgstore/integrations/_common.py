"""What the bridges share: recognising a store path, and the optional-dependency error."""

from __future__ import annotations

import os
from typing import Any

from ..errors import MissingDependencyError
from ..ondisk import STORE_MD_FILENAME
from ..storage import LOCAL

__all__ = ["require", "store_folder"]


def store_folder(path: Any) -> str | None:
    """The folder of the store at ``path`` (the folder or its ``metadata.yaml``), or None if it is not one."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    path = os.fspath(path)
    if os.path.basename(path) == STORE_MD_FILENAME:
        return (os.path.dirname(path) or ".") if LOCAL.exists(path) else None
    if LOCAL.is_dir(path) and LOCAL.exists(LOCAL.join(path, STORE_MD_FILENAME)):
        return path
    return None


def require(module: str, extra: str, what: str) -> Any:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{what} needs {module} ({exc}); install it with: "
                                     f"pip install 'imgstore[{extra}]'") from exc
