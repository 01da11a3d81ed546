"""``ganforge export RUN_DIR --format onnx|torchscript|folder --out DIR``: a trained model for use outside ganforge.

The networks are loaded exactly as ``ganforge sample`` / ``ganforge translate`` load them (``load_generator``,
``load_translator``: EMA weights with their BatchNorm statistics when the run kept them), and the family says which
graphs stand for it (``families/exports.py``). Every output folder is self-contained: the graphs (or the weights),
``config.json`` (the run's config, what each graph takes and gives, and the export-time check), a model card
``README.md`` and ``reference.npz`` (the inputs the export was checked with, drawn as sampling draws them from
seed 0, and the outputs the torch model gave for them). It is written into a temporary folder beside ``--out`` and
renamed at the end, so a failed export leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from ganforge.apps.sampling import EXPORT_CONFIG, EXPORT_WEIGHTS, exported_networks, is_export
from ganforge.errors import UserError
from ganforge.families import get_family, output_kind
from ganforge.families.outputs import output_of
from ganforge.families.exports import ExportGraph, export_graphs, export_networks

FORMATS = ("onnx", "torchscript", "folder")
TOLERANCE = 1e-4  # max abs error between the exported graph and torch, images in [-1, 1]
CHECK_BATCHES = (1, 3)  # the export-time check's batch sizes (the graphs are traced at the larger one)
REFERENCE_SEED = 0
OPSET = 18
EXTRA_HINT = "pip install 'ganforge[export]'"
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}

Inputs = dict[str, torch.Tensor]


@dataclass
class Model:
    """What an export is made from: the run's config and its sampling networks, loaded as sampling loads them."""

    cfg: object  # RunConfig
    nets: dict[str, nn.Module]  # by network name
    source: Path
    checkpoint: Optional[Path]


@dataclass
class Reference:
    """One graph's reference: inputs drawn from seed 0 and what the torch graph module gives for them."""

    inputs: Inputs
    output: torch.Tensor


# ------------------------------------------------------------------------------------------------ the request


def check_request(run_dir: Path, fmt: str, out: Path) -> None:
    """Every refusal before any work: an unknown format, a missing run, an output that is not new, missing tools."""
    from ganforge.io_utils import check_output_dir

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if not Path(run_dir).is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    if Path(out).is_dir() and any(Path(out).iterdir()):
        raise UserError(f"--out {out} already holds files: an export goes into a new (or empty) folder")
    check_output_dir(out)
    if fmt == "onnx":
        onnx_runtime()


def onnx_runtime():
    """onnxruntime (and onnx, which torch's exporter needs), or one line saying how to install them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise UserError(f"--format onnx needs onnx and onnxruntime: {EXTRA_HINT}") from None
    return onnxruntime


def load_model(run_dir: Path) -> Model:
    """The sampling networks of a run (or of an exported folder), on the CPU, through sampling's own loaders."""
    from ganforge.apps.sampling import load_generator
    from ganforge.apps.translate import load_translator
    from ganforge.config import load_run_config

    run_dir = Path(run_dir)
    exported = is_export(run_dir)
    cfg = exported_networks(run_dir)[0] if exported else load_run_config(run_dir)
    if get_family(cfg.model.family).translation:
        loaded = {name: load_translator(run_dir, d, "cpu") for d, name in export_networks(cfg.model).items()}
        first = next(iter(loaded.values()))
        return Model(first.cfg, {n: t.net for n, t in loaded.items()}, run_dir, first.checkpoint)
    g = load_generator(run_dir, "cpu")
    return Model(g.config, {get_family(cfg.model.family).generator: g.module}, run_dir, g.checkpoint)


def references(graphs: dict[str, ExportGraph]) -> dict[str, Reference]:
    """Each graph's reference inputs (seed 0, as many as the largest check batch) and the torch outputs."""
    out = {}
    with torch.inference_mode():
        for name, graph in graphs.items():
            inputs = {k: v.contiguous() for k, v in graph.example(max(CHECK_BATCHES), REFERENCE_SEED).items()}
            out[name] = Reference(inputs, graph.module(*inputs.values()).contiguous())
    return out


# ------------------------------------------------------------------------------------------------ checks


Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


def check_graph(run: Runner, ref: Reference, what: str) -> dict:
    """The exported graph against torch on the reference inputs at each check batch size: max abs errors."""
    errors, shapes_ok = {}, True
    for n in CHECK_BATCHES:
        got = np.asarray(run({k: v[:n].numpy() for k, v in ref.inputs.items()}))
        want = ref.output[:n].numpy()
        shapes_ok &= got.shape == want.shape
        errors[str(n)] = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    worst = max(errors.values())
    return {"against": "torch", "runtime": what, "max_abs_error_by_batch": errors, "max_abs_error": worst,
            "tolerance": TOLERANCE, "ok": bool(shapes_ok and worst <= TOLERANCE)}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """torch's exporters print progress on stdout and warn about deprecations: stdout carries the result."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ------------------------------------------------------------------------------------------------ the writers


def onnx_export(graph: ExportGraph, inputs: Inputs, path: Path) -> str:
    """torch.onnx.export, dynamo first (torch.export), the TorchScript-based exporter if that fails; a dynamic
    batch dimension on every input and the output. Returns which exporter wrote the file."""
    names, args = list(inputs), tuple(inputs.values())
    batch = torch.export.Dim("batch", min=1)
    shapes = tuple({0: batch} for _ in args)
    if _takes_varargs(graph.module):  # forward(*inputs): torch.export wants the shapes nested like the arguments
        shapes = (shapes,)
    try:
        with quiet():
            torch.onnx.export(graph.module, args, str(path), dynamo=True, input_names=names,
                              output_names=[graph.output], dynamic_shapes=shapes,
                              opset_version=OPSET, verbose=False)
        return "torch.onnx.export(dynamo=True)"
    except Exception:  # noqa: BLE001 (any failure of the new exporter: the older one may still do it)
        with quiet():
            torch.onnx.export(graph.module, args, str(path), dynamo=False, input_names=names,
                              output_names=[graph.output], opset_version=OPSET,
                              dynamic_axes={n: {0: "batch"} for n in [*names, graph.output]})
        return "torch.onnx.export(dynamo=False)"


def _takes_varargs(module: nn.Module) -> bool:
    import inspect

    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values())


def write_onnx(graphs: dict[str, ExportGraph], refs: dict[str, Reference], tmp: Path, model: Model) -> dict:
    """``NAME.onnx`` per graph, each checked with onnxruntime on the CPU."""
    ort = onnx_runtime()
    out = {}
    for name, graph in graphs.items():
        path = tmp / f"{name}.onnx"
        exporter = onnx_export(graph, refs[name].inputs, path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        check = check_graph(lambda feed: session.run(None, feed)[0], refs[name], f"onnxruntime {ort.__version__} CPU")
        out[name] = {"file": path.name, "exporter": exporter, "opset": OPSET, "check": check}
    return out


def write_torchscript(graphs: dict[str, ExportGraph], refs: dict[str, Reference], tmp: Path, model: Model) -> dict:
    """``NAME.pt`` per graph (torch.jit.trace), loaded back with ``torch.jit.load`` and checked."""
    out = {}
    for name, graph in graphs.items():
        path = tmp / f"{name}.pt"
        with quiet():
            torch.jit.trace(graph.module, tuple(refs[name].inputs.values()), check_trace=False).save(str(path))
            loaded = torch.jit.load(str(path))

        def run(feed: dict[str, np.ndarray], loaded=loaded) -> np.ndarray:
            with torch.inference_mode(), quiet():
                return loaded(*(torch.from_numpy(v) for v in feed.values())).numpy()

        check = check_graph(run, refs[name], f"torch.jit.load (torch {torch.__version__})")
        out[name] = {"file": path.name, "exporter": "torch.jit.trace", "check": check}
    return out


def write_folder(graphs: dict[str, ExportGraph], refs: dict[str, Reference], tmp: Path, model: Model) -> dict:
    """``model.safetensors`` (each network under its name), checked by loading the folder back as
    ``load_generator`` does; needs ``config.json`` first, so it writes a draft of it."""
    from safetensors.torch import save_file

    weights = {f"{name}.{k}": v.detach().cpu().contiguous().clone()
               for name, net in model.nets.items() for k, v in net.state_dict().items()}
    save_file(weights, str(tmp / EXPORT_WEIGHTS), metadata={"format": "pt"})
    os.chmod(tmp / EXPORT_WEIGHTS, 0o666 & ~_umask())  # safetensors writes 0600; the folder's other files follow umask
    (tmp / EXPORT_CONFIG).write_text(json.dumps(export_config(model, "folder", graphs, {}), indent=1))
    cfg, nets = exported_networks(tmp)
    again = export_graphs(cfg.model, nets)
    out = {}
    for name in graphs:
        def run(feed: dict[str, np.ndarray], g=again[name]) -> np.ndarray:
            with torch.inference_mode():
                return g.module(*(torch.from_numpy(v) for v in feed.values())).numpy()

        out[name] = {"file": None, "check": check_graph(run, refs[name], "ganforge (load_generator / load_translator)")}
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


WRITERS = {"onnx": write_onnx, "torchscript": write_torchscript, "folder": write_folder}


# ------------------------------------------------------------------------------------------------ config.json


def _tensor_spec(t: torch.Tensor) -> dict:
    return {"shape": ["batch", *t.shape[1:]], "dtype": str(t.dtype).replace("torch.", "")}


def export_config(model: Model, fmt: str, graphs: dict[str, ExportGraph], written: dict,
                  refs: Optional[dict[str, Reference]] = None) -> dict:
    """config.json: what the model is (family, preset, sizes, latent, classes, value range), what each graph takes
    and gives, how it was checked, where it came from, and the run's full config."""
    cfg = model.cfg
    mc, family = cfg.model, get_family(cfg.model.family)
    kind = output_kind(mc)
    graph_info = {}
    for name, graph in graphs.items():
        info = {"description": graph.description, **written.get(name, {})}
        if refs is not None:
            info["inputs"] = {k: _tensor_spec(v) for k, v in refs[name].inputs.items()}
            info["output"] = {"name": graph.output, **_tensor_spec(refs[name].output)}
        graph_info[name] = info
    return {
        "ganforge_export": 1, "format": fmt, "family": mc.family, "preset": cfg.name,
        "image_size": mc.image_size, "channels": mc.channels, "z_dim": getattr(mc, "z_dim", None),
        "z_dist": getattr(mc, "z_dist", None), "conditional": family.conditional,
        "num_classes": getattr(mc, "num_classes", None), "output": kind,
        "value_range": [-1.0, 1.0] if output_of(mc).images else None,
        "weights": "EMA" if cfg.train.ema.enabled else "trained", "networks": export_networks(mc),
        "graphs": graph_info, "reference": {"file": "reference.npz", "seed": REFERENCE_SEED,
                                            "n": max(CHECK_BATCHES)},
        "source": source_info(model), "run_config": cfg.model_dump(mode="json"),
    }


def source_info(model: Model) -> dict:
    """The run directory, checkpoint and training step the weights come from."""
    step = None
    if model.checkpoint is not None and (model.checkpoint / "state.json").is_file():
        step = json.loads((model.checkpoint / "state.json").read_text()).get("step")
    elif is_export(model.source):
        return json.loads((model.source / EXPORT_CONFIG).read_text()).get("source", {})
    return {"run_dir": str(model.source), "checkpoint": str(model.checkpoint) if model.checkpoint else None,
            "step": step}


def run_metrics(source: Path) -> Optional[dict]:
    """The run's eval.json (``ganforge evaluate`` / the final evaluation), when it has one."""
    path = Path(source) / "eval.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ writing


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out``, renamed onto it at the end; on any failure it is removed, with the
    parent folders made for it."""
    from ganforge.io_utils import first_existing, fsync_dir

    out = Path(os.path.abspath(out))
    base = first_existing(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o755)
    try:
        yield tmp
        if out.is_dir():
            out.rmdir()  # empty: check_request refused one with files
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        made = out.parent
        while made != base and made.is_dir() and not any(made.iterdir()):
            made.rmdir()
            made = made.parent
        raise


def save_references(refs: dict[str, Reference], path: Path) -> None:
    """reference.npz: ``GRAPH.INPUT`` and ``GRAPH.OUTPUT`` arrays, readable with numpy alone."""
    arrays = {}
    for name, ref in refs.items():
        arrays.update({f"{name}.{k}": v.numpy() for k, v in ref.inputs.items()})
        arrays[f"{name}.output"] = ref.output.numpy()
    np.savez(path, **arrays)


def export(run_dir: Path, fmt: str, out: Path, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    """Export a run: graphs (or weights), config.json, README.md and reference.npz in ``out``; returns config.json.

    Refused with one line (nothing written) on bad input, and when an exported graph does not reproduce torch's
    outputs within ``TOLERANCE``."""
    from ganforge.apps.model_card import model_card

    check_request(Path(run_dir), fmt, Path(out))
    model = load_model(Path(run_dir))
    graphs = export_graphs(model.cfg.model, model.nets)
    refs = references(graphs)
    with staging(Path(out)) as tmp:
        save_references(refs, tmp / "reference.npz")
        written = WRITERS[fmt](graphs, refs, tmp, model)
        meta = export_config(model, fmt, graphs, written, refs)
        (tmp / EXPORT_CONFIG).write_text(json.dumps(meta, indent=1))
        (tmp / "README.md").write_text(model_card(meta, run_metrics(model.source)))
        for name, info in written.items():
            log(check_line(name, info))
        bad = [name for name, info in written.items() if not info["check"]["ok"]]
        if bad:
            raise UserError(f"the exported {', '.join(bad)} did not reproduce torch's outputs within {TOLERANCE:g} "
                            f"(max abs error {max(written[b]['check']['max_abs_error'] for b in bad):.3g}); nothing "
                            "written")
    return meta


def check_line(name: str, info: dict) -> str:
    """One line per graph: what was compared, the errors per batch size, and the verdict."""
    c = info["check"]
    errs = ", ".join(f"{e:.2g} at batch {n}" for n, e in c["max_abs_error_by_batch"].items())
    verdict = "ok" if c["ok"] else "FAILED"
    return f"{info['file'] or name}: {c['runtime']} vs torch: max abs error {errs} (tolerance {c['tolerance']:g}): {verdict}"
