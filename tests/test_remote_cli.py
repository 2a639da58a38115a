"""imgstore-info, imgstore-convert (source) and imgstore-view take URLs (with -o storage options)."""

from __future__ import annotations

import http.client
import json
import threading

import imgstore
from imgstore.cli import convert, info, view
from imgstore.cli._common import open_for_reading
from imgstore.cli.view import build_parser as view_parser
from imgstore.testing.barcode import read_barcode

from .remote_util import s3, s3_server, same_frames, upload, write_store

__all__ = ["s3", "s3_server"]  # fixtures


def _opts(s3):
    return ["-o", f"endpoint_url={s3.endpoint_url}", "-o", "key=testing", "-o", "secret=testing",
            "-o", 'client_kwargs={"region_name": "us-east-1"}']


def test_info_of_a_url(s3, tmp_path, capsys):
    src = str(tmp_path / "s")
    numbers = write_store(src, n=30, chunksize=10, extra_every=5)
    url = upload(s3, src, "info")
    assert info.main([url, "--json", *_opts(s3)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frame_count"] == 30 and out["frame_number_min"] == numbers[0]
    assert info.main([url + "-missing", *_opts(s3)]) == 1
    assert "info-missing" in capsys.readouterr().err


def test_convert_from_a_url(s3, tmp_path):
    src = str(tmp_path / "s")
    write_store(src, "ffv1/mkv", n=25, chunksize=10, extra_every=6)
    url = upload(s3, src, "conv")
    dest = str(tmp_path / "png")
    assert convert.main([url, dest, "--format", "png", *_opts(s3)]) == 0
    with imgstore.new_for_filename(src) as a, imgstore.new_for_filename(dest) as b:
        same_frames(b, a, lossless=True)
        assert b.get_extra_data().equals(a.get_extra_data())


def test_view_serves_frames_of_a_url(s3, tmp_path):
    src = str(tmp_path / "s")
    numbers = write_store(src, n=20, chunksize=10)
    url = upload(s3, src, "view")
    args = view_parser().parse_args([url, *_opts(s3)])
    with open_for_reading(args.store[0], args) as store:
        server = view.make_server(store, idle_timeout=5)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
            conn.request("GET", "/frame?index=13", headers={"Sec-Fetch-Site": "same-origin"})
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200 and len(body) > 100
            assert int(response.getheader("X-Frame-Number")) == numbers[13]
            conn.close()
        finally:
            server.shutdown()
            thread.join(10)
            server.server_close()
        assert read_barcode(store.get_image(numbers[13])[0]) == numbers[13]
