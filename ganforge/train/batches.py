"""Deterministic, resumable batch order.

Epoch ``e`` visits the dataset in ``randperm(N)`` drawn from a generator seeded by (seed, e), so the order does
not depend on the number of workers, and a run resumed at batch ``b`` of epoch ``e`` sees exactly the batches it
would have seen. Small in-memory sets are sliced directly (no DataLoader, no per-item Python overhead).

Other sets go through a DataLoader (``num_workers`` processes, batches in order). Creating its iterator draws the
workers' base seed from the loader's generator, by default the global torch RNG that training also draws from; so
the loader gets a generator of its own, seeded by (seed, epoch): a run resumed mid-epoch builds its loader at a
different moment than a straight run did, and must not shift the training RNG (or the workers' seeds) by that.

On a GPU, a set held in memory that fits in a quarter of the free GPU memory is copied there once, with each
epoch's permutation: the batches are then gathered on the device, the same values with no copy from pageable host
memory per step (such a copy makes the host wait for the GPU, every step).

Data-parallel runs: ``batch_size`` is the global batch. Every rank computes the same permutation and takes its
contiguous slice (``rank`` of ``world_size``) of each global batch, so together the ranks see exactly the
batches one process would.
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader

from ganforge.errors import UserError


class BatchSource:
    def __init__(self, dataset, batch_size: int, seed: int, num_workers: int = 0, group: int = 1,
                 rank: int = 0, world_size: int = 1, device: Optional[torch.device] = None):
        """``group`` real batches are handed out together (one per discriminator step); ``device``: where the
        training runs (an in-memory set that fits goes there once)."""
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.group = group
        self.rank, self.world_size = rank, world_size
        if batch_size % world_size:
            raise UserError(f"batch_size={batch_size} is the global batch: it must be a multiple of the "
                            f"{world_size} processes")
        n = len(dataset)
        if n < batch_size * group:
            raise UserError(
                f"the dataset has {n} images, fewer than batch_size*d_steps={batch_size * group}: "
                "lower --batch-size (or train.d_steps), or add images"
            )
        self.batches_per_epoch = n // batch_size  # drop the last incomplete batch (BatchNorm dislikes tiny ones)
        self.steps_per_epoch = self.batches_per_epoch // group
        self.resident = _on_device(dataset, device)  # (images, labels) on the GPU, or None

    @property
    def on_device(self) -> bool:
        return self.resident is not None

    def _generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)

    def permutation(self, epoch: int) -> torch.Tensor:
        return torch.randperm(len(self.dataset), generator=self._generator(epoch))

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Yield, for each step from ``start_step`` to the end of the epoch, a list of ``group`` (x, y) batches."""
        perm = self.permutation(epoch)
        bs = self.batch_size
        first = start_step * self.group
        last = self.steps_per_epoch * self.group
        index_lists = [perm[b * bs:(b + 1) * bs] for b in range(first, last)]
        if self.world_size > 1:  # this rank's slice of each global batch
            local = bs // self.world_size
            index_lists = [idx[self.rank * local:(self.rank + 1) * local] for idx in index_lists]
        tensor = getattr(self.dataset, "tensor", None)
        if self.resident is not None:  # one copy of the permutation per epoch, then gathers on the device
            images, labels = self.resident
            index_lists = torch.stack(index_lists).to(images.device) if index_lists else []
            batches = ((images[idx], labels[idx]) for idx in index_lists)
        elif tensor is not None:
            labels = self.dataset.labels
            batches = ((tensor[idx], labels[idx]) for idx in index_lists)
        else:
            loader = DataLoader(
                self.dataset,
                batch_sampler=[idx.tolist() for idx in index_lists],
                num_workers=self.num_workers,
                persistent_workers=False,
                generator=self._generator(epoch),  # not the global RNG: see the module docstring
            )
            batches = ((x, torch.as_tensor(y)) for x, y in loader)
        group: list[tuple[torch.Tensor, torch.Tensor]] = []
        for item in batches:
            group.append(item)
            if len(group) == self.group:
                yield group
                group = []


RESIDENT_SHARE = 0.25  # of the free GPU memory an in-memory set may take on the device


def _on_device(dataset, device: Optional[torch.device]) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The in-memory set's images and labels copied to a CUDA ``device`` when they fit, else None."""
    tensor, labels = getattr(dataset, "tensor", None), getattr(dataset, "labels", None)
    if device is None or device.type != "cuda" or tensor is None or labels is None:
        return None
    free, _ = torch.cuda.mem_get_info(device)
    if tensor.nbytes + torch.as_tensor(labels).nbytes > RESIDENT_SHARE * free:
        return None
    return tensor.to(device), torch.as_tensor(labels).to(device)
