"""Data sets: Randman (generated, no download) and MNIST-family IDX files read locally."""

from snnjax.datasets.idx import ImageData, load_idx, read_idx
from snnjax.datasets.randman import RandmanData, randman

__all__ = ["ImageData", "RandmanData", "load_idx", "randman", "read_idx"]
