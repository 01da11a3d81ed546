"""A labelled colour image set built from Debian packages: desktop icons, labelled by their freedesktop context.

Benches need colour images with classes (a class judge for metric validation, small-data training) and may
download nothing. The icon themes under ``/usr/share/icons`` (Tango, GNOME, Oxygen, Faenza, MATE, elementary,
Moka, LXDE, gartoon, Adwaita...) file every icon under a context (``Context=`` in ``index.theme``): apps,
actions, places, devices, mimetypes, status, categories, emblems, emotes. That context is the label.

* One image per (theme, icon name): the best source the theme has (a PNG of 64-128 px, else the SVG rendered
  with ``rsvg-convert``, else the largest PNG of at least 32 px), composited on white, resized (antialiased) to
  ``size`` px. Symbolic (monochrome glyph) icons are skipped.
* Exact duplicates (one file under many names or themes, the same pixels at ``size``) and near duplicates
  (16x16 thumbnails closer than ``NEAR`` RMS) are dropped, the first kept.
* Contexts with fewer than ``MIN_CLASS`` images are merged into ``other``.
* Splits are drawn by icon NAME with a seed: ``edit-copy`` from Tango and from Oxygen always land in the same
  split, so no split holds another's icon in a different style.

The built set is cached as ``.npz`` under ``$GANFORGE_CACHE/colorset`` (default ``~/.cache/ganforge``), keyed by
size, seed and a fingerprint of the source files; building takes a minute or two (mostly SVG rendering).

API::

    cs = load_colorset(size=32, seed=0)          # ColorSet
    x, y = cs.split("train")                     # uint8 (N, H, W, 3), int64 (N,)
    t = cs.tensor("test")                        # float (N, 3, H, W) in [-1, 1]
    cs.classes                                   # ["actions", "apps", ...]
    cs.write_folder("train", "dir")              # PNGs in class folders, for --data folder:dir
"""
from __future__ import annotations

import configparser
import hashlib
import io
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ganforge.errors import UserError

ICON_ROOT = Path("/usr/share/icons")
FORMAT = "ganforge-colorset/1"  # bump with any change to how images are picked, drawn, deduplicated or split
CONTEXTS = {"actions": "actions", "applications": "apps", "apps": "apps", "categories": "categories",
            "devices": "devices", "emblems": "emblems", "emotes": "emotes", "filesystems": "places",
            "filesytems": "places", "places": "places", "mimetypes": "mimetypes", "status": "status"}
SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}  # shares of the icon names
MIN_CLASS = 250  # a context with fewer images after deduplication joins "other"
MIN_IMAGES = 2000
APT_PACKAGES = ("tango-icon-theme", "gnome-icon-theme", "oxygen-icon-theme", "faenza-icon-theme", "mate-icon-theme",
                "elementary-xfce-icon-theme", "moka-icon-theme", "lxde-icon-theme", "gnome-icon-theme-gartoon",
                "librsvg2-bin")
RENDER = 64  # sources are drawn at this size (at least), then resized


@dataclass
class ColorSet:
    """The deduplicated icons: ``images`` uint8 (N, size, size, 3) on white, ``labels`` into ``classes``,
    ``names`` (the icon's name) and ``themes``, ``splits`` ("train" / "val" / "test" per image)."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    names: np.ndarray
    themes: np.ndarray
    splits: np.ndarray
    seed: int
    fingerprint: str

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.splits == split)

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self.indices(split)
        return self.images[idx], self.labels[idx]

    def tensor(self, split: str):
        """float (N, 3, H, W) in [-1, 1], as ganforge's generators produce images."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(self.split(split)[0])).permute(0, 3, 1, 2).float()
        return x / 127.5 - 1.0

    def counts(self) -> dict[str, dict[str, int]]:
        """split -> class -> images."""
        return {s: {c: int(np.sum((self.splits == s) & (self.labels == k))) for k, c in enumerate(self.classes)}
                for s in SPLITS}

    def write_folder(self, split: str, dest: str | Path) -> Path:
        """The split as PNGs in one folder per class (``--data folder:DEST`` reads it)."""
        from PIL import Image

        dest = Path(dest)
        for i in self.indices(split):
            sub = dest / self.classes[self.labels[i]]
            sub.mkdir(parents=True, exist_ok=True)
            Image.fromarray(self.images[i]).save(sub / f"{i:06d}-{self.themes[i]}-{self.names[i]}.png")
        return dest


def split_folders(root: str | Path, splits: Sequence[str], size: int = 32) -> dict[str, Path]:
    """The ``size`` px set's ``splits`` as folders ``root/icons/SPLIT`` (``icons64`` at 64 px; for ``--data
    folder:``), written once: a marker beside them (a file inside would be read as an image) says they are
    complete."""
    icons = "icons" if size == 32 else f"icons{size}"
    out = {s: Path(root) / icons / s for s in splits}
    marker = Path(root) / f"{icons}-{'-'.join(splits)}.done"
    if not marker.exists():
        cs = load_colorset(size, 0, log=lambda s: None)
        for split, folder in out.items():
            cs.write_folder(split, folder)
        marker.write_text("")
    return out


# ------------------------------------------------------------------ finding the icons

@dataclass(frozen=True)
class _Source:
    theme: str
    name: str
    context: str
    path: Path
    size: int  # the directory's nominal size; 0 for scalable


def _theme_dirs(theme: Path) -> list[tuple[Path, str, int]]:
    """(directory, context, size) of a theme's non-symbolic directories with a known context."""
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        cp.read(theme / "index.theme", encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return []
    out = []
    for sec in cp.sections():
        ctx = CONTEXTS.get(cp[sec].get("Context", "").strip().lower())
        if ctx is None or "symbolic" in sec.lower() or not (theme / sec).is_dir():
            continue
        scale = int(cp[sec].get("Scale", "1") or 1) if cp[sec].get("Scale", "1").isdigit() else 1
        size = cp[sec].get("Size", "0").strip()
        scalable = cp[sec].get("Type", "").strip().lower() == "scalable"
        out.append((theme / sec, ctx, 0 if scalable else (int(size) * scale if size.isdigit() else 0)))
    return out


def _rank(src: _Source) -> tuple:
    """Lower is better: a PNG of 64-128 px, then SVG, then a larger PNG, then smaller PNGs (largest first)."""
    if src.path.suffix != ".png":
        return (1, 0)
    if RENDER <= src.size <= 128:
        return (0, src.size)
    return (2, src.size) if src.size > 128 else (3, -src.size)


def find_sources(root: Path = ICON_ROOT) -> list[_Source]:
    """The best file of every (theme, icon name), symbolic icons and PNGs under 32 px left out."""
    best: dict[tuple[str, str], _Source] = {}
    themes = sorted(p for p in root.iterdir() if (p / "index.theme").is_file()) if root.is_dir() else []
    for theme in themes:
        for folder, ctx, size in _theme_dirs(theme):
            for f in sorted(folder.iterdir()):
                if f.suffix not in (".png", ".svg") or f.stem.endswith("-symbolic") or not f.is_file():
                    continue
                if f.suffix == ".png" and size < 32:
                    continue
                src = _Source(theme.name, f.stem, ctx, f, size)
                key = (theme.name, f.stem)
                if key not in best or _rank(src) < _rank(best[key]):
                    best[key] = src
    seen, out = set(), []
    for k in sorted(best):  # one file linked under many names (aliases) or themes: drawn once
        real = os.path.realpath(best[k].path)
        if real not in seen:
            seen.add(real)
            out.append(best[k])
    return out


def fingerprint(sources: Sequence[_Source]) -> str:
    h = hashlib.sha256(FORMAT.encode())
    for s in sources:
        st = s.path.stat()
        h.update(f"{s.theme}|{s.name}|{s.context}|{s.path}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ drawing them

def _on_white(img, size: int) -> Optional[np.ndarray]:
    from PIL import Image

    img = img.convert("RGBA")
    if img.getbbox() is None:  # fully transparent
        return None
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, img).convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8)


def _draw(src: _Source, size: int) -> Optional[np.ndarray]:
    """The icon composited on white at ``size`` px, or None when it cannot be read."""
    from PIL import Image

    try:
        if src.path.suffix == ".png":
            with Image.open(src.path) as im:
                return _on_white(im, size)
        side = str(max(RENDER, size))
        png = subprocess.run(["rsvg-convert", "-w", side, "-h", side, "-f", "png", str(src.path)],
                             capture_output=True, timeout=30, check=True).stdout
        with Image.open(io.BytesIO(png)) as im:
            return _on_white(im, size)
    except (OSError, ValueError, subprocess.SubprocessError, Image.DecompressionBombError):
        return None


NEAR = 0.02  # RMS difference (0..1) of the 16x16 thumbnails under which two icons are the same icon


def _dedupe(images: list[Optional[np.ndarray]]) -> list[int]:
    """Indices of the images kept: the first of every exact or near duplicate (thumbnails closer than ``NEAR``,
    e.g. one drawing exported by two themes at different sizes); blank images dropped."""
    import torch

    seen, cand = set(), []
    for i, img in enumerate(images):
        if img is None or int(img.min()) > 245:  # nothing drawn but white
            continue
        digest = hashlib.sha1(img.tobytes()).digest()
        if digest not in seen:
            seen.add(digest)
            cand.append(i)
    if not cand:
        return []
    x = torch.from_numpy(np.stack([images[i] for i in cand])).permute(0, 3, 1, 2).float() / 255
    thumbs = torch.nn.functional.adaptive_avg_pool2d(x, 16).flatten(1)
    scale = thumbs.shape[1] ** 0.5
    earlier: dict[int, list[int]] = {}  # position -> earlier positions within NEAR of it
    for a in range(0, len(cand), 1024):
        d = torch.cdist(thumbs[a:a + 1024], thumbs[:a + 1024]) / scale
        rows, cols = torch.nonzero(d < NEAR, as_tuple=True)
        for r, c in zip((rows + a).tolist(), cols.tolist()):
            if c < r:
                earlier.setdefault(r, []).append(c)
    kept: set[int] = set()
    for pos in range(len(cand)):
        if not any(c in kept for c in earlier.get(pos, ())):
            kept.add(pos)
    return [cand[k] for k in sorted(kept)]


def split_by_name(names: Sequence[str], seed: int) -> np.ndarray:
    """"train" / "val" / "test" per item, drawn by name: every item of one name lands in the same split."""
    unique = sorted(set(names))
    order = np.random.default_rng(seed).permutation(len(unique))
    cut_train = int(round(SPLITS["train"] * len(unique)))
    cut_val = cut_train + int(round(SPLITS["val"] * len(unique)))
    which = {}
    for rank, j in enumerate(order):
        which[unique[j]] = "train" if rank < cut_train else ("val" if rank < cut_val else "test")
    return np.array([which[n] for n in names])


def _too_few(found: int, root: Path) -> UserError:
    return UserError(f"only {found} usable icons under {root} (the colour set needs at least {MIN_IMAGES}): "
                     f"install icon themes with 'sudo apt-get install {' '.join(APT_PACKAGES)}'")


def build_colorset(size: int = 32, seed: int = 0, root: Path = ICON_ROOT, sources: Optional[list[_Source]] = None,
                   min_images: int = MIN_IMAGES, workers: int = 2, log: Callable[[str], None] = print) -> ColorSet:
    """Draw, deduplicate, label and split the icons (no cache; ``load_colorset`` caches)."""
    if shutil.which("rsvg-convert") is None:
        raise UserError("the colour set renders SVG icons with rsvg-convert: 'sudo apt-get install librsvg2-bin'")
    sources = find_sources(root) if sources is None else sources
    if len(sources) < min_images:
        raise _too_few(len(sources), root)
    log(f"colorset: drawing {len(sources):,} icons at {size} px")
    with ThreadPoolExecutor(max(1, workers)) as pool:
        drawn = list(pool.map(lambda s: _draw(s, size), sources))
    keep = _dedupe(drawn)
    if len(keep) < min_images:
        raise _too_few(len(keep), root)
    ctx = [sources[i].context for i in keep]
    counts = {c: ctx.count(c) for c in set(ctx)}
    ctx = [c if counts[c] >= MIN_CLASS else "other" for c in ctx]
    classes = sorted(set(ctx))
    names = np.array([sources[i].name for i in keep])
    return ColorSet(np.stack([drawn[i] for i in keep]), np.array([classes.index(c) for c in ctx], dtype=np.int64),
                    classes, names, np.array([sources[i].theme for i in keep]), split_by_name(list(names), seed),
                    seed, fingerprint(sources))


def cache_dir() -> Path:
    return Path(os.environ.get("GANFORGE_CACHE", Path.home() / ".cache" / "ganforge")) / "colorset"


def load_colorset(size: int = 32, seed: int = 0, root: Path = ICON_ROOT, use_cache: bool = True,
                  min_images: int = MIN_IMAGES, log: Callable[[str], None] = print) -> ColorSet:
    """The colour set at ``size`` px with ``seed``'s splits, from the cache when the source files are unchanged."""
    from ganforge.io_utils import atomic_target

    sources = find_sources(root)
    fp = fingerprint(sources)
    path = cache_dir() / f"colorset-{size}px-seed{seed}-{fp}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return ColorSet(z["images"], z["labels"], [str(c) for c in z["classes"]], z["names"], z["themes"],
                                z["splits"], int(z["seed"]), str(z["fingerprint"]))
        except (OSError, ValueError, KeyError) as exc:
            log(f"warning: rebuilding the colour set ({path}: {exc})")
    cs = build_colorset(size, seed, root, sources, min_images=min_images, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, images=cs.images, labels=cs.labels, classes=np.array(cs.classes),
                                names=cs.names, themes=cs.themes, splits=cs.splits, seed=np.array(seed),
                                fingerprint=np.array(cs.fingerprint))
    log(f"colorset: {len(cs.images):,} images, {len(cs.classes)} classes, cached in {path}")
    return cs
