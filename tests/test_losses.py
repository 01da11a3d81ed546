"""Adversarial losses and D regularisers against their formulas, computed independently with ``math``."""
from __future__ import annotations

import math

import pytest
import torch

from ganforge.families.parts.losses import (LOSSES, canonical_loss, d_loss, drift_penalty, feature_matching_loss, g_loss,
                             gradient_penalty, lazy_weight, r1_penalty, real_margin)

CPU = torch.device("cpu")
REAL = [1.5, -0.5, 0.2, 3.0]
FAKE = [-1.0, 0.3, 2.0, -4.0]


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, device=CPU)


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _bce(logit: float, target: float) -> float:
    return -(target * math.log(_sig(logit)) + (1 - target) * math.log(1 - _sig(logit)))


def _bce_d(r, f, s):
    return _mean(_bce(v, s) for v in r), _mean(_bce(v, 0.0) for v in f)


def _wgan_d(r, f, s):
    return -_mean(r), _mean(f)


# (real part, fake part) of D's loss on real logits r, fake logits f, real label s
EXPECTED_D = {
    "minimax": _bce_d,
    "bce": _bce_d,
    "lsgan": lambda r, f, s: (_mean(0.5 * (v - s) ** 2 for v in r), _mean(0.5 * v ** 2 for v in f)),
    "wgan": _wgan_d,
    "wgan-gp": _wgan_d,
    "hinge": lambda r, f, s: (_mean(max(0.0, 1 - v) for v in r), _mean(max(0.0, 1 + v) for v in f)),
    # relativistic pairing: one term over the pairs, reported on the real side
    "rpgan": lambda r, f, s: (_mean(math.log1p(math.exp(-(a - b))) for a, b in zip(r, f)), 0.0),
}
EXPECTED_G = {
    "minimax": lambda f: _mean(math.log(1 - _sig(v)) for v in f),
    "bce": lambda f: _mean(-math.log(_sig(v)) for v in f),
    "lsgan": lambda f: _mean(0.5 * (v - 1) ** 2 for v in f),
    "wgan": lambda f: -_mean(f),
    "wgan-gp": lambda f: -_mean(f),
    "hinge": lambda f: -_mean(f),
    "rpgan": lambda f: _mean(math.log1p(math.exp(-(b - a))) for a, b in zip(REAL, f)),  # paired with REAL
}
SMOOTHED = {"minimax", "bce", "lsgan"}


def test_every_loss_has_an_expected_formula():
    assert set(EXPECTED_D) == set(EXPECTED_G) == set(LOSSES)


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("real_label", [1.0, 0.9])
def test_d_loss_formula(kind: str, real_label: float):
    real, fake = d_loss(_t(REAL), _t(FAKE), kind, real_label)
    # one-sided label smoothing exists only for the losses with a real target
    want = EXPECTED_D[kind](REAL, FAKE, real_label if kind in SMOOTHED else 1.0)
    assert (real.item(), fake.item()) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("kind", LOSSES)
def test_g_loss_formula(kind: str):
    assert g_loss(_t(FAKE), kind, _t(REAL)).item() == pytest.approx(EXPECTED_G[kind](FAKE), rel=1e-12)


def test_smoothing_changes_exactly_the_documented_losses():
    changed = {k for k in LOSSES if d_loss(_t(REAL), _t(FAKE), k, 0.9)[0] != d_loss(_t(REAL), _t(FAKE), k, 1.0)[0]}
    assert changed == SMOOTHED


def test_minimax_saturates_where_nonsaturating_does_not():
    # D confidently rejects the fake: the minimax G gradient vanishes, the non-saturating one stays ~1
    grads = {}
    for kind in ("minimax", "bce"):
        logit = torch.tensor([-10.0], device=CPU, requires_grad=True)
        g_loss(logit, kind).backward()
        grads[kind] = abs(logit.grad.item())
    assert grads["minimax"] < 1e-4 < 0.99 < grads["bce"]


def test_nonsaturating_alias_is_bce():
    assert canonical_loss("nonsaturating") == "bce"
    assert g_loss(_t(FAKE), "nonsaturating") == g_loss(_t(FAKE), "bce")
    assert d_loss(_t(REAL), _t(FAKE), "nonsaturating", 0.9) == d_loss(_t(REAL), _t(FAKE), "bce", 0.9)


@pytest.mark.parametrize("call", [lambda: canonical_loss("wasserstein"),
                                  lambda: d_loss(_t(REAL), _t(FAKE), "wasserstein"),
                                  lambda: g_loss(_t(FAKE), "wasserstein")])
def test_unknown_loss_names_the_choices(call):
    with pytest.raises(ValueError, match="wasserstein") as err:
        call()
    assert all(name in str(err.value) for name in LOSSES + ("nonsaturating",))


def test_real_margin_is_measured_from_each_losss_decision_boundary():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 3.0, -1.0])  # fakes' mean logit 1.0
    for kind in ("bce", "minimax", "hinge", "nonsaturating"):
        assert torch.equal(real_margin(real, fake, kind, 0.9), real)  # ADA's E[sign(D(x))] as the paper has it
    assert torch.allclose(real_margin(real, fake, "lsgan", 0.9), real - 0.45)  # halfway between targets 0 and 0.9
    for kind in ("rpgan", "wgan", "wgan-gp"):
        assert torch.equal(real_margin(real, fake, kind), torch.tensor([1.0, -2.0, -0.5]))


@pytest.mark.parametrize("kind", ["rpgan", "wgan", "wgan-gp"])
def test_real_margin_of_an_offset_free_loss_ignores_the_drift_of_ds_output(kind):
    """These losses see only differences of D's outputs, so adding a constant to all of them changes nothing
    D learns; the margin (and so ADA's r_t) must not change either, where sign(D(x)) would flip to all +1."""
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(64, generator=g), torch.randn(64, generator=g)
    assert sum(d_loss(real + 7.0, fake + 7.0, kind)).item() == pytest.approx(sum(d_loss(real, fake, kind)).item(),
                                                                          abs=1e-5)
    assert torch.allclose(real_margin(real + 7.0, fake + 7.0, kind), real_margin(real, fake, kind), atol=1e-5)
    assert torch.sign(real + 7.0).mean() == 1.0 and torch.sign(real_margin(real + 7.0, fake + 7.0, kind)).mean() < 0.5


def _linear_critic(norm: float, dim: int = 12) -> tuple[torch.Tensor, object]:
    w = torch.randn(dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = (w * norm / w.norm()).requires_grad_(True)
    return w, lambda x: x.flatten(1) @ w


def _batches() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(5, 3, 2, 2, generator=g, dtype=torch.float64),
            torch.randn(5, 3, 2, 2, generator=g, dtype=torch.float64))


def test_gradient_penalty_zero_for_unit_lipschitz_linear_critic():
    _, critic = _linear_critic(1.0)
    penalty, grad_norm = gradient_penalty(critic, *_batches())
    assert penalty.item() == pytest.approx(0.0, abs=1e-12)
    assert grad_norm.item() == pytest.approx(1.0)


def test_gradient_penalty_value_norm_and_gradient_for_norm_3():
    w, critic = _linear_critic(3.0)
    real, fake = _batches()
    real.requires_grad_(True)
    penalty, grad_norm = gradient_penalty(critic, real, fake)
    assert penalty.item() == pytest.approx((3 - 1) ** 2)
    assert grad_norm.item() == pytest.approx(3.0) and not grad_norm.requires_grad
    penalty.backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: the graph was kept, so the critic trains on the penalty
    assert torch.allclose(w.grad, 2 * (3 - 1) * w.detach() / 3)
    assert real.grad is None  # the inputs are detached: the penalty trains the critic only


def test_gradient_penalty_interpolates_per_sample_with_the_generator():
    seen = []

    def critic(x):
        seen.append(x.detach())
        return (x ** 2).flatten(1).sum(1)

    real = torch.ones(6, 2, 3, 3, device=CPU)
    fake = torch.zeros(6, 2, 3, 3, device=CPU)
    a = gradient_penalty(critic, real, fake, generator=torch.Generator(CPU).manual_seed(5))[0]
    b = gradient_penalty(critic, real, fake, generator=torch.Generator(CPU).manual_seed(5))[0]
    assert torch.equal(a, b) and torch.equal(seen[0], seen[1])
    eps = seen[0].flatten(1)  # eps * 1 + (1 - eps) * 0: one eps per sample, in [0, 1], not all equal
    assert torch.equal(eps, eps[:, :1].expand_as(eps))
    assert ((eps >= 0) & (eps <= 1)).all() and eps[:, 0].unique().numel() == 6


def test_r1_for_a_linear_discriminator():
    w = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64, requires_grad=True)
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64).requires_grad_(True)
    r1 = r1_penalty(x @ w, x)
    assert r1.item() == pytest.approx(w.detach().pow(2).sum().item())
    r1.backward()
    assert torch.allclose(w.grad, 2 * w.detach())


def test_lazy_weight_every_k_steps_matches_k_eager_steps():
    gamma, k, penalty = 10.0, 4, torch.tensor(0.37, device=CPU)
    eager = sum(gamma * penalty for _ in range(k))  # applied every step
    lazy = lazy_weight(gamma, k) * penalty  # applied once every k steps
    assert lazy_weight(gamma, 1) == gamma
    assert lazy.item() == pytest.approx(eager.item()) == pytest.approx(k * gamma * penalty.item())
    with pytest.raises(ValueError):
        lazy_weight(gamma, 0)


def test_drift_penalty():
    assert drift_penalty(_t(REAL)).item() == pytest.approx(1e-3 * _mean(v * v for v in REAL))
    assert drift_penalty(_t(REAL), eps=0.5).item() == pytest.approx(0.5 * _mean(v * v for v in REAL))


def test_feature_matching_loss():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]], device=CPU, requires_grad=True)  # mean (2, 3)
    fake = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]], device=CPU, requires_grad=True)  # mean (1, 1)
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx((2 - 1) ** 2 + (3 - 1) ** 2)
    loss.backward()
    assert real.grad is None  # the real statistics are the target
    assert torch.allclose(fake.grad, torch.tensor([[-2.0, -4.0]]).expand(3, 2) / 3)
    same = torch.randn(4, 3, 2, 2, device=CPU)
    assert feature_matching_loss(same, same.flip(0)).item() == pytest.approx(0.0, abs=1e-10)
