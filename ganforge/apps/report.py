"""``ganforge report RUN_DIR [RUN_DIR ...] --out report.html``: one self-contained HTML page per run or comparison.

Every picture is embedded as a data URI and the one script is inline, so the file opens anywhere, offline, and
can be mailed; the layout is a single column that fits a phone. For one run: the resolved config, curves of the
losses and of the family's own statistics with guard events marked, periodic metrics, the fixed-latent grids over
training under a slider, real vs fake (translations for image-to-image runs) and the metric table. For several:
only the config keys that differ, curves overlaid, final samples side by side, one metric table. ``ganforge
train`` writes ``report.html`` into every finished run directory.
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from ganforge.errors import UserError
from ganforge.io_utils import atomic_write_text
from ganforge.io_utils import read_records
from ganforge.train.fingerprint import flatten

MAX_FRAMES = 60  # grids under the slider: evenly chosen, first and last always kept
SKIP_KEYS = ("step", "epoch", "time", "img_s", "skipped")  # logged, but not curves worth a panel
EVENT_COLORS = {"rollback": "red", "stop": "red", "collapse": "orange", "domination": "orange",
                "divergence": "orange"}
PICTURES = ("real_vs_fake.png", "translations.png", "copies.png")  # copies.png: the copy check's closest pairs


@dataclass
class RunData:
    path: Path
    name: str
    config: dict
    records: list[dict]
    frames: list[Path]
    metrics: dict[str, float] = field(default_factory=dict)
    evaluated: dict = field(default_factory=dict)  # the run's eval.json, when it has one

    @property
    def curves(self) -> list[dict]:
        return [r for r in self.records if "step" in r and "event" not in r and "eval" not in r]

    @property
    def events(self) -> list[dict]:
        return [r for r in self.records if "event" in r]

    @property
    def evals(self) -> list[dict]:
        return [r for r in self.records if isinstance(r.get("eval"), dict)]


def load_run(path: Path) -> RunData:
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise UserError(f"{path} is not a run directory (no config.yaml): pass a directory 'ganforge train' wrote")
    from ganforge.config import read_yaml

    config = read_yaml(path / "config.yaml", "the run's config is damaged; every checkpoint keeps a copy (the "
                                             "'config' entry of its state.json)")
    records = read_records(path / "metrics.jsonl")
    frames = sorted((path / "samples").glob("e*-s*.png")) if (path / "samples").is_dir() else []
    run = RunData(path, path.name, config, records, frames)
    run.metrics = final_metrics(run)
    return run


def read_eval(path: Path) -> dict:
    """The run's ``eval.json`` ({} when absent or unreadable)."""
    try:
        data = json.loads((path / "eval.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def final_metrics(run: RunData) -> dict[str, float]:
    """``ganforge evaluate``'s eval.json when present, else the last periodic evaluation."""
    run.evaluated = read_eval(run.path)
    if run.evaluated:
        values = run.evaluated.get("metrics", {})
        return {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}
    return {k: float(v) for k, v in (run.evals[-1]["eval"] if run.evals else {}).items()
            if isinstance(v, (int, float))}


def headline(result: dict) -> str:
    """eval.json in one line: the headline figures with their extractor, against what, the copy check, and a
    warning when modes are dropped."""
    from ganforge.metrics.pipeline import summary_line

    if not isinstance(result.get("metrics"), dict) or "n_generated" not in result:
        return ""
    proto = result.get("protocol") or {}
    line = summary_line(result)
    if proto:
        line += (f" against {proto.get('n_reference', 0):,} images of {proto.get('reference', result.get('ref'))} "
                 f"(split {proto.get('reference_split', '?')}); weights {str(proto.get('weights', 'none'))[:19]}")
    copies = result.get("copies")
    if isinstance(copies, dict) and "share" in copies:
        line += (f"; copy check: {copies['share']:.1%} of the samples copy one of {copies.get('n_training', 0):,} "
                 "training images")
    div = result.get("diversity")
    if isinstance(div, dict) and div.get("modes_dropped"):
        line += (f"; modes dropped: coverage {div['coverage']:.2f} where the data itself reaches "
                 f"{div['expected_coverage']:.2f}")
    return line


# ---------------------------------------------------------------------------------------------- pictures


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def file_uri(path: Path) -> str:
    return data_uri(Path(path).read_bytes())


def figure_uri(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return data_uri(buf.getvalue())


def curve_keys(runs: Sequence[RunData]) -> list[str]:
    keys: list[str] = []
    for run in runs:
        for rec in run.curves:
            keys += [k for k, v in rec.items() if k not in keys and k not in SKIP_KEYS
                     and isinstance(v, (int, float)) and not k.startswith("lr_")]
    return keys


def curves_figure(runs: Sequence[RunData], keys: Sequence[str], series: str = "curves"):
    """One panel per key, a line per run; guard events as vertical lines (red: rollback/stop, orange: warnings)."""
    from ganforge.viz import _new_figure

    cols = 2 if len(keys) > 1 else 1
    rows = (len(keys) + cols - 1) // cols
    fig = _new_figure((10, 2.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax, key in zip(axes, keys):
        for run in runs:
            pts = [(r["step"], (r["eval"] if series == "evals" else r).get(key))
                   for r in (run.evals if series == "evals" else run.curves)]
            pts = [(s, v) for s, v in pts if isinstance(v, (int, float))]
            if pts:
                ax.plot(*zip(*pts), label=run.name if len(runs) > 1 else None, linewidth=1.2)
            for e in run.events:
                ax.axvline(e["step"], color=EVENT_COLORS.get(e["event"], "grey"), alpha=0.6, linewidth=0.9)
        ax.set_title(key, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[len(keys):]:
        ax.axis("off")
    if len(runs) > 1:
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def pick_frames(frames: Sequence[Path], limit: int = MAX_FRAMES) -> list[Path]:
    if len(frames) <= limit:
        return list(frames)
    idx = np.unique(np.linspace(0, len(frames) - 1, limit).round().astype(int))
    return [frames[i] for i in idx]


def frame_step(frame: Path) -> int:
    return int(frame.stem.split("-s")[-1])


# ---------------------------------------------------------------------------------------------- html


def config_section(runs: Sequence[RunData]) -> str:
    if len(runs) == 1:
        text = html.escape(yaml.safe_dump(runs[0].config, sort_keys=False))
        return f"<h2>Config</h2><details><summary>the resolved config.yaml</summary><pre>{text}</pre></details>"
    flat = [flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f if len({repr(g.get(k)) for g in flat}) > 1})
    if not keys:
        return "<h2>Config</h2><p>The runs' configs are identical.</p>"
    head = "".join(f"<th>{html.escape(r.name)}</th>" for r in runs)
    body = "".join(f"<tr><td><code>{html.escape(k)}</code></td>"
                   + "".join(f"<td>{html.escape(str(f.get(k, '-')))}</td>" for f in flat) + "</tr>" for k in keys)
    return f"<h2>Config: the keys that differ</h2><table><tr><th>key</th>{head}</tr>{body}</table>"


def metrics_section(runs: Sequence[RunData]) -> str:
    names = sorted({k for r in runs for k in r.metrics})
    if not names:
        return ("<h2>Metrics</h2><p>No evaluation yet: <code>ganforge evaluate RUN_DIR</code> writes "
                "<code>eval.json</code>, or train with <code>--set eval.every=N</code>.</p>")
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(f"<tr><td>{html.escape(r.name)}</td>"
                   + "".join(f"<td>{r.metrics[n]:.4g}</td>" if n in r.metrics else "<td>-</td>" for n in names)
                   + "</tr>" for r in runs)
    return f"<h2>Metrics</h2><table><tr><th>run</th>{head}</tr>{body}</table>"


def headline_section(runs: Sequence[RunData]) -> str:
    """The final score of each run that has one, in a line, first thing on the page."""
    lines = [(r.name, headline(r.evaluated)) for r in runs]
    items = [f"<p class='headline'><b>{html.escape(n)}</b>: {html.escape(t)}</p>" if len(runs) > 1 else
             f"<p class='headline'><b>Score</b>: {html.escape(t)}</p>" for n, t in lines if t]
    return "".join(items)


def events_section(runs: Sequence[RunData]) -> str:
    items = [f"<li>{html.escape(r.name)}, step {e['step']}: <b>{html.escape(str(e['event']))}</b> "
             f"{html.escape(str(e.get('message', '')))}</li>" for r in runs for e in r.events]
    return f"<h2>Guard events</h2><ul>{''.join(items)}</ul>" if items else ""


def slider_section(run: RunData, index: int) -> str:
    frames = pick_frames(run.frames)
    if not frames:
        return ""
    uris = json.dumps([file_uri(f) for f in frames])
    steps = json.dumps([frame_step(f) for f in frames])
    last = len(frames) - 1
    return (f"<h3>{html.escape(run.name)}: samples over training</h3>"
            f"<input type='range' class='slider' id='slider{index}' min='0' max='{last}' value='{last}' "
            f"data-frames='{index}'> <span id='label{index}'>step {frame_step(frames[-1])}</span><br>"
            f"<img id='grid{index}' class='grid' alt='samples of {html.escape(run.name)}' "
            f"src='{file_uri(frames[-1])}'>"
            f"<script>FRAMES[{index}] = {uris}; STEPS[{index}] = {steps};</script>")


SCRIPT = """<script>
document.querySelectorAll('input.slider').forEach(function (s) {
  s.addEventListener('input', function () {
    var i = s.dataset.frames;
    document.getElementById('grid' + i).src = FRAMES[i][s.value];
    document.getElementById('label' + i).textContent = 'step ' + STEPS[i][s.value];
  });
});
</script>"""

STYLE = """<style>
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: auto; padding: 0.5em; }
img { max-width: 100%; height: auto; image-rendering: pixelated; }
table { border-collapse: collapse; display: block; overflow-x: auto; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; font-size: 0.8em; }
.side { display: flex; flex-wrap: wrap; gap: 0.5em; } .side figure { flex: 1 1 300px; margin: 0; }
input.slider { width: 100%; } img.grid { width: min(100%, 560px); }
</style>"""


def render(runs: Sequence[RunData]) -> str:
    title = "ganforge report: " + ", ".join(r.name for r in runs)
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}"
             f"</title>{STYLE}<script>var FRAMES = {{}}, STEPS = {{}};</script></head><body>",
             f"<h1>{html.escape(title)}</h1>", headline_section(runs), metrics_section(runs),
             "<h2>Samples</h2>" + "".join(slider_section(r, i) for i, r in enumerate(runs))]
    keys = curve_keys(runs)
    if keys:
        parts.append(f"<h2>Training curves</h2><img alt='training curves' src='{figure_uri(curves_figure(runs, keys))}'>")
    eval_keys = sorted({k for r in runs for e in r.evals for k, v in e["eval"].items() if isinstance(v, (int, float))})
    if eval_keys:
        fig = curves_figure(runs, eval_keys, series="evals")
        parts.append(f"<h2>Periodic evaluation</h2><img alt='metric curves' src='{figure_uri(fig)}'>")
    parts.append(events_section(runs))
    if len(runs) > 1:
        finals = "".join(f"<figure><img alt='final samples of {html.escape(r.name)}' src='{file_uri(r.frames[-1])}'>"
                         f"<figcaption>{html.escape(r.name)}</figcaption></figure>" for r in runs if r.frames)
        parts.append(f"<h2>Final samples side by side</h2><div class='side'>{finals}</div>")
    for r in runs:
        for pic in PICTURES:
            if (r.path / pic).is_file():
                parts.append(f"<h3>{html.escape(r.name)}: {pic[:-4].replace('_', ' ')}</h3>"
                             f"<img alt='{pic} of {html.escape(r.name)}' src='{file_uri(r.path / pic)}'>")
    parts += [config_section(runs), SCRIPT, "</body></html>"]
    return "\n".join(p for p in parts if p)


def write_report(run_dirs: Sequence[Path], out: Path) -> Path:
    """Render the runs' report into ``out`` atomically; returns ``out``."""
    if not run_dirs:
        raise UserError("name at least one run directory")
    runs = [load_run(Path(d)) for d in run_dirs]
    atomic_write_text(Path(out), render(runs))
    return Path(out)
