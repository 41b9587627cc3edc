"""One loader for every data set: ``snnjax.datasets.load(name, split=...)``."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

import numpy as np

from snnjax.datasets.arrays import array_file, load_npz
from snnjax.datasets.checks import check_inputs, check_labels
from snnjax.datasets.dataset import Dataset
from snnjax.datasets.events import EVENT_SETS, load_events
from snnjax.datasets.idx import load_idx
from snnjax.datasets.randman import randman
from snnjax.datasets.shd import HSD_CLASSES, load_shd

__all__ = ["DATASETS", "DATASET_KINDS", "Dataset", "load"]

IMAGE_SETS = {"mnist": 10, "fashion_mnist": 10, "kmnist": 10, "emnist": 47, "cifar10": 10}
IDX_READABLE = ("mnist", "fashion_mnist", "kmnist")
DATASETS = ("randman", *HSD_CLASSES, *EVENT_SETS, *IMAGE_SETS)
# The kind of each built-in set's inputs (snnjax.datasets.KINDS).
DATASET_KINDS = {
    "randman": "spikes",
    **dict.fromkeys(HSD_CLASSES, "spikes"),
    **dict.fromkeys(EVENT_SETS, "frames"),
    **dict.fromkeys(IMAGE_SETS, "image"),
}


def _randman(
    split: str,
    seed: int,
    num_classes: int = 10,
    units: int = 100,
    steps: int = 100,
    samples_per_class: int = 1000,
    **options,
) -> Dataset:
    data = randman(
        num_classes=num_classes,
        units=units,
        steps=steps,
        samples_per_class=samples_per_class,
        seed=seed,
        dtype=np.uint8,
        **options,
    )
    cut = int(0.8 * len(data.labels))  # the generator shuffles, so a fixed cut is a random split
    part = slice(None, cut) if split == "train" else slice(cut, None)
    return Dataset(data.spikes[part], data.labels[part], num_classes, "spikes", "randman")


def _check_options(name: str, loader: Callable, options: dict, fixed: tuple[str, ...]) -> None:
    """Raise ``ValueError`` for an option ``loader`` does not take (``fixed`` are set by :func:`load`)."""
    takes = sorted(p for p in inspect.signature(loader).parameters if p not in fixed)
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise ValueError(
            f"{name}: unknown option{'s' * (len(unknown) > 1)} {', '.join(unknown)} (a data option, "
            f"--data-option KEY=VALUE); it takes {', '.join(takes)}."
        )


def load(
    name: str,
    split: str = "train",
    *,
    directory: str | os.PathLike | None = None,
    source: str = "auto",
    seed: int = 0,
    **options,
) -> Dataset:
    """Load a split of a data set as arrays.

    Args:
      name: one of ``DATASETS``: ``randman`` (generated, no download), ``shd`` and ``ssc`` (HDF5
        files), ``nmnist``, ``dvs_gesture`` and ``cifar10_dvs`` (event files as tonic downloads
        them, binned into frames: :func:`~snnjax.datasets.load_events`),
        ``mnist``, ``fashion_mnist``, ``kmnist`` (IDX files or tensorflow-datasets), ``emnist``,
        ``cifar10`` (tensorflow-datasets); or a ``.npz`` data set (:func:`~snnjax.datasets.load_npz`):
        a path ending in ``.npz``, or a name with ``directory`` holding ``NAME.npz``.
      split: ``"train"`` or ``"test"`` (Randman: a fixed 80/20 cut of the generated set).
      directory: where the files are (IDX or HDF5 folder, or tfds's ``data_dir``).
      source: for image sets, ``"idx"``, ``"tfds"`` or ``"auto"`` (local IDX files first, then a
        prepared tensorflow-datasets copy).
      seed: Randman's generator seed.
      **options: passed to the set's own loader (:func:`~snnjax.datasets.randman`'s sizes,
        :func:`~snnjax.datasets.load_shd`'s ``steps`` and ``max_time``, the event sets' ``steps``,
        ``binary`` and ``downsample``, a ``.npz`` set's ``num_classes``).

    Returns:
      :class:`Dataset`.

    Raises:
      ValueError: for an unknown name, split, source or option, a file that cannot be read, or
        labels outside ``[0, num_classes)`` (naming the file).
      FileNotFoundError: for a missing set, saying how to get it.

    Examples:
      >>> from snnjax.datasets import load
      >>> data = load("randman", "test", num_classes=2, units=4, steps=6, samples_per_class=10)
      >>> data.inputs.shape, data.kind, data.num_classes
      ((4, 6, 4), 'spikes', 2)
    """
    path = array_file(name, directory) if name not in DATASETS else None
    if path is not None:
        _check_options(str(path), load_npz, options, ("path", "split"))
        return load_npz(path, split, **options)
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or a .npz file (path/to/file.npz, or a "
            "name with a directory holding NAME.npz)."
        )
    if split not in ("train", "test"):
        raise ValueError(f"{name}: split must be 'train' or 'test', got {split!r}.")
    if source not in ("auto", "idx", "tfds"):
        raise ValueError(f"source must be 'auto', 'idx' or 'tfds', got {source!r}.")
    if name == "randman":
        _check_options(name, randman, options, ("seed", "dtype"))
        return _checked(_randman(split, seed, **options), "randman")
    if name in HSD_CLASSES:
        _check_options(name, load_shd, options, ("split", "directory", "name"))
        data = load_shd(split, directory, name=name, **options)  # checks its labels, naming the file
        return Dataset(data.spikes, data.labels, HSD_CLASSES[name], "spikes", name)
    if name in EVENT_SETS:
        _check_options(name, load_events, options, ("name", "split", "directory"))
        frames, labels = load_events(name, split, directory, **options)  # checks its labels
        return Dataset(frames, labels, len(EVENT_SETS[name].classes), "frames", name)
    if options:
        raise ValueError(f"{name}: image sets take no data options, got {', '.join(sorted(options))}.")
    errors = []
    if source in ("auto", "idx") and name in IDX_READABLE:
        try:
            images = load_idx(name, split, directory, IMAGE_SETS[name])  # checks its labels, naming the file
            return Dataset(images.images, images.labels, IMAGE_SETS[name], "image", name)
        except FileNotFoundError as error:
            if source == "idx":
                raise
            errors.append(str(error))
    if source == "idx":
        raise ValueError(f"{name} has no IDX reader here; use source='tfds'.")
    from snnjax.datasets.tfds_source import load_tfds

    try:
        images = load_tfds(name, split, directory if source == "tfds" else None)
    except (FileNotFoundError, ImportError) as error:
        raise FileNotFoundError(" Or: ".join([*errors, str(error)])) from None
    return _checked(Dataset(images.images, images.labels, IMAGE_SETS[name], "image", name), f"tfds {name} {split}")


def _checked(data: Dataset, where: str) -> Dataset:
    check_labels(data.labels, data.num_classes, where)
    check_inputs(data.inputs, where)
    return data
