"""train.cuda_graph (train/graphs.py): which steps can be captured and why the others cannot, one graph per set of
due phases, a CPU run that asks for graphs is bit-identical to one that does not (it falls back, and says so once);
on a GPU (the CUDA tests below run wherever one is present) the replayed step equals the eager one within bf16
tolerance, the NaN guard still refuses a bad update, and resume stays exact with train.deterministic=true."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from ganforge.bench import throughput as tp
from ganforge.config import TrainConfig, model_config
from ganforge.data import build_dataset
from ganforge.families import build_models, build_networks, get_family
from ganforge.families.contract import RunContext, Trainer, trainer_class
from ganforge.train import graphs, train
from ganforge.train.batches import BatchSource
from ganforge.train.engine import Updater, run_step
from ganforge.train.loop import make_optimizer
from ganforge.train.schedule import apply_lr, scale_base_lr

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
quiet = dict(progress=False, log=lambda s: None)


def _parts(device: torch.device = CPU, **train_kw) -> tuple[TrainConfig, tp.Parts]:
    """A small DCGAN's trainer and updater as the loop builds them (the bench's helper)."""
    mc = model_config(family="dcgan", image_size=16, channels=1, g_width=8, d_width=8, z_dim=16)
    torch.manual_seed(0)
    G, D = build_models(mc)
    tc = TrainConfig(steps=1, batch_size=16, **train_kw)
    return tc, tp.make_parts(G, D, mc, tc, device)


def _family_parts(cfg) -> tuple[Trainer, Updater]:
    """Any family's trainer and updater, on the CPU, as the loop builds them."""
    nets = build_networks(cfg.model)
    ctx = RunContext(CPU, total_steps=8, dataset=build_dataset(cfg.data, cfg.model))
    trainer = trainer_class(get_family(cfg.model.family).trainer)(cfg, nets, ctx)
    specs = trainer.optimizers()
    opts = {n: make_optimizer([p for k in s.networks for p in nets[k].parameters()], s.lr, cfg.train, CPU)
            for n, s in specs.items()}
    return trainer, Updater(nets, opts, {n: s.networks for n, s in specs.items()})


# ---------------------------------------------------------------------------------------------------------------
# the decision, on any machine


def test_a_cpu_device_is_refused_first():
    tc, parts = _parts()
    assert graphs.refusal(tc, CPU, parts.trainer, parts.updater) == "CUDA graphs need a CUDA device (this run is on cpu)"


@pytest.mark.parametrize("train_kw, words", [
    ({}, None),
    ({"r1_gamma": 1.0, "r1_every": 4}, None),  # lazy R1: one graph per phase set, not a refusal
    ({"loss": "wgan"}, None),  # weight clipping: in-place device ops after D's update
    ({"loss": "wgan-gp"}, None),  # the interpolation weights are drawn on the device
    ({"precision": "fp16"}, "GradScaler checks for overflow on the host"),
    ({"optimizer": "rmsprop"}, "train.optimizer=rmsprop) has no fused kernel"),
    ({"compile": "default"}, "train.compile=default compiles the networks already"),
    ({"lr_decay": "linear"}, None),  # the rates go in through a device tensor, refilled before every replay
    ({"instance_noise": 0.1}, "train.instance_noise anneals its sigma on the host"),
])
def test_which_options_a_cuda_step_is_captured_with(train_kw, words):
    """The checks past the device (asked as if on CUDA: they read the options and optimizers, not the GPU)."""
    tc, parts = _parts(**train_kw)
    reason = graphs.refusal(tc, CUDA, parts.trainer, parts.updater)
    assert reason is None if words is None else words in reason


def test_data_parallel_runs_are_refused():
    tc, parts = _parts()
    updater = copy.copy(parts.updater)
    updater.dist = SimpleNamespace(enabled=True)
    assert "data-parallel" in graphs.refusal(tc, CUDA, parts.trainer, updater)


@pytest.mark.parametrize("family", ["progan", "stylegan", "cyclegan", "ssgan"])
def test_families_that_do_not_declare_their_step_graph_safe_are_refused(tiny, family):
    """ProGAN grows, CycleGAN's image pool draws on the host, the others have not been checked: eager, named."""
    trainer, updater = _family_parts(tiny(family))
    reason = graphs.refusal(tiny(family).train, CUDA, trainer, updater)
    assert reason is not None and family in reason and "graph-safe" in reason


def test_one_graph_per_set_of_due_phases():
    """Lazy R1 every 4 steps: two distinct steps, so two graphs, each replayed on its own steps."""
    tc, parts = _parts(r1_gamma=1.0, r1_every=4)
    keys = [graphs.due_phases(parts.trainer, s) for s in range(8)]
    assert keys[0] == keys[4] == ("Dmain", "Dreg", "Gmain")
    assert set(keys[1:4] + keys[5:]) == {("Dmain", "Gmain")}
    x = torch.zeros(16, 1, 16, 16)
    batch = [(x, torch.zeros(16, dtype=torch.long))]
    assert graphs.step_key(parts.trainer, batch, 1) == graphs.step_key(parts.trainer, batch, 2)
    smaller = [(x[:8], torch.zeros(8, dtype=torch.long))]  # another batch shape is another graph
    assert graphs.step_key(parts.trainer, smaller, 1) != graphs.step_key(parts.trainer, batch, 1)


def test_a_restore_or_a_rollback_changes_what_a_graph_baked_in():
    tc, parts = _parts()
    batch = [(torch.rand(16, 1, 16, 16) * 2 - 1, torch.zeros(16, dtype=torch.long))]
    run_step(parts.trainer, parts.updater, parts.keys, batch, 0)  # the optimizers' state exists from here
    before = graphs.state_signature(parts.updater)
    assert graphs.state_signature(parts.updater) == before  # stable while nothing changes
    opt = parts.updater.optimizers["D"]
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # a checkpoint restored: new state tensors
    restored = graphs.state_signature(parts.updater)
    assert restored != before
    scale_base_lr(parts.updater.optimizers["G"], 0.5)  # a rollback's lower rate is fed, not baked in
    assert graphs.state_signature(parts.updater) == restored
    parts.updater.optimizers["G"].param_groups[0]["betas"] = (0.0, 0.99)  # what a graph does bake in
    assert graphs.state_signature(parts.updater) != restored


def test_rates_are_device_tensors_while_a_step_runs_and_numbers_after():
    """How graphs see a changing learning rate: a tensor per group at a fixed address, refilled every step."""
    tc, parts = _parts()
    rates = graphs.Rates()
    scale_base_lr(parts.updater.optimizers["G"], 0.5)
    for expected_g in (1e-4, 5e-5):
        with rates.fed(parts.updater):
            g, d = (o.param_groups[0]["lr"] for o in parts.updater.optimizers.values())
            assert torch.is_tensor(g) and g.item() == pytest.approx(expected_g) and d.item() == pytest.approx(2e-4)
        assert {id(t) for t in rates.tensors.values()} == {id(g), id(d)}  # the same tensors every step
        assert all(isinstance(gr["lr"], float) for o in parts.updater.optimizers.values() for gr in o.param_groups)
        scale_base_lr(parts.updater.optimizers["G"], 0.5)


class _Recorded(graphs.GraphStep):
    """GraphStep's bookkeeping on a CPU: warm-ups and captures recorded, a 'replay' an eager step."""

    def __init__(self, **kw):
        super().__init__(log=lambda s: None, **kw)
        self.calls: list[tuple[str, int]] = []

    def _eager_on_side_stream(self, trainer, updater, keys, batches, step):
        self.calls.append(("warm-up", step))
        return run_step(trainer, updater, keys, batches, step)

    def _capture_and_replay(self, key, trainer, updater, keys, batches, step):
        self.calls.append(("capture", step))
        outer = self

        class Replayed(graphs.Captured):
            def replay(self, batches):
                outer.calls.append(("replay", outer.at))
                return run_step(trainer, updater, keys, batches, outer.at)

        self.graphs[key] = Replayed(None, [], torch.zeros(()), (), graphs.state_signature(updater))
        return run_step(trainer, updater, keys, batches, step)

    def __call__(self, trainer, updater, keys, batches, step):
        self.at = step
        return super().__call__(trainer, updater, keys, batches, step)


def test_warm_up_capture_replay_per_phase_set_and_again_after_a_restore():
    tc, parts = _parts(r1_gamma=1.0, r1_every=4)
    batch = [(torch.rand(16, 1, 16, 16) * 2 - 1, torch.zeros(16, dtype=torch.long))]
    rec = _Recorded()
    for s in range(14):
        rec(parts.trainer, parts.updater, parts.keys, batch, s)
    kinds = dict((s, kind) for kind, s in rec.calls)
    # steps without Dreg: warm-ups 1, 2, 3, capture at 5, replays after; with Dreg (0, 4, 8, 12): 0, 4, 8, capture 12
    assert [kinds[s] for s in range(14)] == ["warm-up", "warm-up", "warm-up", "warm-up", "warm-up", "capture",
                                             "replay", "replay", "warm-up", "replay", "replay", "replay", "capture",
                                             "replay"]
    assert len(rec.graphs) == 2
    opt = parts.updater.optimizers["D"]
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # a rollback restores: new state tensors
    rec.calls.clear()
    for s in range(14, 20):  # both graphs dropped: 16 (Dreg) warms up again too
        rec(parts.trainer, parts.updater, parts.keys, batch, s)
    assert [kind for kind, _ in rec.calls] == ["warm-up"] * 4 + ["capture", "replay"]
    assert len(rec.graphs) == 1


def test_past_the_graph_limit_the_other_steps_run_eagerly():
    tc, parts = _parts()
    logs: list[str] = []
    rec = _Recorded(max_graphs=1)
    rec.log = logs.append
    for n in (16, 8):  # two batch shapes: two keys, room for one graph
        batch = [(torch.rand(n, 1, 16, 16) * 2 - 1, torch.zeros(n, dtype=torch.long))]
        for s in range(5):
            rec(parts.trainer, parts.updater, parts.keys, batch, s)
    assert len(rec.graphs) == 1 and [k for k, _ in rec.calls].count("capture") == 1
    assert logs == ["warning: train.cuda_graph: more than 1 distinct steps; the others run eagerly"]


def test_the_option_off_or_refused_leaves_the_loop_its_run_step():
    tc, parts = _parts()
    logs: list[str] = []
    assert graphs.graph_step(tc, CPU, parts.trainer, parts.updater, logs.append) is None and logs == []
    tc = tc.model_copy(update={"cuda_graph": True})
    assert graphs.graph_step(tc, CPU, parts.trainer, parts.updater, logs.append) is None and len(logs) == 1


def test_a_cpu_run_asking_for_graphs_is_the_run_without_them(tmp_path, tiny, assert_same_run):
    """The fallback is one logged line and nothing else: every checkpoint tensor and metrics line identical."""
    logs: list[str] = []
    train(tiny("dcgan", steps=6, r1_gamma=1.0, r1_every=2), tmp_path / "off", **quiet)
    train(tiny("dcgan", steps=6, r1_gamma=1.0, r1_every=2, cuda_graph=True), tmp_path / "on", progress=False,
          log=logs.append)
    said = [line for line in logs if "train.cuda_graph" in line]
    assert said == ["warning: train.cuda_graph is not used, the step runs eagerly: CUDA graphs need a CUDA device "
                    "(this run is on cpu)"]
    assert_same_run(tmp_path / "off", tmp_path / "on")


def test_a_run_may_be_resumed_with_graphs_turned_on(tmp_path, tiny, assert_same_run):
    """train.cuda_graph is how a step runs, not what it computes: like train.compile, no --force needed."""
    train(tiny("dcgan", steps=6), tmp_path / "straight", **quiet)
    train(tiny("dcgan", steps=6), tmp_path / "resumed", stop_after_steps=3, **quiet)
    train(tiny("dcgan", steps=6, cuda_graph=True), tmp_path / "resumed", resume=True, **quiet)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")  # on a CPU: the same eager steps


# ---------------------------------------------------------------------------------------------------------------
# on a GPU


def _eager_and_graphed(steps: int, **train_kw):
    """The same model twice on the GPU, from identical weights and seeds: eager steps, and GraphStep's."""
    kw = dict(precision="bf16" if torch.cuda.is_bf16_supported() else "fp32", channels_last=True, **train_kw)
    tc, a = _parts(CUDA, **kw)
    _, b = _parts(CUDA, **kw)
    real = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(1)).to(CUDA) * 2 - 1
    batch = [(real, torch.zeros(16, dtype=torch.long, device=CUDA))]
    graphed = graphs.GraphStep(log=lambda s: None)
    out = []
    for parts, step_fn in ((a, run_step), (b, graphed)):
        torch.manual_seed(5)
        out.append([step_fn(parts.trainer, parts.updater, parts.keys, batch, s)[0].cpu() for s in range(steps)])
    return a, b, out, graphed, batch


@needs_cuda
def test_the_replayed_step_is_the_eager_step():
    a, b, (eager, replayed), graphed, _ = _eager_and_graphed(10)
    assert len(graphed.graphs) == 1 and not graphed.failed  # captured after 3 warm-up steps, replayed 7 times
    for e, r in zip(eager, replayed):
        torch.testing.assert_close(r, e, rtol=2e-2, atol=2e-2)  # bf16 tolerance (same kernels: usually exact)
    for pa, pb in zip([*a.G.parameters(), *a.D.parameters()], [*b.G.parameters(), *b.D.parameters()]):
        torch.testing.assert_close(pb, pa, rtol=2e-2, atol=2e-2)


@needs_cuda
def test_lazy_r1_replays_a_graph_per_phase_set():
    _, _, (eager, replayed), graphed, _ = _eager_and_graphed(16, r1_gamma=1.0, r1_every=2)
    assert len(graphed.graphs) == 2 and not graphed.failed
    for e, r in zip(eager, replayed):
        torch.testing.assert_close(r, e, rtol=2e-2, atol=2e-2)


@needs_cuda
def test_a_changing_learning_rate_reaches_the_replays():
    """lr_decay-like rates set on the host before each step: the replays use them (no recapture)."""
    tc, a = _parts(CUDA, channels_last=True)
    _, b = _parts(CUDA, channels_last=True)
    real = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(1)).to(CUDA) * 2 - 1
    batch = [(real, torch.zeros(16, dtype=torch.long, device=CUDA))]
    graphed = graphs.GraphStep(log=lambda s: None)
    for parts, step_fn in ((a, run_step), (b, graphed)):
        torch.manual_seed(5)
        for s in range(8):
            for opt in parts.updater.optimizers.values():
                apply_lr(opt, 1.0 - s / 8)
            step_fn(parts.trainer, parts.updater, parts.keys, batch, s)
    assert len(graphed.graphs) == 1
    assert all(isinstance(g["lr"], float) for o in b.updater.optimizers.values() for g in o.param_groups)
    for pa, pb in zip([*a.G.parameters(), *a.D.parameters()], [*b.G.parameters(), *b.D.parameters()]):
        torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5)  # fp32: the same kernels, the same rates


@needs_cuda
def test_the_nan_guard_refuses_a_bad_update_inside_the_graph():
    _, b, _, graphed, batch = _eager_and_graphed(5)
    d_before = [p.detach().clone() for p in b.D.parameters()]
    bad = [(torch.full_like(batch[0][0], float("nan")), batch[0][1])]
    values, _ = graphed(b.trainer, b.updater, b.keys, bad, 5)
    assert values[-1].item() >= 1  # D's update refused, on the device, inside the replay
    for p, q in zip(b.D.parameters(), d_before):
        assert torch.equal(p, q)


@needs_cuda
def test_resume_with_graphs_is_exact(tmp_path, tiny, assert_same_run):
    cfg = tiny("dcgan", steps=12, device="cuda", cuda_graph=True, deterministic=True, r1_gamma=1.0, r1_every=3,
               lr_decay="cosine", ema={"enabled": True, "decay": 0.9})
    logs: list[str] = []
    train(cfg, tmp_path / "straight", progress=False, log=logs.append)
    assert any("the step is captured as CUDA graphs" in line for line in logs)
    assert not any("capturing the step failed" in line for line in logs)
    train(cfg, tmp_path / "resumed", stop_after_steps=7, **quiet)
    train(cfg, tmp_path / "resumed", resume=True, **quiet)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def _digits(tiny):
    cfg = tiny("dcgan")
    return build_dataset(cfg.data, cfg.model)


def test_an_in_memory_set_stays_on_the_host_for_a_cpu_run(tiny):
    assert not BatchSource(_digits(tiny), 32, seed=3).on_device
    assert not BatchSource(_digits(tiny), 32, seed=3, device=CPU).on_device


@needs_cuda
def test_an_in_memory_set_is_gathered_on_the_gpu_with_the_same_batches(tiny):
    """The data hand-off without a pageable copy per step: the same batches, in the same order, mid-epoch too."""
    data = _digits(tiny)
    host, gpu = BatchSource(data, 32, seed=3, group=2), BatchSource(data, 32, seed=3, group=2, device=CUDA)
    assert gpu.on_device
    for epoch, start in ((0, 0), (1, 1)):
        for a, b in zip(host.epoch(epoch, start), gpu.epoch(epoch, start), strict=True):
            for (xa, ya), (xb, yb) in zip(a, b):
                assert xb.is_cuda and torch.equal(xa, xb.cpu()) and torch.equal(ya, yb.cpu())
