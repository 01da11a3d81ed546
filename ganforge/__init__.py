"""ganforge: train, sample, evaluate and compare GANs from one CLI and one API."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_generator", "load_config", "train", "__version__"]


def __getattr__(name: str):
    # lazy: `import ganforge` stays cheap (no torch import) until something is used
    if name == "load_generator":
        from ganforge.apps.sampling import load_generator

        return load_generator
    if name == "load_config":
        from ganforge.config import load_config

        return load_config
    if name == "train":
        from ganforge.apps.training import train

        return train
    raise AttributeError(name)
