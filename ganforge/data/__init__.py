"""Training data for ganforge: one ``build_dataset`` call for every source ``data.spec`` can name.

Specs: ``mnist-embedded`` (default, offline), ``mnist``, ``fashion-mnist``, ``cifar10``, ``svhn``, ``celeba``
(torchvision, under ``data.root``), ``folder:PATH`` (any images, recursive), ``ring8``, ``grid25`` (2-D points).
"""
from __future__ import annotations

from ganforge.data.base import GanDataset, TensorGanDataset
from ganforge.data.build import NAMED_SPECS, build_dataset, build_spec, describe
from ganforge.data.folder import EXTENSIONS, SCAN_MAX_FILES, FolderDataset, folder_shape, list_images, scan_folder
from ganforge.data.points import mode_centers, mode_std

__all__ = [
    "EXTENSIONS",
    "NAMED_SPECS",
    "SCAN_MAX_FILES",
    "FolderDataset",
    "GanDataset",
    "TensorGanDataset",
    "build_dataset",
    "build_spec",
    "describe",
    "folder_shape",
    "list_images",
    "mode_centers",
    "mode_std",
    "scan_folder",
]
