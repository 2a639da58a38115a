"""Helpers shared by the CLI tests."""

from __future__ import annotations


def one_error_line(err: str, prog: str) -> str:
    """Assert ``err`` is one line ``<prog>: error: ...`` (no traceback) and return it."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]
