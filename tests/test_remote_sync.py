"""imgstore.sync / imgstore-sync against a real S3 server: order, idempotence, failures, kills, --follow."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading

import pytest

import imgstore
from imgstore import errors
from imgstore.cli.sync import main as sync_main
from imgstore.testing.barcode import make_frame, read_barcode

from .remote_util import T0, H, W, remote_keys, s3, s3_server, same_frames, write_store

__all__ = ["s3", "s3_server"]  # fixtures


def _order_ok(names):
    """metadata.yaml first, every chunk's payload before its index, the index cache last."""
    assert names[0] == "metadata.yaml"
    if ".imgstore-index.cache" in names:
        assert names[-1] == ".imgstore-index.cache"
    position = {n: i for i, n in enumerate(names)}
    for n in names:
        stem, _, ext = n.partition(".")
        if ext in ("mkv", "extra.json") and f"{stem}.npz" in position:
            assert position[n] < position[f"{stem}.npz"], n


@pytest.mark.parametrize("fmt", ["h264/mkv", "png"])
def test_sync_then_read_there(s3, tmp_path, fmt):
    src = str(tmp_path / "s")
    numbers = write_store(src, fmt, n=45, chunksize=10, extra_every=4)
    url = f"s3://{s3.bucket}/synced"
    uploaded = []
    report = imgstore.sync(src, url, storage_options=s3.storage_options,
                           progress=lambda name, n: uploaded.append(name))
    assert report.uploaded == uploaded and report.chunks == 5 and report.skipped == 0
    if fmt == "h264/mkv":
        _order_ok(uploaded)
    else:
        assert uploaded[0] == "metadata.yaml" and uploaded[-1] == ".imgstore-index.cache"
        for k in range(5):
            frames = [i for i, n in enumerate(uploaded) if n.startswith(f"{k:06d}/") and n.endswith(".png")]
            assert max(frames) < uploaded.index(f"{k:06d}/index.npz")
    assert not [n for n in uploaded if n.endswith((".journal", ".lock"))]
    with imgstore.new_for_filename(src) as local, \
            imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        same_frames(remote, local, lossless=fmt == "png")
        assert remote.get_extra_data().equals(local.get_extra_data())
        assert read_barcode(remote.get_nearest_image(T0 + 30 / 30)[0]) == numbers[30]
    # idempotent: a second run finds everything there
    again = imgstore.sync(src, url, storage_options=s3.storage_options)
    assert again.uploaded == [] and again.skipped == len(uploaded)


def test_a_failed_upload_leaves_a_valid_store_and_a_rerun_finishes(s3, tmp_path):
    src = str(tmp_path / "s")
    numbers = write_store(src, n=50, chunksize=10)
    url = f"s3://{s3.bucket}/broken"
    s3.faults(**{"500": -1, "match": "000003.npz", "methods": ["PUT"]})
    with pytest.raises(errors.StoreWriteError, match=r"000003\.npz.*after 4 attempts") as info:
        imgstore.sync(src, url, storage_options=s3.storage_options)
    assert isinstance(info.value, OSError)
    # chunk 3 has its payload there but no index: readers do not see it; chunks 0-2 read
    with imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        assert remote.frame_count == 30
        assert read_barcode(remote.get_image(numbers[29])[0]) == numbers[29]
    s3.clear_faults()
    report = imgstore.sync(src, url, storage_options=s3.storage_options)
    assert report.uploaded[0] == "000003.npz" and report.skipped == 1 + 3 * 2 + 1  # metadata, 3 chunks, 000003.mkv
    with imgstore.new_for_filename(src) as local, \
            imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        same_frames(remote, local, lossless=False)


def test_killed_mid_way_and_rerun(s3, tmp_path):
    """imgstore-sync in a child process, killed after its third upload; the rerun completes the store."""
    src = str(tmp_path / "s")
    write_store(src, n=80, chunksize=10)
    url = f"s3://{s3.bucket}/killed"
    s3.faults(latency=0.05)
    code = ("import sys; from imgstore.cli.sync import main; sys.exit(main(sys.argv[1:]))")
    opts = ["-o", f"endpoint_url={s3.endpoint_url}", "-o", "key=testing", "-o", "secret=testing",
            "-o", 'client_kwargs={"region_name": "us-east-1"}']
    child = subprocess.Popen([sys.executable, "-c", code, src, url, "-v", "-q", *opts], stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.stderr is not None
    seen = []
    for line in child.stderr:
        if line.startswith("uploaded"):
            seen.append(line.split()[1])
            if len(seen) == 4:
                child.kill()
                break
    child.wait()
    s3.clear_faults()
    assert seen[0] == "metadata.yaml" and len(seen) == 4
    with imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        assert remote.frame_count in (10, 20)  # whole chunks only
    report = imgstore.sync(src, url, storage_options=s3.storage_options)
    assert report.skipped >= 4
    with imgstore.new_for_filename(src) as local, \
            imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        same_frames(remote, local, lossless=False)
    assert ".imgstore-index.cache" in {k.rsplit("/", 1)[-1] for k in remote_keys(s3, url)}


def test_follow_uploads_chunks_while_recording(s3, tmp_path):
    """The remote copy is a valid store while the writer goes on; complete chunks appear there as they close."""
    src = str(tmp_path / "live")
    url = f"s3://{s3.bucket}/live"
    passes: queue.Queue = queue.Queue()
    stop = threading.Event()
    result: dict = {}

    def follow():
        try:
            result["report"] = imgstore.sync(src, url, storage_options=s3.storage_options, follow=True,
                                             interval=0.05, stop=stop, after_pass=lambda r: passes.put(r.chunks))
        except BaseException as exc:  # reported by the main thread
            result["error"] = exc
            passes.put(-1)

    def next_full_pass():
        """Wait for a pass that began after this call (the second pass to end from now)."""
        while not passes.empty():
            passes.get_nowait()
        for _ in range(2):
            assert passes.get(timeout=60) >= 0, result.get("error")

    writer = imgstore.new_for_format("h264/mkv", basedir=src, imgshape=(H, W), chunksize=10)
    thread = threading.Thread(target=follow)
    try:
        seen_counts = []
        for i in range(35):
            writer.add_image(make_frame(i, H, W), i, T0 + i)
            if i in (0, 14, 27):
                if i == 0:
                    thread.start()
                next_full_pass()
                with imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
                    n = remote.frame_count
                    assert n % 10 == 0 and n <= i + 1  # whole chunks only, never the open one
                    seen_counts.append(n)
                    for k in range(0, n, 3):
                        img, (got, _) = remote.get_image(k)
                        assert got == k and read_barcode(img) == k
    finally:
        writer.close()
    thread.join(timeout=120)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    assert seen_counts == [0, 10, 20]
    with imgstore.new_for_filename(src) as local, \
            imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        assert remote.frame_count == 35
        same_frames(remote, local, lossless=False)
    assert result["report"].passes >= 6


def test_cli(s3, tmp_path, capsys):
    src = str(tmp_path / "s")
    write_store(src, n=12, chunksize=5)
    url = f"s3://{s3.bucket}/cli"
    opts = ["-o", f"endpoint_url={s3.endpoint_url}", "-o", "key=testing", "-o", "secret=testing",
            "-o", 'client_kwargs={"region_name": "us-east-1"}']
    assert sync_main([src, url, "-q", *opts]) == 0
    out = capsys.readouterr().out
    assert "8 files uploaded" in out and "3 chunks" in out
    assert sync_main([src, url, "-q", *opts]) == 0
    assert "0 files uploaded" in capsys.readouterr().out
    assert sync_main([src, str(tmp_path / "not-a-url"), "-q"]) == 2
    assert sync_main([str(tmp_path / "nothing"), url, "-q", *opts]) == 1
    assert "nothing" in capsys.readouterr().err


def test_a_changed_chunk_replaces_the_remote_one_with_the_cache_removed_first(s3, tmp_path):
    """The local store changed under a synced copy (a repair rewrote a chunk index)."""
    import numpy as np

    src = str(tmp_path / "s")
    write_store(src, n=30, chunksize=10)
    url = f"s3://{s3.bucket}/changed"
    imgstore.sync(src, url, storage_options=s3.storage_options)
    index = os.path.join(src, "000001.npz")
    with np.load(index) as npz:
        arrays = dict(npz)
    np.savez_compressed(index, **arrays)  # the same arrays, other bytes
    order = []
    s3.faults(reset_counts=True)  # count this run's requests only

    report = imgstore.sync(src, url, storage_options=s3.storage_options, progress=lambda n, _: order.append(n))
    assert report.removed_cache and order == ["000001.npz", ".imgstore-index.cache"]
    with imgstore.new_for_filename(src) as local, \
            imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        same_frames(remote, local, lossless=False)
