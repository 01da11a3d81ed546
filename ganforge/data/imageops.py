"""Image conversion shared by every source: PIL image -> (C, S, S) float tensor in [-1, 1].

Kept in one place so folders and torchvision sets see exactly the same mode handling, resize and crop, and so
in-memory batches (``resize_batch``) follow the same rules as single PIL images.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

# PIL's own default; re-set here because another library may have disabled the guard (None).
MAX_IMAGE_PIXELS = 89_478_485
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

_WHITE = (255, 255, 255)


def _scale_to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grey modes -> 'L' by scaling, since PIL's convert('L') clips them to white."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
        arr = arr * 255.0 if arr.min() >= 0.0 and arr.max() <= 1.0 else arr  # float images are usually 0..1
    else:  # 'I;16*' and 'I' (PIL's mode for 16-bit PNG/TIFF): full scale is 65535
        arr = arr.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode -> 'L' (channels=1) or 'RGB' (channels=3).

    Transparency is composited on white (how viewers show it) rather than dropped, which would expose whatever
    colour the transparent pixels happen to store.
    """
    if img.mode.startswith("I") or img.mode == "F":
        img = _scale_to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    elif img.mode == "La":  # premultiplied; PIL converts it to nothing but 'LA'
        img = img.convert("LA")
    if img.mode in ("RGBA", "LA", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "L" and channels == 1:
        return img
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img.convert("L") if channels == 1 else img


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` (antialiased bilinear, like torchvision's Resize), then a centred square crop."""
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
        w, h = nw, nh
    if (w, h) != (size, size):
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return img


def to_tensor(img: Image.Image) -> torch.Tensor:
    """'L' or 'RGB' uint8 image -> (C, H, W) float32 in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    return t.to(torch.float32).div_(127.5).sub_(1.0)


def pil_to_tensor(img: Image.Image, channels: int, size: int) -> torch.Tensor:
    """The full per-image pipeline: EXIF orientation, channel conversion, resize + crop, scale to [-1, 1]."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # malformed EXIF must not make an otherwise fine image unusable
        pass
    img = to_channels(img, channels)
    img = resize_center_crop(img, size)
    return to_tensor(img)


def rgb_to_gray(batch: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) with PIL's ITU-R 601-2 luma weights, so both paths agree."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch * w).sum(dim=1, keepdim=True)


def match_channels(batch: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey <-> RGB for a (N, C, H, W) batch."""
    c = batch.shape[1]
    if c == channels:
        return batch
    if c == 1 and channels == 3:
        return batch.repeat(1, 3, 1, 1)
    if c == 3 and channels == 1:
        return rgb_to_gray(batch)
    raise ValueError(f"cannot convert {c} channels to {channels}")


def resize_batch(batch: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> shorter side ``size`` (antialiased bilinear) and a centred square crop."""
    h, w = batch.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        batch = F.interpolate(batch, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        h, w = nh, nw
    top, left = (h - size) // 2, (w - size) // 2
    return batch[..., top : top + size, left : left + size]


def batch_to_tensor(images: torch.Tensor, channels: int, size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, channels, size, size) in [-1, 1], converted ``chunk`` images at a time.

    Chunking bounds the float intermediates, so only the result itself has to fit in memory.
    """
    n = images.shape[0]
    out = torch.empty((n, channels, size, size), dtype=torch.float32)
    for start in range(0, n, chunk):
        part = images[start : start + chunk].to(torch.float32).div_(255.0)
        part = resize_batch(match_channels(part, channels), size)
        out[start : start + chunk] = part.mul(2.0).sub_(1.0).clamp_(-1.0, 1.0)
    return out
