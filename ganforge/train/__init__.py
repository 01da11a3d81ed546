"""Training: ``train(cfg, run_dir)`` runs a whole GAN training (see ``loop.py``)."""
from ganforge.train.loop import RunSummary, train

__all__ = ["train", "RunSummary"]
