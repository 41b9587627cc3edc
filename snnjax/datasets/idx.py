r"""MNIST-family image sets read from local IDX files (no download, no TensorFlow).

The IDX format: a big-endian header (two zero bytes, a type code, the number of dimensions,
then one ``uint32`` size per dimension) followed by the raw array; files may be gzipped.
Files are found in ``directory``, else in ``$SNNJAX_DATA/<name>``, else in the places Debian's
packages put them (``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist``).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from snnjax.datasets.checks import check_labels

__all__ = ["IDX_SETS", "ImageData", "load_idx", "read_idx"]

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_SETS = {
    "mnist": ("/usr/share/datasets/mnist",),
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "kmnist": (),
}


class ImageData(NamedTuple):
    """Images and labels.

    Attributes:
      images: ``[N, H, W]`` uint8 (or ``[N, H, W, C]``).
      labels: ``[N]`` int32.
    """

    images: np.ndarray
    labels: np.ndarray


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a NumPy array.

    Raises:
      ValueError: naming the file, if it is not IDX, is truncated or is a broken ``.gz``.

    Examples:
      >>> from snnjax.datasets import read_idx
      >>> images = read_idx('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz')  # doctest: +SKIP
      >>> images.shape, images.dtype  # doctest: +SKIP
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        kind = "a gzip file" if path.suffix == ".gz" else "readable"
        raise ValueError(f"{path} is not {kind} ({error}); replace it with the original IDX file.") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r}).")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_TYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file holds {len(data) - offset}."
        )
    return np.frombuffer(data, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _find(name: str, stem: str, directory: str | os.PathLike | None) -> Path:
    candidates = []
    if directory is not None:
        candidates.append(Path(directory))
    if os.environ.get("SNNJAX_DATA"):
        candidates.append(Path(os.environ["SNNJAX_DATA"]) / name)
    candidates += [Path(p) for p in IDX_SETS.get(name, ())]
    for folder in candidates:
        for file in (folder / stem, folder / f"{stem}.gz"):
            if file.is_file():
                return file
    hint = " or `apt-get install dataset-fashion-mnist` (Debian)" if name == "fashion_mnist" else ""
    raise FileNotFoundError(
        f"{name}: no {stem}[.gz] in {', '.join(map(str, candidates)) or 'any known place'}. Put the IDX files in a "
        f"directory and pass directory=..., or set SNNJAX_DATA so that $SNNJAX_DATA/{name}/ holds them{hint}."
    )


def load_idx(
    name: str, split: str = "train", directory: str | os.PathLike | None = None, num_classes: int | None = None
) -> ImageData:
    """Load ``split`` (``"train"`` or ``"test"``) of an MNIST-family set from IDX files.

    Args:
      name: ``"mnist"``, ``"fashion_mnist"``, ``"kmnist"`` or any name whose files follow the
        MNIST file names (``train-images-idx3-ubyte[.gz]``, ...).
      split: ``"train"`` or ``"test"``.
      directory: the folder holding the files (see the module docstring for the search order).
      num_classes: when given, every label must lie in ``[0, num_classes)``.

    Returns:
      :class:`ImageData` with uint8 images ``[N, 28, 28]`` and int32 labels ``[N]``.

    Raises:
      FileNotFoundError: naming where it looked and how to provide the files.
      ValueError: for an unknown split, mismatched image and label counts, or a label out of
        range, naming the file.

    Examples:
      >>> from snnjax.datasets import load_idx
      >>> data = load_idx('fashion_mnist', 'test')  # doctest: +SKIP
      >>> data.images.shape, data.labels.shape  # doctest: +SKIP
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    images_stem, labels_stem = _FILES[split]
    images = read_idx(_find(name, images_stem, directory))
    labels_path = _find(name, labels_stem, directory)
    labels = read_idx(labels_path)
    if num_classes is not None:
        check_labels(labels, num_classes, str(labels_path))
    labels = labels.astype(np.int32)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{name} {split}: {images.shape[0]} images but {labels.shape[0]} labels.")
    return ImageData(images, labels)
