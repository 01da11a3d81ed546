"""Benchmarks: speed targets are measured here (``ganforge bench ...``), not asserted in tests."""
