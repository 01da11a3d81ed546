"""The model card (``README.md``) of an exported model, Hugging Face Hub style: what the model is, how it was
trained and scored, and how to run it with onnxruntime, plain torch or ganforge, written from ``config.json`` alone
(and the run's ``eval.json``) so that it always says what the folder holds."""
from __future__ import annotations

from typing import Optional


def model_card(meta: dict, metrics: Optional[dict]) -> str:
    """The whole card: front matter, the model, its metrics, its graphs, its latents, how to use it."""
    parts = [_front_matter(meta), _summary(meta), _metrics(metrics), _graphs(meta), _latents(meta),
             _usage(meta), _files(meta)]
    return "\n".join(p for p in parts if p)


def _front_matter(meta: dict) -> str:
    tags = ["gan", "ganforge", meta["family"], meta["format"]]
    lib = {"onnx": "onnx", "torchscript": "pytorch", "folder": "ganforge"}[meta["format"]]
    return "---\nlibrary_name: " + lib + "\ntags:\n" + "".join(f"- {t}\n" for t in tags) + "---\n"


def _summary(meta: dict) -> str:
    run, src = meta["run_config"], meta["source"]
    data = run.get("data", {})
    limit = f" (first {data['limit']} items)" if data.get("limit") else ""
    size = f"{meta['channels']}x{meta['image_size']}x{meta['image_size']}"
    rows = [("family", meta["family"]), ("preset", meta["preset"]), ("training data", f"{data.get('spec')}{limit}"),
            ("training steps", src.get("step")), ("weights", meta["weights"] + " generator weights"),
            ("output", f"{meta['output']}, {size}" + (", values in [-1, 1]" if meta["value_range"] else "")),
            ("classes", meta["num_classes"] if meta["conditional"] else None),
            ("checkpoint", src.get("checkpoint"))]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows if v is not None)
    desc = f"{run['description']}\n\n" if run.get("description") else ""
    return (f"# {meta['preset']}: a {meta['family']} model exported by ganforge\n\n{desc}"
            f"| | |\n|---|---|\n{table}\n")


def _metrics(metrics: Optional[dict]) -> str:
    if not metrics or not isinstance(metrics.get("metrics"), dict):
        return "## Metrics\n\nThe run has no `eval.json` (run `ganforge evaluate RUN_DIR` to score it).\n"
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, (int, float)) else f"| {k} | {v} |"
                     for k, v in metrics["metrics"].items())
    how = (f"extractor `{metrics.get('extractor')}`, {metrics.get('n_generated')} generated against "
           f"{metrics.get('n_reference')} reference items ({metrics.get('ref')})")
    proto = metrics.get("protocol") or {}
    if proto:  # how the numbers were made, so that someone else can make them again
        how += (f"; extractor weights `{proto.get('weights')}`, resized by {proto.get('resize_filter')}, reference "
                f"split `{proto.get('reference_split')}`")
    copies = metrics.get("copies")
    if isinstance(copies, dict) and "share" in copies:
        how += (f". Copy check: {copies['share']:.1%} of the samples are copies of one of "
                f"{copies.get('n_training')} training images ({copies.get('rule')})")
    return f"## Metrics\n\nFrom the run's `eval.json`: {how}.\n\n| metric | value |\n|---|---|\n{rows}\n"


def _graphs(meta: dict) -> str:
    lines = ["## What it computes\n", "Every input and output has the batch as its first dimension (any size).\n",
             "| graph | inputs | output | what | check (max abs error vs torch) |", "|---|---|---|---|---|"]
    for name, g in meta["graphs"].items():
        ins = ", ".join(f"`{k}` {v['dtype']} {_shape(v)}" for k, v in g["inputs"].items())
        out = g["output"]
        check = g.get("check", {})
        err = ", ".join(f"{e:.2g} (batch {n})" for n, e in check.get("max_abs_error_by_batch", {}).items())
        lines.append(f"| {g.get('file') or name} | {ins} | `{out['name']}` {out['dtype']} {_shape(out)} | "
                     f"{g['description']} | {err} with {check.get('runtime', '')} |")
    return "\n".join(lines) + "\n"


def _shape(spec: dict) -> str:
    return "(" + ", ".join(map(str, spec["shape"])) + ")"


def _latents(meta: dict) -> str:
    z_dim, dist = meta.get("z_dim"), meta.get("z_dist")
    ref = ("`reference.npz` holds, per graph, the inputs this export was checked with (`GRAPH.INPUT`, drawn from "
           f"seed {meta['reference']['seed']} exactly as `ganforge sample --seed {meta['reference']['seed']}` draws "
           "them) and the outputs torch gave for them (`GRAPH.output`): numpy alone can check a runtime against it.")
    if not z_dim or not any("z" in g["inputs"] for g in meta["graphs"].values()):
        return f"## Inputs\n\n{ref}\n"
    draw = ("torch.rand(n, {z}, generator=torch.Generator().manual_seed(seed)) * 2 - 1" if dist == "uniform"
            else "torch.randn(n, {z}, generator=torch.Generator().manual_seed(seed))").format(z=z_dim)
    np_draw = (f"rng.uniform(-1, 1, (n, {z_dim})).astype(np.float32)" if dist == "uniform"
               else f"rng.standard_normal((n, {z_dim}), dtype=np.float32)")
    labels = (f" Class labels are int64 in [0, {meta['num_classes']}); `ganforge sample` without `--labels` "
              f"draws every class in turn (`np.arange(n) % {meta['num_classes']}`)." if meta["conditional"] else "")
    psi = (" `psi` is the truncation per sample (float32, shape (N,)): 1 leaves w as it is, 0 gives the mean w's "
           "image; the reference uses 0.7." if any("psi" in g["inputs"] for g in meta["graphs"].values()) else "")
    return (f"## Latents\n\nz is float32 of shape (N, {z_dim}), drawn {'U(-1, 1)' if dist == 'uniform' else 'N(0, 1)'}."
            f" `ganforge sample --seed S` draws exactly `z = {draw}`; any other source of the same distribution "
            f"gives other images of the same model, e.g. with numpy `rng = np.random.default_rng(S); z = {np_draw}`."
            f"{labels}{psi}\n\n{ref}\n")


def _main_graph(meta: dict) -> tuple[str, dict]:
    name = next(iter(meta["graphs"]))
    return name, meta["graphs"][name]


def _usage(meta: dict) -> str:
    name, g = _main_graph(meta)
    feed = ", ".join(f'"{k}": ref["{name}.{k}"]' for k in g["inputs"])
    to_uint8 = ("images = ((out + 1) * 127.5).round().clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)  "
                "# uint8 NHWC\n") if meta["value_range"] else ""
    head = "## How to use it\n\n"
    if meta["format"] == "onnx":
        return head + ("With onnxruntime and numpy only (`pip install onnxruntime numpy`):\n\n```python\n"
                       "import numpy as np\nimport onnxruntime as ort\n\n"
                       f'session = ort.InferenceSession("{g["file"]}", providers=["CPUExecutionProvider"])\n'
                       'ref = np.load("reference.npz")\n'
                       f"out = session.run(None, {{{feed}}})[0]\n"
                       f'print(np.abs(out - ref["{name}.output"]).max())  # <= 1e-4\n' + to_uint8 + "```\n")
    if meta["format"] == "torchscript":
        args = ", ".join(f'torch.from_numpy(ref["{name}.{k}"])' for k in g["inputs"])
        return head + ("With plain torch (no ganforge):\n\n```python\nimport numpy as np\nimport torch\n\n"
                       f'model = torch.jit.load("{g["file"]}").eval()\nref = np.load("reference.npz")\n'
                       f"with torch.no_grad():\n    out = model({args}).numpy()\n"
                       f'print(np.abs(out - ref["{name}.output"]).max())  # <= 1e-4\n' + to_uint8 + "```\n\n"
                       + TORCHSCRIPT_TRUST)
    use = ('g = load_generator("THIS_FOLDER")\nimages = g.sample(16, seed=0)  # (16, C, H, W) float in [-1, 1]\n'
           if not meta["output"] == "translations" else
           'translator = load_translator("THIS_FOLDER", "AtoB")\nout = translator(images)  # float NCHW in [-1, 1]\n')
    imp = "load_translator" if meta["output"] == "translations" else "load_generator"
    mod = "translate" if meta["output"] == "translations" else "sampling"
    return head + (f"With ganforge (`pip install ganforge`), which rebuilds the networks and loads "
                   f"`{EXPORT_WEIGHTS_NAME}`:\n\n```python\nfrom ganforge.apps.{mod} import {imp}\n\n{use}```\n\n"
                   "The same folder works with the command line (`ganforge sample THIS_FOLDER --out grid.png`, "
                   "`ganforge translate THIS_FOLDER ...`). For onnxruntime or plain torch, export the run with "
                   "`ganforge export RUN_DIR --format onnx` or `--format torchscript`.\n")


EXPORT_WEIGHTS_NAME = "model.safetensors"
TORCHSCRIPT_TRUST = ("**Load only trusted TorchScript files.** A `.pt` TorchScript archive is a zip holding "
                     "pickle-based data and code that `torch.jit.load` runs; a file from someone else could hold "
                     "anything. To share this model, or to load one from elsewhere, use the safe formats: ONNX "
                     "(`ganforge export RUN_DIR --format onnx`) or the folder format (`--format folder`, weights in "
                     "safetensors), which hold no code.\n")


def _files(meta: dict) -> str:
    files = [(g["file"], f"the `{n}` graph") for n, g in meta["graphs"].items() if g.get("file")]
    if meta["format"] == "folder":
        files.append((EXPORT_WEIGHTS_NAME, "the weights, each network's under its name ("
                      + ", ".join(f"`{v}.`" for v in sorted(set(meta["networks"].values()))) + ")"))
    files += [("config.json", "the run's full config (`run_config`), the model's sizes, each graph's inputs and "
               "outputs, and the export-time check"), ("reference.npz", "reference inputs and outputs"),
              ("README.md", "this card")]
    return "## Files\n\n" + "\n".join(f"- `{f}`: {what}" for f, what in files) + "\n"
