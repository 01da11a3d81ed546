"""The layout keeps its promise (docs/ARCHITECTURE.md): layers import only downwards, no module imports itself
back through others, and code outside families/ names no family.

Every import statement counts, the lazy ones inside functions too: the module graph is read from the source with
``ast``, so an import that runs only on some path is still seen.
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ganforge"

# lowest first; a module may import its own layer and those before it, never one after it
LAYERS = [
    ("utilities", ["errors", "io_utils", "memory", "devices", "config_base", "checkpoint", "viz", "defaults"]),
    ("data", ["data"]),
    ("families", ["families"]),
    ("metrics", ["metrics"]),
    ("config", ["config"]),
    ("train", ["train"]),
    ("apps", ["apps"]),
    ("bench", ["bench"]),
    ("cli", ["cli", "cli_docs", "__main__", "__init__"]),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _targets(module: str, path: Path, node: ast.AST, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            package = package[:len(package) - node.level + 1]
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for name in names:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the ganforge modules it imports anywhere in its source."""
    known = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(_targets(module, path, node, known))
    return graph


def layer_of(module: str) -> int:
    rel = module.split(".", 1)[1] if "." in module else "__init__"
    top = rel.split(".")[0]
    for i, (_, tops) in enumerate(LAYERS):
        if top in tops:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to docs/ARCHITECTURE.md)")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_every_import_goes_down_the_layers():
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in sorted(import_graph().items()) for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert upward == []


def test_the_checker_sees_lazy_imports_and_cycles(tmp_path):
    """The checker itself: an import inside a function is an edge, and a two-module loop is a cycle."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("def f():\n    from ganforge.apps import sampling\n")
    lazy = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert _targets("ganforge.train.loop", PACKAGE / "train" / "loop.py", lazy[0], _modules()) == \
        ["ganforge.apps.sampling"]
    assert layer_of("ganforge.apps.sampling") > layer_of("ganforge.train.loop")


def _family_names() -> list[str]:
    from ganforge.families import all_families

    return sorted(all_families())


def _code_lines(path: Path):
    """(line number, code) of a module, without comments and docstrings (documentation may name families)."""
    source = path.read_text()
    docs = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docs.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    for no, line in enumerate(source.splitlines(), 1):
        code = line.split("#", 1)[0]
        if no not in docs and code.strip():
            yield no, code


GENERAL = ["train", "metrics", "apps", "cli", "viz.py"]


@pytest.mark.parametrize("where", GENERAL)
def test_general_code_names_no_family_and_reads_no_family_key(where):
    """The loop, metrics, pictures, apps and the CLI get what they need from a family's declared traits."""
    names = _family_names() + ["point_dim", "pack", "G_AB", "G_BA", "loss_d", "loss_g", "d_real", "d_fake"]
    pattern = re.compile(r"\b(%s)\b(?!-)" % "|".join(names))  # not preset names (ssgan-mnist)
    root = PACKAGE / where
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    hits = [f"{f.relative_to(PACKAGE)}:{no}: {code.strip()}" for f in files for no, code in _code_lines(f)
            if pattern.search(code)]
    assert hits == []


def test_every_registered_family_is_in_the_engine_tests():
    """The engine's promises (exact resume, rollback, SIGKILL, two processes) run over conftest's FAMILIES."""
    from conftest import FAMILIES, family_model

    covered = {family_model(f)["family"] for f in FAMILIES}
    missing = sorted(set(_family_names()) - covered)
    assert missing == [], f"add {missing} to FAMILIES in tests/conftest.py (family -> the preset its CLI tests use)"


def test_style_based_families_give_the_typed_protocol():
    from ganforge.config import model_config
    from ganforge.families import all_families, build_networks
    from ganforge.families.contract import StyleBasedGenerator

    for name, family in all_families().items():
        keys = {"family": name, "image_size": 16, "channels": 1}
        if family.translation:
            continue
        G = build_networks(model_config(**keys))[family.generator]
        assert isinstance(G, StyleBasedGenerator) == family.style_based, name


ARCHITECTURE = PACKAGE.parent / "docs" / "ARCHITECTURE.md"


def _worked_example(part: str) -> str:
    """The code block that follows ``<!-- worked-example: PART -->`` in docs/ARCHITECTURE.md."""
    text = ARCHITECTURE.read_text()
    marker = f"<!-- worked-example: {part} -->"
    assert marker in text, f"docs/ARCHITECTURE.md lost its {marker}"
    block = text.split(marker, 1)[1]
    return block.split("```", 2)[1].split("\n", 1)[1]


def test_the_worked_example_family_trains_through_the_cli_with_exact_resume(tmp_path, assert_same_run):
    """docs/ARCHITECTURE.md's relativistic GAN, as written there: a module outside the tree (GANFORGE_FAMILIES),
    its preset, trained through the CLI; stopped by SIGTERM wherever it is, then resumed, it ends as a straight run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "ragan_example.py").write_text(_worked_example("module"))
    (tmp_path / "ragan-mnist.yaml").write_text(_worked_example("preset"))
    env = dict(os.environ, OMP_NUM_THREADS="1", GANFORGE_FAMILIES="ragan_example",
               PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    tiny = ["--steps", "40", "--batch-size", "16", "--device", "cpu", "--quiet", "--seed", "3",
            "--set", "model.image_size=16", "--set", "model.g_width=8", "--set", "model.d_width=8",
            "--set", "model.z_dim=16", "--set", "data.limit=64", "--set", "train.threads=1",
            "--set", "train.log_every=2", "--set", "eval.final=false"]

    def cli(*args, **kw):
        return subprocess.run([sys.executable, "-m", "ganforge", *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, **kw)

    res = cli("train", "ragan-mnist.yaml", "--out", "straight", *tiny)
    assert res.returncode == 0, res.stderr
    proc = subprocess.Popen([sys.executable, "-m", "ganforge", "train", "ragan-mnist.yaml", "--out", "resumed", *tiny],
                            env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "resumed" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not (metrics.is_file() and metrics.read_text()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode in (0, 143), err
    res = cli("train", "--resume", "resumed", "--quiet")
    assert res.returncode == 0, res.stderr
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    assert "ragan" in (tmp_path / "straight" / "config.yaml").read_text()


def test_the_worked_example_family_brings_its_own_init_and_optimiser(monkeypatch):
    """docs/ARCHITECTURE.md's family, as written there: its ``init`` replaces DCGAN's N(0, 0.02), its
    ``OptimizerSpec`` gives Adam its betas, and the schedules set beta2 and D's rate before every update."""
    import sys
    import types

    import torch
    from torch import nn

    from ganforge import families
    from ganforge.config import TrainConfig
    from ganforge.families.contract import OptimizerSpec, RunContext
    from ganforge.train.optim import build_optimizers, set_hyperparameters

    module = types.ModuleType("ragan_inline_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(families, "_REGISTRY", dict(families.all_families()))
    exec(compile(_worked_example("module"), "docs/ARCHITECTURE.md", "exec"), module.__dict__)
    mc = module.RaganConfig(image_size=16, g_width=8, d_width=8, z_dim=16)
    torch.manual_seed(0)
    nets = families.build_networks(mc)
    conv = max((m for m in nets["G"].modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))),
               key=lambda m: m.weight.numel())
    fan_in = nn.init._calculate_correct_fan(conv.weight, "fan_in")
    he_std = (2 / (1 + 0.2 ** 2)) ** 0.5 / fan_in ** 0.5
    assert abs(conv.weight.std().item() / he_std - 1) < 0.2  # He-normal, not N(0, 0.02)
    assert abs(he_std / 0.02 - 1) > 0.5

    tc = TrainConfig(steps=100, lr_d=1e-3)
    trainer = module.RaganTrainer(types.SimpleNamespace(model=mc, train=tc), nets,
                                  RunContext(torch.device("cpu"), total_steps=100))
    specs = trainer.optimizers()
    opts = build_optimizers(specs, nets, tc, torch.device("cpu"))
    assert isinstance(opts["G"], torch.optim.Adam) and opts["G"].param_groups[0]["betas"] == (0.0, 0.9)
    set_hyperparameters(opts["D"], specs["D"], 50, 100, None)  # halfway along both cosines
    group = opts["D"].param_groups[0]
    assert group["betas"] == (0.0, pytest.approx(0.945))
    assert group["lr"] == pytest.approx(1e-3 * (0.25 + 0.75 * 0.5))
    set_hyperparameters(opts["D"], specs["D"], 100, 100, 0.5)  # the end of the schedule, times train.lr_decay's
    assert group["lr"] == pytest.approx(1e-3 * 0.25 * 0.5) and group["betas"][1] == pytest.approx(0.99)
    with pytest.raises(ValueError, match="kind='adagrad'"):
        OptimizerSpec(("G",), 1e-3, kind="adagrad")
    with pytest.raises(ValueError, match="schedules"):
        OptimizerSpec(("G",), 1e-3, schedules={"betas": lambda s, t: 0.9})


def test_families_without_their_own_spec_train_with_the_train_keys_optimiser():
    """kind/betas left at None in the spec: train.optimizer and train.beta1/beta2, as before the spec had them."""
    import torch

    from ganforge.config import TrainConfig
    from ganforge.train.optim import make_optimizer

    p = [torch.nn.Parameter(torch.zeros(3))]
    adam = make_optimizer(p, 1e-3, TrainConfig(beta1=0.3, beta2=0.95), torch.device("cpu"))
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["betas"] == (0.3, 0.95)
    assert adam.defaults["fused"] and adam.param_groups[0]["eps"] == 1e-8
    rms = make_optimizer(p, 5e-5, TrainConfig(optimizer="rmsprop"), torch.device("cpu"))
    assert isinstance(rms, torch.optim.RMSprop) and rms.param_groups[0]["lr"] == 5e-5


@pytest.mark.parametrize("where", ["train", "apps", "cli", "config"])
def test_general_code_asks_the_output_kind_instead_of_comparing_its_name(where):
    """``families/outputs.py`` owns what differs between images, points and translations: general code asks
    ``output_of(cfg)`` (``.images``, ``.translations``, ``.describe``, ``.save_samples`` ...), never compares the
    name that ``output_kind`` returns."""
    # (a dataset's own ``ds.kind`` -- images, points or pairs -- is the data's, not the run's output)
    pattern = re.compile(r"output_kind\(.*[=!]=|(?<!\.)\bkind\s*[=!]=\s*[\"'](points|images|translations)[\"']")
    root = PACKAGE / where
    hits = [f"{f.relative_to(PACKAGE)}:{no}: {code.strip()}" for f in sorted(root.rglob("*.py"))
            for no, code in _code_lines(f) if pattern.search(code)]
    assert hits == []
