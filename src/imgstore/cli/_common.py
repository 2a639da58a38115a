"""Helpers shared by the command-line tools: argument parsing, error reporting, formats, times."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

from .. import timezones
from ..backends import registry
from ..backends.base import ImgStore
from ..errors import ImgStoreError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "ArgumentParser",
    "CLIError",
    "UsageError",
    "add_storage_options",
    "available_formats",
    "check_format",
    "default_format",
    "format_duration",
    "format_local",
    "open_for_reading",
    "parse_metadata",
    "parse_size",
    "parse_time",
    "port_number",
    "positive_float",
    "positive_int",
    "recording_timezone",
    "resolve_format",
    "run_command",
    "storage_option",
    "to_json",
    "to_uint8",
    "writing_options",
]

#: exit statuses of every command (docs/cli.md)
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: set to 1 to get a traceback instead of the one-line error (for bug reports)
DEBUG_ENV = "IMGSTORE_DEBUG"


class CLIError(Exception):
    """A failure the user should read about (no such store, unreadable file); one line, exit status 1."""


class UsageError(CLIError):
    """Arguments that make no sense together or name a bad value; one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line on stderr (exit status 2).

    argparse's default prints the whole usage block first, which buries the actual
    problem on small terminals; ``--help`` still prints the usage.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port 0..65535 (0: a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0..65535)")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def describe_error(exc: BaseException) -> str:
    """One line describing ``exc`` for a user (no errno noise, no traceback, no API words)."""
    from ..errors import StoreExistsError

    if isinstance(exc, StoreExistsError):
        # the library's message names its keyword arguments; a command-line user has options
        where = os.fspath(exc.filename) if exc.filename is not None else "the destination"
        return f"a store (or store files) already exists at '{where}' (use --overwrite to replace it)"
    if isinstance(exc, OSError) and exc.strerror:
        msg = exc.strerror
        if exc.filename is not None and os.fspath(exc.filename) not in msg:
            msg += f": {os.fspath(exc.filename)}"
    else:
        msg = str(exc) or type(exc).__name__
        if isinstance(exc, ImportError) and not isinstance(exc, ImgStoreError):
            msg = f"a required module could not be imported: {msg}"
    return " ".join(msg.split())


class _WarningPrinter:
    """Prints library warnings (a cropped frame size, a recovered chunk) as one prefixed line, each once.

    The same store is often opened several times by one command (repair looks, then
    re-opens), and each open would repeat the same warning.
    """

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.seen: set[str] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        if text in self.seen:
            return
        self.seen.add(text)
        print(f"{self.prog}: warning: {text}", file=sys.stderr, flush=True)


class _LogToWarningLine(logging.Handler):
    """The library's log records (warnings and worse) as the same one-line ``prog: warning:`` messages."""

    def __init__(self, printer: _WarningPrinter) -> None:
        super().__init__(logging.WARNING)
        self.printer = printer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.printer(record.getMessage(), UserWarning, record.pathname, record.lineno)
        except Exception:
            self.handleError(record)


def _quiet_stdout_after_broken_pipe() -> None:
    # the reader of our output went away (`imgstore-info X | head`): that is not an error;
    # point stdout at /dev/null so the interpreter's final flush does not complain either
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run_command(prog: str, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
                argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and call ``run(args)``, turning expected failures into one-line errors.

    Parameters
    ----------
    prog
        Name used in messages (``imgstore-info`` or ``imgstore info``).
    parser
        The command's parser.
    run
        The command body; returns the exit status.
    argv
        Arguments without the program name (None: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 success, 1 a reported error, 2 bad arguments, 130 interrupted.
    """
    parser.prog = prog
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    library_log = logging.getLogger("imgstore")
    handler = None
    with warnings.catch_warnings():
        if not debug:
            printer = _WarningPrinter(prog)
            warnings.showwarning = printer
            # without a handler, Python's last resort prints the library's log records bare
            handler = _LogToWarningLine(printer)
            library_log.addHandler(handler)
            previous_propagate, library_log.propagate = library_log.propagate, False
        try:
            status = int(run(args) or EXIT_OK)
            sys.stdout.flush()
            return status
        except BrokenPipeError:
            _quiet_stdout_after_broken_pipe()
            return EXIT_OK
        except UsageError as exc:
            if debug:
                raise
            print(f"{prog}: error: {describe_error(exc)} (see {prog} --help)", file=sys.stderr)
            return EXIT_USAGE
        except (CLIError, ImgStoreError, OSError, ImportError) as exc:
            if debug:
                raise
            print(f"{prog}: error: {describe_error(exc)}", file=sys.stderr)
            return EXIT_FAILURE
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            if handler is not None:
                library_log.removeHandler(handler)
                library_log.propagate = previous_propagate


# ---------------------------------------------------------------------- formats

def _kind(cls: type[ImgStore]) -> str:
    """What a user calls the stores of ``cls`` in messages (``video``, ``directory``)."""
    return cls.backend_class.kind or cls.__name__


def available_formats() -> tuple[list[str], str | None]:
    """``(formats this installation writes, why some store class's formats are missing or None)``.

    Every writing store class of :mod:`imgstore.backends.registry` is asked for its
    formats. One whose layer cannot be imported (PyAV for video) raises ImportError; the
    others still work then, so the tools go on with their formats and say what is missing.
    """
    formats: list[str] = []
    missing: list[str] = []
    for cls in registry.store_classes():
        if not cls.supports_writing:
            continue
        try:
            formats.extend(cls.supported_formats())
        except ImportError as exc:
            missing.append(f"{_kind(cls)} formats unavailable: {describe_error(exc)}")
    return formats, "; ".join(missing) or None


def writing_options(fmt: str, **given: Any) -> tuple[dict[str, Any], list[str]]:
    """Split writing options between those format ``fmt`` takes and those it does not.

    Parameters
    ----------
    fmt
        A format this installation writes.
    **given
        Option values; None means not given.

    Returns
    -------
    options, not_taken
        ``{name: value}`` of the given options the format's backend takes
        (:func:`imgstore.backends.registry.write_options`), and the names of the given
        ones it does not take.
    """
    takes = registry.write_options(fmt)
    options = {k: v for k, v in given.items() if v is not None and k in takes}
    not_taken = sorted(k for k, v in given.items() if v is not None and k not in takes)
    return options, not_taken


def default_format() -> str:
    """H.264 in Matroska when this installation has it, else numpy files."""
    formats, _ = available_formats()
    return "h264/mkv" if "h264/mkv" in formats else "npy"


def resolve_format(fmt: str) -> str:
    """The format's own name for ``fmt`` or one of its aliases (``mjpeg`` -> ``mjpeg/avi``)."""
    return registry.resolve_format(fmt)


def check_format(fmt: str) -> str:
    """The format's own name; raise :class:`UsageError` unless ``fmt`` (or its alias) can be written here."""
    name = resolve_format(fmt)
    formats, why = available_formats()
    if name not in formats:
        # the store class that would write it may be the one that cannot be loaded
        hint = f" ({why})" if why else ""
        raise UsageError(f"--format {fmt!r} is not supported here{hint}; choose from {', '.join(formats)}")
    return name


# ---------------------------------------------------------------------- argument values

def parse_size(text: str) -> tuple[int, int]:
    """argparse type: ``WIDTHxHEIGHT`` -> ``(width, height)``."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 640x480") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be positive")
    return width, height


def parse_metadata(items: Sequence[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> a dict; VALUE is read as JSON when it is valid JSON, else kept as text.

    So ``temperature=21.5`` gives a number, ``genotype=wt`` the string ``'wt'`` and
    ``tags=["a","b"]`` a list.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--metadata {item!r} must be KEY=VALUE")
        if key.startswith("__"):
            raise UsageError(f"--metadata key {key!r} is reserved (keys starting with '__' belong to the store)")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def parse_time(text: str, tz: datetime.tzinfo | None) -> float:
    """A time given by a user -> seconds since the epoch.

    Accepts seconds since the epoch (``1700000000.5``) or an ISO 8601 date-time
    (``2024-05-01T12:00:00``, ``2024-05-01 12:00:00.250+02:00``); a date-time without
    an offset is taken in ``tz`` (the machine's zone when None).
    """
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise UsageError(f"time {text!r} is not finite")
        return value
    try:
        dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise UsageError(f"{text!r} is neither seconds since the epoch nor an ISO date-time "
                       f"like 2024-05-01T12:00:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz) if tz is not None else dt.astimezone()
    return dt.timestamp()


# ---------------------------------------------------------------------- output

def recording_timezone(store) -> datetime.tzinfo:
    """The time zone a recording's local times are shown in (:func:`imgstore.timezones.recording_timezone`)."""
    return timezones.recording_timezone(store)


def format_local(frame_time: float, tz: datetime.tzinfo | None, seconds_decimals: int = 3) -> str:
    """``2024-05-01 12:00:00.000 CEST``: a frame_time as local time in the store's zone."""
    if frame_time is None or not math.isfinite(frame_time):
        return "-"
    dt = datetime.datetime.fromtimestamp(float(frame_time), tz=tz or datetime.timezone.utc)
    text = dt.strftime("%Y-%m-%d %H:%M:%S")
    if seconds_decimals > 0:
        text += f".{dt.microsecond:06d}"[:seconds_decimals + 1]
    return f"{text} {dt.tzname() or ''}".rstrip()


def format_duration(seconds: float) -> str:
    """``3723.5`` -> ``1:02:03.500``."""
    if not math.isfinite(seconds):
        return "-"
    whole = int(seconds)
    frac = seconds - whole
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s + frac:06.3f}"


def _json_default(obj: Any) -> Any:
    from ..ondisk import JsonCustomEncoder

    try:
        return JsonCustomEncoder().default(obj)
    except TypeError:
        return str(obj)


def _finite(obj: Any) -> Any:
    # JSON has no NaN/inf: machines reading --json get null instead
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON (NaN -> null; numpy values, dates and sets converted)."""
    plain = json.loads(json.dumps(obj, default=_json_default, allow_nan=True))
    return json.dumps(_finite(plain), indent=indent, allow_nan=False)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """An image as uint8 for display or ordinary video: 16-bit keeps its high byte, float 0..1 is scaled."""
    if img.dtype == np.uint8:
        return img
    if img.dtype.kind == "u" or img.dtype.kind == "i":
        bits = img.dtype.itemsize * 8
        shifted = np.right_shift(np.clip(img, 0, None).astype(np.uint64), bits - 8) if bits > 8 else img
        return shifted.astype(np.uint8)
    arr = np.nan_to_num(img.astype(np.float64))
    scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
    return np.clip(arr * scale, 0, 255).round().astype(np.uint8)


def storage_option(text: str) -> tuple[str, Any]:
    """``key=value`` of ``-o/--storage-option`` (the value parsed as JSON when it is JSON: numbers, true, {...})."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, not {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """``-o/--storage-option KEY=VALUE`` (repeatable): fsspec options for stores given as URLs."""
    parser.add_argument("-o", "--storage-option", type=storage_option, action="append", default=[],
                        metavar="KEY=VALUE", help="for stores given as URLs (s3://, gs://, https://...): an fsspec "
                                                  "storage option, e.g. endpoint_url=http://127.0.0.1:9000 "
                                                  "(repeatable; credentials: the usual fsspec/s3fs configuration)")


def open_for_reading(path: str, args: argparse.Namespace, **kwargs: Any):
    """``imgstore.new_for_filename(path)``, with ``--storage-option`` for URLs."""
    import imgstore

    from ..remote import is_url

    options = dict(getattr(args, "storage_option", None) or [])
    if options and is_url(path):
        kwargs["storage_options"] = options
    return imgstore.new_for_filename(path, **kwargs)
