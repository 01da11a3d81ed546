"""Model families and the registry that finds them by convention.

A family is one module in this package that calls ``register(Family(...))`` at import time: its model config
(a ``ModelBase`` subclass tagged with ``family: Literal[name]``), a builder of its named networks and the dotted
path of its trainer (how it trains: its optimizers, phases and stats; see ``ganforge/families/contract.py``). Every
module here is imported when the registry is first asked for (as junyanz's CycleGAN ``models/__init__.py`` finds
``<name>_model.py``), so adding a family is adding a file. Modules that register nothing (``contract``, the shared kinds, ``parts/``) are what families are built from.

The noise-to-image generators have the signature ``G(z, y=None)`` and their discriminators ``D(x, y=None)``
returning logits, so one training step serves unconditional and conditional families alike.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
from torch import nn

from ganforge.config_base import ModelBase


# The train keys a family reads beside the run's own (``config.RUN_KEYS``, which the loop reads for every family):
# ``Family.train_keys`` names them, and a run that sets any other one is refused, naming the key and the family.
OPTIMIZER_KEYS = ("optimizer", "lr_g", "lr_d", "beta1", "beta2")  # read by the default specs (Trainer.optimizers)
ADA_KEYS = ("augment", "ada_pipe", "ada_target", "ada_kimg", "ada_p", "ada_interval")  # parts/ada.py's AdaTrainer
GAN_KEYS = (*OPTIMIZER_KEYS, "loss", "real_label", "d_steps", "r1_gamma", "r2_gamma", "r1_every", "gp_lambda", "weight_clip",
            "instance_noise", "instance_noise_steps", "g_objective", "diffaugment", "unrolled_steps", "reuse_fake",
            *ADA_KEYS)  # noise_to_image.py's GanTrainer: the losses and tricks of the noise-to-image families


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN initialisation: conv/linear weights ~ N(0, std), BatchNorm gamma ~ N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def dcgan_init(cfg: ModelBase, nets: dict[str, nn.Module]) -> None:
    """The default ``Family.init``: DCGAN's N(0, model.init_std) on every network, in their declared order."""
    for net in nets.values():
        init_weights(net, cfg.init_std)


@dataclass(frozen=True)
class Family:
    name: str
    config: type[ModelBase]  # the family's model config; ``model.family`` picks it
    build_networks: Callable[[ModelBase], dict[str, nn.Module]]  # named networks, not yet initialised
    trainer: Union[str, type]  # its Trainer subclass, or "module:Class" to import it only when a run starts
    conditional: bool = False  # G and D take class labels
    convolutional: bool = True  # channels_last helps
    generator: str = "G"  # the network that draws samples (its EMA copy when the run keeps one)
    classifier: bool = False  # its discriminator classifies (``class_logits``): ganforge classify, test accuracy
    translation: bool = False  # image -> image (its data are pairs): ganforge translate
    after_init: Optional[Callable[[ModelBase, dict[str, nn.Module]], None]] = None  # e.g. spectral norm, after init
    # what G draws under a given config, when that depends on it: "images", "points" (2-D samples) ...
    draws: Optional[Callable[[ModelBase], str]] = None
    batch_multiple: Optional[Callable[[ModelBase], int]] = None  # every batch a multiple of this (PacGAN's packs)
    directions: Optional[dict[str, str]] = None  # a translator: direction ("AtoB", "BtoA") -> the network for it
    style_based: bool = False  # G has a mapping z -> w and a synthesis w -> image (StyleBasedGenerator)
    # ganforge export: (model config, loaded networks) -> named ExportGraphs (families/exports.py); None: the default
    # (the generator as one graph, or one graph per direction of a translator)
    exports: Optional[Callable[[ModelBase, dict[str, nn.Module]], dict]] = None
    # initialises the freshly built networks in place, from torch's global RNG (seeded by the run): DCGAN's N(0, 0.02)
    # unless the family has a scheme of its own (equalized lr, zero-init of residual branches, weight norm ...)
    init: Callable[[ModelBase, dict[str, nn.Module]], None] = dcgan_init
    # the train keys its trainer reads beside the run's own (see OPTIMIZER_KEYS above); any other one set is refused
    train_keys: tuple[str, ...] = OPTIMIZER_KEYS

    def output(self, cfg: ModelBase) -> str:
        """"translations" (image -> image), "images" or "points": what a run of this family puts out."""
        if self.translation:
            return "translations"
        return self.draws(cfg) if self.draws is not None else "images"


_REGISTRY: dict[str, Family] = {}
_DISCOVERED = False


def register(family: Family) -> Family:
    _REGISTRY[family.name] = family
    return family


PLUGINS_ENV = "GANFORGE_FAMILIES"  # comma-separated modules, outside this package, that register families
ENTRY_POINTS = "ganforge.families"  # the entry-point group of installed packages that do


def all_families() -> dict[str, Family]:
    """Every family: each module of this package (by convention, not a list kept by hand), then the modules named
    in ``$GANFORGE_FAMILIES`` and the ``ganforge.families`` entry points of installed packages, each imported once."""
    global _DISCOVERED
    if not _DISCOVERED:
        _DISCOVERED = True
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        for name in _plugin_modules():
            importlib.import_module(name)
    return dict(_REGISTRY)


def _plugin_modules() -> list[str]:
    """Family modules kept outside ganforge: named in the environment, or declared by installed packages."""
    import os
    from importlib.metadata import entry_points

    named = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    declared = [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINTS)]
    return named + [m for m in declared if m not in named]


def get_family(name: str) -> Family:
    families = all_families()
    if name not in families:
        raise KeyError(f"unknown model family {name!r}: choose one of {', '.join(sorted(families))}")
    return families[name]


def batch_multiple(cfg: ModelBase) -> int:
    """The number every batch of a run of ``cfg`` must be a multiple of (1 unless the family says otherwise)."""
    family = get_family(cfg.family)
    return family.batch_multiple(cfg) if family.batch_multiple is not None else 1


def output_kind(cfg: ModelBase) -> str:
    """What a run of ``cfg`` puts out: "images", "points" or "translations" (see ``Family.output``)."""
    return get_family(cfg.family).output(cfg)


def build_networks(cfg: ModelBase) -> dict[str, nn.Module]:
    """The named networks of ``cfg.family``, initialised by the family's ``init`` (then ``after_init``)."""
    family = get_family(cfg.family)
    nets = family.build_networks(cfg)
    family.init(cfg, nets)
    if family.after_init is not None:  # reparametrisations go on initialised weights
        family.after_init(cfg, nets)
    return nets


def build_models(cfg: ModelBase) -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator of a noise-to-image family, initialised."""
    nets = build_networks(cfg)
    return nets["G"], nets["D"]


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN packing: (N, C, ...) -> (N/pack, pack*C, ...), consecutive samples joined along dim 1."""
    if pack == 1:
        return x
    return x.reshape(x.shape[0] // pack, pack * x.shape[1], *x.shape[2:])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def sample_z(n: int, cfg: ModelBase, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> torch.Tensor:
    """Latent vectors (n, z_dim): N(0, 1) or U(-1, 1) as the config says."""
    if cfg.z_dist == "uniform":
        return torch.rand(n, cfg.z_dim, device=device, generator=generator) * 2 - 1
    return torch.randn(n, cfg.z_dim, device=device, generator=generator)
