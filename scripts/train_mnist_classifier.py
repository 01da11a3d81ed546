#!/usr/bin/env python
"""Train the MNIST classifier behind ganforge's ``mnist-cnn`` feature extractor and write the shipped weights.

    python scripts/train_mnist_classifier.py            # -> ganforge/metrics/weights/mnist_cnn.safetensors

Reproducible: fixed seed, deterministic algorithms, a fixed thread count, no timestamps in the output, so the
same environment (torch version, CPU) rewrites a byte-identical file. Data: the 5,000 embedded MNIST digits
(``mnist-embedded`` at 32x32, in [-1, 1], exactly what ganforge's GANs train on), minus the held-out 1,000 of
``ganforge.metrics.extractors.heldout_split()``; light augmentation (rotation, scale, shift). The weights are
written (atomically, safetensors, with metadata) only when the held-out accuracy reaches ``--min-accuracy``.
Runs in a few minutes on one CPU core (~5 s an epoch on an idle core, 30 epochs).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SCRIPT_VERSION = "1"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "ganforge" / "metrics" / "weights" / "mnist_cnn.safetensors"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1].strip(), formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default: {DEFAULT_OUT.relative_to(REPO)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle schedule, AdamW)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: results can depend on the thread count, and 1 is immune to busy cores)")
    p.add_argument("--min-accuracy", type=float, default=0.97, help="refuse to write weights below this held-out accuracy")
    p.add_argument("--dry-run", action="store_true", help="train and report, write nothing")
    return p.parse_args(argv)


def canonical_safetensors(raw: bytes) -> bytes:
    """safetensors keeps metadata in a hash map, so its header's key order varies from run to run; rewrite the
    header as sorted JSON (offsets are relative to the data, so the data block is unchanged) for byte-identical files."""
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # safetensors pads the header with spaces to 8-byte alignment
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def seed_everything(seed: int, threads: int) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random rotation (+-10 deg), scale (0.9..1.1) and shift (+-2 px) per image; background stays -1."""
    n, _, h, w = x.shape
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10.0)
    scale = 0.9 + torch.rand(n, generator=gen) * 0.2
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * 2.0 * (2.0 / w)  # pixels -> normalised coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # sample (x + 1) with zero padding so that pixels from outside the frame are background (-1)
    return F.grid_sample(x + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], batch):
        correct += int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    return correct / max(1, x.shape[0])


def main(argv=None) -> int:
    args = parse_args(argv)
    seed_everything(args.seed, args.threads)
    sys.path.insert(0, str(REPO))  # run from a checkout without installing
    from ganforge.data.embedded import build
    from ganforge.io_utils import atomic_write_bytes
    from ganforge.metrics.extractors import (
        FEATURE_DIM, MNIST_CNN_FORMAT, MnistCNN, heldout_split, load_mnist_cnn,
    )

    t0 = time.perf_counter()
    data = build(channels=1, size=32)  # (5000, 1, 32, 32) in [-1, 1]: the GANs' training images
    train_idx, test_idx = heldout_split()
    x_train, y_train = data.tensor[train_idx], data.labels[train_idx]
    x_test, y_test = data.tensor[test_idx], data.labels[test_idx]
    print(f"data: {len(train_idx)} train / {len(test_idx)} held-out digits "
          f"({np.bincount(y_test.numpy()).min()}..{np.bincount(y_test.numpy()).max()} per class)", flush=True)

    model = MnistCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(len(train_idx), generator=gen)
        total, seen = 0.0, 0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i : i + args.batch_size]
            if idx.numel() < 2:  # BatchNorm needs 2 items
                continue
            xb = augment(x_train[idx], gen)
            loss = F.cross_entropy(model(xb), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.numel()
            seen += idx.numel()
        if epoch % 5 == 0 or epoch == args.epochs:
            print(f"epoch {epoch:3d}/{args.epochs}  loss {total / seen:.4f}  "
                  f"train acc {accuracy(model, x_train, y_train):.4f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        else:
            print(f"epoch {epoch:3d}/{args.epochs}  loss {total / seen:.4f}  ({time.perf_counter() - t0:.0f} s)", flush=True)

    model.eval()
    acc = accuracy(model, x_test, y_test)
    train_time = time.perf_counter() - t0
    print(f"held-out accuracy {acc:.4f} ({round(acc * len(test_idx))}/{len(test_idx)}), trained in {train_time:.0f} s",
          flush=True)
    if acc < args.min_accuracy:
        print(f"error: held-out accuracy {acc:.4f} < --min-accuracy {args.min_accuracy}: weights not written",
              file=sys.stderr)
        return 1
    if args.dry_run:
        return 0

    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {
        "format": MNIST_CNN_FORMAT,
        "heldout_accuracy": f"{acc:.4f}",
        "heldout_split": "mnist-embedded (load_raw order), per class every 5th digit (rank % 5 == 4): 100 x 10 digits",
        "train_digits": str(len(train_idx)),
        "seed": str(args.seed),
        "epochs": str(args.epochs),
        "batch_size": str(args.batch_size),
        "lr": str(args.lr),
        "weight_decay": str(args.weight_decay),
        "threads": str(args.threads),
        "augmentation": "rotation +-10 deg, scale 0.9..1.1, shift +-2 px",
        "script": "scripts/train_mnist_classifier.py",
        "script_version": SCRIPT_VERSION,
        "torch_version": torch.__version__.split("+")[0],
        "input": "float (N, 1, 32, 32) in [-1, 1], white digit on black, 28x28 digit + 2 px background padding",
        "feature_dim": str(FEATURE_DIM),
        "num_classes": "10",
    }
    atomic_write_bytes(args.out, canonical_safetensors(save(tensors, metadata=metadata)))
    # read back through the public loader: the file must reproduce the accuracy just measured
    check = accuracy(load_mnist_cnn("cpu", args.out), x_test, y_test)
    if abs(check - acc) > 1e-9:
        print(f"error: reloaded weights give {check:.4f}, not {acc:.4f}", file=sys.stderr)
        return 1
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, sha256 {digest}) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
