"""Loading a trained generator and drawing images from it: ``load_generator(run_dir).sample(16, seed=0)``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ganforge.checkpoint import Checkpoint, load_checkpoint, load_newest
from ganforge.config import RunConfig, load_run_config, validate
from ganforge.devices import pick_device
from ganforge.errors import UserError
from ganforge.families import build_networks, get_family, sample_z
from ganforge.families.outputs import output_of

NOISE_MODES = ("const", "random", "none")  # per-layer noise of style-based generators


def require_sample_memory(n: int, model, what: str,
                          fix: str = "ask for fewer, and draw more in several calls with different seeds") -> None:
    """``n`` samples are held at once (float images, their uint8 copy and the latents): refuse, in one line, a
    request this machine's free memory cannot hold, before the generator runs out of it half-way."""
    from ganforge.memory import require_memory

    pixels = model.channels * model.image_size ** 2
    per_image = pixels * 5 + 4 * (getattr(model, "z_dim", 0) or 0)
    require_memory(n * per_image, f"{what} images of {model.channels}x{model.image_size}x{model.image_size}", fix)


class TrainedGenerator:
    """A generator ready for sampling (EMA weights when the run kept them), in eval mode."""

    def __init__(self, module: nn.Module, config: RunConfig, device: torch.device, checkpoint: Optional[Path] = None):
        self.module = module.eval().to(device)
        self.config = config
        self.device = device
        self.checkpoint = checkpoint
        self.conditional = get_family(config.model.family).conditional

    @property
    def num_classes(self) -> Optional[int]:
        return self.config.model.num_classes if self.conditional else None

    def _labels(self, n: int, labels: Optional[Sequence[int]], gen: torch.Generator) -> Optional[torch.Tensor]:
        if not self.conditional:
            if labels is not None:
                raise UserError("--labels is for conditional models; this run's family is "
                                f"{self.config.model.family!r}")
            return None
        k = self.config.model.num_classes
        if labels is None:
            return torch.arange(n) % k  # every class in turn
        lab = torch.as_tensor(list(labels), dtype=torch.long)
        if lab.numel() == 0 or lab.min() < 0 or lab.max() >= k:
            raise UserError(f"labels {list(labels)} out of range: use integers from 0 to {k - 1}")
        return lab.repeat((n + lab.numel() - 1) // lab.numel())[:n]

    # --- latent spaces: z for every family; w too for style-based generators (mapping + synthesis)
    @property
    def has_w(self) -> bool:
        """A style-based generator: z -> w by its mapping network, w -> image by its synthesis network."""
        return get_family(self.config.model.family).style_based

    def require_w(self, what: str) -> None:
        if not self.has_w:
            raise UserError(f"{what} needs a style-based generator (mapping z -> w, synthesis w -> image); this "
                            "run's family is "
                            f"{self.config.model.family!r}")

    def draw_z(self, n: int, seed: int) -> torch.Tensor:
        """The latent vectors ``sample(n, seed)`` uses: seed -> z, the same on every machine (drawn on the CPU)."""
        return sample_z(n, self.config.model, "cpu", generator=torch.Generator().manual_seed(seed))

    @torch.inference_mode()
    def w_of(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """(N, w_dim) intermediate latents of ``z`` (style-based generators), truncated towards the mean w."""
        self.require_w("w space")
        return self.module.mapping(z.to(self.device), None, truncation_psi=truncation).float().cpu()

    @torch.inference_mode()
    def synthesize(self, ws: torch.Tensor, noise: str = "const", batch_size: int = 256) -> torch.Tensor:
        """Images from w (N, w_dim) or per-layer ws (N, num_ws, w_dim), in [-1, 1] on the CPU."""
        self.require_w("w space")
        if ws.dim() == 2:
            ws = self.module.broadcast(ws)
        out = [self.module.synthesis(ws[i:i + batch_size].to(self.device), noise_mode=noise).float().cpu()
               for i in range(0, len(ws), batch_size)]
        return torch.cat(out).clamp_(-1, 1)

    def _style_kwargs(self, truncation: Optional[float], noise: Optional[str]) -> dict:
        """Keyword arguments of a style-based generator's forward; a clear error for the others."""
        if truncation is None and noise is None:
            return {"noise_mode": "const"} if self.has_w else {}
        self.require_w("--truncation" if truncation is not None else "--noise")
        if noise is not None and noise not in NOISE_MODES:
            raise UserError(f"--noise {noise!r}: choose one of {', '.join(NOISE_MODES)}")
        if truncation is not None and not 0.0 <= truncation <= 2.0:
            raise UserError(f"--truncation {truncation}: use a psi from 0 (the mean w) to 1 (no truncation)")
        return {"truncation_psi": 1.0 if truncation is None else truncation, "noise_mode": noise or "const"}

    @torch.inference_mode()
    def sample(self, n: int, seed: int = 0, labels: Optional[Sequence[int]] = None, batch_size: int = 256,
               z: Optional[torch.Tensor] = None, truncation: Optional[float] = None,
               noise: Optional[str] = None) -> torch.Tensor:
        """``n`` images, float in [-1, 1], (n, C, H, W) on the CPU; the same seed gives the same images.

        Style-based generators also take ``truncation`` (psi: 0 draws the mean-w image, 1 leaves w as it is) and
        ``noise`` (const: the generator's fixed per-layer noise, the default; random: drawn from ``seed``; none).
        """
        if n < 1:
            raise UserError(f"n={n}: ask for at least one sample")
        require_sample_memory(n, self.config.model, f"n={n:,}")
        kwargs = self._style_kwargs(truncation, noise)
        gen = torch.Generator().manual_seed(seed)
        if z is None:
            z = sample_z(n, self.config.model, "cpu", generator=gen)
        y = self._labels(n, labels, gen)
        out = []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)  # random per-layer noise: a function of the seed too
            for i in range(0, n, batch_size):
                zb = z[i:i + batch_size].to(self.device)
                yb = y[i:i + batch_size].to(self.device) if y is not None else None
                out.append(self.module(zb, yb, **kwargs).float().cpu())
        images = output_of(self.config.model).images  # points keep their coordinates; images stay in [-1, 1]
        return torch.cat(out).clamp_(-1, 1) if images else torch.cat(out)


def generator_from_checkpoint(ckpt: Checkpoint, device: torch.device) -> TrainedGenerator:
    cfg = validate(ckpt.state["config"], source=f"{ckpt.path}/state.json", written_by_ganforge=True)
    if get_family(cfg.model.family).translation:
        raise UserError(f"{ckpt.path.parent.parent} is a {cfg.model.family!r} run, which translates images rather "
                        "than drawing from noise: use 'ganforge translate RUN_DIR --input ... --out ...'")
    name = get_family(cfg.model.family).generator
    G = build_networks(cfg.model)[name]
    state = ckpt.module_state(f"{name}_ema") or ckpt.module_state(name)
    G.load_state_dict(state)
    return TrainedGenerator(G, cfg, device, ckpt.path)


EXPORT_CONFIG = "config.json"  # an exported model's folder (ganforge export): its run config and what it holds
EXPORT_WEIGHTS = "model.safetensors"  # the networks of --format folder, each under its name ("G.<key>")


def is_export(path: Path) -> bool:
    """A folder written by ``ganforge export`` (any format: each writes its config.json)."""
    return (Path(path) / EXPORT_CONFIG).is_file() and not (Path(path) / "config.yaml").is_file()


def exported_networks(folder: Path) -> tuple[RunConfig, dict[str, nn.Module]]:
    """The run config and the networks (EMA weights when the run kept them) of an export of ``--format folder``:
    rebuilt by the family and loaded, as from a checkpoint, so the folder samples what the run sampled."""
    import json

    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        meta = json.loads((folder / EXPORT_CONFIG).read_text())
        run_config, names = meta["run_config"], sorted(set(meta["networks"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{folder}/{EXPORT_CONFIG} is not the config of a 'ganforge export' folder") from None
    if not (folder / EXPORT_WEIGHTS).is_file():
        raise UserError(f"{folder} is a --format {meta.get('format')} export, without {EXPORT_WEIGHTS}: load its "
                        "graphs with onnxruntime or torch (see its README.md), or export --format folder")
    cfg = validate(run_config, source=f"{folder}/{EXPORT_CONFIG}", written_by_ganforge=True)
    nets = build_networks(cfg.model)
    try:
        weights = load_file(str(folder / EXPORT_WEIGHTS))
        for name in names:
            nets[name].load_state_dict({k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(name + ".")})
    except Exception as exc:  # noqa: BLE001 - a damaged file or tensors that do not fit the config
        raise UserError(f"{folder}/{EXPORT_WEIGHTS} does not load into the model its {EXPORT_CONFIG} describes "
                        f"({' '.join(str(exc).split())[:160]}): export the run again") from None
    return cfg, {name: nets[name] for name in names}


def generator_from_export(folder: Path, device: torch.device) -> TrainedGenerator:
    cfg, nets = exported_networks(folder)
    family = get_family(cfg.model.family)
    if family.translation:
        raise UserError(f"{folder} holds a {cfg.model.family!r} model, which translates images rather than drawing "
                        "from noise: use 'ganforge translate'")
    return TrainedGenerator(nets[family.generator], cfg, device, Path(folder))


def load_generator(run_dir: str | Path, device: str = "cpu", checkpoint: Optional[str | Path] = None) -> TrainedGenerator:
    """The generator of a run directory (its newest good checkpoint, or ``checkpoint`` when given), or of a folder
    written by ``ganforge export --format folder``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    dev = pick_device(device)
    if checkpoint is None and is_export(run_dir):
        return generator_from_export(run_dir, dev)
    if checkpoint is not None:
        return generator_from_checkpoint(load_checkpoint(Path(checkpoint)), dev)
    load_run_config(run_dir)  # a clear error when this is not a run directory
    return load_newest(run_dir / "checkpoints", lambda ckpt: generator_from_checkpoint(ckpt, dev))
