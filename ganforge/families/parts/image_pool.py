"""The history of generated images a CycleGAN discriminator learns from (Shrivastava et al. 2017).

Until the pool holds ``size`` images, every generated image goes in and is returned as is. Once it is full, each
image is, with probability 1/2, swapped for a random stored one (the stored one is returned, the new one kept),
else returned as is. The pool's images, its fill and its RNG state are checkpointed: a resumed run draws exactly
what a straight one would.
"""
from __future__ import annotations

from typing import Any

import torch


class ImagePool:
    def __init__(self, size: int, seed: int):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.gen = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """The batch D sees for ``images`` (detached); the pool is updated in place."""
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif torch.rand((), generator=self.gen).item() < 0.5:
                i = int(torch.randint(0, self.size, (), generator=self.gen))
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {"rng": self.gen.get_state()}
        if self.images:
            tensors["images"] = torch.stack(self.images)
        return tensors, {"filled": len(self.images)}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if "rng" in tensors:
            self.gen.set_state(tensors["rng"].cpu().to(torch.uint8))
        stored = tensors.get("images")
        self.images = [] if stored is None else [img.clone() for img in stored[: meta.get("filled", len(stored))]]
