"""``ganforge classify``: a semi-supervised GAN's discriminator as a classifier of the user's images.

Inputs (an ``.npz`` with ``arr_0`` uint8 (N, H, W, C) and optionally ``labels``, or a folder of images) of any size
are brought to the model's size the way its training data were (28x28 digits padded to 32x32 for the embedded
digits, resized and centre-cropped otherwise). Predictions go to a CSV; with labels, the accuracy is printed.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ganforge.errors import UserError


@dataclass
class Classifier:
    net: nn.Module  # has class_logits(x)
    cfg: object  # the run's RunConfig
    device: torch.device

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Float images at the model's shape -> softmax class probabilities (N, classes) on the CPU."""
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(self.device)
            out.append(torch.softmax(self.net.class_logits(x).float(), dim=1).cpu())
        return torch.cat(out)

    def predict(self, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images at the model's shape -> (predicted class, its softmax probability), both (N,)."""
        conf, pred = self.probabilities(images, batch_size).max(dim=1)
        return pred, conf


def load_classifier(run_dir: Path, device: str = "cpu", cfg=None) -> Classifier:
    """The discriminator of a run whose family classifies (``ssgan``), from its newest good checkpoint; ``cfg``:
    the run's config when the caller has read it already."""
    from ganforge.checkpoint import load_newest
    from ganforge.config import load_run_config
    from ganforge.families import build_networks, get_family
    from ganforge.devices import pick_device

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    cfg = cfg or load_run_config(run_dir)
    if not get_family(cfg.model.family).classifier:
        raise UserError(f"{run_dir} is a {cfg.model.family!r} run, whose discriminator does not classify: "
                        "'ganforge classify' needs a semi-supervised run (see 'ganforge presets')")
    D = build_networks(cfg.model)["D"]
    load_newest(run_dir / "checkpoints", lambda ckpt: D.load_state_dict(ckpt.module_state("D")))  # fitting ones
    dev = pick_device(device)
    return Classifier(D.to(dev).eval(), cfg, dev)


def to_model_input(u8_nchw: torch.Tensor, cfg) -> torch.Tensor:
    """uint8 images of any size -> the model's (channels, size, size), as its training data were prepared."""
    from ganforge.data import embedded
    from ganforge.data.imageops import batch_to_tensor

    from ganforge.data.pairs import DIGIT_SPECS

    mc = cfg.model
    if cfg.data.spec.strip().lower() in (embedded.NAME, *DIGIT_SPECS):
        return embedded.digits_to_tensor(u8_nchw, mc.channels, mc.image_size)
    return batch_to_tensor(u8_nchw, mc.channels, mc.image_size)


def read_inputs(path: Path) -> tuple[list[torch.Tensor], list[str], Optional[np.ndarray], list[str]]:
    """uint8 (1, C, H, W) per image, a name per image, the labels when an ``.npz`` holds them, and the files of a
    folder that could not be read (skipped)."""
    from ganforge.io_utils import read_npz
    from ganforge.apps.inputs import load_samples_npz

    path = Path(path)
    if path.suffix.lower() == ".npz":
        arr = load_samples_npz(path)
        stored = read_npz(path).get("labels")
        labels = None if stored is None else np.asarray(stored).reshape(-1)
        if labels is not None and len(labels) != len(arr):
            raise UserError(f"{path}: {len(labels)} labels for {len(arr)} images")
        images = [torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None] for a in arr]
        return images, [f"{path.name}[{i}]" for i in range(len(arr))], labels, []
    if path.is_dir():
        images, names, skipped = _read_folder(path)
        return images, names, None, skipped
    if path.is_file():
        try:
            return [_read_image(path)], [path.name], None, []
        except Exception as exc:  # noqa: BLE001 - any decode failure
            raise UserError(f"--input {path}: not a readable image ({' '.join(str(exc).split())[:100]})") from None
    if not path.exists():
        raise UserError(f"--input {path} does not exist: pass an .npz (arr_0 uint8 N,H,W,C), an image or a folder")
    raise UserError(f"--input {path}: expected an .npz (arr_0 uint8 N,H,W,C), an image or a folder of images")


def _read_image(path: Path) -> torch.Tensor:
    """One file as uint8 (1, 3, H, W)."""
    from PIL import Image

    from ganforge.data.imageops import check_pixels, to_channels

    with Image.open(path) as img:
        rgb = np.asarray(to_channels(check_pixels(img), 3), dtype=np.uint8)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None]


def _read_folder(path: Path) -> tuple[list[torch.Tensor], list[str], list[str]]:
    from ganforge.data import list_images

    images, names, skipped = [], [], []
    for p in list_images(path):
        try:
            images.append(_read_image(Path(p)))
        except Exception:  # noqa: BLE001 - an unreadable file is skipped and counted, never fatal
            skipped.append(p)
            continue
        names.append(str(Path(p).relative_to(path)))
    if not images:
        raise UserError(f"no readable images in {path}")
    return images, names, skipped


def classify(run_dir: Path, inputs: Path, out: Optional[Path] = None, device: str = "cpu",
             log=print) -> dict:
    """Predict every input image; write the CSV; return {"n", "accuracy" (or None), "csv"}."""
    from ganforge.io_utils import atomic_write_text

    clf = load_classifier(run_dir, device)
    images, names, labels, skipped = read_inputs(inputs)
    x = torch.cat([to_model_input(im, clf.cfg) for im in images])
    pred, conf = clf.predict(x)
    out = Path(out) if out is not None else Path(inputs).with_name(Path(inputs).stem + ".predictions.csv")
    rows = [["index", "input", "predicted", "confidence"] + (["label"] if labels is not None else [])]
    for i, (name, p, c) in enumerate(zip(names, pred.tolist(), conf.tolist())):
        rows.append([i, name, p, f"{c:.4f}"] + ([int(labels[i])] if labels is not None else []))
    atomic_write_text(out, _csv_text(rows))
    accuracy = float((pred.numpy() == labels).mean()) if labels is not None else None
    return {"n": len(names), "accuracy": accuracy, "csv": str(out), "skipped": len(skipped)}


def _csv_text(rows: list[list]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def held_out_accuracy(run_dir: Path, device: str = "cpu", cfg=None) -> tuple[float, int]:
    """Accuracy on the held-out test split of the run's training data (never trained on), and its size."""
    from ganforge.data import build_spec

    clf = load_classifier(run_dir, device, cfg)
    cfg = clf.cfg
    ds = build_spec(cfg.data.spec, cfg.data.root, False, cfg.model.channels, cfg.model.image_size, split="test")
    pred, _ = clf.predict(ds.tensor if ds.tensor is not None else torch.stack([ds[i][0] for i in range(len(ds))]))
    labels = ds.labels if ds.labels is not None else torch.tensor([ds[i][1] for i in range(len(ds))])
    return float((pred == labels).float().mean()), len(pred)
