"""``mnist-cnn``: a small MNIST classifier that ganforge trains itself and ships; offline, in-domain only.

``scripts/train_mnist_classifier.py`` (seeded) trains it on the embedded digits and writes
``ganforge/metrics/weights/mnist_cnn.safetensors``. Its FID is an *in-domain* FID, not comparable with Inception
FID: label it ``fid[mnist-cnn]``, never plain ``fid``. It is also registered with torch-fidelity as
``"mnist-cnn"`` (``register_torch_fidelity()``), so ``torch_fidelity.calculate_metrics(...,
feature_extractor="mnist-cnn")`` works with uint8 inputs.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.errors import UserError
from ganforge.metrics.extractors.base import Device, ExtractorSpec, check_images

MNIST_CNN_FILE = "mnist_cnn.safetensors"
MNIST_CNN_FORMAT = "ganforge-mnist-cnn/1"  # metadata["format"]; bump with any change to MnistCNN's layers
FEATURE_DIM = 128
NUM_CLASSES = 10
INPUT_SIZE = 32  # the network's input: 32x32 = a 28x28 digit plus 2 px of background, as mnist-embedded at size 32
DIGIT_SIZE = 28


def prepare_digits(x: torch.Tensor) -> torch.Tensor:
    """Float (N, C, H, W) in [-1, 1] -> (N, 1, 32, 32) in the layout the classifier was trained on.

    3 channels -> grey (the data pipeline's luma weights; equal channels stay as they are); 1 channel as is.
    32x32 as is; 28x28 gets 2 px of background (-1) on each side, exactly as ``mnist-embedded`` builds 32x32 from
    the 28x28 originals; any other size is first resized to 28x28 (antialiased bilinear, undoing the data
    pipeline's resize of the 28x28 originals) and then padded the same way.
    """
    if not torch.is_tensor(x) or x.dim() != 4:
        raise ValueError(f"expected a (N, C, H, W) tensor, got {tuple(x.shape) if torch.is_tensor(x) else type(x)}")
    if not x.is_floating_point():
        raise ValueError(f"expected float images in [-1, 1], got dtype {x.dtype}")
    c = x.shape[1]
    if c == 3:
        from ganforge.data.imageops import rgb_to_gray

        x = rgb_to_gray(x)
    elif c != 1:
        raise ValueError(f"expected 1 or 3 channels, got {c}")
    h, w = x.shape[-2:]
    if (h, w) == (INPUT_SIZE, INPUT_SIZE):
        return x
    if (h, w) != (DIGIT_SIZE, DIGIT_SIZE):
        x = F.interpolate(x, size=(DIGIT_SIZE, DIGIT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    pad = (INPUT_SIZE - DIGIT_SIZE) // 2
    return F.pad(x, (pad, pad, pad, pad), value=-1.0)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class MnistCNN(nn.Module):
    """conv32-pool, conv64-pool, conv128-pool (BatchNorm, ReLU), FC 2048->128 (BatchNorm, ReLU) = the features,
    dropout, FC 128->10 = the logits. About 360k parameters, ~10 MFLOPs per digit.

    Inputs: float (N, 1 or 3, H, W) in [-1, 1], any size (see ``prepare_digits``). Call ``.eval()`` before use
    (``load_mnist_cnn`` returns it in eval mode).
    """

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_block(1, 32), _conv_block(32, 64), _conv_block(64, 128))  # -> 128 x 4 x 4
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(128 * 4 * 4, FEATURE_DIM, bias=False),
            nn.BatchNorm1d(FEATURE_DIM),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_DIM, NUM_CLASSES))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.fc(self.body(prepare_digits(x)))
        return feats, self.head(feats)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 128) penultimate activations (after BatchNorm + ReLU): the space mnist-cnn FID/KID/PR use."""
        return self.fc(self.body(prepare_digits(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 10) logits."""
        return self.features_and_logits(x)[1]

    @torch.no_grad()
    def classify_channels(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """(N, C, H, W) -> (N, C) int64 digit per channel, each channel read as its own grey digit.

        For Stacked MNIST, where each of the 3 channels holds an independent digit (mode = the 3 labels).
        """
        if x.dim() != 4:
            raise ValueError(f"expected a (N, C, H, W) tensor, got {tuple(x.shape)}")
        n, c, h, w = x.shape
        flat = x.reshape(n * c, 1, h, w)
        device = next(self.parameters()).device
        out = [self(flat[i : i + batch_size].to(device)).argmax(dim=1).cpu() for i in range(0, n * c, batch_size)]
        labels = torch.cat(out) if out else torch.empty(0, dtype=torch.long)
        return labels.reshape(n, c)


def _shipped_weights():
    """The shipped file as an ``importlib.resources`` Traversable (works from a wheel or an editable install)."""
    return resources.files("ganforge") / "metrics" / "weights" / MNIST_CNN_FILE


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = dict(fh.metadata() or {})
            for key in fh.keys():
                tensors[key] = fh.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"cannot read MNIST classifier weights {path}: {exc}; reinstall ganforge or regenerate "
                        "them with 'python scripts/train_mnist_classifier.py'") from None
    return tensors, meta


def _load_shipped(path: Optional[Union[str, os.PathLike]]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"MNIST classifier weights {path}: no such file")
        return _read_safetensors(path)
    res = _shipped_weights()
    if not res.is_file():
        raise UserError(f"the MNIST classifier weights ({MNIST_CNN_FILE}) are missing from the ganforge package: "
                        "reinstall ganforge, or regenerate them with 'python scripts/train_mnist_classifier.py'")
    with resources.as_file(res) as real:
        return _read_safetensors(Path(real))


def mnist_cnn_metadata(path: Optional[Union[str, os.PathLike]] = None) -> dict[str, str]:
    """The shipped file's metadata: format, heldout_accuracy, seed, script, script_version, input, split..."""
    return _load_shipped(path)[1]


def load_mnist_cnn(device: Device = "cpu", path: Optional[Union[str, os.PathLike]] = None) -> MnistCNN:
    """The shipped classifier (or the safetensors file at ``path``), in eval mode, gradients off.

    Weights are read with safetensors only: no pickle is ever unpickled.
    """
    tensors, meta = _load_shipped(path)
    fmt = meta.get("format")
    where = path if path is not None else MNIST_CNN_FILE
    if fmt != MNIST_CNN_FORMAT:
        raise UserError(f"{where} has format {fmt!r}, expected {MNIST_CNN_FORMAT!r}: regenerate it with "
                        "'python scripts/train_mnist_classifier.py'")
    model = MnistCNN()
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise UserError(f"{where} does not match MnistCNN ({first[-1].strip() if first else exc}): regenerate it "
                        "with 'python scripts/train_mnist_classifier.py'") from None
    model.requires_grad_(False)
    return model.to(device).eval()


class MnistCnnExtractor:
    """``mnist-cnn``: 128-d features and 10 digit logits from the shipped classifier. Offline, in-domain only."""

    name = "mnist-cnn"
    feature_dim = FEATURE_DIM
    num_classes = NUM_CLASSES

    def __init__(self, device: Device = "cpu", batch_size: int = 500, weights_path=None) -> None:
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.model = load_mnist_cnn(self.device, weights_path)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, Optional[torch.Tensor]]:
        check_images(images)
        feats, logits = [], []
        for i in range(0, images.shape[0], self.batch_size):
            f, lg = self.model.features_and_logits(images[i : i + self.batch_size].to(self.device, torch.float32))
            feats.append(f.float().cpu())
            logits.append(lg.float().cpu())
        if not feats:
            return {"features": torch.empty(0, FEATURE_DIM), "logits": torch.empty(0, NUM_CLASSES)}
        return {"features": torch.cat(feats), "logits": torch.cat(logits)}

    def classify_channels(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C) predicted digit per channel (Stacked MNIST modes)."""
        check_images(images)
        return self.model.classify_channels(images.to(torch.float32), batch_size=self.batch_size)


TORCH_FIDELITY_NAME = "mnist-cnn"
_TF_CLASS = None


def register_torch_fidelity() -> type:
    """Register the shipped MNIST CNN with torch-fidelity as ``"mnist-cnn"`` (idempotent); returns the class.

    Features: ``"features"`` (128-d, default for fid/kid/prc) and ``"logits"`` (10-way, default for isc). Inputs are
    what torch-fidelity feeds every extractor, uint8 (N, C, H, W) 0..255 with C = 1 or 3. Example::

        register_torch_fidelity()
        torch_fidelity.calculate_metrics(input1=ds1, input2=ds2, fid=True, feature_extractor="mnist-cnn", cuda=False)
    """
    global _TF_CLASS
    try:
        import torch_fidelity
        from torch_fidelity.feature_extractor_base import FeatureExtractorBase
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    except ImportError:
        raise UserError("torch-fidelity is not installed: run 'pip install torch-fidelity'") from None

    if _TF_CLASS is None:

        class TorchFidelityMnistCNN(FeatureExtractorBase):
            """ganforge's shipped MNIST classifier as a torch-fidelity feature extractor (in-domain, not Inception)."""

            def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
                super().__init__(name, features_list)
                self.net = load_mnist_cnn("cpu", feature_extractor_weights_path)

            @staticmethod
            def get_provided_features_list():
                return ("features", "logits")

            @staticmethod
            def get_default_feature_layer_for_metric(metric):
                return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

            @staticmethod
            def can_be_compiled():
                return False

            @staticmethod
            def get_dummy_input_for_compile():
                return torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)

            def forward(self, x):
                if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4):
                    raise ValueError("expecting uint8 images (N, C, H, W)")
                feats, logits = self.net.features_and_logits(x.to(torch.float32) / 127.5 - 1.0)
                out = {"features": feats.float(), "logits": logits.float()}
                return tuple(out[k] for k in self.features_list)

        _TF_CLASS = TorchFidelityMnistCNN
    current = FEATURE_EXTRACTORS_REGISTRY.get(TORCH_FIDELITY_NAME)
    if current is None:
        torch_fidelity.register_feature_extractor(TORCH_FIDELITY_NAME, _TF_CLASS)
    elif current is not _TF_CLASS:
        raise UserError(f"torch-fidelity already has a different feature extractor named {TORCH_FIDELITY_NAME!r}")
    return _TF_CLASS


EXTRACTORS = (ExtractorSpec("mnist-cnn", lambda device, weights=None, **kw: MnistCnnExtractor(device, weights_path=weights, **kw),
                            offline=True, about="the shipped digit classifier (digits only)"),)
