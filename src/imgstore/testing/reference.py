"""Reading stores in the reference library (imgstore 0.4.0), which runs in its own venv.

Both libraries are imported as ``imgstore``, so the reference runs in a separate
interpreter: :func:`read_in_reference` sends it a list of stores and gets back what it
read (frame metadata, user metadata, the barcode of every frame read sequentially and by
``get_image``, extra data, and whether frames equal expected arrays). Comparisons are left
to the caller.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from collections.abc import Sequence
from typing import Any

REFERENCE_REQUIREMENTS = ("imgstore==0.4.0", "opencv-python-headless<4.9", "numpy<2", "pandas<2.3")

_READER = r'''
import json, sys
import numpy as np
import imgstore
assert imgstore.__version__ == "0.4.0", imgstore.__version__

def band_code(img, bits=20):
    a = img.astype(float)
    if a.ndim == 3:
        a = a.mean(axis=2)
    h, w = a.shape
    edges = np.linspace(0, w, bits + 1).astype(int)
    v = 0
    for i in range(bits):
        v = (v << 1) | int(a[: h // 2, edges[i] + 1: edges[i + 1] - 1].mean() > 127)
    return v

out = []
for case in json.load(sys.stdin):
    res = {"path": case["path"]}
    try:
        s = imgstore.new_for_filename(case["path"])
        md = s.get_frame_metadata()
        res["frame_number"] = [int(x) for x in md["frame_number"]]
        res["frame_time"] = [float(x) for x in md["frame_time"]]
        res["user_metadata"] = s.user_metadata
        res["image_shape"] = list(s.image_shape)
        expected = np.load(case["expected"]) if case.get("expected") else None
        codes, exact = [], []
        while True:
            try:
                img, (fn, ft) = s.get_next_image()
            except EOFError:
                break
            if expected is not None:
                exact.append(bool(np.array_equal(img, expected[len(codes)])))
            codes.append(band_code(img))
        res["sequential_codes"] = codes
        res["sequential_exact"] = exact
        res["random"] = []
        for fn in case.get("get_image", []):
            img, (got, _) = s.get_image(fn)
            res["random"].append([int(got), band_code(img)])
        df = s.get_extra_data()
        res["extra_frame_index"] = None if df is None else [int(x) for x in df["frame_index"]]
        s.close()
    except Exception as exc:
        res["error"] = "%s: %s" % (type(exc).__name__, exc)
    out.append(res)
json.dump(out, sys.stdout)
'''


def default_venv() -> str:
    """``.venv-reference`` at the top of the source checkout."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))), ".venv-reference")


def reference_python(venv_path: str | None = None) -> str | None:
    """The reference venv's interpreter (``IMGSTORE_REFERENCE_PYTHON`` wins), None if absent."""
    python = os.environ.get("IMGSTORE_REFERENCE_PYTHON") or os.path.join(venv_path or default_venv(), "bin", "python")
    return python if os.path.exists(python) else None


def ensure_reference_venv(venv_path: str | None = None) -> str:
    """Create the reference venv if needed (needs the package index); return its python."""
    venv_path = venv_path or default_venv()
    python = os.path.join(venv_path, "bin", "python")
    if not os.path.exists(python):
        venv.create(venv_path, with_pip=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *REFERENCE_REQUIREMENTS], check=True)
    return python


def read_in_reference(python: str, cases: Sequence[dict[str, Any]], timeout: float = 600) -> list[dict[str, Any]]:
    """Open each store in the reference and report what it read.

    Parameters
    ----------
    python
        The reference venv's interpreter.
    cases
        ``{"path": store, "expected": optional .npy of the frames in store order,
        "get_image": optional frame_numbers to fetch}`` per store.

    Returns
    -------
    list of dict
        Per store: ``frame_number``, ``frame_time``, ``user_metadata``, ``image_shape``,
        ``sequential_codes`` (barcodes in read order), ``sequential_exact`` (equal to
        ``expected``), ``random`` (``[frame_number returned, barcode]`` per requested
        number), ``extra_frame_index``; or ``error``.
    """
    out = subprocess.run([python, "-c", _READER], input=json.dumps(list(cases)), capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"reference reader failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)
