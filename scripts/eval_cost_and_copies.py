"""Issue 35: what the copy check flags, and what scoring 2,000 samples at 32 px costs beyond the extractor.

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/eval_cost_and_copies.py [WORKDIR]

Part 1 (the copy check): for the embedded digits, a procedural colour set (``ganforge.data.shapes``) and the
icon colour set (``ganforge.bench.colorset``), the share flagged among training images
given back as they are, with noise, mirrored, and among held-out images; ``mnist-cnn`` features.
Part 2 (cost): ``ganforge evaluate`` of 2,000 colour images at 32 px against a folder of 10,000, with
fid,prc,coverage and then with the copy check; CPU seconds in the extractor, in reading the folder and the rest.
Results are in docs/BENCHMARKS.md ("Scoring any run: cost and the copy check").
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch
torch.set_num_threads(1)
from ganforge.data.shapes import colour_shapes
from ganforge.data import build_spec
from ganforge.metrics.extractors import get_extractor
from ganforge.metrics.pipeline import thumbnails
from ganforge.metrics.copies import copy_check
from ganforge.bench.colorset import load_colorset
def t(a): return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 127.5 - 1


def features(ext, x):
    return torch.cat([ext(x[i:i + 500])["features"] for i in range(0, len(x), 500)]).numpy()


sets = {}
sets["embedded digits (train 4,000 / test 1,000)"] = (
    build_spec("mnist-embedded", channels=1, size=32, split="train").tensor,
    build_spec("mnist-embedded", channels=1, size=32, split="test").tensor, ("mnist-cnn",))
sets["colour shapes (2,000 / 1,000)"] = (t(colour_shapes(2000, 0)), t(colour_shapes(1000, 1)),
                                         ("mnist-cnn", "random-conv", "ssl-conv"))
cs = load_colorset(size=32, seed=0)
sets[f"icon colour set (train {len(cs.split('train')[0]):,} / test {len(cs.split('test')[0]):,})"] = (
    cs.tensor("train"), cs.tensor("test"), ("mnist-cnn", "random-conv", "ssl-conv"))
g = torch.Generator().manual_seed(0)
print("| data | extractor | training images as samples | + noise sigma 0.05 | mirrored | held-out images | "
      "CPU s (copy check only) |")
print("|---|---|---:|---:|---:|---:|---:|")
for name, (tr, te, extractors) in sets.items():
    k = min(1000, len(te))
    idx = torch.linspace(0, len(tr) - 1, k).long()
    rows = {"train": tr[idx], "noise": (tr[idx] + 0.05 * torch.randn(tr[idx].shape, generator=g)).clamp(-1, 1),
            "flip": tr[idx].flip(-1), "held": te[:k]}
    pt = thumbnails(tr)
    for ext_name in extractors:  # ssl-conv is fitted on the training split, as a run's final evaluation fits it
        ext = get_extractor(ext_name, "cpu", reference=tr) if ext_name == "ssl-conv" else \
            get_extractor(ext_name, "cpu")
        ft = features(ext, tr)
        out, cpu = [], 0.0
        for key, x in rows.items():
            fx, px = features(ext, x), thumbnails(x)
            t0 = time.process_time()
            out.append(copy_check(fx, ft, px, pt).share)
            cpu += time.process_time() - t0
        print(f"| {name} | {ext_name} | " + " | ".join(f"{s:.1%}" for s in out) + f" | {cpu / 4:.2f} |")

# ---------------------------------------------------------------------------------------------- part 2: cost
from PIL import Image  # noqa: E402

import ganforge.apps.evaluate as ev  # noqa: E402
import ganforge.data as gd  # noqa: E402
import ganforge.metrics.pipeline as pl  # noqa: E402
import ganforge.train.reference as rf  # noqa: E402

root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/eval_cost")
if not (root / "train").is_dir():
    (root / "train").mkdir(parents=True)
    for i, im in enumerate(colour_shapes(10_000, seed=0)):
        Image.fromarray(im).save(root / "train" / f"{i:05d}.png")
    np.savez(root / "gen.npz", colour_shapes(2000, seed=1))
spent = {"extractor": 0.0, "folder": 0.0, "metrics": 0.0}


def timed(fn, key):
    def call(*a, **kw):
        t0 = time.process_time()
        try:
            return fn(*a, **kw)
        finally:
            spent[key] += time.process_time() - t0
    return call


class Timed:
    def __init__(self, inner):
        self.inner, self.name, self.feature_dim = inner, inner.name, inner.feature_dim
        self.num_classes = inner.num_classes

    def __call__(self, x):
        return timed(self.inner, "extractor")(x)


real_collect = pl.collect
ev.collect = rf.collect = lambda src, extractor, *a, **kw: real_collect(src, Timed(extractor), *a, **kw)
gd.build_spec = timed(gd.build_spec, "folder")
ev.compute = timed(ev.compute, "metrics")
print("\n| extractor | metrics | CPU s in all | in the extractor | reading the folder | metric math | the rest |")
print("|---|---|---:|---:|---:|---:|---:|")
for ext_name in ("mnist-cnn", "random-conv"):
    for metrics in (["fid", "prc"], ["fid", "prc", "copies"]):
        spent.update(extractor=0.0, folder=0.0, metrics=0.0)
        t0 = time.process_time()
        ev.evaluate(root / "gen.npz", f"folder:{root / 'train'}", metrics, n=2000, extractor=ext_name,
                    log=lambda s: None)
        total = time.process_time() - t0
        rest = total - sum(spent.values())
        print(f"| {ext_name} | {','.join(metrics)} | {total:.2f} | {spent['extractor']:.2f} | {spent['folder']:.2f} | "
              f"{spent['metrics']:.2f} | {rest:.2f} |")
