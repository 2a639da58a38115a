"""Shared pytest fixtures: the reference library's stores, copied before use."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
#: the workplace's shared copy (canonical) and the copy vendored in tests/data for clean checkouts
SHARED_FIXTURES = HERE.parents[1] / "shared" / "fixtures" / "upstream-0.4.0"
VENDORED_FIXTURES = HERE / "data" / "upstream-0.4.0"


def _find_fixtures() -> Path:
    if os.environ.get("IMGSTORE_FIXTURES"):
        return Path(os.environ["IMGSTORE_FIXTURES"])
    return SHARED_FIXTURES if (SHARED_FIXTURES / "manifest.json").exists() else VENDORED_FIXTURES


FIXTURES = _find_fixtures()


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    import av
    import cv2
    import numpy

    import imgstore

    return (f"imgstore {imgstore.__version__}, numpy {numpy.__version__}, PyAV {av.__version__}, "
            f"OpenCV {cv2.__version__}; fixtures: {FIXTURES}")


@pytest.fixture(scope="session")
def ref_python() -> str:
    """The interpreter of the reference venv (imgstore 0.4.0).

    Skips without one, except where ``IMGSTORE_REQUIRE_REFERENCE`` is set (CI makes the venv):
    there a missing venv fails, so the cross-library tests cannot silently stop running.
    """
    from imgstore.testing.reference import reference_python

    python = reference_python()
    if python is None:
        if os.environ.get("IMGSTORE_REQUIRE_REFERENCE"):
            pytest.fail("IMGSTORE_REQUIRE_REFERENCE is set but there is no reference venv")
        pytest.skip("no reference venv (.venv-reference or IMGSTORE_REFERENCE_PYTHON)")
    return python


@pytest.fixture(scope="session")
def manifest() -> dict:
    if not (FIXTURES / "manifest.json").exists():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (set IMGSTORE_FIXTURES)")
    with open(FIXTURES / "manifest.json") as f:
        return json.load(f)


def _make_writable(dest: Path) -> None:
    for root, dirs, files in os.walk(dest):
        for n in dirs + files:
            os.chmod(os.path.join(root, n), 0o755 if n in dirs else 0o644)
    os.chmod(dest, 0o755)


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory, manifest) -> Path:
    """A session copy of all reference fixtures, for tests that only read."""
    dest = tmp_path_factory.mktemp("fixtures") / "upstream-0.4.0"
    shutil.copytree(FIXTURES, dest)
    _make_writable(dest)
    return dest


@pytest.fixture
def fixture_copy(tmp_path, manifest):
    """Return a function copying a named fixture store into tmp_path (fixtures are never modified)."""

    def _copy(name: str) -> str:
        dest = tmp_path / name
        shutil.copytree(FIXTURES / name, dest)
        _make_writable(dest)
        return str(dest)

    return _copy
