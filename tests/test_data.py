"""ganforge.data: shapes, ranges, conversions, failure messages. CPU only, no downloads."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.config import DataConfig, model_config
from ganforge.data import (
    EXTENSIONS,
    build_dataset,
    build_spec,
    describe,
    folder_shape,
    list_images,
    mode_centers,
    mode_std,
    scan_folder,
)
from ganforge.data.embedded import load_raw
from ganforge.errors import DataError, UserError


def model(size: int = 32, channels: int = 1):
    return model_config(image_size=size, channels=channels)


# --------------------------------------------------------------------------- mnist-embedded


@pytest.fixture(scope="module")
def mnist32():
    return build_dataset(DataConfig(), model(32, 1))


def test_embedded_mnist_shape_range_labels(mnist32):
    ds = mnist32
    assert len(ds) == 5000 and ds.num_classes == 10 and ds.name == "mnist-embedded"
    assert ds.tensor.shape == (5000, 1, 32, 32) and ds.tensor.dtype == torch.float32
    assert ds.labels.dtype == torch.long and sorted(ds.labels.unique().tolist()) == list(range(10))
    assert torch.bincount(ds.labels).tolist() == [500] * 10
    assert ds.tensor.min() == -1.0 and ds.tensor.max() == 1.0
    # padded 2 px of background on every side
    border = torch.cat([ds.tensor[:, :, :2].flatten(), ds.tensor[:, :, -2:].flatten(),
                        ds.tensor[:, :, :, :2].flatten(), ds.tensor[:, :, :, -2:].flatten()])
    assert (border == -1.0).all()
    img, label = ds[7]
    assert img.shape == (1, 32, 32) and isinstance(label, int) and label == int(ds.labels[7])
    assert ds.skipped == []


def test_embedded_mnist_matches_raw_pixels(mnist32):
    images, labels = load_raw()
    # the 28x28 centre is the raw digit, mapped 0..255 -> -1..1
    centre = mnist32.tensor[:, 0, 2:30, 2:30]
    expected = torch.from_numpy(images.astype(np.float32)) / 127.5 - 1
    assert torch.allclose(centre, expected, atol=1e-6)
    assert torch.equal(mnist32.labels, torch.from_numpy(labels.copy()))


def test_embedded_limit_is_class_balanced():
    ds = build_dataset(DataConfig(limit=20), model(32, 1))
    assert len(ds) == 20 and ds.tensor.shape[0] == 20
    assert torch.bincount(ds.labels, minlength=10).tolist() == [2] * 10


def test_embedded_three_channels():
    ds = build_dataset(DataConfig(limit=50), model(32, 3))
    assert ds.tensor.shape == (50, 3, 32, 32)
    assert torch.equal(ds.tensor[:, 0], ds.tensor[:, 1]) and torch.equal(ds.tensor[:, 0], ds.tensor[:, 2])


@pytest.mark.parametrize("size", [16, 64])
def test_embedded_other_sizes(size):
    ds = build_dataset(DataConfig(limit=100), model(size, 1))
    t = ds.tensor
    assert t.shape == (100, 1, size, size)
    assert t.min() >= -1.0 and t.max() <= 1.0
    assert t.max() > 0.5  # resizing kept the bright strokes
    assert (t[:, :, 0, :] == -1).float().mean() > 0.95  # top row still background


# --------------------------------------------------------------------------- folders


def _save(img: Image.Image, path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)


@pytest.fixture()
def image_folder(tmp_path):
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    _save(Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8), "L"), root / "a_gray.png")
    _save(Image.fromarray(rng.integers(0, 256, (20, 50, 3), dtype=np.uint8), "RGB"), root / "b_rgb.JPG")
    rgba = np.zeros((33, 33, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, but fully transparent on the left half
    rgba[:, 16:, 3] = 255
    _save(Image.fromarray(rgba, "RGBA"), root / "sub" / "c_rgba.png")
    pal = Image.fromarray(rng.integers(0, 256, (25, 25, 3), dtype=np.uint8), "RGB").quantize(16)
    _save(pal, root / "sub" / "d_pal.gif")
    # 16-bit grey at mid level: PIL's plain convert('L') would clip 30000 to 255
    _save(Image.fromarray(np.full((64, 48), 30000, dtype=np.uint16)), root / "sub" / "deep" / "e_16bit.png")
    _save(Image.new("RGB", (8, 8)), root / ".hidden.png")  # ignored
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_modes_and_sizes(image_folder, channels):
    ds = build_dataset(DataConfig(spec=f"folder:{image_folder}"), model(16, channels))
    assert len(ds) == 5 and ds.num_classes is None
    assert ds.tensor is not None and ds.tensor.shape == (5, channels, 16, 16)  # small: decoded once, kept in memory
    lazy = build_dataset(DataConfig(spec=f"folder:{image_folder}"), model(16, channels), scan=False)
    assert lazy.tensor is None and lazy.paths == ds.paths
    assert all(torch.equal(ds[i][0], lazy[i][0]) for i in range(5))  # the cache holds what disk reads give
    names = [p.rsplit("/", 1)[-1] for p in ds.paths]
    assert names == ["a_gray.png", "b_rgb.JPG", "c_rgba.png", "d_pal.gif", "e_16bit.png"]
    for i in range(len(ds)):
        img, label = ds[i]
        assert img.shape == (channels, 16, 16) and img.dtype == torch.float32 and label == -1
        assert img.min() >= -1.0 and img.max() <= 1.0
    assert ds.skipped == []
    deep = ds[4][0]
    assert deep.std() < 1e-6 and abs(deep.mean().item() - (30000 / 257 / 127.5 - 1)) < 0.02  # ~ -0.085, not 1.0


def test_folder_transparency_composited_on_white(image_folder):
    ds = build_dataset(DataConfig(spec=f"folder:{image_folder}"), model(16, 3))
    img = ds[2][0]
    assert torch.allclose(img[:, :, 1], torch.ones(3, 16), atol=0.02)  # transparent left edge -> white
    assert torch.allclose(img[:, :, -1], torch.tensor([1.0, -1.0, -1.0]).view(3, 1).expand(3, 16), atol=0.02)


def test_folder_limit_is_a_seeded_subset(image_folder):
    data = DataConfig(spec=f"folder:{image_folder}", limit=2)
    ds = build_dataset(data, model(16, 1), seed=4)
    every = list_images(image_folder)
    assert len(ds) == 2 and ds.paths == sorted(ds.paths, key=every.index) and set(ds.paths) <= set(every)
    assert build_dataset(data, model(16, 1), seed=4, scan=False).paths == ds.paths  # scanned or not: same files


@pytest.fixture()
def folder_with_bad(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    Image.new("L", (20, 20), 200).save(root / "1_good.png")
    (root / "2_noise.png").write_bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes())
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (root / "3_truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.new("L", (20, 20), 50).save(root / "4_good.png")
    return root


def test_small_folders_are_scanned_up_front(folder_with_bad):
    ds = build_dataset(DataConfig(spec=f"folder:{folder_with_bad}"), model(16, 1))
    assert len(ds) == 2  # the two unreadable files are dropped before training starts ...
    assert [p.rsplit("/", 1)[-1] for p in ds.skipped] == ["2_noise.png", "3_truncated.jpg"]  # ... and listed
    with pytest.raises(DataError, match="2_noise.png.*--strict"):
        build_dataset(DataConfig(spec=f"folder:{folder_with_bad}"), model(16, 1), strict=True)


def test_corrupt_files_are_skipped(folder_with_bad):
    # the lazy path, used for folders too big to scan first
    ds = build_dataset(DataConfig(spec=f"folder:{folder_with_bad}"), model(16, 1), scan=False)
    assert len(ds) == 4
    first = ds[0][0]
    assert torch.allclose(first, torch.full_like(first, 200 / 127.5 - 1), atol=1e-5)
    substitute = ds[1][0]  # noise and truncated JPEG are skipped -> the next readable image
    assert torch.allclose(substitute, torch.full_like(substitute, 50 / 127.5 - 1), atol=1e-5)
    assert [p.rsplit("/", 1)[-1] for p in ds.skipped] == ["2_noise.png", "3_truncated.jpg"]
    ds[2]  # already known bad: not listed twice
    assert len(ds.skipped) == 2
    assert "unreadable" in describe(ds)


def test_corrupt_file_strict_raises(folder_with_bad):
    ds = build_dataset(DataConfig(spec=f"folder:{folder_with_bad}"), model(16, 1), strict=True, scan=False)
    with pytest.raises(DataError, match="2_noise.png"):
        ds[1]
    with pytest.raises(DataError, match="3_truncated.jpg"):
        ds[2]


def test_scan_folder(folder_with_bad):
    good, bad = scan_folder(folder_with_bad)
    assert [p.rsplit("/", 1)[-1] for p in good] == ["1_good.png", "4_good.png"]
    assert [p.rsplit("/", 1)[-1] for p in bad] == ["2_noise.png", "3_truncated.jpg"]
    ds = build_dataset(DataConfig(spec=f"folder:{folder_with_bad}"), model(16, 1), scan=True)
    assert len(ds) == 2 and len(ds.skipped) == 2
    # cached in memory: exactly the two good images, in order (grey 200 and grey 50 scaled to [-1, 1])
    assert ds.tensor.shape == (2, 1, 16, 16)
    assert ds.tensor[0].unique().tolist() == pytest.approx([200 / 127.5 - 1]) and ds.tensor[1].max() < -0.5


def test_folders_too_big_for_the_cache_are_read_from_disk(folder_with_bad, monkeypatch):
    from ganforge.data import folder as folder_mod

    monkeypatch.setattr(folder_mod, "CACHE_MAX_BYTES", 100)
    ds = build_dataset(DataConfig(spec=f"folder:{folder_with_bad}"), model(16, 1))
    assert ds.tensor is None and len(ds) == 2 and len(ds.skipped) == 2  # still scanned, still skipped


def test_all_bad_folder(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x00" * 64)
    (tmp_path / "y.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"no readable images in .* \(2 files could not be read, e\.g\. "):
        scan_folder(tmp_path)
    with pytest.raises(DataError, match="no readable images"):  # fails at build time, before any model
        build_dataset(DataConfig(spec=f"folder:{tmp_path}"), model(16, 1))
    ds = build_dataset(DataConfig(spec=f"folder:{tmp_path}"), model(16, 1), scan=False)
    with pytest.raises(DataError, match="no readable images"):
        ds[0]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_a_bad_file(tmp_path):
    # a 1-bit PNG of 10000x10000 px (over PIL's bound) compresses to a few kB
    Image.new("1", (10_000, 10_000)).save(tmp_path / "bomb.png")
    Image.new("L", (8, 8), 10).save(tmp_path / "ok.png")
    good, bad = scan_folder(tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in bad] == ["bomb.png"] and len(good) == 1


def test_missing_and_empty_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=f"folder '{missing}' does not exist"):
        build_dataset(DataConfig(spec=f"folder:{missing}"), model())
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataError) as err:
        build_dataset(DataConfig(spec=f"folder:{empty}"), model())
    assert str(empty) in str(err.value) and ".png" in str(err.value) and ".webp" in str(err.value)
    assert "\n" not in str(err.value)
    assert set(EXTENSIONS) >= {".png", ".jpg", ".tiff"}


# --------------------------------------------------------------------------- specs and torchvision sets


def test_unknown_spec():
    with pytest.raises(DataError, match="'imagenet'") as err:
        build_dataset(DataConfig(spec="imagenet"), model())
    assert isinstance(err.value, UserError) and "folder:PATH" in str(err.value)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn"])
def test_missing_torchvision_set(tmp_path, name):
    with pytest.raises(DataError) as err:
        build_dataset(DataConfig(spec=name, root=str(tmp_path), download=False), model())
    msg = str(err.value)
    assert f"'{name}'" in msg and str(tmp_path) in msg and "--download" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or created


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture()
def fake_mnist_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return tmp_path, images, labels


def test_torchvision_mnist_in_memory_and_per_item_agree(fake_mnist_root, monkeypatch):
    root, images, labels = fake_mnist_root
    data = DataConfig(spec="mnist", root=str(root), limit=10)
    ds = build_dataset(data, model(32, 3))
    assert ds.tensor is not None and ds.tensor.shape == (10, 3, 32, 32) and ds.num_classes == 10
    assert torch.bincount(ds.labels, minlength=10).tolist() == [1] * 10  # data.limit: one of each class
    from ganforge.data import tvsets

    monkeypatch.setattr(tvsets, "TENSOR_BUDGET_BYTES", 0)  # force the per-item PIL path
    lazy = build_dataset(data, model(32, 3))
    assert lazy.tensor is None and len(lazy) == 10
    for i in range(10):
        img, label = lazy[i]
        assert img.shape == (3, 32, 32) and label == ds.labels[i]
        assert (img - ds.tensor[i]).abs().max() < 0.03  # both resize paths agree to ~1 grey level


def test_any_shape_without_a_model_config(fake_mnist_root, image_folder, monkeypatch):
    """``build_spec`` takes (h, w): the tensor and per-item paths agree on non-square targets too."""
    root, _, _ = fake_mnist_root
    ds = build_spec("mnist", str(root), channels=3, size=(24, 40), limit=10)
    assert ds.tensor.shape == (10, 3, 24, 40)
    assert ds.prep == "resized and centre-cropped 28x28 -> 24x40, grey repeated to RGB"
    from ganforge.data import tvsets

    monkeypatch.setattr(tvsets, "TENSOR_BUDGET_BYTES", 0)
    lazy = build_spec("mnist", str(root), channels=3, size=(24, 40), limit=10)
    assert max((lazy[i][0] - ds.tensor[i]).abs().max().item() for i in range(10)) < 0.03
    assert "24x40" in lazy.prep
    digits = build_spec("mnist-embedded", channels=1, size=28, limit=10)
    raw = torch.from_numpy(load_raw()[0][:10].copy()).float() / 127.5 - 1
    assert digits.prep == "28x28 as is" and torch.allclose(digits.tensor[:, 0], raw)
    assert build_spec("mnist-embedded", channels=1, size=32, limit=1).prep == "padded 28x28 -> 32x32"
    assert folder_shape(image_folder) == (40, 30, 1)  # a_gray.png, the first file: 30 wide, 40 high, mode L
    assert build_spec(f"folder:{image_folder}", channels=1, size=(20, 30))[1][0].shape == (1, 20, 30)


# --------------------------------------------------------------------------- 2-D points


@pytest.mark.parametrize("spec,k,std", [("ring8", 8, 0.02), ("grid25", 25, 0.05)])
def test_point_sets(spec, k, std):
    ds = build_dataset(DataConfig(spec=spec), model())
    centers = mode_centers(spec)
    assert ds.kind == "points" and len(ds) == 20_000 and ds.num_classes == k
    assert centers.shape == (k, 2) and mode_std(spec) == std
    assert ds.tensor.shape == (20_000, 2) and ds[0][0].shape == (2,)
    dist = (ds.tensor - centers[ds.labels]).norm(dim=1)
    assert dist.max() < 5 * std
    assert torch.bincount(ds.labels, minlength=k).min() > 20_000 / k * 0.8
    # the label is also the nearest centre
    assert torch.equal(torch.cdist(ds.tensor, centers).argmin(dim=1), ds.labels)
    again = build_dataset(DataConfig(spec=spec, limit=100), model())
    assert torch.equal(again.tensor, build_dataset(DataConfig(spec=spec, limit=100), model()).tensor)


def test_point_geometry():
    ring = mode_centers("ring8")
    assert torch.allclose(ring.norm(dim=1), torch.full((8,), 2.0))
    grid = mode_centers("grid25")
    assert sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert len({tuple(p) for p in grid.tolist()}) == 25


def test_describe(mnist32):
    line = describe(mnist32)
    assert line == "mnist-embedded: 5,000 images 1x32x32, 10 classes, in memory"
