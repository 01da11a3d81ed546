"""What ganforge does when nothing is named: kept in this import-free module so the CLI's help can show it
without loading the config machinery."""
from __future__ import annotations

# `ganforge train` with no preset: the default DCGAN's network and data with R3GAN's loss (RpGAN + R1 + R2). It beat
# the old default `dcgan-mnist` at equal time on held-out digits (docs/BENCHMARKS.md, "Time to quality on 2 cores").
DEFAULT_PRESET = "dcgan-mnist-rpgan"
