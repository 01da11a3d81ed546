"""What every family's model config shares, kept apart from ``config.py`` so family modules can import it.

Each family module (``ganforge/families/<family>.py``) subclasses ``ModelBase`` with its own keys and a
``family: Literal["<name>"]`` tag; ``config.py`` joins them into a discriminated union, so ``model.family``
selects the schema and a key that family does not know is an error naming the keys it does.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    # no number in a config is infinite or NaN: train.ada_kimg=inf would leave ADA off without a word
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelBase(Strict):
    """Keys of every family: image shape, latent, widths, initialisation."""

    family: str
    image_size: int = 32  # side of the square images; a power of two from 16 to 256 for conv families
    channels: Literal[1, 3] = 1
    z_dim: int = Field(100, ge=1)
    z_dist: Literal["normal", "uniform"] = "normal"  # uniform is in [-1, 1], as in the seeds' notebooks
    g_width: int = Field(64, ge=1)  # ngf / conv_dim; mlp: hidden_dim of G's first layer
    d_width: int = Field(64, ge=1)  # ndf / conv_dim; mlp: hidden_dim of D's last hidden layer
    batch_norm: bool = True  # BatchNorm in G and D (never on G's output nor D's input); the seeds' BN comparison switch
    init_std: float = Field(0.02, gt=0.0)  # weights ~ N(0, init_std); BatchNorm gamma ~ N(1, init_std)


class DiscriminatorTricks(Strict):
    """Discriminator add-ons of the GAN literature, each a switch (see ``ganforge/families/parts/layers.py``)."""

    spectral_norm: bool = False  # every conv/linear of D spectrally normalised (Miyato et al. 2018)
    minibatch_std: bool = False  # a minibatch standard-deviation channel before D's head (Karras et al. 2018)
    minibatch_disc: int = Field(0, ge=0)  # minibatch discrimination kernels before D's head (Salimans et al. 2016); 0 = off
    d_batch_norm: Optional[bool] = None  # BatchNorm in D; None: as model.batch_norm (a WGAN-GP critic wants none)

    @property
    def d_bn(self) -> bool:
        """BatchNorm in the discriminator, as configured."""
        return self.d_batch_norm if self.d_batch_norm is not None else bool(getattr(self, "batch_norm", True))


def check_power_of_two(size: int, family: str) -> None:
    if size < 16 or size > 256 or size & (size - 1):
        raise ValueError(f"image_size={size} must be a power of two from 16 to 256 for {family}")


class TranslationConfig(ModelBase):
    """What both image-to-image families share: widths, normalisation, the patch D, random jitter."""

    norm: Literal["batch", "instance"] = "batch"
    d_layers: int = Field(3, ge=1, le=6)  # PatchGAN stride-2 layers: 3 -> 70x70 patches
    load_size: Optional[int] = Field(None, ge=1)  # random jitter: resize to this, crop back (286 for 256 px)
    flip: bool = False  # random horizontal flips (same for A and B)

    @model_validator(mode="after")
    def _jitter(self):
        check_power_of_two(self.image_size, self.family)
        if self.load_size is not None and self.load_size < self.image_size:
            raise ValueError(f"load_size={self.load_size} is below image_size={self.image_size}: jitter resizes "
                             "up to load_size and crops image_size back out")
        return self


class DataConfig(Strict):
    """Where the training images come from. See ``ganforge.data`` for the spec syntax."""

    spec: str = "mnist-embedded"  # mnist-embedded | mnist | fashion-mnist | cifar10 | svhn | celeba | folder:PATH | ring8 | grid25 | paired:PATH | unpaired:PATH | digits-sr | ...; see ganforge.data
    root: str = "data"  # where torchvision sets live (--data-root)
    download: bool = False  # allow torchvision to download a missing set (--download)
    num_workers: int = Field(0, ge=0)
    # train on N images: a fixed subset drawn with train.seed, class-balanced where the set has labels (seeded
    # random otherwise); translation pairs keep their first N, stacked-mnist / ring8 / grid25 generate N
    limit: Optional[int] = Field(None, ge=1)
    # keep only these labels (ints, or a folder's subfolder names), remapped to 0..k-1 in the order given
    classes: Optional[list[Union[int, str]]] = Field(None, min_length=1)
    split: Literal["all", "train", "test"] = "all"  # mnist-embedded: 4,000 train / 1,000 test digits; torchvision: its splits
    labeled: Optional[int] = Field(None, ge=1)  # semi-supervised: keep labels on only this many (class-balanced, seeded)
    direction: Literal["AtoB", "BtoA"] = "AtoB"  # translation data (paired:, unpaired:, digits-*): which side is input

    @model_validator(mode="after")
    def _classes_once(self):
        if self.classes is not None and len(set(map(str, self.classes))) < len(self.classes):
            raise ValueError(f"classes={self.classes} names a class twice: list each class once")
        return self
