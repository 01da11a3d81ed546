"""``ganforge bench metric-agreement``: which feature extractor ranks image sets the way a class judge does?

For each data set (the colour icons of ``bench/colorset.py``; the embedded digits):

* class judges (``bench/judge.py``, three seeds of one recipe) are trained on one part (the icons' train split;
  the digits' train split);
* the other part (icons: val + test; digits: the 1,000 held-out test digits, which no training run sees) is cut
  in two: the reference, and a pool every scored set is drawn from;
* sets of clearly different quality are made from the pool: the reals, noised, blurred and downscaled reals at
  several strengths, colour-shifted reals, reals mixed with noise, one-class subsets, collapsed sets (one image,
  a few images, repeated) and pure noise; and samples of real GANs (two families, several budgets, trained on the
  judge's part: ``bench/gan_sets.py``);
* each set gets a Fréchet distance to the reference in each judge's feature space and in each candidate's; the
  ground truth is each set's mean rank over the judges; Spearman's rho between it and a candidate's ranking says
  how far the candidate can be trusted, and the rho between two judges how far one judge can. Precision /
  recall / density / coverage (k = 5) in each candidate's space say whether the one-class and collapsed sets are
  flagged (recall under half the clean reals', or modes dropped: ``metrics.prdc.drops_modes``), and which of all
  the sets the mode-drop rule alone names (it should name the one-class and collapsed ones, and no other).

Nothing is downloaded: candidates are the offline extractors plus raw pixels as a floor.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

DATASETS = ("colour", "digits")
CANDIDATES = ("pixels", "random-conv", "random-conv-x4", "ssl-conv")
FLAG_KINDS = ("one-class", "collapsed")


@dataclass
class Part:
    """One data set split for the bench: judge training images, the reference, and the pool sets come from."""

    name: str
    judge_x: torch.Tensor
    judge_y: torch.Tensor
    ref: torch.Tensor
    pool: torch.Tensor
    pool_y: torch.Tensor
    classes: int
    flip: bool  # whether a mirrored image is still of its class (icons yes, digits no)


def _halves(x: torch.Tensor, y: torch.Tensor, seed: int, limit: Optional[int]) -> tuple:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    if limit:
        order = order[:2 * limit]
    half = len(order) // 2
    return x[order[:half]], x[order[half:]], y[order[half:]]


def colour_part(seed: int = 0, limit: Optional[int] = None, judge_limit: Optional[int] = None) -> Part:
    from ganforge.bench.colorset import load_colorset

    cs = load_colorset(32, 0, log=lambda s: None)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # noqa: E731
    jx, jy = cs.split("train")
    idx = np.concatenate([cs.indices("val"), cs.indices("test")])
    ref, pool, pool_y = _halves(to_t(cs.images[idx]), torch.from_numpy(cs.labels[idx]), seed, limit)
    jx, jy = to_t(jx)[:judge_limit], torch.from_numpy(jy)[:judge_limit]
    return Part("colour", jx, jy, ref, pool, pool_y, len(cs.classes), flip=True)


def digits_part(seed: int = 0, limit: Optional[int] = None, judge_limit: Optional[int] = None) -> Part:
    from ganforge.data.embedded import build

    train, test = build(1, 32, split="train"), build(1, 32, split="test")
    ref, pool, pool_y = _halves(test.tensor, test.labels, seed, limit)
    return Part("digits", train.tensor[:judge_limit], train.labels[:judge_limit], ref, pool, pool_y, 10, flip=False)


# ------------------------------------------------------------------ the sets

def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _down(x: torch.Tensor, factor: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(h // factor, w // factor), mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def _shift_colour(x: torch.Tensor, amount: float) -> torch.Tensor:
    """Colour: red up, blue down; grey: a brightness lift. What a generator with a tint bias draws."""
    if x.shape[1] == 3:
        return (x + torch.tensor([amount, 0.0, -amount]).view(1, 3, 1, 1)).clamp(-1, 1)
    return (x + amount).clamp(-1, 1)


def _resample(x: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` images drawn from ``x``: all of them when there are enough, else with repeats."""
    if len(x) >= n:
        return x[torch.randperm(len(x), generator=gen)[:n]]
    return x[torch.randint(0, len(x), (n,), generator=gen)]


def quality_sets(pool: torch.Tensor, pool_y: torch.Tensor, seed: int = 0) -> list[tuple[str, str, torch.Tensor]]:
    """(name, kind, images) for every scored set; kind is graded, one-class or collapsed."""
    gen = torch.Generator().manual_seed(seed)
    n = len(pool)
    noise = lambda s: (pool + s * torch.randn(pool.shape, generator=gen)).clamp(-1, 1)  # noqa: E731
    counts = torch.bincount(pool_y)
    big = int(counts.argmax())
    second = int(torch.argsort(counts, descending=True)[1])
    uniform = torch.rand(pool.shape, generator=gen) * 2 - 1
    mixed = pool.clone()
    half = torch.randperm(n, generator=gen)[: n // 2]
    mixed[half] = uniform[half]
    sets = [("reals", "graded", pool),
            ("noise s=0.05", "graded", noise(0.05)), ("noise s=0.15", "graded", noise(0.15)),
            ("noise s=0.4", "graded", noise(0.4)),
            ("blur s=0.7", "graded", _blur(pool, 0.7)), ("blur s=1.5", "graded", _blur(pool, 1.5)),
            ("downscaled x2", "graded", _down(pool, 2)), ("downscaled x4", "graded", _down(pool, 4)),
            ("colour shift 0.15", "graded", _shift_colour(pool, 0.15)),
            ("colour shift 0.4", "graded", _shift_colour(pool, 0.4)),
            ("half reals, half noise", "graded", mixed),
            (f"one class ({big})", "one-class", _resample(pool[pool_y == big], n, gen)),
            (f"one class ({second})", "one-class", _resample(pool[pool_y == second], n, gen)),
            ("10 images repeated", "collapsed", _resample(pool[:10], n, gen)),
            ("1 image repeated", "collapsed", pool[:1].expand(n, -1, -1, -1).contiguous()),
            ("pure noise", "graded", uniform)]
    return sets


# ------------------------------------------------------------------ scoring

def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    from ganforge.metrics.frechet import RunningStats, frechet_distance

    sa, sb = RunningStats(), RunningStats()
    sa.update(torch.from_numpy(a))
    sb.update(torch.from_numpy(b))
    return float(frechet_distance(sa.mean, sa.cov, sb.mean, sb.cov))


def ranks(v: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (what Spearman's rho needs)."""
    v = np.asarray(v, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    r = np.empty(len(v))
    r[order] = np.arange(1, len(v) + 1)
    for value in np.unique(v):
        same = v == value
        if same.sum() > 1:
            r[same] = r[same].mean()
    return r


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(np.sqrt((ra ** 2).sum() * (rb ** 2).sum()))
    return float((ra * rb).sum() / denom) if denom else float("nan")


def _pixels(x: torch.Tensor) -> np.ndarray:
    """The floor: raw pixels at 16x16."""
    return F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False).flatten(1).numpy()


def ssl_variant(name: str) -> dict:
    """``ssl-conv@steps=600@colour=0.5`` -> {"steps": 600, "colour": 0.5}: an ssl-conv candidate trained with other
    settings (``SslSettings``'s fields), so that a change to the default is measured beside it. ValueError on a
    field or value it does not have."""
    from dataclasses import fields

    from ganforge.metrics.extractors.ssl_conv import SslSettings

    base, *pairs = name.split("@")
    if base != "ssl-conv" or not pairs:
        raise ValueError(f"{name!r} is not ssl-conv@FIELD=VALUE")
    types = {f.name: type(getattr(SslSettings(), f.name)) for f in fields(SslSettings)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in types or types[key] not in (int, float) or not value:
            raise ValueError(f"{pair!r} in {name!r}: expected FIELD=NUMBER, FIELD one of "
                             f"{', '.join(k for k, t in types.items() if t in (int, float))}")
        out[key] = types[key](value)
    return out


def _featurizer(name: str, part: Part, ssl_steps: Optional[int], log) -> Callable[[torch.Tensor], np.ndarray]:
    from ganforge.metrics.extractors import get_extractor
    from ganforge.metrics.extractors.ssl_conv import SslSettings, ssl_conv

    if name == "pixels":
        return _pixels
    if name.startswith("ssl-conv"):
        changes = {} if ssl_steps is None else {"steps": ssl_steps}
        changes.update(ssl_variant(name) if "@" in name else {})
        ext = ssl_conv("cpu", reference=part.ref, settings=SslSettings(**changes), log=log)
    else:
        ext = get_extractor(name, "cpu")
    return lambda x: ext(x)["features"].numpy()


def _flag(ref_f: np.ndarray, set_f: np.ndarray) -> dict[str, float]:
    from ganforge.metrics.prdc import PRDC_K, prdc

    return {k: float(v) for k, v in prdc(ref_f, set_f, k=PRDC_K).items()}


def _train_judges(part: Part, judge_epochs: int, judges: int, seed: int, log) -> tuple[list, dict]:
    """``judges`` class judges, seeds ``seed``, ``seed + 1000``, ...: the first is the single judge of old."""
    from ganforge.bench.judge import accuracy, train_judge

    models, infos = [], []
    for k in range(judges):
        judge, info = train_judge(part.judge_x, part.judge_y, part.classes, judge_epochs, seed + 1000 * k,
                                  flip=part.flip, log=log)
        info["accuracy"] = accuracy(judge, part.pool, part.pool_y)
        models.append(judge)
        infos.append(info)
        log(f"{part.name}: judge {k} accuracy {info['accuracy']:.1%} on {len(part.pool)} unseen images, "
            f"{info['cpu_seconds']} CPU s")
    summary = {"judges": judges, "epochs": judge_epochs, "accuracy": float(np.mean([i["accuracy"] for i in infos])),
               "accuracies": [i["accuracy"] for i in infos],
               "cpu_seconds": round(sum(i["cpu_seconds"] for i in infos), 1),
               "chance": float(torch.bincount(part.pool_y).max()) / len(part.pool_y)}
    return models, summary


def consensus(judge_fids: Sequence[Sequence[float]]) -> np.ndarray:
    """The ground truth of several judges: each set's mean rank over them (Borda). One judge's ranking carries its
    training noise (two judges of one recipe disagree by several hundredths of rho), which lowers every
    candidate's rho against it; the mean rank keeps what the judges agree on."""
    return np.mean([ranks(f) for f in judge_fids], axis=0)


def judges_agreement(judge_fids: Sequence[Sequence[float]]) -> Optional[float]:
    """Mean rho between two judges: the ceiling a candidate can be expected to reach against one judge."""
    pairs = [spearman(a, b) for i, a in enumerate(judge_fids) for b in judge_fids[i + 1:]]
    return float(np.mean(pairs)) if pairs else None


def run_part(part: Part, candidates: Sequence[str], judge_epochs: int, ssl_steps: Optional[int] = None,
             seed: int = 0, log: Callable[[str], None] = print, extra_sets: Sequence[tuple] = (),
             judges: int = 3) -> dict:
    """Every set's FID under each judge and each candidate; rho per candidate against the judges' consensus
    (``rho``) and, on average, against one judge (``rho_single``); the one-class/collapsed flags.
    ``extra_sets``: more (name, kind, images), e.g. GAN samples (``bench/gan_sets.py``)."""
    from ganforge.bench.judge import judge_features

    t0 = time.process_time()
    models, info = _train_judges(part, judge_epochs, judges, seed, log)
    log(f"{part.name}: {judges} judge(s), accuracy {info['accuracy']:.1%} on average "
        f"(majority class {info['chance']:.1%})")
    sets = quality_sets(part.pool, part.pool_y, seed) + list(extra_sets)
    spaces = {f"judge-{k}": (lambda x, m=m: judge_features(m, x).numpy()) for k, m in enumerate(models)}
    for name in candidates:
        spaces[name] = _featurizer(name, part, ssl_steps, log)
    fids: dict[str, list[float]] = {}
    flags: dict[str, dict[str, dict[str, float]]] = {}
    for space, feat in spaces.items():
        ref_f = feat(part.ref)
        fids[space] = []
        for set_name, kind, images in sets:
            set_f = feat(images)
            fids[space].append(_frechet(set_f, ref_f))
            if not space.startswith("judge"):  # every set: a flag on a graded set is counted too
                flags.setdefault(space, {})[set_name] = _flag(ref_f, set_f)
        log(f"{part.name}: {space} done")
    judge_fids = [fids[f"judge-{k}"] for k in range(judges)]
    fids["judges-rank"] = list(consensus(judge_fids))  # a mean rank, not a FID: the ground truth
    rho = {c: spearman(fids["judges-rank"], fids[c]) for c in candidates}
    rho_single = {c: float(np.mean([spearman(f, fids[c]) for f in judge_fids])) for c in candidates}
    info["agreement"] = judges_agreement(judge_fids)
    kinds = {s: k for s, k, _ in sets}
    dropping = {c: [s for s, hit in _drops_modes(flags[c]).items() if hit] for c in candidates}
    flags = {c: {s: v for s, v in f.items() if kinds[s] in FLAG_KINDS or s == "reals"} for c, f in flags.items()}
    flagged = {c: _flagged(flags[c]) for c in candidates}
    return {"data": part.name, "sets": [(s, k) for s, k, _ in sets], "fids": fids, "rho": rho,
            "modes_dropped": dropping,
            "rho_single": rho_single, "flags": flags, "flagged": flagged, "judge": info, "n_ref": len(part.ref),
            "n_set": len(part.pool), "cpu_seconds": round(time.process_time() - t0, 1)}


def _drops_modes(flags: dict[str, dict[str, float]]) -> dict[str, bool]:
    """Per set: does it drop modes (``metrics.prdc.drops_modes``: coverage well under the clean reals' at their
    density)? The warning ``ganforge evaluate`` gives, measured against the reals instead of its expectation."""
    from ganforge.metrics.prdc import drops_modes

    base = flags["reals"]
    return {s: drops_modes(v["coverage"], v["density"], base["coverage"], base["density"])
            for s, v in flags.items() if s != "reals"}


def _flagged(flags: dict[str, dict[str, float]]) -> dict[str, bool]:
    """A one-class or collapsed set is flagged when its recall is under half the clean reals', or when it drops
    modes."""
    dropped = _drops_modes(flags)
    base = flags["reals"]["recall"]
    return {s: v["recall"] < 0.5 * base or dropped[s] for s, v in flags.items() if s != "reals"}


# ------------------------------------------------------------------ the table

def _cell(r: dict, c: str, fmt: Callable[[dict, str], str]) -> str:
    return fmt(r, c) if c in r["rho"] else "-"


def render(results: Sequence[dict], info: dict, command: str, date: str) -> str:
    from ganforge.bench.markdown import markers

    cands = list(dict.fromkeys(c for r in results for c in r["rho"]))
    start, end = markers("metric-agreement")
    lines = [start, "", f"{date}; {info['cpu']}, {info['logical_cores']} logical cores, torch {info['torch']}, "
             f"{info['torch_threads']} thread(s). Command: `{command}`", ""]
    lines += ["| data | judges: accuracy (majority class) | judges' agreement | "
              + " | ".join(f"rho {c}" for c in cands) + " |", "|" + "---|" * (3 + len(cands))]
    for r in results:
        j = r["judge"]
        agree = "-" if j.get("agreement") is None else f"{j['agreement']:.3f}"
        cells = [_cell(r, c, lambda r, c: f"{r['rho'][c]:.3f} ({r['rho_single'][c]:.3f})") for c in cands]
        lines.append(f"| {r['data']} ({r['n_ref']} ref, {r['n_set']} per set, {len(r['sets'])} sets) | "
                     f"{j['judges']} x {j['accuracy']:.1%} ({j['chance']:.1%}) | {agree} | " + " | ".join(cells) + " |")
    lines += ["", "rho against the judges' consensus (each set's mean rank over the judges); in brackets, against "
              "one judge on average. Judges' agreement: the mean rho between two judges."]
    lines += ["", "One-class and collapsed sets flagged (recall under half the clean reals', or coverage under 2/3 of "
              "theirs at 0.8 of their density or more; recall / coverage shown):", "",
              "| data | set | " + " | ".join(cands) + " |", "|" + "---|" * (2 + len(cands))]
    for r in results:
        for s in next(iter(r["flagged"].values())):
            cells = [_cell(r, c, lambda r, c: f"{'yes' if r['flagged'][c][s] else 'NO'} "
                                              f"({r['flags'][c][s]['recall']:.2f} / {r['flags'][c][s]['coverage']:.2f})")
                     for c in cands]
            lines.append(f"| {r['data']} | {s} | " + " | ".join(cells) + " |")
        cells = [_cell(r, c, lambda r, c: ", ".join(r["modes_dropped"][c]) or "none") for c in cands]
        lines.append(f"| {r['data']} | every set said to drop modes | " + " | ".join(cells) + " |")
    for r in results:
        here = [c for c in cands if c in r["rho"]]
        lines += ["", f"FID per set, {r['data']} (the judges' mean rank = ground truth; judge 0's FID beside it):",
                  "", "| set | judges' mean rank | judge 0 | " + " | ".join(here) + " |",
                  "|" + "---|" * (3 + len(here))]
        for i, (s, _) in enumerate(r["sets"]):
            lines.append(f"| {s} | {r['fids']['judges-rank'][i]:.1f} | {r['fids']['judge-0'][i]:.3g} | "
                         + " | ".join(f"{r['fids'][c][i]:.3g}" for c in here) + " |")
    return "\n".join(lines + ["", end])


def main(datasets: Sequence[str] = DATASETS, candidates: Sequence[str] = CANDIDATES, judge_epochs: int = 30,
         judges: int = 3, ssl_steps: Optional[int] = None, limit: Optional[int] = None,
         judge_limit: Optional[int] = None, seed: int = 0, write: Optional[Path] = None,
         command: str = "ganforge bench metric-agreement", gan_root: Optional[Path] = None,
         log: Callable[[str], None] = print) -> list[dict]:
    """``gan_root``: where the GAN runs of ``bench/gan_sets.py`` are trained (or found finished); None leaves
    them out."""
    from ganforge.bench import gan_sets
    from ganforge.bench.markdown import machine_info, write_block

    results = []
    for name in datasets:
        part = (colour_part if name == "colour" else digits_part)(seed, limit, judge_limit)
        cands = list(candidates) + (["mnist-cnn"] if name == "digits" and "mnist-cnn" not in candidates else [])
        extra = [] if gan_root is None else gan_sets.gan_sets(
            name, gan_sets.train_spec(name, gan_root), len(part.pool), part.pool.shape[-1], gan_root, seed, log=log)
        results.append(run_part(part, cands, judge_epochs, ssl_steps, seed, log, extra, judges))
    block = render(results, machine_info(torch.device("cpu")), command, time.strftime("%Y-%m-%d"))
    log(block)
    if write is not None:
        write_block(Path(write), "metric-agreement", block)
    return results
