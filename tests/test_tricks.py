"""Discriminator add-ons, DiffAugment, instance noise and unrolled D: each against the behaviour it promises."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from ganforge.families.parts.augment import AugParams, apply, diff_augment, draw_params
from ganforge.families.parts.losses import d_loss, g_loss
from ganforge.families.parts.layers import MinibatchDiscrimination, MinibatchStdDev, apply_spectral_norm
from ganforge.families.parts.noise import add_instance_noise, instance_noise_sigma
from ganforge.families.parts.unroll import functional_d, unrolled_parameters

CPU = torch.device("cpu")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator(CPU).manual_seed(seed)


# --- spectral norm ---------------------------------------------------------------------------------------------

def _top_singular_value_after_training_forwards(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        layer.weight.mul_(50.0)  # large, so an unnormalised weight would fail by far
    apply_spectral_norm(layer).train()
    for _ in range(30):  # one power iteration per training-mode forward
        layer(x)
    w = layer.weight.detach()
    if isinstance(layer, nn.ConvTranspose2d):
        w = w.transpose(0, 1)  # (in, out, kh, kw): spectral norm's dim is 1
    return torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)


@pytest.mark.parametrize("make, x_shape", [
    (lambda: nn.Linear(20, 30), (4, 20)),
    (lambda: nn.Conv2d(3, 8, 3), (2, 3, 8, 8)),
    (lambda: nn.ConvTranspose2d(8, 3, 4, 2, 1), (2, 8, 4, 4)),
])
def test_spectral_norm_bounds_the_largest_singular_value(make, x_shape):
    torch.manual_seed(0)
    layer = make()
    assert _top_singular_value_after_training_forwards(layer, torch.randn(x_shape, device=CPU)) <= 1 + 1e-2


def test_spectral_norm_wraps_every_layer_once_with_the_parametrization_api():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.LeakyReLU(), nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 1)))
    assert apply_spectral_norm(net) is net
    apply_spectral_norm(net)  # twice: no second parametrization
    keys = set(net.state_dict())
    for name in ("0", "2.1"):
        assert {f"{name}.parametrizations.weight.original", f"{name}.parametrizations.weight.0._u",
                f"{name}.parametrizations.weight.0._v"} <= keys
        assert len(dict(net.get_submodule(name).parametrizations.weight.named_children())) == 1
    assert net(torch.randn(2, 1, 8, 8, device=CPU)).shape == (2, 1)


# --- minibatch standard deviation ------------------------------------------------------------------------------

def test_minibatch_std_known_values():
    x = torch.arange(4.0, device=CPU).reshape(4, 1, 1, 1).expand(4, 2, 3, 3)  # sample i is all i
    out = MinibatchStdDev(group_size=4)(x)
    assert out.shape == (4, 3, 3, 3)
    assert torch.equal(out[:, :2], x)
    # population std of 0, 1, 2, 3 is sqrt(1.25), everywhere
    assert torch.allclose(out[:, 2], torch.full((4, 3, 3), 1.25 ** 0.5), atol=1e-6)


@pytest.mark.parametrize("n, group_size, group", [(8, 4, 4), (6, 4, 3), (5, 4, 1), (2, 4, 2)])
def test_minibatch_std_matches_hand_computation_per_group(n, group_size, group):
    x = torch.randn(n, 4, 3, 3, generator=_gen(0), device=CPU)
    out = MinibatchStdDev(group_size=group_size, num_features=2)(x)
    assert out.shape == (n, 6, 3, 3)
    groups = n // group
    for j in range(groups):  # StyleGAN2 layout: sample i is in group i mod (n / group)
        members = x[j::groups]
        for f in range(2):
            want = (members[:, 2 * f:2 * f + 2].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            got = out[j::groups, 4 + f]
            assert torch.allclose(got, want.expand_as(got), atol=1e-6)  # constant over the group and the pixels


def test_minibatch_std_rejects_indivisible_channels():
    with pytest.raises(ValueError):
        MinibatchStdDev(num_features=2)(torch.zeros(4, 3, 2, 2, device=CPU))


# --- minibatch discrimination ----------------------------------------------------------------------------------

def test_minibatch_discrimination_formula_and_shape():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(6, num_kernels=3, kernel_dim=2)
    x = torch.randn(4, 6, device=CPU)
    out = layer(x)
    assert out.shape == (4, 9) and torch.equal(out[:, :6], x)
    m = (x @ layer.T).reshape(4, 3, 2)
    for i, b in itertools.product(range(4), range(3)):
        want = sum(torch.exp(-(m[i, b] - m[j, b]).abs().sum()) for j in range(4) if j != i)
        assert out[i, 6 + b].item() == pytest.approx(want.item(), rel=1e-5)


def test_minibatch_discrimination_identical_vs_different_samples():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(8, num_kernels=5, kernel_dim=3)
    same = layer(torch.randn(1, 8, device=CPU).expand(6, 8))[:, 8:]
    assert torch.allclose(same, torch.full((6, 5), 6 - 1.0))  # exp(0) for each of the 5 others
    x = torch.randn(6, 8, device=CPU, requires_grad=True)
    different = layer(x * 3)[:, 8:]
    assert (different < 5.0).all() and (different >= 0).all()
    different.sum().backward()
    assert x.grad.abs().sum() > 0 and layer.T.grad.abs().sum() > 0


# --- DiffAugment -----------------------------------------------------------------------------------------------

def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=_gen(seed), device=CPU) * 2 - 1


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diff_augment_is_differentiable_and_keeps_the_shape(policy):
    x = _images().requires_grad_(True)
    out = diff_augment(x, policy, generator=_gen(1))
    assert out.shape == x.shape and not torch.equal(out, x)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_same_params_augment_two_batches_identically():
    params = draw_params(4, 16, 16, "color,translation,cutout", CPU, _gen(2))
    x = _images()
    assert torch.equal(apply(x, params), apply(x.clone(), params))
    assert torch.equal(diff_augment(x, params=params), apply(x, params))
    # geometry only: the zeros (padding and cutout) fall in the same places for any two batches
    geo = AugParams(("translation", "cutout"), 4, 16, 16, translation=params.translation, cutout=params.cutout)
    mask_a = apply(torch.ones(4, 3, 16, 16, device=CPU), geo) == 0
    mask_b = apply(_images(seed=7).abs() + 0.1, geo) == 0
    assert torch.equal(mask_a, mask_b) and mask_a.any()


def test_diff_augment_seeds():
    x = _images()
    assert torch.equal(diff_augment(x, generator=_gen(3)), diff_augment(x, generator=_gen(3)))
    assert not torch.equal(diff_augment(x, generator=_gen(3)), diff_augment(x, generator=_gen(4)))


def test_empty_policy_is_identity_and_unknown_policy_raises():
    x = _images()
    assert torch.equal(diff_augment(x, "", generator=_gen(0)), x)
    assert torch.equal(diff_augment(x, " , ", generator=_gen(0)), x)
    with pytest.raises(ValueError, match="rotation.*color"):
        diff_augment(x, "color,rotation")
    with pytest.raises(ValueError, match="rotation"):
        draw_params(4, 16, 16, "rotation")


def test_params_for_another_shape_raise():
    with pytest.raises(ValueError):
        apply(_images(n=4), draw_params(5, 16, 16, "color", CPU, _gen(0)))


def test_translation_shifts_with_zero_padding():
    x = torch.arange(16.0, device=CPU).reshape(1, 1, 4, 4) + 1
    shift = AugParams(("translation",), 1, 4, 4, translation=torch.tensor([[1, -1]], device=CPU))
    out = apply(x, shift)[0, 0]
    assert torch.equal(out[:3, 1:], x[0, 0, 1:, :3])  # output(i, j) = input(i + 1, j - 1)
    assert (out[3] == 0).all() and (out[:, 0] == 0).all()


def test_translation_stays_within_an_eighth_and_cutout_is_half_the_size():
    params = draw_params(256, 16, 16, "translation,cutout", CPU, _gen(5))
    assert params.translation.abs().max() == 2 and params.translation.min() == -2  # 16 / 8
    inside = AugParams(("cutout",), 1, 16, 16, cutout=torch.tensor([[3, 5]], device=CPU))
    out = apply(torch.ones(1, 2, 16, 16, device=CPU), inside)
    assert (out == 0).sum() == 2 * 8 * 8 and (out[0, :, 3:11, 5:13] == 0).all()
    corners = params.cutout
    assert (corners >= -4).all() and (corners + 8 <= 16 + 4).all()  # the square's centre stays on the image


def test_color_uses_the_drawn_factors():
    x = _images(n=2)
    ones = torch.ones(2, 1, 1, 1, device=CPU)
    bright = AugParams(("color",), 2, 16, 16, brightness=ones * 0.25, saturation=ones, contrast=ones)
    assert torch.allclose(apply(x, bright), x + 0.25, atol=1e-6)
    grey = AugParams(("color",), 2, 16, 16, brightness=ones * 0, saturation=ones * 0, contrast=ones)
    out = apply(x, grey)
    assert torch.allclose(out, x.mean(dim=1, keepdim=True).expand_as(x), atol=1e-6)


# --- instance noise --------------------------------------------------------------------------------------------

def test_instance_noise_schedule():
    assert instance_noise_sigma(0, 100, 0.2) == 0.2
    assert instance_noise_sigma(100, 100, 0.2) == 0.0
    assert instance_noise_sigma(150, 100, 0.2) == 0.0
    sigmas = [instance_noise_sigma(s, 100, 0.2) for s in range(0, 101, 10)]
    steps = [a - b for a, b in zip(sigmas, sigmas[1:])]
    assert steps == pytest.approx([0.02] * 10)  # linear
    assert instance_noise_sigma(5, 100, 0.2, anneal_steps=10) == pytest.approx(0.1)
    assert instance_noise_sigma(10, 100, 0.2, anneal_steps=10) == 0.0


def test_add_instance_noise():
    x = torch.zeros(100_000, device=CPU)
    assert add_instance_noise(x, 0.0) is x
    a, b = add_instance_noise(x, 0.3, _gen(0)), add_instance_noise(x, 0.3, _gen(0))
    assert torch.equal(a, b)
    assert a.std().item() == pytest.approx(0.3, rel=0.02) and abs(a.mean().item()) < 0.01


# --- unrolled GAN ----------------------------------------------------------------------------------------------

def _unroll_setup():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    apply_spectral_norm(D[3])
    G = nn.Linear(2, 4)
    real = torch.randn(16, 4, device=CPU)
    fake = G(torch.randn(16, 2, device=CPU))
    D(real)  # prime the spectral norm and BatchNorm buffers

    def loss_fn(params):
        d = functional_d(D, params)
        return sum(d_loss(d(real).squeeze(1), d(fake).squeeze(1), "bce"))

    return D, G, fake, loss_fn


def _snapshot(D: nn.Module) -> dict[str, torch.Tensor]:
    state = {k: v.clone() for k, v in D.state_dict().items()}
    state.update({f"{k}.grad": p.grad.clone() for k, p in D.named_parameters()})
    return state


def test_unrolling_leaves_d_untouched_and_is_differentiable():
    D, G, fake, loss_fn = _unroll_setup()
    for p in D.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = _snapshot(D)
    params = unrolled_parameters(D, loss_fn, steps=3, lr=0.5)
    own = dict(D.named_parameters())
    assert all(not torch.equal(params[k], p) for k, p in own.items())
    logits = functional_d(D, params)(fake).squeeze(1)
    # the generator's loss through the unrolled D: its gradient includes the path through D's unrolled steps
    grad_unrolled, = torch.autograd.grad(g_loss(logits), fake, retain_graph=True)
    frozen = {k: v.detach() for k, v in params.items()}
    grad_frozen, = torch.autograd.grad(g_loss(functional_d(D, frozen)(fake).squeeze(1)), fake, retain_graph=True)
    assert grad_unrolled.abs().sum() > 0 and not torch.allclose(grad_unrolled, grad_frozen)
    g_loss(logits).backward()
    assert G.weight.grad.abs().sum() > 0
    after = _snapshot(D)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_unrolling_zero_steps_returns_d_values():
    D, _, _, loss_fn = _unroll_setup()
    params = unrolled_parameters(D, loss_fn, steps=0, lr=0.5)
    state = {**dict(D.named_parameters()), **dict(D.named_buffers())}
    assert params.keys() == state.keys() and all(torch.equal(params[k], v) for k, v in state.items())
    x = torch.randn(5, 4, device=CPU)
    D.eval()
    assert torch.equal(functional_d(D, params)(x), D(x))
