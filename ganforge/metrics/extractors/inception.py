"""``inception-v3``: torch-fidelity's ``FeatureExtractorInceptionV3`` (the TF-compatible port behind published
FID / IS numbers), from a local weights file (``--inception-weights PATH``, ``GANFORGE_INCEPTION_WEIGHTS`` or the
torch hub cache), else downloaded once into that cache (SHA-256 checked; never with ``GANFORGE_OFFLINE=1``)."""
from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Optional, Union

import torch

from ganforge.errors import UserError
from ganforge.metrics.extractors._fetch import OFFLINE_ENV, WeightsFile, download, hub_checkpoints, offline
from ganforge.metrics.extractors.base import Device, ExtractorSpec, check_images

INCEPTION_ENV = "GANFORGE_INCEPTION_WEIGHTS"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
# torch-fidelity's file name first; pytorch-fid's copy of the same converted TF weights has the same layer names.
INCEPTION_FILENAMES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
# the full SHA-256 of torch-fidelity's release file (its name carries the first 8 digits, torch hub's convention)
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_FILE = WeightsFile("Inception-v3", INCEPTION_URL, INCEPTION_FILENAMES[0], INCEPTION_SHA256, "~91 MB")


def _inception_search_dirs() -> list[Path]:
    """Where torch-fidelity (and pytorch-fid) leave the file: torch hub's checkpoints folder (honours TORCH_HOME)."""
    return [hub_checkpoints()]


def _find_in_dir(folder: Path) -> Optional[Path]:
    for sub in (folder, folder / "checkpoints"):
        for fname in INCEPTION_FILENAMES:
            if (sub / fname).is_file():
                return sub / fname
    return None


def _explicit(path: Union[str, os.PathLike], source: str) -> Path:
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        found = _find_in_dir(p)
        if found is not None:
            return found
        raise UserError(f"{source} {p} is a folder without {INCEPTION_FILENAMES[0]}: download it from "
                        f"{INCEPTION_URL} and pass the file's path")
    raise UserError(f"{source} {p}: no such file; download the Inception-v3 weights from {INCEPTION_URL} and "
                    "pass that file's path")


def resolve_inception_weights(weights_path: Optional[Union[str, os.PathLike]] = None) -> Path:
    """The local Inception-v3 weights file: ``weights_path`` (a file, or a folder holding it), else
    ``$GANFORGE_INCEPTION_WEIGHTS``, else torch hub's checkpoints folder, else downloaded there now; offline or on
    a failed download, a one-line ``UserError`` with the fix."""
    if weights_path is not None and str(weights_path) != "":
        return _explicit(weights_path, "--inception-weights")
    env = os.environ.get(INCEPTION_ENV)
    if env:
        return _explicit(env, INCEPTION_ENV)
    dirs = _inception_search_dirs()
    for d in dirs:
        found = _find_in_dir(d)
        if found is not None:
            return found
    looked = ", ".join(str(d) for d in dirs)
    if offline():
        raise UserError(
            f"Inception-v3 metrics need torch-fidelity's weights file {INCEPTION_FILENAMES[0]} (~91 MB), not found "
            f"(looked in --inception-weights, ${INCEPTION_ENV}, {looked}) and {OFFLINE_ENV} forbids downloading it; "
            f"download it from {INCEPTION_URL} and pass --inception-weights PATH (or set {INCEPTION_ENV}=PATH), or "
            "use an offline extractor (ssl-conv, random-conv; mnist-cnn for digits)"
        )
    return download(INCEPTION_FILE, f"pass --inception-weights PATH (or set {INCEPTION_ENV}=PATH)")


def _load_state_dict_safely(path: Path) -> dict[str, torch.Tensor]:
    """A plain tensor state dict from ``.safetensors`` or a ``.pth`` read with ``weights_only=True`` (no code runs)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        # torch's own text would advise weights_only=False (running the pickle's code): never passed on
        msg = ("it holds Python objects besides tensors, which ganforge never unpickles"
               if "weights only" in str(exc).lower() else type(exc).__name__)
        raise UserError(f"cannot read Inception-v3 weights {path} as a plain state dict ({msg}); download "
                        f"{INCEPTION_URL} again") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{path} is not a state dict of tensors; download {INCEPTION_URL} again")
    return state


_TF_PATCH_LOCK = threading.Lock()


def _build_inception(state: dict[str, torch.Tensor], path: Path, features: tuple[str, ...]):
    """torch-fidelity's FeatureExtractorInceptionV3 holding ``state``.

    Its constructor can only load weights itself (a download, or ``torch.load(weights_only=False)`` on a path, which
    would unpickle arbitrary code); so hand it the already safely loaded dict through the one function it calls.
    """
    import torch_fidelity.feature_extractor_inceptionv3 as fe_mod

    calls = []

    def _provide(url, *args, **kwargs):
        calls.append(url)
        return state

    with _TF_PATCH_LOCK:
        original = fe_mod.load_state_dict_from_url
        fe_mod.load_state_dict_from_url = _provide
        try:
            model = fe_mod.FeatureExtractorInceptionV3("inception-v3-compat", list(features))
        except RuntimeError as exc:  # load_state_dict(strict=True): wrong file
            first = str(exc).strip().splitlines()[0]
            raise UserError(f"{path} is not torch-fidelity's Inception-v3 ({first}); download {INCEPTION_URL}") from None
        finally:
            fe_mod.load_state_dict_from_url = original
    if not calls:  # a torch-fidelity release that loads differently: never let it fall back to downloading
        raise RuntimeError("torch-fidelity's FeatureExtractorInceptionV3 no longer loads weights through "
                           "load_state_dict_from_url; ganforge.metrics.extractors needs updating")
    return model


class InceptionExtractor:
    """``inception-v3``: torch-fidelity's TF-compatible Inception-v3. ``features`` = pool3 (N, 2048);
    ``logits`` = the 1008-way logits without the FC bias (``logits_unbiased``, what torch-fidelity's IS uses)."""

    name = "inception-v3"
    feature_dim = 2048
    num_classes = 1008

    def __init__(self, weights_path: Optional[Union[str, os.PathLike]] = None, device: Device = "cpu",
                 batch_size: int = 64) -> None:
        if importlib.util.find_spec("torch_fidelity") is None:
            raise UserError("the inception-v3 extractor needs torch-fidelity: run 'pip install torch-fidelity' "
                            "(or use the offline extractor mnist-cnn)")
        self.weights_path = resolve_inception_weights(weights_path)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        state = _load_state_dict_safely(self.weights_path)
        self.model = _build_inception(state, self.weights_path, ("2048", "logits_unbiased")).to(self.device).eval()

    @staticmethod
    def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] float (N, 1|3, H, W) -> uint8 (N, 3, H, W) 0..255, grey repeated to 3 channels."""
        c = images.shape[1]
        if c not in (1, 3):
            raise ValueError(f"expected 1 or 3 channels, got {c}")
        u8 = ((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
        return u8.expand(-1, 3, -1, -1) if c == 1 else u8

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, Optional[torch.Tensor]]:
        check_images(images)
        feats, logits = [], []
        for i in range(0, images.shape[0], self.batch_size):
            batch = self.to_uint8_rgb(images[i : i + self.batch_size]).to(self.device).contiguous()
            f, lg = self.model(batch)
            feats.append(f.float().cpu())
            logits.append(lg.float().cpu())
        if not feats:
            return {"features": torch.empty(0, 2048), "logits": torch.empty(0, 1008)}
        return {"features": torch.cat(feats), "logits": torch.cat(logits)}


EXTRACTORS = (ExtractorSpec("inception-v3", lambda device, weights=None, **kw: InceptionExtractor(weights, device, **kw),
                            offline=False, about="torch-fidelity's Inception-v3 pool3 (2048-d): comparable with papers"),)
