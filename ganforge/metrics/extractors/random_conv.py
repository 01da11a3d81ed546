"""``random-conv`` and ``random-conv-x4``: randomly initialised conv encoders with fixed seeds, no weights at all.

Naeem et al. (2020, PRDC) showed that the embeddings of an untrained network separate real from generated images
on data unlike ImageNet; with nothing trained, nothing is downloaded and nothing depends on the reference data, so
two runs on different references still share one feature space. ``random-conv`` is one encoder (seed 0);
``random-conv-x4`` concatenates four narrower ones (seeds 0-3, 3x3 and 5x5 kernels), which lowers the luck of
one draw. Both are deterministic: the weights come from the seed, the same on every machine.
"""
from __future__ import annotations

from ganforge.metrics.extractors._convnet import ConvEncoder, EncoderExtractor
from ganforge.metrics.extractors.base import ExtractorSpec

SEED = 0
X4_WIDTHS = (16, 32, 64, 128)


def random_conv(device="cpu", batch_size: int = 256) -> EncoderExtractor:
    return EncoderExtractor("random-conv", [ConvEncoder(seed=SEED)], device, batch_size)


def random_conv_x4(device="cpu", batch_size: int = 256) -> EncoderExtractor:
    encoders = [ConvEncoder(X4_WIDTHS, seed=SEED + k, kernel=3 if k % 2 == 0 else 5) for k in range(4)]
    return EncoderExtractor("random-conv-x4", encoders, device, batch_size)


def _no_weights(name: str, weights) -> None:
    if weights is not None:
        from ganforge.errors import UserError

        raise UserError(f"extractor {name} has no weights file (its weights come from a fixed seed): drop the "
                        "weights path")


def _build(name, make):
    def build(device="cpu", weights=None, **kw):
        _no_weights(name, weights)
        return make(device, **kw)
    return build


EXTRACTORS = (
    ExtractorSpec("random-conv", _build("random-conv", random_conv), offline=True,
                  about="an untrained conv encoder with a fixed seed, multi-scale pooled (any images, no weights)"),
    ExtractorSpec("random-conv-x4", _build("random-conv-x4", random_conv_x4), offline=True,
                  about="four untrained conv encoders (fixed seeds), features concatenated (any images, no weights)"),
)
