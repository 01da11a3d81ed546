"""``ganforge translate``: run a trained image-to-image model (pix2pix, cyclegan) on the user's images.

Inputs (a folder, one image, or an ``.npz`` with ``arr_0`` uint8 (N, H, W, C)) of any size are brought to the
model's size the way its training data were (28x28 digits padded to 32x32 for the digit tasks, resized and
centre-cropped otherwise); outputs are written at the model's size, in the input's order, as PNGs (named after the
inputs) or as one ``.npz`` (``arr_0`` uint8 (N, H, W, C)). Also: the metrics of a run on its held-out pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ganforge.errors import UserError

DIRECTIONS = ("AtoB", "BtoA")


@dataclass
class Translator:
    net: nn.Module
    cfg: object  # the run's RunConfig
    device: torch.device
    checkpoint: Optional[Path] = None  # where the weights came from

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Float images at the model's shape in [-1, 1] -> translated images, float32 on the CPU."""
        return torch.cat([self.net(x[i:i + batch_size].to(self.device)).float().clamp(-1, 1).cpu()
                          for i in range(0, len(x), batch_size)])


def load_translator(run_dir: Path, direction: str = "AtoB", device: str = "cpu", cfg=None) -> Translator:
    """The generator of a translation run for ``direction`` (relative to the run's own A -> B), EMA copy first.
    ``cfg``: the run's config when the caller has read it already (read once per scoring)."""
    from ganforge.apps.sampling import exported_networks, is_export
    from ganforge.checkpoint import load_newest
    from ganforge.config import load_run_config
    from ganforge.families import build_networks, get_family
    from ganforge.devices import pick_device

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    if direction not in DIRECTIONS:
        raise UserError(f"--direction {direction!r}: choose AtoB or BtoA")
    exported = is_export(run_dir)
    cfg, nets = exported_networks(run_dir) if exported else (cfg or load_run_config(run_dir), None)
    family = get_family(cfg.model.family)
    if not family.translation:
        raise UserError(f"{run_dir} is a {cfg.model.family!r} run, which draws from noise: 'ganforge translate' "
                        "needs an image-to-image run (use 'ganforge sample' for this one)")
    name = (family.directions or {"AtoB": family.generator}).get(direction)
    if name is None:
        raise UserError(f"{run_dir} is a {cfg.model.family} run, which learns one direction only "
                        f"({cfg.data.direction} of its data): train another with --set data.direction="
                        + ("AtoB" if cfg.data.direction == "BtoA" else "BtoA"))
    dev = pick_device(device)
    if exported:
        return Translator(nets[name].to(dev).eval(), cfg, dev, run_dir)
    def use(ckpt) -> Translator:
        net = build_networks(cfg.model)[name]
        net.load_state_dict(ckpt.module_state(f"{name}_ema") or ckpt.module_state(name))
        return Translator(net.to(dev).eval(), cfg, dev, ckpt.path)

    return load_newest(run_dir / "checkpoints", use)  # one whose tensors do not fit is skipped


def to_uint8_nhwc(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] float (N, C, H, W) -> uint8 (N, H, W, C)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def write_outputs(images: np.ndarray, names: list[str], out: Path) -> None:
    """One ``.npz`` (``arr_0``), or a folder of PNGs named after the inputs; written whole or not at all."""
    from ganforge.io_utils import atomic_write_bytes

    if out.suffix.lower() == ".npz":
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, arr_0=images)
        atomic_write_bytes(out, buf.getvalue())
        return
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for img, name in zip(images, _png_names(names)):
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        tmp = target.with_name(f".{target.name}.tmp")
        pil.save(tmp, format="PNG")
        tmp.replace(target)


def _png_names(names: list[str]) -> list[str]:
    """Each input's name with a .png suffix (``x.npz[3]`` -> ``000003.png``)."""
    out = []
    for i, name in enumerate(names):
        out.append(f"{i:06d}.png" if name.endswith("]") else str(Path(name).with_suffix(".png")))
    return out


def translate(run_dir: Path, inputs: Path, out: Path, direction: str = "AtoB", device: str = "cpu") -> dict:
    """Translate every input; returns {"n", "skipped", "out"}."""
    from ganforge.apps.classify import read_inputs, to_model_input

    translator = load_translator(run_dir, direction, device)
    images, names, _, skipped = read_inputs(Path(inputs))
    x = torch.cat([to_model_input(im, translator.cfg) for im in images])
    write_outputs(to_uint8_nhwc(translator(x)), names, Path(out))
    return {"n": len(names), "skipped": len(skipped), "out": str(out)}


def held_out_pairs(cfg, split: str = "test"):
    """The run's data on its held-out split (the training set when the data have none), and which one it is."""
    from ganforge.data import build_spec

    dc, mc = cfg.data, cfg.model
    try:
        return build_spec(dc.spec, dc.root, False, mc.channels, mc.image_size, split=split,
                          direction=dc.direction), split
    except UserError:
        return build_spec(dc.spec, dc.root, False, mc.channels, mc.image_size, split="train",
                          direction=dc.direction), "train"


def pairs_tensor(ds, limit: Optional[int] = None) -> torch.Tensor:
    from ganforge.families.image_pairs import dataset_items

    return dataset_items(ds, torch.arange(len(ds) if limit is None else min(limit, len(ds))))


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over images of the PSNR in dB, pixels scaled to [0, 1] (peak 1)."""
    mse = (((x - y) / 2) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def ink(x: torch.Tensor) -> float:
    """Mean ink of images in [-1, 1]: per image, the sum of its pixels mapped to [0, 1] (a full-ink pixel counts 1;
    in every channel), averaged over the images."""
    return float(((x.float().clamp(-1, 1) + 1) / 2).flatten(1).sum(1).mean())


def ink_scores(inputs: torch.Tensor, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """How far a translation moves the ink from its inputs' toward the target domain's: the three inks, the
    ratio ink(output) / ink(target), and the fraction of the way (ink(output) - ink(input)) / (ink(target) -
    ink(input)) (0 for the identity, 1 for outputs with the target's ink; NaN when input and target carry the
    same ink)."""
    i, o, t = ink(inputs), ink(outputs), ink(target)
    return {"ink_input": i, "ink_output": o, "ink_target": t, "ink_ratio": o / t if t else float("nan"),
            "ink_way": (o - i) / (t - i) if t != i else float("nan")}


def digit_scores(outputs: torch.Tensor, targets: torch.Tensor, labels: Optional[torch.Tensor],
                 device: str = "cpu") -> dict[str, float]:
    """How close translated digits are to their targets: L1 (on [0, 1] pixels), PSNR, the in-domain classifier's
    accuracy on the outputs against the digits' labels, and FID[mnist-cnn] of the outputs against the targets."""
    from ganforge.metrics.extractors import get_extractor
    from ganforge.metrics.frechet import frechet_distance

    ext = get_extractor("mnist-cnn", device)
    out, ref = ext(outputs), ext(targets)

    def stats(f: torch.Tensor):
        f = f.double().numpy()
        return f.mean(0), np.cov(f, rowvar=False)

    scores = {"l1": float(((outputs - targets).abs() / 2).mean()), "psnr": psnr(outputs, targets),
              "fid_mnist_cnn": frechet_distance(*stats(out["features"]), *stats(ref["features"]))}
    if labels is not None:
        scores["accuracy"] = float((out["logits"].argmax(1) == labels).float().mean())
    return scores


def evaluate_run(run_dir: Path, device: str = "cpu", limit: Optional[int] = None, cfg=None) -> dict:
    """``ganforge evaluate`` for a translation run: its held-out pairs (the training pairs when the data have no
    test split) translated and scored. Paired data: L1 and PSNR against the targets; unpaired: the cycle
    reconstruction's L1. Digit tasks add the in-domain classifier's accuracy (the digit kept), FID[mnist-cnn]
    against the real target-domain digits and the ink of inputs, outputs and target digits (``ink_scores``)."""
    import time

    from ganforge.data.pairs import DIGIT_SPECS, split_halves
    from ganforge.families import get_family

    t0 = time.perf_counter()
    forward = load_translator(run_dir, "AtoB", device, cfg)
    cfg = forward.cfg
    ds, split = held_out_pairs(cfg)
    a, b = split_halves(pairs_tensor(ds, limit))
    out = forward(a)
    digits = cfg.data.spec.strip().lower() in DIGIT_SPECS
    labels = ds.labels[:len(a)] if ds.labels is not None else None
    if "BtoA" in (get_family(cfg.model.family).directions or {}):  # a two-way translator: scored by its cycle
        values = {"cycle_l1": float(((load_translator(run_dir, "BtoA", device, cfg)(out) - a).abs() / 2).mean())}
        if digits:
            scores = digit_scores(out, b, labels, device)
            values.update(class_kept=scores["accuracy"], fid_mnist_cnn=scores["fid_mnist_cnn"])
    else:
        values = digit_scores(out, b, labels, device) if digits else {
            "l1": float(((out - b).abs() / 2).mean()), "psnr": psnr(out, b)}
    if digits:  # strokes of ink on a dark background: how much of the target domain's ink the outputs carry
        values.update(ink_scores(a, out, b))
    h, w = out.shape[-2:]
    return {"source": str(run_dir), "ref": f"{cfg.data.spec} pairs (split {split})", "extractor": "mnist-cnn"
            if digits else "none", "n_generated": len(out), "n_reference": len(b), "image_size": h if h == w else None,
            "image_height": h, "image_width": w, "channels": out.shape[1], "reference_prep": "", "seed": 0,
            "metrics": values, "seconds": round(time.perf_counter() - t0, 2)}
