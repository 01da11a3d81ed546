"""Image conversion shared by every source: PIL image -> (C, H, W) float tensor in [-1, 1].

Kept in one place so folders and torchvision sets see exactly the same mode handling, resize and crop, and so
in-memory batches (``resize_batch``) follow the same rules as single PIL images. A target size is an int (square)
or ``(height, width)``: evaluation builds its reference at whatever shape the samples have.
"""
from __future__ import annotations

import os
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

# PIL's own default; re-set here because another library may have disabled the guard (None).
MAX_IMAGE_PIXELS = 89_478_485
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

_WHITE = (255, 255, 255)

Size = Union[int, tuple[int, int]]  # side of a square, or (height, width)


def as_hw(size: Size) -> tuple[int, int]:
    """``size`` as (height, width); an int means a square."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def cover_size(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) that ``src_hw`` is resized to before the centred crop: the smallest scaling that covers
    ``dst_hw`` (for a square target, the shorter side to ``size``), never below the target on either side."""
    (h, w), (th, tw) = src_hw, dst_hw
    scale = max(th / h, tw / w)
    return max(th, round(h * scale)), max(tw, round(w * scale))


def _crop_box(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of the centred ``dst_hw`` window in ``src_hw``."""
    return (src_hw[0] - dst_hw[0]) // 2, (src_hw[1] - dst_hw[1]) // 2


def resize_note(src_hw: tuple[int, int], size: Size) -> str:
    """What ``resize_center_crop`` / ``resize_batch`` do to a ``src_hw`` image, in words for logs."""
    dst = as_hw(size)
    src = f"{src_hw[0]}x{src_hw[1]}"
    if src_hw == dst:
        return f"{src} as is"
    cropped = cover_size(src_hw, dst) != dst
    return f"resized{' and centre-cropped' if cropped else ''} {src} -> {dst[0]}x{dst[1]}"


def channel_note(src_channels: int, channels: int) -> str:
    """'' when the channels already match, else how ``match_channels`` converts them."""
    if src_channels == channels:
        return ""
    return "grey repeated to RGB" if channels == 3 else "RGB to grey (luma)"


def per_image_note(size: Size) -> str:
    """The note for sets decoded per item (folders, CelebA), whose image shapes are not known up front."""
    h, w = as_hw(size)
    return f"each image resized and centre-cropped to {h}x{w} where its shape differs"


def batch_note(src_chw: tuple[int, int, int], channels: int, size: Size, resize: str = "") -> str:
    """What ``batch_to_tensor`` does to (C, H, W) images, in words: ``resize`` overrides the resize part (for a
    builder that pads first)."""
    parts = (resize or resize_note(tuple(src_chw[1:]), size), channel_note(src_chw[0], channels))
    return ", ".join(p for p in parts if p)


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


def to_channels(img: Image.Image, channels: int, background: tuple[int, int, int] = _WHITE) -> Image.Image:
    """Any PIL mode -> 'L' (channels=1) or 'RGB' (channels=3).

    Transparency is composited on ``background``, white by default (how viewers show it), rather than dropped,
    which would expose whatever colour the transparent pixels happen to store.
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
        under = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        img = Image.alpha_composite(under, rgba).convert("RGB")
    if img.mode == "L" and channels == 1:
        return img
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img.convert("L") if channels == 1 else img


def resize_center_crop(img: Image.Image, size: Size) -> Image.Image:
    """Cover-resize to ``size`` (antialiased bilinear, like torchvision's Resize), then a centred crop.

    For a square ``size`` that is the shorter side to ``size``; for (h, w) the smallest scaling covering both.
    """
    th, tw = as_hw(size)
    w, h = img.size
    if (h, w) != (th, tw):
        h, w = cover_size((h, w), (th, tw))
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    if (h, w) != (th, tw):
        top, left = _crop_box((h, w), (th, tw))
        img = img.crop((left, top, left + tw, top + th))
    return img


RESIZE_POLICIES = ("center-crop", "pad", "stretch")
RESAMPLERS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
              "bilinear": Image.Resampling.BILINEAR}


def parse_colour(text: str) -> tuple[int, int, int]:
    """'white', 'black' or '#rrggbb' -> an RGB triple; ValueError on anything else."""
    named = {"white": _WHITE, "black": (0, 0, 0)}
    t = text.strip().lower()
    if t in named:
        return named[t]
    digits = t[1:]
    if len(t) == 7 and t.startswith("#") and all(c in "0123456789abcdef" for c in digits):
        return tuple(int(t[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    raise ValueError(f"{text!r} is not a colour: write white, black or #rrggbb (six hex digits, e.g. #808080)")


def check_pixels(img: Image.Image) -> Image.Image:
    """Refuse, from the header alone (PIL opens lazily), an image whose decoded size is over MAX_IMAGE_PIXELS: a
    few hundred bytes of PNG can claim 12000x12000 (PIL itself only warns below twice its bound)."""
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        raise Image.DecompressionBombError(f"{w}x{h} pixels is over the limit of {MAX_IMAGE_PIXELS:,}")
    return img


def error_text(exc: BaseException, limit: int = 160) -> str:
    """A decode error on one line, without the in-memory stream PIL names (``<_io.BytesIO object at 0x...>``),
    which says nothing to the user: the caller names the file beside it."""
    import re

    text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", " ".join(str(exc).split()))
    return text[:limit] or type(exc).__name__


def printable(name: str) -> str:
    """A file name on one line whatever it holds: tabs, newlines and other control characters escaped, and bytes
    that are not UTF-8 (surrogate escapes from ``os.listdir``) shown as ``\\xNN``."""
    raw = os.fsencode(name) if any("\udc80" <= c <= "\udcff" for c in name) else None
    text = raw.decode("utf-8", "backslashreplace") if raw is not None else name
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def resize_policy(img: Image.Image, size: Size, policy: str = "center-crop", resampler: str = "bilinear",
                  background: tuple[int, int, int] = _WHITE) -> Image.Image:
    """``img`` to exactly ``size`` by a named policy: ``center-crop`` (cover, then crop the middle: no borders,
    loses the edges), ``pad`` (fit inside, then pad with ``background``: keeps everything, adds borders) or
    ``stretch`` (both sides scaled independently: keeps everything, changes the aspect ratio)."""
    th, tw = as_hw(size)
    w, h = img.size
    method = RESAMPLERS[resampler]
    if policy == "stretch":
        return img if (h, w) == (th, tw) else img.resize((tw, th), method)
    if policy == "pad":
        scale = min(th / h, tw / w)
        nh, nw = max(1, min(th, round(h * scale))), max(1, min(tw, round(w * scale)))
        inner = img if (nh, nw) == (h, w) else img.resize((nw, nh), method)
        fill = background if img.mode == "RGB" else round(0.299 * background[0] + 0.587 * background[1]
                                                           + 0.114 * background[2])
        canvas = Image.new(img.mode, (tw, th), fill)
        canvas.paste(inner, ((tw - nw) // 2, (th - nh) // 2))
        return canvas
    if (h, w) != (th, tw):
        h, w = cover_size((h, w), (th, tw))
        img = img.resize((w, h), method)
    top, left = _crop_box((h, w), (th, tw))
    return img.crop((left, top, left + tw, top + th)) if (h, w) != (th, tw) else img


def to_tensor(img: Image.Image) -> torch.Tensor:
    """'L' or 'RGB' uint8 image -> (C, H, W) float32 in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    return t.to(torch.float32).div_(127.5).sub_(1.0)


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation says (phone photos), or as it is when that tag is malformed."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # malformed EXIF must not make an otherwise fine image unusable
        return img


def pil_to_tensor(img: Image.Image, channels: int, size: Size) -> torch.Tensor:
    """The full per-image pipeline: EXIF orientation, channel conversion, resize + crop, scale to [-1, 1]."""
    img = upright(img)
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


def resize_batch(batch: torch.Tensor, size: Size) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> cover-resized to ``size`` (antialiased bilinear) and centre-cropped, by the
    same rule as ``resize_center_crop``."""
    th, tw = as_hw(size)
    h, w = batch.shape[-2:]
    if (h, w) != (th, tw):
        h, w = cover_size((h, w), (th, tw))
        batch = F.interpolate(batch, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    top, left = _crop_box((h, w), (th, tw))
    return batch[..., top : top + th, left : left + tw]


def batch_to_tensor(images: torch.Tensor, channels: int, size: Size, chunk: int = 4096) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, channels, h, w) in [-1, 1], converted ``chunk`` images at a time.

    Chunking bounds the float intermediates, so only the result itself has to fit in memory.
    """
    n = images.shape[0]
    out = torch.empty((n, channels, *as_hw(size)), dtype=torch.float32)
    for start in range(0, n, chunk):
        part = images[start : start + chunk].to(torch.float32).div_(255.0)
        part = resize_batch(match_channels(part, channels), size)
        out[start : start + chunk] = part.mul(2.0).sub_(1.0).clamp_(-1.0, 1.0)
    return out
