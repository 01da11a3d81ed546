"""Training: ``train(cfg, run_dir)`` runs a whole training of any family (see ``loop.py``).

Imported lazily, so that a family module can import ``ganforge.families.contract`` while the config (which discovers
the families) is still being built.
"""
from __future__ import annotations

__all__ = ["train", "RunSummary"]


def __getattr__(name: str):
    if name in __all__:
        from ganforge.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'ganforge.train' has no attribute {name!r}")
