#!/usr/bin/env python
"""Run the reference library's own test suite (imgstore 0.4.0) against *this* package.

Usage::

    python scripts/run_reference_suite.py [--workdir DIR] [-- PYTEST_ARGS...]

1. ``pip download imgstore==0.4.0`` (the wheel only, no dependencies) into the work folder
   (default ``.reference-suite/`` at the top of the checkout; the wheel is reused);
2. extracts the wheel's ``imgstore/tests/`` (test code and data, unchanged) as
   ``reference_tests/``;
3. writes a ``conftest.py`` beside it that makes ``imgstore.tests`` (what the tests import
   ``TEST_DATA_DIR`` from) that extracted package, so the data path points there: the only
   change the reference's tests need;
4. runs pytest on it with this interpreter, where ``import imgstore`` is this package,
   and prints the counts. The exit status is pytest's.

Cases parametrised over formats this package adds (``test_all`` and
``test_videoseek_extensive`` iterate ``get_supported_formats()``) are run like the rest;
:data:`CODEC_LIMITS` names any that cannot pass for a reason that is a property of the
codec. None is listed today: every case passes.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import zipfile

REFERENCE = "imgstore==0.4.0"
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: test id -> why it cannot pass (a property of the codec, not of this package); reported,
#: still counted. Empty: every case of the reference's suite passes.
CODEC_LIMITS: dict[str, str] = {}

_CONFTEST = '''\
"""Written by scripts/run_reference_suite.py: the reference's tests import their data path
from ``imgstore.tests``; point that name at the extracted ``reference_tests`` package."""
import sys

import imgstore
import reference_tests

sys.modules["imgstore.tests"] = reference_tests
imgstore.tests = reference_tests
'''

_PYTEST_INI = '''\
[pytest]
addopts = -ra -p no:cacheprovider
'''


def fetch_wheel(workdir: str) -> str:
    """The reference wheel in ``workdir`` (downloaded with pip if absent)."""
    found = glob.glob(os.path.join(workdir, "imgstore-0.4.0-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "-d", workdir, REFERENCE], check=True)
        found = glob.glob(os.path.join(workdir, "imgstore-0.4.0-*.whl"))
    if not found:
        raise SystemExit(f"pip did not download {REFERENCE} into {workdir}")
    return found[0]


def extract_tests(wheel: str, workdir: str) -> str:
    """Extract the wheel's ``imgstore/tests/`` to ``workdir/reference_tests``; return the folder."""
    dest = os.path.join(workdir, "reference_tests")
    shutil.rmtree(dest, ignore_errors=True)
    prefix = "imgstore/tests/"
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if not name.startswith(prefix) or name.endswith("/"):
                continue
            target = os.path.join(dest, name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with zf.open(name) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    with open(os.path.join(workdir, "conftest.py"), "w") as f:
        f.write(_CONFTEST)
    with open(os.path.join(workdir, "pytest.ini"), "w") as f:
        f.write(_PYTEST_INI)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=os.path.join(TOP, ".reference-suite"),
                        help="scratch folder for the wheel and the extracted tests")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    wheel = fetch_wheel(workdir)
    tests = extract_tests(wheel, workdir)

    import imgstore

    print(f"reference suite: {os.path.basename(wheel)} tests -> {tests}")
    print(f"package under test: imgstore {imgstore.__version__} from {os.path.dirname(imgstore.__file__)}")
    for test_id, why in CODEC_LIMITS.items():
        print(f"known codec limit (counted, expected to fail): {test_id}: {why}")
    sys.stdout.flush()
    # run from the work folder so that `reference_tests` and the conftest are found there,
    # and this checkout's own tests/ and pyproject settings are not
    env = dict(os.environ, PYTHONPATH=workdir + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-c", os.path.join(workdir, "pytest.ini"),
                           "--rootdir", workdir, "reference_tests", *args.pytest_args], cwd=workdir, env=env)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
