"""``data.limit`` and ``data.classes``: the training subset of a set, fixed by the run's seed.

Small-data work (ADA, FreezeD) trains on N images of a larger set and compares runs on the same N: the subset is
drawn once from ``train.seed`` (same seed, same images; a resumed run sees the images it started with),
class-balanced where the set has labels (an equal count per class, the remainder one more each for the lowest
labels; a class with fewer images than its share gives all it has and the others share the rest), a seeded random
draw where it has none. ``data.classes`` keeps only the labels it lists, remapped to 0..k-1 in the order given,
so a conditional model needs ``model.num_classes >= k``, not more than the largest original label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from ganforge.data.base import GanDataset
from ganforge.errors import DataError

ClassKey = Union[int, str]


@dataclass(frozen=True)
class Pick:
    """What a subset keeps of a set of ``total`` items: their indices and (remapped) labels."""

    index: torch.Tensor  # into the source set, ascending
    labels: Optional[torch.Tensor]  # the kept items' labels, remapped with data.classes; None when unlabelled
    num_classes: Optional[int]
    class_names: Optional[list[str]]
    total: int  # the items it chose from (after data.classes)
    detail: str  # for the CLI's data line: "50 per class", "seeded"


@dataclass(frozen=True)
class Subset:
    """``data.limit`` and ``data.classes`` with the seed that draws the limit."""

    limit: Optional[int] = None
    classes: Optional[tuple[ClassKey, ...]] = None
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.limit is not None or bool(self.classes)

    def pick(self, labels: Optional[torch.Tensor], names: Optional[Sequence[str]], n: int, spec: str,
             num_classes: Optional[int] = None) -> Pick:
        """The subset of a set of ``n`` items with these ``labels`` (None or all -1: unlabelled)."""
        if labels is not None and (labels.numel() == 0 or bool((labels < 0).all())):
            labels = None
        index, detail = torch.arange(n), ""
        if self.classes:
            if labels is None:
                raise DataError(f"data.classes needs labels but {spec} has none: use a labelled set, or a folder "
                                "with one subfolder per class (DIR/cat/*.png, DIR/dog/*.png)")
            ids = resolve_classes(self.classes, names, num_classes or int(labels.max()) + 1, spec)
            index, labels, names = _keep_classes(labels, ids, names)
            num_classes = len(ids)
            detail = "classes " + ", ".join(str(c) for c in self.classes) + f" as 0-{len(ids) - 1}"
        total = len(index)
        if self.limit is not None:
            if self.limit > total:
                what = " of data.classes" if self.classes else ""
                raise DataError(f"data.limit={self.limit:,} is more than the {total:,} images{what} in {spec}: "
                                f"use --set data.limit={total} or less, or drop data.limit")
            chosen, per = _draw(labels, total, self.limit, self.seed)
            index = index[chosen]
            labels = labels[chosen] if labels is not None else None
            detail = ", ".join(d for d in (per, detail) if d)
        return Pick(index, labels, num_classes, list(names) if names is not None else None, total, detail)


def resolve_classes(classes: Sequence[ClassKey], names: Optional[Sequence[str]], num_classes: int,
                    spec: str) -> list[int]:
    """data.classes as label ids: a folder's subfolder names (also when written as numbers), or label ints; an
    unknown or repeated one is refused."""
    ids: list[int] = []
    for c in classes:
        if names is not None and str(c) in names:  # a folder named "3" is class "3", whatever its index
            i = list(names).index(str(c))
        elif isinstance(c, int) or (isinstance(c, str) and c.strip().isdigit()):
            i = int(c)
        else:
            i = -1
        if not 0 <= i < num_classes:
            known = ", ".join(list(names)[:10]) + (" ..." if len(names) > 10 else "") if names else \
                f"0..{num_classes - 1}"
            raise DataError(f"data.classes: {c!r} is not a class of {spec} (its classes: {known})")
        if i in ids:
            raise DataError(f"data.classes names class {c!r} twice: list each class once")
        ids.append(i)
    return ids


def _keep_classes(labels: torch.Tensor, ids: list[int], names: Optional[Sequence[str]]):
    """(indices of the items of these classes, their labels remapped to 0..k-1, the kept names)."""
    remap = torch.full((int(max(int(labels.max()), *ids)) + 1,), -1, dtype=torch.long)
    remap[torch.tensor(ids)] = torch.arange(len(ids))
    new = remap[labels.clamp(min=0)].masked_fill(labels < 0, -1)
    index = torch.nonzero(new >= 0).flatten()
    kept_names = [names[i] for i in ids] if names is not None else [str(i) for i in ids]
    return index, new[index], kept_names


def shares(counts: Sequence[int], limit: int) -> list[int]:
    """How many of each class a balanced draw of ``limit`` takes: equal shares, the remainder one more each for
    the lowest labels; a class smaller than its share gives all it has and the others share what is left."""
    out, left, open_ = [0] * len(counts), limit, [c for c in range(len(counts)) if counts[c] > 0]
    while open_:
        fair, extra = divmod(left, len(open_))
        small = [c for c in open_ if counts[c] <= fair]
        if not small:
            for i, c in enumerate(open_):
                out[c] = fair + (1 if i < extra else 0)
            break
        for c in small:
            out[c], left = counts[c], left - counts[c]
        open_ = [c for c in open_ if c not in small]
    return out


def _draw(labels: Optional[torch.Tensor], n: int, limit: int, seed: int) -> tuple[torch.Tensor, str]:
    """Positions of ``limit`` of ``n`` items drawn with ``seed`` (balanced over labels when given), ascending,
    and the per-class count in words."""
    gen = torch.Generator().manual_seed(int(seed))
    if labels is None:
        return torch.sort(torch.randperm(n, generator=gen)[:limit]).values, "seeded"
    counts = torch.bincount(labels.clamp(min=0), minlength=int(labels.max()) + 1).tolist()
    take = shares(counts, limit)
    chosen = []
    for c, k in enumerate(take):
        members = torch.nonzero(labels == c).flatten()
        chosen.append(members[torch.randperm(len(members), generator=gen)[:k]])
    used = [k for k in take if k]
    per = f"{min(used)} per class" if min(used) == max(used) else f"{min(used)}-{max(used)} per class"
    return torch.sort(torch.cat(chosen)).values, per


def apply(ds: GanDataset, pick: Pick) -> GanDataset:
    """``ds`` cut to ``pick`` in place (items, labels, class count and names, the note for the data line)."""
    ds.take(pick.index, pick.labels)
    ds.num_classes = pick.num_classes
    ds.class_names = pick.class_names
    ds.subset_of, ds.subset_detail = pick.total, pick.detail
    return ds


def cut(ds: GanDataset, subset: Optional[Subset]) -> GanDataset:
    """``ds`` cut to ``subset`` when it asks for anything (labels read from the set: in-memory sets)."""
    if subset is None or not subset.active:
        return ds
    return apply(ds, subset.pick(ds.labels, ds.class_names, len(ds), ds.name, ds.num_classes))
