"""Data sets as arrays, and batches over them.

``load(name, split)`` for every set: Randman (generated, no download), the Spiking Heidelberg
Digits and Speech Commands (HDF5), N-MNIST, DVS Gesture and CIFAR10-DVS (event files binned
into frames, cached), MNIST-family images from local IDX files or tensorflow-datasets, EMNIST and
CIFAR-10 from tensorflow-datasets, and any arrays (:func:`from_arrays`, :func:`load_npz`).
``batches`` makes shuffled, deterministic epochs.
"""

from snnjax.datasets.arrays import from_arrays, load_npz
from snnjax.datasets.batching import ENCODINGS, batch_indices, batches, encoding, prepare
from snnjax.datasets.dataset import KINDS
from snnjax.datasets.events import EVENT_SETS, bin_events, load_events
from snnjax.datasets.idx import ImageData, load_idx, read_idx
from snnjax.datasets.load import DATASET_KINDS, DATASETS, Dataset, load
from snnjax.datasets.randman import RandmanData, randman
from snnjax.datasets.shd import SpikeData, bin_spikes, download_shd, load_shd

__all__ = [
    "DATASETS",
    "DATASET_KINDS",
    "EVENT_SETS",
    "Dataset",
    "ENCODINGS",
    "ImageData",
    "KINDS",
    "RandmanData",
    "SpikeData",
    "batch_indices",
    "batches",
    "bin_events",
    "bin_spikes",
    "download_shd",
    "encoding",
    "from_arrays",
    "load",
    "load_events",
    "load_idx",
    "load_npz",
    "load_shd",
    "load_tfds",
    "prepare",
    "randman",
    "read_idx",
]


def __getattr__(name: str):
    # tensorflow-datasets is heavy: import it on first use only.
    if name == "load_tfds":
        from snnjax.datasets.tfds_source import load_tfds

        return load_tfds
    raise AttributeError(f"module 'snnjax.datasets' has no attribute {name!r}")
