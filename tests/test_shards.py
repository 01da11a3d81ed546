"""``ganforge prepare`` and ``--data shards:DIR`` (issue 26): the format, the conversions, determinism, a killed
prepare resuming, streaming with exact training resume, corrupt shards, and the one-line refusals."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.apps import prepare as prep
from ganforge.checkpoint import load_latest
from ganforge.data import shards
from ganforge.data.build import build_spec
from ganforge.data.imageops import resize_policy
from ganforge.errors import DataError, UserError
from ganforge.train.loop import train
from test_bad_input import _listing
from test_cli import _assert_user_error, run

quiet = dict(progress=False, log=lambda s: None)


def _source(root: Path, n: int = 12) -> Path:
    """Two classes of small distinct images, plus the odd ones that break other tools: a duplicate, an
    unreadable file, RGBA, 16-bit grey and a palette image."""
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            img = np.zeros((16 + i % 3, 20, 3), np.uint8)
            y, x = rng.integers(0, 10, 2)
            img[y:y + 6, x:x + 6] = rng.integers(64, 256, (6, 6, 3))
            Image.fromarray(img).save(root / c / f"{i:02d}.png")
    (root / "dog" / "dup.png").write_bytes((root / "cat" / "00.png").read_bytes())
    (root / "dog" / "bad.png").write_bytes(b"not a png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 4), dtype=np.uint8), "RGBA").save(root / "dog" / "alpha.png")
    Image.fromarray(rng.integers(0, 65535, (16, 16)).astype(np.uint16)).save(root / "dog" / "grey16.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).convert("P").save(root / "dog" / "pal.png")
    return root


def _prepare(src, out: Path, workers: int = 1, **kw) -> prep.Summary:
    opt = prep.Options(source=str(src), resolution=kw.pop("resolution", 16), channels=kw.pop("channels", 1),
                       shard_size=kw.pop("shard_size", 8), **kw)
    return prep.prepare(str(src), out, opt, workers=workers)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    src = _source(root / "src")
    _prepare(src, root / "set")
    return root


def test_prepare_writes_shards_an_index_and_a_report(made):
    index = json.loads((made / "set" / shards.INDEX).read_text())
    assert index["count"] == 24 + 3  # 12 + 12 + alpha, grey16, palette; the duplicate and the bad file dropped
    assert index["resolution"] == [16, 16] and index["channels"] == 1
    assert index["class_names"] == ["cat", "dog"] and index["duplicates"] == 1 and index["skipped"] == 1
    assert [e["count"] for e in index["shards"]] == [8, 8, 8, 3]
    for e in index["shards"]:
        assert shards.sha256_file(made / "set" / e["name"]) == e["sha256"]
    report = (made / "set" / shards.REPORT).read_text()
    assert "unreadable\tdog/bad.png" in report and "duplicate\tdog/dup.png" in report
    assert not (made / "set" / shards.PROGRESS).exists()
    ds = build_spec(f"shards:{made / 'set'}", channels=1, size=16)
    assert len(ds) == 27 and ds.num_classes == 2 and ds.tensor is None
    x, y = ds[0]
    assert x.shape == (1, 16, 16) and y == 0 and -1 <= x.min() <= x.max() <= 1
    assert [ds[i][1] for i in range(len(ds))] == [0] * 12 + [1] * 15


def test_shards_are_plain_webdataset_tars(made):
    import webdataset as wds

    names = sorted(p.name for p in (made / "set").glob("shard-*.tar"))
    samples = list(wds.WebDataset([str(made / "set" / n) for n in names], shardshuffle=False).decode("pil"))
    assert len(samples) == 27 and samples[0]["png"].size == (16, 16) and samples[-1]["cls"] == 1
    ours = build_spec(f"shards:{made / 'set'}", channels=1, size=16)
    first = torch.from_numpy(np.asarray(samples[3]["png"].convert("L"), np.float32) / 127.5 - 1)
    assert torch.equal(ours[3][0][0], first)


def test_preparing_twice_gives_byte_identical_shards_whatever_the_workers(made, tmp_path):
    _prepare(made / "src", tmp_path / "again", workers=2)
    for p in sorted((made / "set").glob("shard-*.tar")):
        assert (tmp_path / "again" / p.name).read_bytes() == p.read_bytes()
    a, b = (json.loads((d / shards.INDEX).read_text()) for d in (made / "set", tmp_path / "again"))
    assert a["shards"] == b["shards"]


def _prepare_killed_mid_shard_3(made: Path, out: Path, monkeypatch) -> None:
    """A prepare stopped by Ctrl-C at its 20th image (8 a shard): shards 0 and 1 are done, the third is partial."""
    real, calls = prep.convert, []

    def dying(job):
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return real(job)

    with monkeypatch.context() as m:
        m.setattr(prep, "convert", dying)
        with pytest.raises(KeyboardInterrupt):
            _prepare(made / "src", out)


def test_a_killed_prepare_resumes_and_ends_identical(made, tmp_path, monkeypatch):
    _prepare_killed_mid_shard_3(made, tmp_path / "out", monkeypatch)
    assert (tmp_path / "out" / shards.PROGRESS).is_file() and not (tmp_path / "out" / shards.INDEX).exists()
    assert not shards.is_prepared(tmp_path / "out")
    with pytest.raises(DataError, match="interrupted"):
        build_spec(f"shards:{tmp_path / 'out'}", channels=1, size=16)
    summary = _prepare(made / "src", tmp_path / "out")
    assert summary.resumed_from == 2 and summary.count == 27
    for p in sorted((made / "set").glob("shard-*.tar")):
        assert (tmp_path / "out" / p.name).read_bytes() == p.read_bytes()


def test_a_resume_clears_the_temp_file_an_interrupted_progress_write_left(made, tmp_path, monkeypatch):
    """Ctrl-C between the progress temp's creation and its rename leaves it in --out: a resume removes it, where
    any other file still makes the folder refused."""
    _prepare_killed_mid_shard_3(made, tmp_path / "out", monkeypatch)
    left = tmp_path / "out" / f".{shards.PROGRESS}.o3f4qmdw.tmp.json"
    left.write_text('{"options": ')
    summary = _prepare(made / "src", tmp_path / "out")
    assert summary.resumed_from == 2 and summary.count == 27 and not left.exists()
    (tmp_path / "out" / ".index.json.o3f4qmdw.tmp.png").write_text("not ours")
    with pytest.raises(UserError, match="other files"):
        _prepare(made / "src", tmp_path / "out")


def test_a_damaged_finished_shard_is_redone_on_resume(made, tmp_path, monkeypatch):
    _prepare_killed_mid_shard_3(made, tmp_path / "out", monkeypatch)
    second = tmp_path / "out" / "shard-000001.tar"
    second.write_bytes(second.read_bytes()[:-700])
    assert _prepare(made / "src", tmp_path / "out").resumed_from == 1
    assert second.read_bytes() == (made / "set" / second.name).read_bytes()


def test_zip_and_npz_sources(made, tmp_path):
    with zipfile.ZipFile(tmp_path / "src.zip", "w") as z:
        for p in sorted((made / "src").rglob("*.png")):
            z.write(p, p.relative_to(made / "src").as_posix())
    _prepare(tmp_path / "src.zip", tmp_path / "z")
    for p in sorted((made / "set").glob("shard-*.tar")):
        assert (tmp_path / "z" / p.name).read_bytes() == p.read_bytes()
    images = np.random.default_rng(1).integers(0, 255, (10, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=images, labels=np.arange(10) % 2)
    assert _prepare(tmp_path / "x.npz", tmp_path / "n", resolution=8, channels=3).count == 10
    ds = build_spec(f"shards:{tmp_path / 'n'}", channels=3, size=8)
    assert torch.equal(ds[4][0], torch.from_numpy(images[4]).permute(2, 0, 1).float() / 127.5 - 1)
    assert ds.num_classes == 2 and ds[3][1] == 1


def test_a_named_set_prepares(tmp_path):
    assert _prepare("mnist-embedded", tmp_path / "m", shard_size=2000).count > 4000  # some digits repeat exactly


def test_resize_policies_and_background():
    img = Image.new("RGB", (40, 20), (200, 0, 0))
    assert resize_policy(img, 16, "center-crop").size == (16, 16)
    padded = np.asarray(resize_policy(img, 16, "pad", "bicubic", (0, 0, 255)))
    assert padded.shape == (16, 16, 3) and tuple(padded[0, 0]) == (0, 0, 255) and tuple(padded[8, 8]) == (200, 0, 0)
    stretched = np.asarray(resize_policy(img, 16, "stretch", "lanczos"))
    assert stretched.shape == (16, 16, 3) and tuple(stretched[0, 0]) == (200, 0, 0)
    from ganforge.data.imageops import to_channels

    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert tuple(np.asarray(to_channels(clear, 3, (0, 0, 0)))[0, 0]) == (0, 0, 0)


def test_a_corrupt_shard_is_skipped_by_name_or_fatal_when_strict(made, tmp_path):
    import shutil

    shutil.copytree(made / "set", tmp_path / "set")
    bad = tmp_path / "set" / "shard-000001.tar"
    data = bytearray(bad.read_bytes())
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    ds = build_spec(f"shards:{tmp_path / 'set'}", channels=1, size=16)
    assert len(ds) == 27 - 8 and ds.bad_shards[0][0] == "shard-000001.tar"
    assert any("shard-000001.tar" in s for s in ds.skipped)
    with pytest.raises(DataError, match="corrupt shard .*shard-000001.tar"):
        build_spec(f"shards:{tmp_path / 'set'}", channels=1, size=16, strict=True)


def test_the_dataset_reads_only_offsets_into_memory(made):
    ds = build_spec(f"shards:{made / 'set'}", channels=1, size=16)
    assert ds.offsets.nbytes + ds.sizes.nbytes + ds.shard_of.nbytes < 27 * 24
    import pickle

    ds[0]
    assert pickle.loads(pickle.dumps(ds))[5][0].shape == (1, 16, 16)  # DataLoader workers reopen their files


@pytest.mark.parametrize("workers", [0, 2])
def test_training_on_shards_resumes_exactly(made, tmp_path, tiny, workers, assert_same_run):
    cfg = tiny("dcgan", steps=9, batch_size=8, ema={"enabled": True, "decay": 0.9})  # 27 // 8: 3 steps an epoch
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"spec": f"shards:{made / 'set'}",
                                                                      "limit": None, "num_workers": workers})})
    train(cfg, tmp_path / "straight", **quiet)
    train(cfg, tmp_path / "resumed", stop_after_steps=4, **quiet)  # epoch 1, batch 1 of 3
    assert load_latest(tmp_path / "resumed" / "checkpoints").state["position"] == 1
    assert train(cfg, tmp_path / "resumed", resume=True, **quiet).steps == 9
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_a_changed_index_refuses_resume_without_force(made, tmp_path, tiny):
    import shutil

    shutil.copytree(made / "set", tmp_path / "set")
    cfg = tiny("dcgan", steps=6, batch_size=8)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"spec": f"shards:{tmp_path / 'set'}",
                                                                      "limit": 16})})
    train(cfg, tmp_path / "run", stop_after_steps=2, **quiet)
    index = json.loads((tmp_path / "set" / shards.INDEX).read_text())
    index["options"]["resampler"] = "bicubic"  # as a set prepared again differently
    (tmp_path / "set" / shards.INDEX).write_text(json.dumps(index))
    with pytest.raises(UserError, match="dataset"):
        train(cfg, tmp_path / "run", resume=True, **quiet)
    assert train(cfg, tmp_path / "run", resume=True, force=True, **quiet).steps == 6


def test_prepare_refusals_are_one_line_and_write_nothing(made, tmp_path):
    before = _listing(tmp_path)
    _assert_user_error(run("prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "o")), "does not exist")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    before = _listing(tmp_path)
    _assert_user_error(run("prepare", str(made / "src"), "--out", str(tmp_path / "full")), "other files")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    before = _listing(tmp_path)
    _assert_user_error(run("prepare", str(tmp_path / "bad"), "--out", str(tmp_path / "o"), "--workers", "1"),
                       "no readable images")
    _assert_user_error(run("prepare", str(made / "src"), "--out", str(tmp_path / "o"), "--resize", "zoom"),
                       "--resize")
    assert _listing(tmp_path) == before


def test_training_on_a_folder_that_is_not_a_prepared_set_is_one_line(made, tmp_path):
    res = run("train", "dcgan-mnist", "--data", f"shards:{made / 'src'}", "--steps", "1", "--out",
              str(tmp_path / "run"))
    _assert_user_error(res, "not a prepared data set", "ganforge prepare")
    assert not (tmp_path / "run").exists()


def test_the_data_bench_makes_streams_and_renders(tmp_path):
    from ganforge.bench import data as bench

    folder = bench.big_set(tmp_path / "big", 300, shard_size=128)
    ds = build_spec(f"shards:{folder}", channels=1, size=16)
    assert len(ds) == 300 and len(ds.shard_names) == 3 and ds[299][0].shape == (1, 16, 16)
    rss = bench.peak_rss_streaming(600, workers=0)
    assert rss["seen"] == 512 and rss["rss_after_mb"] >= rss["rss_before_mb"] > 0
    row = {"px": 64, "prepare": 100.0, "stream0": 2000.0, "stream2": 1500.0, "train": 36.0}
    block = bench.render_block([row], rss, {"cpu": "cpu", "logical_cores": 2, "torch": "t"}, "ganforge bench data")
    assert block.startswith("<!-- bench:data:start -->") and "| 64 | 100 | 2,000 | 1,500 | 36 |" in block


def test_pairs_prepare_and_train_pix2pix(tmp_path, tiny):
    rng = np.random.default_rng(2)
    for side in ("A", "B"):
        (tmp_path / "src" / side).mkdir(parents=True)
    for i in range(20):
        b = rng.integers(0, 255, (16, 16), dtype=np.uint8)
        Image.fromarray(b // 2).save(tmp_path / "src" / "A" / f"{i:02d}.png")
        Image.fromarray(b).save(tmp_path / "src" / "B" / f"{i:02d}.png")
    Image.fromarray(b).save(tmp_path / "src" / "B" / "only-b.png")  # no partner: not a pair
    assert _prepare(tmp_path / "src", tmp_path / "set", pairs=True).count == 20
    ds = build_spec(f"shards:{tmp_path / 'set'}", channels=1, size=16)
    assert ds.kind == "pairs" and ds.sample_shape == (2, 16, 16)
    x, _ = ds[3]
    a = torch.from_numpy(np.asarray(Image.open(tmp_path / "src" / "A" / "03.png"), np.float32) / 127.5 - 1)
    assert torch.equal(x[0], a)
    swapped = build_spec(f"shards:{tmp_path / 'set'}", channels=1, size=16, direction="BtoA")
    assert torch.equal(swapped[3][0][1], a)
    cfg = tiny("pix2pix", steps=2, batch_size=8)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"spec": f"shards:{tmp_path / 'set'}",
                                                                      "limit": None, "split": "all"})})
    assert train(cfg, tmp_path / "run", **quiet).steps == 2


def test_each_rank_reads_its_slice_of_every_global_batch(made):
    from ganforge.train.batches import BatchSource

    ds = build_spec(f"shards:{made / 'set'}", channels=1, size=16)
    whole = [g[0][0] for g in BatchSource(ds, 8, seed=4).epoch(1)]
    halves = [[g[0][0] for g in BatchSource(ds, 8, seed=4, rank=r, world_size=2).epoch(1)] for r in (0, 1)]
    for w, a, b in zip(whole, *halves):
        assert torch.equal(torch.cat([a, b]), w)
    again = [g[0][0] for g in BatchSource(ds, 8, seed=4).epoch(1, start_step=2)]  # resume: a pure function
    assert all(torch.equal(x, y) for x, y in zip(again, whole[2:]))
