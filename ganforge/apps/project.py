"""``ganforge project``: the latent that makes a trained generator reproduce a given image.

Style-based generators are projected into w (one w for every layer, as the StyleGAN2 projector does, with the
per-layer noise held at its constant maps); the others into z. The search is plain gradient descent on the latent
with Adam, a learning rate that warms up and then falls with a cosine, and (in w) Gaussian noise added to w that
fades out over the first three quarters of the steps, so the early steps explore before the late ones settle.
It starts from the mean w (style-based) or from the best of 64 random z.

The distance is LPIPS-free: mean squared pixel error, plus for digit data the shipped in-domain classifier's
feature distance (``mnist-cnn``, relative to the target's feature energy), which cares about the strokes that
make a digit rather than every pixel; for other data a coarse-scale pixel error (a 4x average-pooled copy)
stands in for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ganforge.errors import UserError
from ganforge.families.outputs import output_of
from ganforge.apps.sampling import TrainedGenerator

Distance = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass
class Projection:
    space: str  # "w" or "z"
    latent: torch.Tensor  # (w_dim,) or (z_dim,)
    image: torch.Tensor  # (1, C, H, W) in [-1, 1]
    frames: list[torch.Tensor] = field(default_factory=list)  # the image every few steps, for the GIF
    scores: dict[str, float] = field(default_factory=dict)  # the final distance's terms, PSNR


def learning_rate(t: float, base: float, warmup: float = 0.05, rampdown: float = 0.25) -> float:
    """StyleGAN2's projector schedule: linear warm-up over ``warmup``, cosine fall over the last ``rampdown``."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return base * ramp * min(1.0, t / warmup)


def make_distance(g: TrainedGenerator, target: torch.Tensor) -> Distance:
    """Pixel MSE + the in-domain feature distance for digits (coarse-scale pixel MSE otherwise)."""
    from ganforge.data.build import digits_per_channel, holds_digits

    spec = g.config.data.spec
    if holds_digits(spec) and not digits_per_channel(spec):
        from ganforge.metrics.extractors import load_mnist_cnn

        with torch.random.fork_rng(devices=[]):
            cnn = load_mnist_cnn(g.device).eval().requires_grad_(False)
        target_f = cnn.features(target)
        energy = target_f.pow(2).mean().clamp_min(1e-8)

        def digits(x: torch.Tensor):
            pixel = F.mse_loss(x, target)
            feature = (cnn.features(x) - target_f).pow(2).mean() / energy
            return pixel + feature, {"pixel_mse": pixel, "feature_distance": feature}

        return digits

    target_coarse = F.avg_pool2d(target, 4) if target.shape[-1] >= 16 else target

    def pixels(x: torch.Tensor):
        pixel = F.mse_loss(x, target)
        coarse = F.mse_loss(F.avg_pool2d(x, 4) if x.shape[-1] >= 16 else x, target_coarse)
        return pixel + coarse, {"pixel_mse": pixel, "coarse_mse": coarse}

    return pixels


def _render(g: TrainedGenerator, space: str, label: Optional[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """latent (1, D) -> image: w broadcast to every layer with the constant noise maps, or G(z, label)."""
    G = g.module
    if space == "w":
        return lambda w: G.synthesis(G.broadcast(w), noise_mode="const").float()
    return lambda z: G(z, label).float()


def _start(g: TrainedGenerator, space: str, render, distance: Distance, seed: int) -> tuple[torch.Tensor, float]:
    """The starting latent and the scale of w's exploration noise (0 in z)."""
    gen = torch.Generator().manual_seed(seed)
    if space == "w":
        z = torch.randn(4096, g.module.z_dim, generator=gen).to(g.device)
        with torch.no_grad():
            w = g.module.mapping(z, None).float()
        start = getattr(g.module, "w_avg", w.mean(0)).detach().float().reshape(1, -1).clone()
        return start, float(((w - w.mean(0)).pow(2).sum(1).mean()).sqrt())
    z = g.draw_z(64, seed).to(g.device)
    with torch.no_grad():
        losses = torch.stack([distance(render(z[i:i + 1]))[0] for i in range(len(z))])
    return z[int(losses.argmin())].reshape(1, -1).clone(), 0.0


def project(g: TrainedGenerator, target: torch.Tensor, steps: int = 500, lr: Optional[float] = None,
            seed: int = 0, label: Optional[int] = None, frames: int = 50) -> Projection:
    """Find the latent whose image is closest to ``target`` (1, C, H, W) in [-1, 1] at the model's shape."""
    if steps < 1:
        raise UserError(f"--steps {steps}: use at least 1")
    if not output_of(g.config.model).images:
        raise UserError("this run generates 2D points, not images: project needs an image generator")
    space = "w" if g.has_w else "z"
    y = None
    if g.conditional:
        if label is None or not 0 <= label < g.num_classes:
            raise UserError(f"this conditional run needs --label K (0..{g.num_classes - 1}): its images are "
                            "drawn for a class")
        y = torch.tensor([label], device=g.device)
    g.module.eval().requires_grad_(False)  # gradients flow to the latent only
    target = target.to(g.device).float().clone()  # a normal tensor even if made under inference_mode
    distance, render = make_distance(g, target), _render(g, space, y)
    latent, w_std = _start(g, space, render, distance, seed)
    latent.requires_grad_(True)
    base = lr if lr is not None else (0.1 if space == "w" else 0.05)
    opt = torch.optim.Adam([latent], lr=base, betas=(0.9, 0.999))
    gen = torch.Generator(device=g.device).manual_seed(seed)
    every = max(1, steps // max(1, frames))
    shots: list[torch.Tensor] = []
    for i in range(steps):
        t = i / steps
        for group in opt.param_groups:
            group["lr"] = learning_rate(t, base) if steps > 1 else base
        noise_scale = w_std * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
        noisy = latent + torch.randn(latent.shape, generator=gen, device=g.device) * noise_scale
        loss, _ = distance(render(noisy))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i % every == 0:
            with torch.no_grad():
                shots.append(render(latent).clamp(-1, 1).cpu())
    return _finish(space, latent.detach(), render, distance, target, shots)


@torch.no_grad()
def _finish(space, latent, render, distance, target, shots) -> Projection:
    image = render(latent).clamp(-1, 1)
    _, terms = distance(image)
    mse01 = float(((image - target) / 2).pow(2).mean())  # on [0, 1] pixels
    scores = {k: float(v) for k, v in terms.items()}
    scores["psnr_db"] = 10 * math.log10(1.0 / max(mse01, 1e-12))
    return Projection(space, latent.reshape(-1).cpu(), image.cpu(), [*shots, image.cpu()], scores)


def read_target(path, cfg, index: int = 0) -> torch.Tensor:
    """One image (a file, or ``arr_0[index]`` of an .npz) at the model's shape, as its training data were made."""
    from pathlib import Path

    from ganforge.apps.classify import read_inputs, to_model_input

    path = Path(path)
    if path.is_dir():
        raise UserError(f"--input {path} is a folder: project one image (a file, or an .npz with --index)")
    images, _, _, _ = read_inputs(path)
    if index >= len(images):
        raise UserError(f"--index {index}: {path} holds {len(images)} images")
    return to_model_input(images[index], cfg)


def write_projection(result: Projection, target: torch.Tensor, out) -> None:
    """projected.png, comparison.png (target | projection), latent.npy, projection.gif and projection.json in
    ``out``; each file written whole or not at all."""
    import io
    import json
    from pathlib import Path

    import numpy as np

    from ganforge import viz
    from ganforge.io_utils import atomic_write_bytes, atomic_write_text
    from ganforge.apps.latents import save_walk

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder for the projection's outputs")
    out.mkdir(parents=True, exist_ok=True)
    target = target.cpu()
    viz.save_grid(result.image, out / "projected.png", nrow=1)
    viz.save_grid(torch.cat([target, result.image]), out / "comparison.png", nrow=2)
    buf = io.BytesIO()
    np.save(buf, result.latent.numpy().astype(np.float32), allow_pickle=False)
    atomic_write_bytes(out / "latent.npy", buf.getvalue())
    frames = torch.cat([torch.cat([target, f], dim=3) for f in result.frames])  # target | current, side by side
    save_walk(frames, out / "projection.gif", fps=10, scale=4 if target.shape[-1] <= 64 else 1)
    meta = {"space": result.space, "latent_shape": list(result.latent.shape), **result.scores}
    atomic_write_text(out / "projection.json", json.dumps(meta, indent=2) + "\n")
