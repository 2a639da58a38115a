"""dask.distributed worker *processes* read a store from S3 (moto on 127.0.0.1) and equal the serial local answer.

Each worker opens the store from its URL itself (imgstore.parallel.StoreRef): no frame travels from
the client, which never reads a frame here (its request log shows no chunk payload read).
"""

from __future__ import annotations

import distributed
import numpy as np

import imgstore
from imgstore import parallel
from imgstore.testing.barcode import read_barcode

from .remote_util import s3, s3_server, upload, write_store

__all__ = ["s3", "s3_server"]  # fixtures


def _barcode(img):
    return read_barcode(img)


def test_workers_read_from_s3_like_a_serial_local_run(s3, tmp_path):
    local_path = str(tmp_path / "s")
    numbers = write_store(local_path, "ffv1/mkv", n=60, chunksize=16)
    url = upload(s3, local_path, "dask")
    with imgstore.new_for_filename(local_path) as local:
        expected_sums = parallel.map_frames(np.sum, local)
        expected_array = np.stack([local.get_image(None, frame_index=i)[0] for i in range(len(local))])
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client, \
            imgstore.new_for_filename(url, storage_options=s3.storage_options) as remote:
        client.run(parallel.clear_store_cache)
        sums = parallel.map_frames(np.sum, remote, client=client)
        barcodes = parallel.map_frames(_barcode, remote, client=client)
        array = parallel.store_to_dask(remote, frames_per_block=7).compute(scheduler=client)
        # the workers did the reading: the client fetched no chunk payload
        assert not [p for _, p, _ in remote.storage.stats.log if p.endswith(".mkv")]
        pids = set(client.run(lambda: __import__("os").getpid()).values())
    assert len(pids) == 2
    assert sums.equals(expected_sums)
    assert barcodes["value"].tolist() == numbers
    np.testing.assert_array_equal(array, expected_array)
