"""Scanning a store's chunks into one index: chunk lengths that vary, empty chunks, caches.

The scanner appends every chunk's frames into one pair of arrays, making room for the chunks
still to come at the latest chunk's length; these stores make it grow, shrink and skip.
"""

from __future__ import annotations

import numpy as np
import pytest

import imgstore
from imgstore.testing.synthetic import make_synthetic_store


@pytest.mark.parametrize("lengths", [[1, 50, 3, 200, 7], [200, 1, 1, 1], [5], [0, 12, 0, 30]])
def test_index_of_unequal_chunks(tmp_path, lengths):
    n = sum(lengths)
    numbers = np.arange(n) * 3 + 7
    times = 1_700_000_000.0 + np.arange(n) / 7
    path = make_synthetic_store(str(tmp_path / "s"), n, chunksize=max(lengths), frame_numbers=numbers,
                                frame_times=times, chunk_lengths=lengths, frames="all")
    for _ in range(2):  # built from the chunks, then from the index cache the first open wrote
        with imgstore.new_for_filename(path) as s:
            assert s.frame_count == n
            np.testing.assert_array_equal(s.get_frame_metadata()["frame_number"], numbers)
            np.testing.assert_array_equal(s.get_frame_metadata()["frame_time"], times)
            for i in (0, n // 2, n - 1):
                _, (fn, ft) = s.get_image(None, frame_index=i)
                assert fn == numbers[i] and ft == times[i]
