"""Data sets. So far: :func:`randman`, the synthetic spike-timing task that needs no download."""

from snnjax.datasets.randman import RandmanData, randman

__all__ = ["RandmanData", "randman"]
