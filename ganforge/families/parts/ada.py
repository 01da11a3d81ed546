"""ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data"): adaptive augmentation.

Every image D sees, real and fake, in every phase of D and G (R1 included: the penalty is taken on the augmented
reals), goes through one differentiable pipeline; each transform fires per sample with probability ``p``, and the
controller moves ``p`` so that D's overconfidence on reals, r_t = E[sign(D(real))], stays near a target (D's
logits measured from its decision boundary, ``losses.real_margin``: for the relativistic and critic losses,
whose logits have no fixed zero, from the fakes' mean logit).
Augmentations that are invertible in distribution do not leak into G's output when p stays below ~0.8.

Written for ganforge from the paper's description, for (N, C, H, W) images in [-1, 1] with C = 1 or 3:

- ``b`` (pixel blitting): x-flip, rotation by a multiple of 90 degrees, integer translation (up to 1/8 of the size);
- ``g`` (geometric): isotropic scaling (lognormal, std 0.2 octaves), rotation (uniform, any angle; drawn twice
  with probability 1 - sqrt(1 - p), before and after the anisotropic scaling, so that some rotation fires with
  probability p), anisotropic scaling (std 0.2 octaves), fractional translation (std 1/8 of the size);
- ``c`` (colour): brightness (+N(0, 0.2)), contrast (x lognormal, std 0.5 octaves), luma flip, hue rotation (any
  angle about the grey axis), saturation (x lognormal along the chroma plane, std 1 octave).

The ``b`` and ``g`` transforms are composed into one matrix per sample, applied once by bilinear sampling with
reflection at the borders (gather-based, so its backward is deterministic on GPUs too, unlike grid_sample's; the
paper's wavelet-filtered 2x resampling against aliasing is not done). Integer transforms alone copy pixels exactly.
The ``c`` transforms are composed into one 4x4 colour matrix. On 1-channel images a pixel lies on the grey axis:
brightness and contrast apply as on RGB, luma flip negates the image (the reflection of grey through the axis'
normal plane) and hue and saturation, which leave grey unchanged, are no-ops (not drawn).

Value ranges: geometric outputs are convex combinations of input pixels, so they stay in [-1, 1]; colour outputs
are not clamped (as in the paper): brightness and contrast may push them past [-1, 1].

Random numbers come from torch's global RNG on the images' device, which the training loop checkpoints, so resumed
runs draw the same augmentations. At ``p == 0`` (a Python number) the input is returned as it is, with no work; at
a tensor ``p`` a sample no transform fired on is returned bit for bit too.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch

from ganforge.families.parts.losses import real_margin

GROUPS = {"b": ("xflip", "rotate90", "xint"), "g": ("scale", "rotate", "aniso", "xfrac"),
          "c": ("brightness", "contrast", "lumaflip", "hue", "saturation")}
PIPE_LETTERS = tuple(GROUPS)
XINT_MAX, SCALE_STD, ANISO_STD, XFRAC_STD = 0.125, 0.2, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, SATURATION_STD = 0.2, 0.5, 1.0

Prob = Union[float, torch.Tensor]


def parse_pipe(pipe: str) -> tuple[str, ...]:
    """"bgc" -> the transforms of its groups, in the paper's order; an unknown letter: ValueError naming it."""
    bad = [c for c in pipe if c not in GROUPS]
    if bad:
        raise ValueError(f"unknown ADA group {bad[0]!r} in {pipe!r}: use letters of {''.join(PIPE_LETTERS)} "
                         "(b: flips, 90-degree rotations, integer shifts; g: scaling, rotation, fractional shifts; "
                         "c: colour)")
    return tuple(t for letter in PIPE_LETTERS if letter in pipe for t in GROUPS[letter])


# ------------------------------------------------------------------ random draws (masked to identity)


def _fires(n: int, p: Prob, device: torch.device) -> torch.Tensor:
    """(N,) bool: which samples a transform fires on, each with probability ``p``."""
    return torch.rand(n, device=device) < p


def _masked(value: torch.Tensor, fires: torch.Tensor, identity: float) -> torch.Tensor:
    return torch.where(fires, value, torch.full_like(value, identity))


def _eye(n: int, size: int, device: torch.device) -> torch.Tensor:
    return torch.eye(size, device=device).expand(n, size, size).clone()


def _affine(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor,
            tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) matrices [[a, b, tx], [c, d, ty], [0, 0, 1]] from (N,) entries."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    rows = [torch.stack([a, b, tx], 1), torch.stack([c, d, ty], 1), torch.stack([zero, zero, one], 1)]
    return torch.stack(rows, 1)


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(sx)
    return _affine(sx, zero, zero, sy, zero, zero)


def _rotation(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(cos)
    return _affine(cos, -sin, sin, cos, zero, zero)


def _translation(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(tx), torch.zeros_like(tx)
    return _affine(one, zero, zero, one, tx, ty)


def _uniform(n: int, device: torch.device, limit: float) -> torch.Tensor:
    return (torch.rand(n, device=device) * 2 - 1) * limit


def _xflip(n: int, h: int, w: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    f = _fires(n, p, device)
    sign = _masked(1 - 2 * torch.randint(0, 2, (n,), device=device).float(), f, 1.0)
    return _scale(sign, torch.ones_like(sign)), f


def _rotate90(n: int, h: int, w: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact entries: the cosine and sine of k quarter turns looked up, not computed."""
    f = _fires(n, p, device)
    k = torch.randint(0, 4, (n,), device=device) * f
    table = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], device=device)[k]
    return _rotation(table[:, 0], -table[:, 1]), f


def _xint(n: int, h: int, w: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    f = _fires(n, p, device)
    t = (torch.rand(n, 2, device=device) * 2 - 1) * XINT_MAX * f[:, None]
    return _translation(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h)), f


def _iso_scale(n: int, h: int, w: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    f = _fires(n, p, device)
    s = _masked(torch.exp2(torch.randn(n, device=device) * SCALE_STD), f, 1.0)
    return _scale(1 / s, 1 / s), f


def _rotate(n: int, h: int, w: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One of the two rotations, each with 1 - sqrt(1 - p): some rotation fires with probability p."""
    p_rot = 1 - torch.sqrt((1 - p).clamp(min=0)) if torch.is_tensor(p) else 1 - math.sqrt(max(0.0, 1 - p))
    f = _fires(n, p_rot, device)
    theta = _masked(_uniform(n, device, math.pi), f, 0.0)
    return _rotation(torch.cos(-theta), torch.sin(-theta)), f


def _aniso(n: int, h: int, w: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    f = _fires(n, p, device)
    s = _masked(torch.exp2(torch.randn(n, device=device) * ANISO_STD), f, 1.0)
    return _scale(1 / s, s), f


def _xfrac(n: int, h: int, w: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    f = _fires(n, p, device)
    t = torch.randn(n, 2, device=device) * XFRAC_STD * f[:, None]
    return _translation(-t[:, 0] * w, -t[:, 1] * h), f


# each draws the inverse of its transform (output pixel -> input pixel) and where it fired, in the paper's order;
# the rotation is drawn before and after the anisotropic scaling
_GEOMETRIC = (("xflip", _xflip), ("rotate90", _rotate90), ("xint", _xint), ("scale", _iso_scale),
              ("rotate", _rotate), ("aniso", _aniso), ("rotate", _rotate), ("xfrac", _xfrac))


def geometric_matrix(n: int, h: int, w: int, p: Prob, transforms: tuple[str, ...],
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse map (output pixel -> input pixel, centred pixel units) of each sample, as (N, 3, 3), and which
    samples any transform fired on."""
    inv, any_fired = _eye(n, 3, device), torch.zeros(n, dtype=torch.bool, device=device)
    for name, draw in _GEOMETRIC:
        if name in transforms:
            step, fired = draw(n, h, w, p, device)
            inv, any_fired = inv @ step, any_fired | fired
    return inv, any_fired


def _reflect(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel-index coordinates reflected at the image's outer edges (-0.5 and size - 0.5), within [0, size - 1]."""
    u = torch.remainder(coord + 0.5, 2 * size)
    u = torch.where(u > size, 2 * size - u, u)
    return (u - 0.5).clamp(0, size - 1)


def warp(x: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of ``x`` (N, C, H, W) at ``inv`` @ (output pixel centre), reflected at the borders."""
    n, c, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=inv.dtype) + 0.5 - h / 2,
                            torch.arange(w, device=x.device, dtype=inv.dtype) + 0.5 - w / 2, indexing="ij")
    out = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(h * w, device=x.device, dtype=inv.dtype)])
    src = inv @ out  # (N, 3, H*W)
    sx, sy = _reflect(src[:, 0] + w / 2 - 0.5, w), _reflect(src[:, 1] + h / 2 - 0.5, h)
    x0, y0 = sx.floor(), sy.floor()
    fx, fy = (sx - x0).to(x.dtype)[:, None], (sy - y0).to(x.dtype)[:, None]
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = x.reshape(n, c, h * w)

    def at(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return flat.gather(2, (yi * w + xi)[:, None, :].expand(n, c, h * w))

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return (top * (1 - fy) + bottom * fy).reshape(n, c, h, w)


def _luma_outer(n: int, device: torch.device) -> torch.Tensor:
    """(N, 4, 4): v v^T for the unit grey axis v = (1, 1, 1, 0) / sqrt 3."""
    v = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device) / math.sqrt(3)
    return torch.outer(v, v).expand(n, 4, 4)


def _brightness(n: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    f = _fires(n, p, device)
    step = _eye(n, 4, device)
    step[:, :3, 3] = (torch.randn(n, device=device) * BRIGHTNESS_STD * f)[:, None]
    return step, f


def _contrast(n: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    f = _fires(n, p, device)
    s = _masked(torch.exp2(torch.randn(n, device=device) * CONTRAST_STD), f, 1.0)
    return torch.diag_embed(torch.stack([s, s, s, torch.ones_like(s)], 1)), f


def _lumaflip(n: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Householder reflection through the plane normal to the grey axis, for half the samples it fires on."""
    f = _fires(n, p, device)
    i = torch.randint(0, 2, (n,), device=device).float() * f
    return _eye(n, 4, device) - 2 * _luma_outer(n, device) * i[:, None, None], f


def _hue(n: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    f = _fires(n, p, device)
    return _rotation_about_grey(_masked(_uniform(n, device, math.pi), f, 0.0)), f


def _saturation(n: int, p: Prob, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale the chroma (the part of a pixel off the grey axis); grey and the homogeneous 1 stay."""
    f = _fires(n, p, device)
    s = _masked(torch.exp2(torch.randn(n, device=device) * SATURATION_STD), f, 1.0)
    vv, eye = _luma_outer(n, device), _eye(n, 4, device)
    step = eye + (eye - vv) * (s - 1)[:, None, None]
    step[:, 3, 3] = 1.0
    return step, f


_COLOUR = (("brightness", _brightness), ("contrast", _contrast), ("lumaflip", _lumaflip), ("hue", _hue),
           ("saturation", _saturation))


def color_matrix(n: int, p: Prob, transforms: tuple[str, ...], channels: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 4, 4) homogeneous colour matrices (applied to (r, g, b, 1)) and which samples any transform fired on.
    Hue and saturation are skipped on 1-channel images (grey is their fixed point)."""
    mat, any_fired = _eye(n, 4, device), torch.zeros(n, dtype=torch.bool, device=device)
    for name, draw in _COLOUR:
        if name in transforms and not (channels == 1 and name in ("hue", "saturation")):
            step, fired = draw(n, p, device)
            mat, any_fired = step @ mat, any_fired | fired
    return mat, any_fired


def _rotation_about_grey(theta: torch.Tensor) -> torch.Tensor:
    """(N, 4, 4) rotations by ``theta`` about the grey axis (Rodrigues' formula)."""
    n, device = theta.shape[0], theta.device
    v = torch.tensor([1.0, 1.0, 1.0], device=device) / math.sqrt(3)
    k = torch.tensor([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]], device=device)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    r = torch.eye(3, device=device) * cos + sin * k + (1 - cos) * torch.outer(v, v)
    out = _eye(n, 4, device)
    out[:, :3, :3] = r
    return out


def recolor(x: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """Apply (N, 4, 4) colour matrices; a 1-channel image is read as the grey RGB (g, g, g) and averaged back."""
    m, t = mat[:, :3, :3].to(x.dtype), mat[:, :3, 3].to(x.dtype)
    if x.shape[1] == 1:
        gain, offset = m.sum(2).mean(1), t.mean(1)
        return x * gain[:, None, None, None] + offset[:, None, None, None]
    return torch.einsum("nij,njhw->nihw", m, x) + t[:, :, None, None]


def augment(x: torch.Tensor, p: Prob, pipe: str = "bgc", world: int = 1, rank: int = 0) -> torch.Tensor:
    """ADA-augment ``x`` (N, C, H, W), C = 1 or 3, each transform of ``pipe`` per sample with probability ``p``.
    Differentiable w.r.t. ``x``; never in place; ``p == 0`` as a number returns ``x`` itself.

    Data-parallel (``world`` > 1): every rank draws the global batch's parameters from the shared RNG stream and
    keeps its slice (as the latents are drawn), so two processes augment as one does."""
    return apply_transforms(x, p, parse_pipe(pipe), world, rank)


def apply_transforms(x: torch.Tensor, p: Prob, names: tuple[str, ...], world: int = 1,
                     rank: int = 0) -> torch.Tensor:
    """``augment`` with the transforms named one by one (any of GROUPS' values), in the paper's order."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"ADA augments (N, C, H, W) images with C = 1 or 3, got shape {tuple(x.shape)}")
    unknown = [t for t in names if not any(t in g for g in GROUPS.values())]
    if unknown:
        raise ValueError(f"unknown ADA transform {unknown[0]!r}")
    if not torch.is_tensor(p) and p <= 0:
        return x
    (n, c, h, w), dev = x.shape, x.device
    mine = slice(rank * n, (rank + 1) * n)
    names = tuple(t for g in GROUPS.values() for t in g if t in names)
    geometric = tuple(t for t in names if t in GROUPS["b"] + GROUPS["g"])
    if geometric:
        inv, fired = geometric_matrix(n * world, h, w, p, geometric, dev)
        x = torch.where(fired[mine, None, None, None], warp(x, inv[mine]), x)
    colour = tuple(t for t in names if t in GROUPS["c"])
    if colour:
        mat, fired = color_matrix(n * world, p, colour, c, dev)
        x = torch.where(fired[mine, None, None, None], recolor(x, mat[mine]), x)
    return x


# ------------------------------------------------------------------ the controller


RUN_FRACTION = 0.1  # train.ada_kimg unset: p can go 0 -> 1 in this fraction of the run's steps


def step_size(interval: int, total_steps: int, fraction: float = RUN_FRACTION) -> float:
    """How far p moves per adjustment when its speed follows the run's length: 0 -> 1 in ``fraction`` of the
    run, whatever its batch and length. A fixed ``ada_kimg`` (the paper's 500 in a 25,000-kimg run) would let p
    crawl in a run of ~100 kimg, and race in a long one."""
    return interval / max(1.0, fraction * total_steps)


class AdaController:
    """Holds p (a device tensor) and moves it every ``interval`` steps by sign(r_t - target) times either
    ``step`` (p's speed set by the run's length, ``step_size``) or, with ``kimg``, images / (kimg * 1000);
    r_t = E[sign(margin)] over the reals seen since the last move, a margin being D's logit on a real measured
    from its decision boundary (``losses.real_margin``). ``fixed_p``: p stays there
    (r_t is still measured). The accumulators stay on the device; one host read per interval tells whether
    p is 0, so the pipeline can be skipped while it is."""

    start_p = 0.0  # where an adaptive p starts (the paper's 0; tests start it higher to see it restored)

    def __init__(self, target: float, kimg: Optional[float], interval: int, fixed_p: Optional[float],
                 device: torch.device, world_size: int = 1, step: Optional[float] = None):
        if kimg is None and step is None:
            raise ValueError("AdaController needs kimg or step: how fast p moves")
        self.target, self.kimg, self.step, self.interval = target, kimg, step, interval
        self.fixed, self.device, self.world_size = fixed_p is not None, device, world_size
        p0 = float(fixed_p) if fixed_p is not None else self.start_p
        self.p = torch.full((), p0, device=device)
        self.sign_sum = torch.zeros((), device=device)
        self.count = torch.zeros((), device=device)
        self.rt = torch.zeros((), device=device)
        self.measured = 0  # intervals measured so far (host side): r_t means something once this is > 0
        self.active = p0 > 0  # p > 0, as last read on the host

    def observe(self, margins: torch.Tensor) -> None:
        """Add D's margins on (augmented) reals (``losses.real_margin``) to this interval's tally."""
        margins = margins.detach().float()
        self.sign_sum = self.sign_sum + torch.sign(margins).sum()
        self.count = self.count + margins.numel()

    def begin_step(self, step: int) -> None:
        """At every ``interval``-th step: r_t of the last interval, and p moved (unless fixed)."""
        if step == 0 or step % self.interval:
            return
        total = torch.stack([self.sign_sum, self.count])
        if self.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(total)  # every rank moves p alike
        sign_sum, count = total[0], total[1]
        self.rt = torch.where(count > 0, sign_sum / count.clamp(min=1), self.rt)
        if not self.fixed:
            move = count / (self.kimg * 1000) if self.kimg is not None else torch.where(count > 0, self.step, 0.0)
            self.p = (self.p + torch.sign(self.rt - self.target) * move).clamp(0.0, 1.0)
        self.sign_sum, self.count = torch.zeros_like(self.sign_sum), torch.zeros_like(self.count)
        self.measured += 1
        self.active = bool(self.p > 0)  # the one host read per interval

    @property
    def current_p(self) -> Prob:
        """p for the pipeline: 0.0 (skip) while p is known to be 0, else the device tensor."""
        return self.p if self.active else 0.0

    def stats(self) -> dict[str, torch.Tensor]:
        out = {"ada_p": self.p.clone()}
        if self.measured:
            out["ada_rt"] = self.rt.clone()
        return out

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return ({"ada_p": self.p, "ada_sign_sum": self.sign_sum, "ada_count": self.count, "ada_rt": self.rt},
                {"ada_measured": self.measured})

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore what ``state`` gave; a checkpoint without ADA state (a run started without it) keeps the start."""
        if "ada_p" not in tensors:
            return
        for name in ("p", "sign_sum", "count", "rt"):
            setattr(self, name, tensors[f"ada_{name}"].to(self.device, torch.float32).clone())
        self.measured = int(meta.get("ada_measured", 0))
        self.active = bool(self.p > 0)


class AdaTrainer:
    """Mixin of the noise-to-image trainers (put before ``Trainer``): ``self.ada`` (None unless train.augment=ada),
    ``self.augment(x)`` for every image D sees, ``self.ada_observe(real, fake, loss)`` in D's main phase, ADA's stats,
    and its state merged into the trainer's extra state."""

    ada: Optional[AdaController] = None

    def __init__(self, cfg, nets, ctx):
        super().__init__(cfg, nets, ctx)
        tc = cfg.train
        self.ada_pipe = tc.ada_pipe
        if tc.augment == "ada":
            self.ada = AdaController(tc.ada_target, tc.ada_kimg, tc.ada_interval, tc.ada_p, ctx.device,
                                     ctx.world_size, step=step_size(tc.ada_interval, ctx.total_steps))

    @property
    def ada_stat_keys(self) -> tuple[str, ...]:
        return ("ada_p", "ada_rt") if self.ada is not None else ()

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as D is to see it: through ADA's pipeline at the current p (as it is, without ADA)."""
        if self.ada is None:
            return x
        return augment(x, self.ada.current_p, self.ada_pipe, self.ctx.world_size, self.ctx.rank)

    def ada_observe(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, loss: str,
                    real_label: float = 1.0) -> dict[str, torch.Tensor]:
        """Tally D's margins on this batch's reals under the phase's ``loss``; ADA's stats for the phase to return
        (empty without ADA)."""
        if self.ada is None:
            return {}
        self.ada.observe(real_margin(real_logits, fake_logits, loss, real_label))
        return self.ada.stats()

    def begin_step(self, step: int) -> None:
        super().begin_step(step)
        if self.ada is not None:
            self.ada.begin_step(step)

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = super().extra_state()
        if self.ada is None:
            return tensors, meta
        ada_tensors, ada_meta = self.ada.state()
        return {**tensors, **ada_tensors}, {**meta, **ada_meta}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().load_extra_state(tensors, meta)
        if self.ada is not None:
            self.ada.load_state(tensors, meta)
