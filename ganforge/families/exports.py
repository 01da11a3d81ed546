"""What a family exports (``ganforge export``): named graphs of tensors only, each with its example inputs.

General code (``apps/export.py``) writes and checks graphs without knowing the family, so every family says here
(by default) or through ``Family.exports`` (its own) which graphs stand for it: a noise-to-image generator is one
graph ``z [, label] -> image``; a translator one ``image -> output`` per direction; a style-based generator adds
its mapping and synthesis networks. A graph module takes only tensors and returns one tensor, exactly what
sampling returns (clamped to [-1, 1] for images), so that an exported graph reproduces ``ganforge sample``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from ganforge.config_base import ModelBase
from ganforge.families import get_family, sample_z
from ganforge.families.outputs import output_of

Example = Callable[[int, int], dict[str, torch.Tensor]]  # (n, seed) -> the graph's inputs by name, in order


@dataclass
class ExportGraph:
    """One exported graph. Every input and the output have the batch as their first, dynamic, dimension."""

    module: nn.Module  # forward(*inputs) -> one tensor, in eval mode
    example: Example  # inputs drawn as sampling draws them: the reference an export is checked with
    output: str = "image"  # the output's name
    description: str = ""  # one line for the model card


class Clamped(nn.Module):
    """``net(*inputs)`` in float32, clamped to [-1, 1] as sampling and translation clamp images (``clamp=False``
    for unbounded outputs such as 2-D points)."""

    def __init__(self, net: nn.Module, clamp: bool = True):
        super().__init__()
        self.net, self.clamp = net, clamp

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.net(*inputs).float()
        return out.clamp(-1.0, 1.0) if self.clamp else out


def latents(cfg: ModelBase, n: int, seed: int) -> torch.Tensor:
    """z as ``TrainedGenerator.sample(n, seed)`` draws it: ``sample_z`` on the CPU from a generator seeded once."""
    return sample_z(n, cfg, "cpu", generator=torch.Generator().manual_seed(seed))


def default_labels(cfg: ModelBase, n: int) -> torch.Tensor:
    """The classes ``ganforge sample`` draws without ``--labels``: every class in turn (int64)."""
    return torch.arange(n, dtype=torch.long) % cfg.num_classes


def noise_graph(cfg: ModelBase, G: nn.Module) -> ExportGraph:
    """``z [, label] -> image`` (or points) for a noise-to-image generator, as ``sample`` calls it."""
    conditional = get_family(cfg.family).conditional
    images = output_of(cfg).images

    def example(n: int, seed: int) -> dict[str, torch.Tensor]:
        z = latents(cfg, n, seed)
        return {"z": z, "label": default_labels(cfg, n)} if conditional else {"z": z}

    what = "class label (int64) and z" if conditional else "z"
    return ExportGraph(Clamped(G, clamp=images).eval(), example, "image" if images else "points",
                       f"{what} -> {'images in [-1, 1], NCHW' if images else '2-D points'}")


def translation_graph(cfg: ModelBase, net: nn.Module, seed_offset: int = 0) -> ExportGraph:
    """``image -> output`` for one direction of a translator; its example inputs are seeded uniform noise in
    [-1, 1] (data-free, so an export needs no dataset)."""

    def example(n: int, seed: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed + seed_offset)
        return {"image": torch.rand(n, cfg.channels, cfg.image_size, cfg.image_size, generator=gen) * 2 - 1}

    return ExportGraph(Clamped(net).eval(), example, "output", "images in [-1, 1], NCHW -> translated images")


def default_exports(cfg: ModelBase, nets: dict[str, nn.Module]) -> dict[str, ExportGraph]:
    """What a family without its own ``exports`` gives: one graph per direction of a translator (named after
    the direction), else its generator as ``generator``."""
    family = get_family(cfg.family)
    if family.translation:
        directions = family.directions or {"AtoB": family.generator}
        return {d: translation_graph(cfg, nets[name], i) for i, (d, name) in enumerate(directions.items())}
    return {"generator": noise_graph(cfg, nets[family.generator])}


def export_graphs(cfg: ModelBase, nets: dict[str, nn.Module]) -> dict[str, ExportGraph]:
    """The graphs a run of ``cfg`` exports, from its loaded networks (``nets``: the generator by its name, or each
    direction's network; EMA weights when the run kept them). The first graph is the main one."""
    family = get_family(cfg.family)
    declared: Optional[Callable] = family.exports
    graphs = (declared or default_exports)(cfg, nets)
    for graph in graphs.values():
        graph.module.eval().requires_grad_(False)
    return graphs


def export_networks(cfg: ModelBase) -> dict[str, str]:
    """Which networks an export holds: direction (or "generator") -> network name."""
    family = get_family(cfg.family)
    if family.translation:
        return dict(family.directions or {"AtoB": family.generator})
    return {"generator": family.generator}
