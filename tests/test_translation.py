"""Image-to-image translation: pix2pix and cyclegan networks, pair data, image pool, losses, degradations and
``ganforge translate``. (Exact resume, NaN rollback, SIGKILL and two processes: the FAMILIES-wide tests.)"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import tiny_config

from ganforge.data import build_spec, digit_tasks
from ganforge.data.pairs import PERM_SEED
from ganforge.errors import UserError
from ganforge.families import build_networks, count_parameters
from ganforge.families.parts.translation_nets import PatchDiscriminator, ResnetGenerator, UNetGenerator
from ganforge.train import train
from ganforge.families.parts.image_pool import ImagePool
from ganforge.data.pairs import split_halves
from ganforge.families.image_pairs import jitter

quiet = {"progress": False, "log": lambda s: None}


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ganforge", *map(str, args)], capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------------------------- networks

@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_shapes_at_every_size(size):
    x = torch.randn(2, 3, size, size)
    assert UNetGenerator(3, size, 4)(x).shape == x.shape
    assert ResnetGenerator(3, 4, 2)(x).shape == x.shape
    patches = PatchDiscriminator(6, 4, 3)(torch.cat([x, x], 1))
    assert patches.shape[:2] == (2, 1) and patches.shape[2] == size // 8 - 2  # 70x70 patches, one logit each


def test_the_papers_parameter_counts():
    # junyanz/pytorch-CycleGAN-and-pix2pix prints these for unet_256, basic (n_layers 3) on pairs, resnet_9blocks
    assert count_parameters(UNetGenerator(3, 256, 64, "batch")) == 54_414_531
    assert count_parameters(PatchDiscriminator(6, 64, 3, "batch")) == 2_768_705
    assert count_parameters(ResnetGenerator(3, 64, 9, "instance")) == 11_378_179


def test_unet_skips_carry_the_input_past_a_zeroed_bottleneck():
    torch.manual_seed(0)
    g = UNetGenerator(1, 32, 8, dropout=0.0).eval()
    innermost = g.down[-1][-1]  # the conv producing the 1x1 bottleneck
    nn.init.zeros_(innermost.weight)
    nn.init.zeros_(innermost.bias)
    x1, x2 = torch.randn(2, 1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(g.down[-1](g.down[-2](g.down[-3](g.down[-4](g.down[0](x1))))), torch.zeros(1, 8 * 8, 1, 1))
        assert not torch.allclose(g(x1), g(x2))  # only the skips can carry the difference


# ---------------------------------------------------------------------------------------------- data

def test_jitter_crops_and_flips_both_halves_alike():
    torch.manual_seed(0)
    a = torch.randn(8, 3, 32, 32)
    out = jitter(torch.cat([a, a], 1), 36, True, torch.Generator().manual_seed(1))
    oa, ob = split_halves(out)
    assert out.shape == (8, 6, 32, 32) and torch.equal(oa, ob)
    assert not torch.allclose(oa, a)  # it did something
    again = jitter(torch.cat([a, a], 1), 36, True, torch.Generator().manual_seed(1))
    assert torch.equal(again, out)  # a pure function of the generator: exact resume


def test_degradations_match_their_definitions():
    d = np.zeros((32, 32), np.uint8)
    d[10:20, 12:18] = 255  # a 10x6 block of ink
    thick = digit_tasks.thicken(d)
    assert (thick > 0).sum() == 12 * 8 and thick[9:21, 11:19].min() == 255
    edges = digit_tasks.edges_input(d)
    ring = np.zeros_like(d)
    ring[9:21, 11:19] = 255
    ring[11:19, 13:17] = 0  # dilation minus erosion: 12x8 minus 8x4
    assert np.array_equal(edges, ring)
    masked = digit_tasks.inpaint_input(d)
    assert masked[16:].max() == 0 and np.array_equal(masked[:16], d[:16])
    low = Image.fromarray(d).resize((8, 8), Image.BICUBIC).resize((32, 32), Image.BICUBIC)
    assert np.array_equal(digit_tasks.sr_input(d), np.asarray(low))
    ds = build_spec("digits-inpaint", channels=1, size=32, split="test", limit=4)
    a, b = split_halves(ds.tensor)
    assert torch.all(a[:, :, 16:] == -1) and torch.equal(a[:, :, :16], b[:, :, :16])


def test_thin2thick_domains_come_from_disjoint_digits():
    ds = build_spec("digits-thin2thick", channels=1, size=32, split="train")
    a, b = split_halves(ds.tensor)
    assert len(ds) == 2000

    def u8(x: torch.Tensor) -> np.ndarray:
        return ((x[:, 0] + 1) * 127.5).round().to(torch.uint8).numpy()

    b_digits = {img.tobytes() for img in u8(b)}
    thickened_a = {digit_tasks.thicken(img).tobytes() for img in u8(a)}
    assert len(b_digits) > 1900 and not thickened_a & b_digits  # B is never made from one of A's digits
    again = build_spec("digits-thin2thick", channels=1, size=32, split="train")
    assert torch.equal(again.tensor, ds.tensor) and PERM_SEED  # a fixed pairing, not the run's seed


def test_thin2thick_domains_hold_the_same_classes():
    from ganforge.data import embedded
    from ganforge.data.pairs import class_halves

    labels = embedded.load_raw()[1][embedded.heldout_split()[0]]
    in_a, in_b = class_halves(labels)
    assert not set(in_a) & set(in_b) and len(in_a) + len(in_b) == len(labels)
    assert np.bincount(labels[in_a]).tolist() == np.bincount(labels[in_b]).tolist() == [200] * 10
    ds = build_spec("digits-thin2thick", channels=1, size=32, split="train", limit=20)
    assert ds.labels.tolist() == list(range(10)) * 2  # a --limit keeps every class


def _side_by_side(folder, n=6, size=20):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(folder / f"{i}.png")


def test_paired_folders_side_by_side_or_matching_names(tmp_path):
    _side_by_side(tmp_path / "facades" / "train")
    (tmp_path / "facades" / "train" / "bad.png").write_bytes(b"not an image")
    ds = build_spec(f"paired:{tmp_path / 'facades'}", channels=3, size=16, split="train")
    assert len(ds) == 6 and ds.skipped and ds[0][0].shape == (6, 16, 16)
    a, b = split_halves(ds[0][0][None])
    assert torch.allclose(a, -b, atol=0.02)  # B is A's negative: the halves were split where they meet
    swapped = build_spec(f"paired:{tmp_path / 'facades'}", channels=3, size=16, split="train", direction="BtoA")
    assert torch.equal(split_halves(swapped[0][0][None])[0], b)
    for side in "AB":
        (tmp_path / "ab" / side).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i + (100 if side == "B" else 0)).save(tmp_path / "ab" / side / f"{i}.png")
    Image.new("L", (8, 8), 0).save(tmp_path / "ab" / "A" / "lonely.png")
    ds = build_spec(f"paired:{tmp_path / 'ab'}", channels=1, size=8)
    assert len(ds) == 3 and len(ds.skipped) == 1
    a, b = split_halves(torch.stack([ds[i][0] for i in range(3)]))
    assert torch.allclose((b - a) * 127.5, torch.full_like(a, 100.0), atol=1)


def test_missing_or_wrong_pair_data_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="efrosgans.*facades.tar.gz"):
        build_spec(f"paired:{tmp_path / 'facades'}", channels=3, size=16)
    for d in ("trainA", "trainB"):
        (tmp_path / "h2z" / d).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "h2z" / d / "x.png")
    with pytest.raises(UserError, match="unpaired"):
        build_spec(f"paired:{tmp_path / 'h2z'}", channels=3, size=16)
    ds = build_spec(f"unpaired:{tmp_path / 'h2z'}", channels=3, size=16)
    assert len(ds) == 1 and ds[0][0].shape == (6, 16, 16)
    with pytest.raises(UserError, match="testA"):
        build_spec(f"unpaired:{tmp_path / 'h2z'}", channels=3, size=16, split="test")


# ---------------------------------------------------------------------------------------------- training parts

def test_image_pool_swaps_half_the_time_once_full_and_restores_exactly():
    pool = ImagePool(4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: returned as they are
    new = torch.arange(100.0, 2100.0).view(2000, 1, 1, 1)
    old = (pool.query(new) != new).float().mean().item()  # an earlier image came back instead of the new one
    assert 0.45 < old < 0.55
    tensors, meta = pool.state()
    twin = ImagePool(4, seed=123)
    twin.load_state(tensors, meta)
    batch = torch.randn(16, 1, 1, 1)
    assert torch.equal(pool.query(batch), twin.query(batch))


def test_cycle_and_identity_losses_vanish_for_identity_generators():
    from ganforge.families import get_family
    from ganforge.families.contract import RunContext, trainer_class

    cfg = tiny_config("cyclegan")
    nets = build_networks(cfg.model)
    nets["G_AB"], nets["G_BA"] = nn.Identity(), nn.Identity()
    ds = build_spec("digits-thin2thick", channels=1, size=16, limit=8)
    trainer = trainer_class(get_family("cyclegan").trainer)(cfg, nets, RunContext(torch.device("cpu"), dataset=ds))
    _, stats = trainer.g_main((ds.tensor, ds.labels), 0)
    assert stats["loss_cycle"].item() == 0 and stats["loss_identity"].item() == 0
    assert stats["loss_g_gan"].item() > 0


def test_l1_only_pix2pix_has_no_discriminator_phase(tmp_path):
    cfg = tiny_config("pix2pix", steps=4)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"gan_weight": 0.0})})
    train(cfg, tmp_path / "run", **quiet)
    import json

    recs = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("loss_d" not in r and r["loss_l1"] > 0 for r in recs if "loss_g" in r)


# ---------------------------------------------------------------------------------------------- translate

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("translation")
    out = {}
    for family in ("pix2pix", "cyclegan"):
        train(tiny_config(family, steps=3), root / family, **quiet)
        out[family] = root / family
    return out


def test_a_run_draws_translations_and_a_gif(runs):
    for run in runs.values():
        assert (run / "translations.png").is_file() and (run / "translations.gif").is_file()


def test_translate_round_trips_an_npz_and_a_folder(runs, tmp_path):
    from ganforge.data.embedded import load_raw

    digits, _ = load_raw()
    np.savez(tmp_path / "in.npz", arr_0=digits[:5, :, :, None])  # plain 28x28 digits: padded as in training
    res = _cli("translate", runs["pix2pix"], "--input", tmp_path / "in.npz", "--out", tmp_path / "out.npz")
    assert res.returncode == 0, res.stderr
    with np.load(tmp_path / "out.npz") as z:
        assert z["arr_0"].shape == (5, 16, 16, 1) and z["arr_0"].dtype == np.uint8
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(digits[i]).save(folder / f"d{i}.png")
    (folder / "broken.png").write_bytes(b"nope")
    res = _cli("translate", runs["cyclegan"], "--input", folder, "--out", tmp_path / "o", "--direction", "BtoA")
    assert res.returncode == 0 and "1 unreadable files skipped" in res.stdout, res.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["d0.png", "d1.png", "d2.png"]
    assert Image.open(tmp_path / "o" / "d0.png").size == (16, 16)


@pytest.mark.parametrize("args, message", [
    (["--input", "{tmp}/missing", "--out", "{tmp}/o"], "does not exist"),
    (["--input", "{tmp}/bad.png", "--out", "{tmp}/o"], "not a readable image"),
    (["--input", "{tmp}/bad.png", "--out", "{tmp}/o", "--direction", "BtoA"], "one direction only"),
])
def test_translate_refuses_bad_input_in_one_line(runs, tmp_path, args, message):
    (tmp_path / "bad.png").write_bytes(b"nope")
    res = _cli("translate", runs["pix2pix"], *[a.format(tmp=tmp_path) for a in args])
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_pix2pix_refuses_unpaired_data_in_one_line(tmp_path):
    for d in ("trainA", "trainB"):
        (tmp_path / "u" / d).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "u" / d / "x.png")
    res = _cli("train", "pix2pix-facades", "--out", tmp_path / "run", "--data", f"unpaired:{tmp_path / 'u'}",
               "--device", "cpu", "--steps", "1")
    assert res.returncode == 2 and "paired" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()


def test_evaluate_scores_a_translation_run_on_its_held_out_pairs(runs):
    from ganforge.apps.evaluate import evaluate

    paired = evaluate(runs["pix2pix"], "ignored", n=50)
    assert paired["n_generated"] == 50 and "split test" in paired["ref"]
    assert {"l1", "psnr", "accuracy", "fid_mnist_cnn"} <= paired["metrics"].keys()
    assert 0 <= paired["metrics"]["l1"] <= 1 and 0 <= paired["metrics"]["accuracy"] <= 1
    unpaired = evaluate(runs["cyclegan"], "ignored", n=50)
    assert {"cycle_l1", "class_kept", "fid_mnist_cnn", "ink_ratio", "ink_way"} <= unpaired["metrics"].keys()
    assert {"ink_input", "ink_output", "ink_target"} <= paired["metrics"].keys()


def _max_filter(x: torch.Tensor) -> torch.Tensor:
    """The rule domain B was made by (``digit_tasks.thicken``) on [-1, 1] tensors."""
    return torch.nn.functional.max_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)


def test_ink_against_its_formula():
    from ganforge.apps.translate import ink, ink_scores

    x = torch.full((2, 1, 4, 4), -1.0)
    x[0, 0, 0, :2] = 1.0  # two full-ink pixels
    x[1, 0, 1, 1] = 0.0  # one half-ink pixel
    assert ink(x) == pytest.approx((2 + 0.5) / 2)
    s = ink_scores(x[1:], x[:1], x[:1] * 0 + 1)  # input 0.5, output 2, target 16 pixels of ink
    assert s["ink_ratio"] == pytest.approx(2 / 16) and s["ink_way"] == pytest.approx(1.5 / 15.5)


def test_ink_ratio_of_the_thickening_rule_is_one_and_of_the_identity_the_input_share():
    from ganforge.apps.translate import ink, ink_scores

    ds = build_spec("digits-thin2thick", channels=1, size=32, split="test")
    a, b = split_halves(ds.tensor)
    thick = ink_scores(a, _max_filter(a), b)  # a translator that applies B's own rule to A's digits
    assert thick["ink_ratio"] == pytest.approx(1.0, abs=0.03) and thick["ink_way"] == pytest.approx(1.0, abs=0.05)
    same = ink_scores(a, a, b)
    assert same["ink_way"] == 0 and same["ink_ratio"] == pytest.approx(ink(a) / ink(b))
    assert 0.4 < same["ink_ratio"] < 0.6  # thin digits carry about half the ink of thick ones


def test_evaluate_reports_the_ink_of_a_stand_in_translator(runs, monkeypatch):
    import ganforge.apps.translate as tr
    from ganforge.apps.evaluate import evaluate

    real = tr.load_translator

    def stand_in(run_dir, direction="AtoB", device="cpu", cfg=None):
        t = real(run_dir, direction, device)
        return tr.Translator(nn.Identity(), t.cfg, t.device)

    monkeypatch.setattr(tr, "load_translator", stand_in)
    m = evaluate(runs["cyclegan"], "ignored", n=40)["metrics"]
    ds, _ = tr.held_out_pairs(real(runs["cyclegan"]).cfg)
    a, b = split_halves(tr.pairs_tensor(ds, 40))
    assert m["ink_input"] == m["ink_output"] == pytest.approx(tr.ink(a)) and m["ink_way"] == 0
    assert m["ink_target"] == pytest.approx(tr.ink(b)) and m["cycle_l1"] == 0


def test_bench_thin2thick_row_reports_the_ink_evaluate_reports(runs):
    from ganforge.bench.translation import CYCLE_HEADER, cyclegan_cells, render_block, score_cyclegan
    from ganforge.apps.evaluate import evaluate

    s = score_cyclegan(runs["cyclegan"])
    m = evaluate(runs["cyclegan"], "ignored")["metrics"]
    for key in ("ink_input", "ink_output", "ink_target", "ink_ratio", "ink_way", "cycle_l1"):
        assert s[key] == pytest.approx(m[key], rel=1e-5), key
    cells = cyclegan_cells(s)
    assert cells.count(" | ") == CYCLE_HEADER.count(" | ") - 3 and f"{100 * s['ink_ratio']:.1f}%" in cells
    assert CYCLE_HEADER in render_block({"thin2thick": [f"| thin2thick | 1 | {cells} | here |"]})


def test_psnr_and_l1_against_their_formulas():
    from ganforge.apps.translate import psnr

    x = torch.zeros(2, 1, 4, 4)
    y = torch.full((2, 1, 4, 4), 0.2)  # 0.1 apart on [0, 1] pixels
    assert psnr(x, y) == pytest.approx(20.0, abs=1e-4)  # 10 log10(1 / 0.01)
