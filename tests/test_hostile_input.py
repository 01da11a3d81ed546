"""Hostile and careless input (issue 33): every size that comes from outside is bounded before it is read, every
folder walk follows no link twice, and every writer of an output leaves nothing behind on a user error."""
from __future__ import annotations

import io
import json
import socket
import struct
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganforge.errors import UserError
from test_demo import get, runs, serving, upload_png  # noqa: F401 - the module-scoped fixture of tiny runs

quiet = dict(progress=False, log=lambda s: None)


# ------------------------------------------------------------------------------------------------------- demo
def png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims ``width`` x ``height``: what a decompression bomb looks like before
    decoding (its pixel data, a few hundred bytes of zlib, would inflate to width * height bytes)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def raw_post(url: str, path: str, headers: str, body: bytes = b"") -> tuple[int, dict]:
    """(status, JSON body) of a hand-written POST: headers urllib would not send."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n".encode() + body)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload or b"{}")


def test_a_negative_or_non_numeric_content_length_is_refused_not_read(runs):
    with serving(runs("ssgan")) as url:
        image = upload_png()
        status, body = raw_post(url, "/api/classify", "Content-Length: -1\r\n", image)
        assert status == 400 and "Content-Length" in body["error"]
        status, body = raw_post(url, "/api/classify", "Content-Length: abc\r\n", image)
        assert status == 400 and "Content-Length" in body["error"]
        status, body = raw_post(url, "/api/classify", "", image)
        assert status == 411 and "Content-Length" in body["error"]
        status, body = raw_post(url, "/api/classify", f"Content-Length: {2 ** 40}\r\n")
        assert status == 413
        assert get(f"{url}/api/classify", image)[0] == 200  # an honest upload still works


def test_an_upload_whose_header_claims_too_many_pixels_is_refused_before_decoding(monkeypatch):
    from ganforge.apps import demo

    loads, bomb = [], png_claiming(12000, 12000)
    monkeypatch.setattr(Image.Image, "load", lambda self, *a: loads.append(self.size))
    with pytest.raises(UserError, match="12000x12000 pixels"):
        demo.decode_upload(bomb)
    assert loads == []  # refused from the header alone: nothing decoded
    monkeypatch.undo()
    assert demo.decode_upload(upload_png(20, 30)).shape == (1, 3, 20, 30)


def test_a_bomb_upload_is_a_400_on_the_server(runs):
    with serving(runs("ssgan")) as url:
        status, body, _ = get(f"{url}/api/classify", png_claiming(12000, 12000))
        assert status == 400 and "pixels" in json.loads(body)["error"]


def test_a_noise_generator_without_truncation_or_labels_refuses_them(runs):
    with serving(runs("dcgan")) as url:
        for query in ("truncation=nan", "truncation=inf", "truncation=-5", "truncation=0.5", "label=5"):
            status, body, _ = get(f"{url}/api/sample?seed=1&n=4&{query}")
            assert status == 400, query
            assert query.split("=")[0] in json.loads(body)["error"]
        assert get(f"{url}/api/walk?a=1&b=2&label=1")[0] == 400
    with serving(runs("stylegan")) as url:
        for query in ("truncation=nan", "truncation=inf", "truncation=-5"):
            assert get(f"{url}/api/sample?seed=1&n=4&{query}")[0] == 400, query


def test_fifty_concurrent_requests_are_all_answered(runs):
    from ganforge.apps.demo import make_server

    server = make_server("127.0.0.1", 0)
    assert server.request_queue_size >= 64  # the listen backlog: the default 5 resets a burst of connections
    server.server_close()
    with serving(runs("dcgan")) as url:
        statuses: list[int] = []

        def one() -> None:
            statuses.append(get(f"{url}/api/sample?seed=1&n=1")[0])

        threads = [threading.Thread(target=one) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 50


def test_a_client_that_hangs_up_prints_nothing(capsys):
    from ganforge.apps.demo import make_server

    server = make_server("127.0.0.1", 0)
    try:
        for exc in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")):
            try:
                raise exc
            except OSError:
                server.handle_error(None, ("127.0.0.1", 1))
        assert capsys.readouterr().err == ""
        try:
            raise ValueError("a real bug")
        except ValueError:
            server.handle_error(None, ("127.0.0.1", 1))
        assert "a real bug" in capsys.readouterr().err  # anything else keeps its traceback
    finally:
        server.server_close()
