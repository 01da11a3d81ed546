"""train.loss=rpgan and train.r2_gamma (issue 36): the relativistic pairing loss and R2 against their formulas,
a small run that learns with them, and the engine's promises (exact resume, accumulation) with them on."""
from __future__ import annotations

import math

import pytest
import torch

from ganforge.checkpoint import load_latest
from ganforge.config import validate
from ganforge.data import mode_centers
from ganforge.errors import UserError
from ganforge.families.parts.losses import d_loss, g_loss, r1_penalty, r2_penalty
from ganforge.apps.sampling import load_generator
from ganforge.train import train

quiet = dict(progress=False, log=lambda s: None)
REAL = [1.5, -0.5, 0.2, 3.0]
FAKE = [-1.0, 0.3, 2.0, -4.0]
RPGAN = {"loss": "rpgan", "r1_gamma": 1.0, "r2_gamma": 1.0}


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_rpgan_losses_follow_the_formula_pair_by_pair():
    r, f = torch.tensor(REAL, dtype=torch.float64), torch.tensor(FAKE, dtype=torch.float64)
    real_part, fake_part = d_loss(r, f, "rpgan")
    expected_d = sum(_softplus(-(a - b)) for a, b in zip(REAL, FAKE)) / len(REAL)
    expected_g = sum(_softplus(-(b - a)) for a, b in zip(REAL, FAKE)) / len(REAL)
    assert real_part.item() == pytest.approx(expected_d, rel=1e-12)
    assert fake_part.item() == 0.0  # the loss does not split: all of it is reported on the real side
    assert g_loss(f, "rpgan", r).item() == pytest.approx(expected_g, rel=1e-12)
    # pairing matters: the same logits in another order give another loss (a mean of each side would not)
    assert d_loss(r, f.flip(0), "rpgan")[0].item() != pytest.approx(expected_d, rel=1e-6)


def test_rpgan_needs_the_paired_real_logits():
    with pytest.raises(ValueError, match="real_logits"):
        g_loss(torch.zeros(3), "rpgan")
    with pytest.raises(ValueError, match="one to one"):
        d_loss(torch.zeros(3), torch.zeros(4), "rpgan")


def test_r2_is_the_squared_input_gradient_on_fakes_by_hand():
    """D(x) = sum(a * x^2) + w . x has input gradient 2 a x + w: the penalty is its squared norm, averaged."""
    gen = torch.Generator().manual_seed(0)
    a, w = torch.rand(3, 2, 2, generator=gen, dtype=torch.float64), torch.randn(3, 2, 2, generator=gen, dtype=torch.float64)
    fake = torch.randn(5, 3, 2, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    logits = (a * fake ** 2 + w * fake).flatten(1).sum(1)
    by_hand = [float(((2 * a * x + w) ** 2).sum()) for x in fake.detach()]
    r2 = r2_penalty(logits, fake)
    assert r2.item() == pytest.approx(sum(by_hand) / len(by_hand), rel=1e-6)  # float32 inside, as R1
    assert r2.item() == pytest.approx(r1_penalty(logits, fake).item(), rel=1e-12)  # the same penalty as R1
    assert r2.requires_grad  # its graph is kept: D's update differentiates through it


def _ring(loss: dict, seed: int = 1):
    return validate({
        "name": "ring",
        "model": {"family": "mlp", "point_dim": 2, "z_dim": 8, "g_width": 64, "d_width": 32, "dropout": 0.0,
                  "batch_norm": False},
        "data": {"spec": "ring8"},
        "train": {"steps": 1000, "epochs": None, "batch_size": 256, "lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.5,
                  "seed": seed, "log_every": 100, "sample_every": 100, "threads": 1, "device": "cpu", **loss},
        "eval": {"final": False},
    })


def test_a_small_run_with_rpgan_r1_r2_learns_the_ring(tmp_path):
    train(_ring({**RPGAN, "r1_gamma": 0.1, "r2_gamma": 0.1}), tmp_path / "ring", **quiet)
    x = load_generator(tmp_path / "ring").sample(2000, seed=0)
    dist = torch.cdist(x, mode_centers("ring8"))
    nearest, near = dist.argmin(1), dist.min(1).values
    covered = [k for k in range(8) if ((nearest == k) & (near < 0.25)).float().mean() >= 0.02]
    assert len(covered) >= 6, f"covered modes {covered}"
    assert (near < 0.25).float().mean() > 0.2  # samples land on the modes (an untrained G: next to none)


@pytest.mark.parametrize("family, extra", [("dcgan", {}), ("dcgan", {"r1_every": 3}), ("mlp", {}),
                                           ("stylegan", {"r1_every": 3}), ("progan", {"r1_gamma": 0, "r2_gamma": 0})])
def test_resume_with_rpgan_and_both_penalties_is_exact(tmp_path, tiny, family, extra, assert_same_run,
                                                       resume_device):
    cfg = tiny(family, steps=12, ema={"enabled": True, "decay": 0.9}, device=resume_device,
               **{**RPGAN, **({"r1_every": 1} if family != "stylegan" else {}), **extra})
    train(cfg, tmp_path / "straight", **quiet)
    train(cfg, tmp_path / "resumed", stop_after_steps=5, **quiet)
    assert train(cfg, tmp_path / "resumed", resume=True, **quiet).steps == 12
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    stats = (tmp_path / "straight" / "metrics.jsonl").read_text()
    if cfg.train.r2_gamma > 0:
        assert '"r2"' in stats


def test_accumulated_micro_batches_pair_reals_and_fakes_as_the_whole_batch(tmp_path, tiny):
    def run(name, **kw):
        cfg = tiny("dcgan", steps=4, batch_size=32, **RPGAN, **kw)
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"batch_norm": False})})
        train(cfg, tmp_path / name, **quiet)
        return load_latest(tmp_path / name / "checkpoints").weights

    a, b = run("whole"), run("micro", batch_per_device=8)
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-6, rtol=1e-5, msg=lambda m: f"{k}: {m}")


def test_rpgan_is_refused_where_it_means_nothing():
    with pytest.raises(UserError, match="train.r2_gamma"):  # ssgan reads no R2
        validate({"model": {"family": "ssgan"}, "train": {"steps": 2, "r2_gamma": 1.0}})
    from ganforge.families.image_pairs import TranslationTrainer

    class Data:
        kind = "pairs"

    cfg = validate({"model": {"family": "pix2pix"}, "data": {"spec": "digits-sr"},
                    "train": {"steps": 2, "loss": "rpgan", "device": "cpu"}})
    from ganforge.families.contract import RunContext

    with pytest.raises(UserError, match="train.loss=rpgan"):
        TranslationTrainer(cfg, {}, RunContext(torch.device("cpu"), dataset=Data()))
