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
from conftest import sigint_default

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


# ------------------------------------------------------------------------------------------------------- prepare
from ganforge.apps import prepare as prep  # noqa: E402
from ganforge.apps import prepare_sources as sources  # noqa: E402
from ganforge.data import folder as folder_data  # noqa: E402
from ganforge.data import shards  # noqa: E402
from test_bad_input import _listing  # noqa: E402
from test_cli import _assert_user_error, run  # noqa: E402
from test_shards import _prepare  # noqa: E402


def _images(root: Path, n: int = 4, start: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        arr = np.full((8, 8), 20 * i + 10, np.uint8)
        Image.fromarray(arr).save(root / f"{i:02d}.png")
    return root


def test_a_zip_member_is_bounded_by_its_declared_size_and_read_as_a_stream(tmp_path, monkeypatch):
    import zipfile

    _images(tmp_path / "imgs", 3)
    with zipfile.ZipFile(tmp_path / "set.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted((tmp_path / "imgs").iterdir()):
            z.write(p, p.name)
        z.writestr("zeros.png", b"\0" * 5_000_000)  # compresses to a few kB
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 1_000_000)
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda *a, **k: pytest.fail("a member read whole"))
    s = _prepare(tmp_path / "set.zip", tmp_path / "out")
    assert (s.count, s.skipped) == (3, 1)
    report = (tmp_path / "out" / shards.REPORT).read_text()
    assert "zeros.png" in report and "5,000,000 bytes" in report
    assert "BytesIO" not in report


def test_an_unreadable_zip_member_is_named_not_a_bytesio(tmp_path):
    import zipfile

    _images(tmp_path / "imgs", 2)
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as z:
        for p in sorted((tmp_path / "imgs").iterdir()):
            z.write(p, p.name)
        z.writestr("junk.png", b"not an image")
    _prepare(tmp_path / "set.zip", tmp_path / "out")
    report = (tmp_path / "out" / shards.REPORT).read_text()
    assert "junk.png" in report and "BytesIO" not in report and "0x" not in report


def test_symlink_loops_are_followed_once(tmp_path):
    src = _images(tmp_path / "src", 3)
    (src / "s1").symlink_to(".")
    (src / "s2").symlink_to(".")
    (src / "sub").mkdir()
    _images(src / "sub", 1, start=5)
    (src / "sub" / "up").symlink_to("..")
    found = folder_data.list_images(src)
    assert sorted(Path(p).name for p in found) == ["00.png", "01.png", "02.png", "05.png"]
    s = _prepare(src, tmp_path / "out")
    assert (s.count, s.duplicates) == (4, 0)


def test_a_file_name_that_is_not_utf8_and_one_with_tabs_are_reported_on_one_line(tmp_path):
    src = _images(tmp_path / "src", 2)
    (src / "broken\tname\nx.png").write_bytes(b"junk")
    bad = bytes(src) + b"/caf\xe9.png"
    with open(bad, "wb") as f:
        f.write(b"junk")
    s = _prepare(src, tmp_path / "out")
    assert (s.count, s.skipped) == (2, 2)
    lines = (tmp_path / "out" / shards.REPORT).read_text().splitlines()
    assert len(lines) == 2 and all(line.count("\t") == 2 for line in lines)
    assert any("caf" in line for line in lines)
    assert not (tmp_path / "out" / shards.PROGRESS).exists()


@pytest.mark.parametrize("arrays, needle", [
    (dict(images=np.zeros((5, 8, 8), np.uint8), labels=np.arange(3)), "5 images but 3 labels"),
    (dict(images=np.zeros((2, 8, 8), np.uint8), labels=np.array(["cat", "dog"])), "labels"),
    (dict(images=np.full((2, 8, 8), np.nan)), "not finite"),
    (dict(images=np.full((2, 8, 8), np.inf)), "not finite"),
    (dict(images=np.zeros((2, 8, 8), np.complex64)), "complex64"),
    (dict(images=np.linspace(-3, 7, 128).reshape(2, 8, 8)), "-3"),
    (dict(images=np.full((2, 8, 8), 300, np.int64)), "300"),
])
def test_npz_arrays_that_do_not_fit_are_one_line_and_write_nothing(tmp_path, arrays, needle):
    np.savez(tmp_path / "x.npz", **arrays)
    with pytest.raises(UserError, match=needle):
        _prepare(tmp_path / "x.npz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_npz_value_ranges_are_read_as_their_scale():
    ramp = np.arange(64, dtype=np.uint8).reshape(1, 8, 8) * 4
    for x in (ramp, ramp.astype(np.int64), ramp / 255.0, ramp / 127.5 - 1, ramp.astype(np.float32)):
        got = sources._array_source(x, None, "x").items[0][1]
        assert np.abs(got.astype(int) - ramp[0]).max() <= 1, x.dtype


def test_npz_members_are_bounded_by_their_declared_size(tmp_path, monkeypatch):
    from ganforge import io_utils

    np.savez_compressed(tmp_path / "big.npz", images=np.zeros((100, 100, 100), np.uint8))  # 1 MB, a few kB zipped
    monkeypatch.setattr(io_utils, "MAX_NPZ_BYTES", 100_000)
    with pytest.raises(UserError, match="1,000,000 bytes"):
        io_utils.read_npz(tmp_path / "big.npz")


@pytest.mark.parametrize("damage", ["progress", "index", "escape"])
def test_a_damaged_progress_or_index_in_out_is_one_line(tmp_path, damage):
    src = _images(tmp_path / "src", 3)
    out = tmp_path / "out"
    out.mkdir()
    if damage == "progress":
        (out / shards.PROGRESS).write_text('{"options": ')
    elif damage == "index":
        (out / shards.INDEX).write_text("[]")
    else:  # a shard entry naming a file outside the folder: never opened, hashed or removed
        entry = {"name": "../../etc/passwd", "bytes": 1, "sha256": "0", "count": 1, "offsets": "", "sizes": "",
                 "labels": "", "next": 1}
        (out / shards.PROGRESS).write_text(json.dumps({"options": {}, "shards": [entry], "next": 1, "hashes": [],
                                                       "skipped": [], "duplicates": []}))
    res = run("prepare", str(src), "--out", str(out), "--resolution", "8", "--workers", "1")
    _assert_user_error(res, str(out), "delete")


def test_prepare_workers_are_checked_and_bounded(tmp_path, monkeypatch):
    src = _images(tmp_path / "src", 3)
    before = _listing(tmp_path)
    _assert_user_error(run("prepare", str(src), "--out", str(tmp_path / "o"), "--workers", "-1"), "--workers -1")
    _assert_user_error(run("prepare", str(src), "--out", str(tmp_path / "o"), "--workers", "10000"),
                       "--workers 10000")
    assert _listing(tmp_path) == before
    pools = []
    real = prep.get_context("spawn").Pool
    monkeypatch.setattr(prep, "_pool", lambda n: pools.append(n) or real(n))
    monkeypatch.setattr(prep.os, "cpu_count", lambda: 8)
    _prepare(src, tmp_path / "out", workers=8)
    assert pools == [3]  # no more processes than images


def test_rerunning_a_finished_prepare_says_complete_or_that_the_source_changed(tmp_path):
    src = _images(tmp_path / "src", 3)
    out = tmp_path / "out"
    args = ["prepare", str(src), "--out", str(out), "--resolution", "8", "--workers", "1"]
    assert run(*args).returncode == 0
    again = run(*args)
    assert again.returncode == 0 and "already complete" in again.stdout and "interrupted" not in again.stdout
    _images(src, 1, start=7)
    _assert_user_error(run(*args), "4 images", "3", "new --out")


def test_a_bad_background_names_the_accepted_forms():
    with pytest.raises(UserError, match="white, black or #rrggbb"):
        prep._check_options(prep.Options("x", background="#zzzzzz"))


def test_ctrl_c_during_a_pooled_prepare_says_how_to_resume_and_leaks_nothing(tmp_path):
    import os
    import signal
    import subprocess
    import time

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(300):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(src / f"{i:03d}.png")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "ganforge", "prepare", str(src), "--out", str(out), "--resolution", "32",
            "--workers", "2", "--shard-size", "4"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True,
                            preexec_fn=sigint_default)
    deadline = time.monotonic() + 240
    while not (out / shards.PROGRESS).is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the prepare ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: the whole foreground group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "leaked" not in err, err
    assert "run the same command again" in err
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "300 images" in done.stdout, done.stderr


# ------------------------------------------------------------------------------------------------------- shards
from ganforge.errors import DataError  # noqa: E402


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared set of 20 distinct 16x16 grey images in shards of 8 (8, 8, 4)."""
    root = tmp_path_factory.mktemp("hostile-shards")
    src = root / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(src / f"{i:02d}.png")
    _prepare(src, root / "set", resolution=16)
    return root / "set"


def _copy_set(prepared: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(prepared, to)
    for p in to.iterdir():
        p.chmod(0o644)
    return to


@pytest.mark.parametrize("index", [[1, 2, 3], {"format": shards.FORMAT}, {"format": shards.FORMAT, "shards": 5},
                                   {"format": shards.FORMAT, "shards": [{"name": "x"}]},
                                   {"format": shards.FORMAT, "shards": [7]}])
def test_a_malformed_index_is_one_line(prepared, tmp_path, index):
    from ganforge.data.build import build_spec

    bad = _copy_set(prepared, tmp_path / "set")
    (bad / shards.INDEX).write_text(json.dumps(index))
    with pytest.raises(DataError, match="index.json"):
        build_spec(f"shards:{bad}", channels=1, size=16)


def test_offsets_outside_their_shard_are_refused_before_any_read(prepared, tmp_path):
    from ganforge.data.build import build_spec

    bad = _copy_set(prepared, tmp_path / "set")
    index = json.loads((bad / shards.INDEX).read_text())
    sizes = shards.unpack(index["shards"][0]["sizes"]).copy()
    sizes[3] = 2 ** 40  # a hostile size: read() would allocate it
    index["shards"][0]["sizes"] = shards.pack(sizes)
    (bad / shards.INDEX).write_text(json.dumps(index))
    with pytest.raises(DataError, match="outside"):
        build_spec(f"shards:{bad}", channels=1, size=16)


def test_a_lost_shard_is_counted_in_images_with_its_reason(prepared, tmp_path, tiny):
    from ganforge.data.build import build_spec
    from ganforge.train.loop import train

    bad = _copy_set(prepared, tmp_path / "set")
    (bad / "shard-000001.tar").unlink()
    ds = build_spec(f"shards:{bad}", channels=1, size=16)
    assert len(ds) == 12 and ds.skipped_images() == 8
    assert "missing" in ds.skipped[0]
    cfg = tiny("dcgan", steps=2, batch_size=4)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"spec": f"shards:{bad}", "limit": None})})
    lines: list[str] = []
    train(cfg, tmp_path / "run", progress=False, log=lines.append)
    warning = next(line for line in lines if line.startswith("warning:") and "skipped" in line)
    assert "8 images" in warning and "shard" in warning, warning
    listed = (tmp_path / "run" / "skipped_files.txt").read_text()
    assert "shard-000001.tar" in listed and "missing" in listed


def test_strict_with_an_undecodable_image_leaves_no_run_directory(prepared, tmp_path):
    import hashlib

    bad = _copy_set(prepared, tmp_path / "set")
    index = json.loads((bad / shards.INDEX).read_text())
    entry = index["shards"][0]
    shard = bad / entry["name"]
    data = bytearray(shard.read_bytes())
    offsets = shards.unpack(entry["offsets"])
    for off in offsets:  # every image of the first shard: whichever the first batch takes, it fails
        data[int(off) + 16: int(off) + 24] = b"\xff" * 8  # the IHDR's size: no longer a PNG that decodes
    shard.write_bytes(bytes(data))
    entry["sha256"] = hashlib.sha256(bytes(data)).hexdigest()  # a set whose checks pass but whose image is bad
    (bad / shards.INDEX).write_text(json.dumps(index))
    res = run("train", "dcgan-mnist", "--data", f"shards:{bad}", "--strict", "--steps", "2", "--batch-size", "20",
              "--out", str(tmp_path / "run"), "--set", "model.image_size=16", "--set", "train.device=cpu",
              "--set", "eval.final=false")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "BytesIO" not in res.stderr
    assert "shard-000000.tar" in res.stderr
    assert not (tmp_path / "run").exists()


def test_a_run_lists_an_unreadable_file_whose_name_is_not_utf8(tmp_path, tiny):
    from ganforge.train.loop import train

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(2)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(src / f"{i}.png")
    with open(bytes(src) + b"/caf\xe9.png", "wb") as f:
        f.write(b"junk")
    cfg = tiny("dcgan", steps=1, batch_size=4)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"spec": f"folder:{src}", "limit": None})})
    train(cfg, tmp_path / "run", **quiet)
    assert "caf" in (tmp_path / "run" / "skipped_files.txt").read_text()


# ------------------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("key", ["train.ada_kimg", "train.lr_g", "train.time_limit", "train.dist_timeout",
                                 "train.ada_target"])
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_no_config_number_takes_infinity_or_nan(key, value):
    from ganforge.config import load_config

    with pytest.raises(UserError, match=key.split(".")[1]):
        load_config("dcgan-small", ["train.augment=ada", f"{key}={value}"])


def test_batch_per_device_above_the_share_is_refused_by_dry_run(tiny):
    from ganforge.train.loop import train

    with pytest.raises(UserError, match="batch_per_device=64"):
        train(tiny("dcgan", batch_size=32, batch_per_device=64), None, dry_run=True, **quiet)
    assert train(tiny("dcgan", batch_size=32, batch_per_device=32), None, dry_run=True, **quiet).steps == 0


# ------------------------------------------------------------------------------------------------------- preflight
def test_paired_data_for_a_noise_family_and_images_for_a_translator_are_refused_by_dry_run(tmp_path, tiny):
    from ganforge.train.loop import train

    noise = tiny("dcgan")
    paired = noise.model_copy(update={"data": noise.data.model_copy(update={"spec": "digits-sr", "split": "train"})})
    with pytest.raises(UserError, match="pairs"):
        train(paired, None, dry_run=True, **quiet)
    translator = tiny("pix2pix")
    single = translator.model_copy(update={"data": translator.data.model_copy(update={"spec": "mnist-embedded"})})
    with pytest.raises(UserError, match="pairs"):
        train(single, None, dry_run=True, **quiet)
    res = run("train", "dcgan-mnist", "--data", "digits-sr", "--steps", "1", "--out", str(tmp_path / "run"),
              "--set", "train.device=cpu")
    _assert_user_error(res, "digits-sr", "pairs")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------------- export
@pytest.fixture(scope="module")
def broken_newest(tmp_path_factory):
    """A run whose newest checkpoint passes its manifest but holds a wrongly shaped G tensor, and an older good
    one (a copy of it before the damage)."""
    import hashlib
    import shutil

    from safetensors.torch import load_file, save_file

    from conftest import tiny_config
    from ganforge.checkpoint import list_checkpoints
    from ganforge.train.loop import train

    run_dir = tmp_path_factory.mktemp("broken") / "run"
    train(tiny_config("dcgan", steps=2), run_dir, **quiet)
    newest = list_checkpoints(run_dir / "checkpoints")[0]
    shutil.copytree(newest, run_dir / "checkpoints" / "ckpt-e0000-s00000001")
    weights = load_file(str(newest / "weights.safetensors"))
    key = next(k for k in weights if k.startswith("G.") and weights[k].dim() > 1)
    weights[key] = torch_zeros(tuple(s + 1 for s in weights[key].shape))
    save_file(weights, str(newest / "weights.safetensors"))
    manifest = json.loads((newest / "manifest.json").read_text())
    manifest["sha256"]["weights.safetensors"] = hashlib.sha256((newest / "weights.safetensors").read_bytes()).hexdigest()
    (newest / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


def torch_zeros(shape):
    import torch

    return torch.zeros(shape)


def test_export_and_sampling_fall_back_past_a_checkpoint_whose_tensors_do_not_fit(broken_newest, tmp_path):
    from ganforge.apps.export import export
    from ganforge.apps.sampling import load_generator

    g = load_generator(broken_newest, "cpu")
    assert g.checkpoint.name == "ckpt-e0000-s00000001"
    lines: list[str] = []
    meta = export(broken_newest, "folder", tmp_path / "out", log=lines.append)
    assert meta["source"]["checkpoint"].endswith("ckpt-e0000-s00000001")
    res = run("export", str(broken_newest), "--format", "folder", "--out", str(tmp_path / "cli"))
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "skipping" in res.stderr and "shape" in res.stderr


def test_every_file_of_a_folder_export_has_the_same_mode(broken_newest, tmp_path):
    import os
    import stat

    from ganforge.apps.export import export

    old = os.umask(0o022)
    try:
        export(broken_newest, "folder", tmp_path / "out", log=lambda s: None)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert set(modes.values()) == {0o644}, modes


def test_the_torchscript_card_says_it_is_a_pickle_archive():
    from ganforge.apps.model_card import model_card

    meta = {"format": "torchscript", "family": "dcgan", "preset": "p", "image_size": 16, "channels": 1,
            "z_dim": 16, "z_dist": "normal", "conditional": False, "num_classes": None, "output": "images",
            "value_range": [-1.0, 1.0], "weights": "trained", "networks": {"G": "G"},
            "graphs": {"G": {"file": "G.pt", "description": "z -> image",
                             "inputs": {"z": {"shape": ["batch", 16], "dtype": "float32"}},
                             "output": {"name": "image", "shape": ["batch", 1, 16, 16], "dtype": "float32"},
                             "check": {"runtime": "torch", "max_abs_error": 0.0, "max_abs_error_by_batch": {"1": 0.0},
                                       "tolerance": 1e-4, "ok": True}}},
            "reference": {"file": "reference.npz", "seed": 0, "n": 3}, "source": {}, "run_config": {}}
    card = model_card(meta, None)
    assert "pickle" in card and "trusted" in card and "onnx" in card.lower()


def test_every_reader_of_user_images_checks_the_header_size_first(tmp_path, monkeypatch):
    """The demo's uploads, classify/translate --input, side-by-side pairs and shards: none decodes a bomb."""
    from ganforge.apps.classify import read_inputs
    from ganforge.apps.demo import decode_upload
    from ganforge.data.imageops import check_pixels

    bomb = png_claiming(12000, 12000)
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(UserError, match="12000x12000 pixels"):
        read_inputs(tmp_path / "bomb.png")
    with pytest.raises(Image.DecompressionBombError):
        check_pixels(Image.open(io.BytesIO(bomb)))
    with pytest.raises(UserError) as err:
        decode_upload(b"not an image at all")
    assert "BytesIO" not in str(err.value) and "0x" not in str(err.value)
