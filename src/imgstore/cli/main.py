"""``imgstore <command> [args]``: the umbrella command (also ``python -m imgstore``).

Commands come from :data:`COMMANDS`; a command whose module is not part of this
installation (yet) is left out of the list instead of breaking the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from .._version import __version__

__all__ = ["COMMANDS", "main"]

#: command name -> (module under imgstore.cli, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "save": ("save", "record a store from a camera, a video file or a test pattern"),
    "view": ("view", "browse a store in a web browser (works on headless machines)"),
    "info": ("info", "summarise a store: frames, times, dropped frames, metadata"),
    "convert": ("convert", "convert a store to another format, or export an ordinary video"),
    "test": ("selftest", "check that this installation writes and reads every format"),
    "verify": ("verify", "read every frame and check it against the index (damaged chunks)"),
    "repair": ("repair", "repair a store whose writer crashed"),
    "sync": ("sync", "copy a store to object storage (s3://...), also while it is recorded"),
}

PROG = "imgstore"


def _load(name: str) -> ModuleType | None:
    """The command's module, or None when this installation does not have it."""
    module_name = f"{__package__}.{COMMANDS[name][0]}"
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # only a missing command module is skipped; a missing dependency inside it is a real error
        if exc.name == module_name:
            return None
        raise


def _available() -> list[str]:
    import importlib.util

    return [name for name, (mod, _) in COMMANDS.items()
            if importlib.util.find_spec(f"{__package__}.{mod}") is not None]


def _usage() -> str:
    names = _available()
    width = max(len(n) for n in names)
    lines = [f"usage: {PROG} <command> [options]", "", "Houses long video recordings. Commands:", ""]
    lines += [f"  {n:<{width}}  {COMMANDS[n][1]}" for n in names]
    lines += ["", f"Run '{PROG} <command> --help' for a command's options; each command is also",
              f"installed as '{PROG}-<command>' (e.g. imgstore-info).", "",
              "example:", f"  {PROG} save /tmp/demo && {PROG} info /tmp/demo"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``imgstore <command> [args]``.

    Parameters
    ----------
    argv
        Arguments without the program name (None: ``sys.argv[1:]``).

    Returns
    -------
    int
        The command's exit status (2 for an unknown command).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        if len(args) >= 2 and args[0] == "help":
            args = [args[1], "--help"]
        else:
            print(_usage())
            return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"{PROG} {__version__}")
        return 0
    name, rest = args[0], args[1:]
    module = _load(name) if name in COMMANDS else None
    if module is None:
        known = ", ".join(_available())
        what = "is not available in this installation" if name in COMMANDS else "is not a command"
        print(f"{PROG}: error: {name!r} {what} (commands: {known}; see {PROG} --help)", file=sys.stderr)
        return 2
    return module.main(rest, prog=f"{PROG} {name}")


if __name__ == "__main__":
    sys.exit(main())
