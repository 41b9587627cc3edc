r"""Any arrays as a data set: :func:`from_arrays` in memory, :func:`load_npz` from a ``.npz`` file.

A ``.npz`` data set holds four arrays, named as Keras's ``mnist.npz`` names them: ``x_train``,
``y_train``, ``x_test``, ``y_test``; and, optionally, ``kind`` (a string, one of
:data:`snnjax.datasets.dataset.KINDS`) and ``num_classes`` (an integer). Written with
``np.savez("mine.npz", x_train=..., y_train=..., x_test=..., y_test=...)``, it trains with
``snnjax train --dataset mine.npz``, or ``--dataset mine --data-dir DIR`` for ``DIR/mine.npz``.

The kind, when not given, follows the inputs: floats ``[N, L]`` are ``"static"``, floats
``[N, T, C]`` ``"sequence"``, booleans ``[N, T, C]`` ``"spikes"``; uint8 arrays could be
images or spike counts and must say which. Labels are checked against ``num_classes`` (by
default the largest label of both splits plus one), naming the file and the bad label.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from snnjax.datasets.checks import check_inputs, check_labels
from snnjax.datasets.dataset import KINDS, Dataset

__all__ = ["array_file", "from_arrays", "load_npz", "npz_info"]

_RANKS = {"image": (3, 4), "spikes": (3,), "static": (2,), "sequence": (3,)}


def _kind_of(dtype: np.dtype, ndim: int, where: str) -> str:
    if np.issubdtype(dtype, np.floating) and ndim in (2, 3):
        return "static" if ndim == 2 else "sequence"
    if dtype == np.bool_ and ndim == 3:
        return "spikes"
    raise ValueError(
        f"{where}: cannot tell what inputs of dtype {dtype} and rank {ndim} are; give kind, one of {', '.join(KINDS)} "
        "(floats [N, L] are static, floats [N, T, C] sequences, booleans [N, T, C] spikes)."
    )


def _dataset(inputs: Any, labels: Any, num_classes: int | None, kind: str | None, name: str, where: str) -> Dataset:
    inputs, labels = np.asarray(inputs), np.asarray(labels)
    kind = _kind_of(inputs.dtype, inputs.ndim, where) if kind is None else kind
    if kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    if inputs.ndim not in _RANKS[kind] or (kind == "image" and inputs.dtype != np.uint8):
        shapes = {"image": "uint8 [N, H, W] or [N, H, W, C]", "spikes": "[N, T, C]", "static": "[N, L]"}
        raise ValueError(
            f"{where}: {kind} inputs must be {shapes.get(kind, '[N, T, C]')}, got {inputs.dtype}{list(inputs.shape)}."
        )
    if labels.ndim != 1 or len(labels) != len(inputs):
        raise ValueError(f"{where}: labels must be [N] = [{len(inputs)}], one per input; got {list(labels.shape)}.")
    if num_classes is None:
        check_labels(labels, 2**31 - 1, where)  # integers, not negative
        num_classes = int(labels.max()) + 1 if labels.size else 1
    check_labels(labels, num_classes, where)
    check_inputs(inputs, where)
    if kind in ("static", "sequence"):
        inputs = inputs.astype(np.float32)
    return Dataset(inputs, labels.astype(np.int32), int(num_classes), kind, name)


def from_arrays(
    inputs: Any, labels: Any, *, num_classes: int | None = None, kind: str | None = None, name: str = "arrays"
) -> Dataset:
    """A :class:`~snnjax.datasets.Dataset` of any arrays (module docstring).

    Args:
      inputs: ``[N, ...]``: uint8 images, spike rasters ``[N, T, C]``, float vectors ``[N, L]``
        or float sequences ``[N, T, C]``.
      labels: ``[N]`` integers in ``[0, num_classes)``.
      num_classes: default: the largest label plus one.
      kind: one of :data:`snnjax.datasets.dataset.KINDS`; default: from the inputs' dtype and rank.
      name: the data set's name (in messages and run folders).

    Returns:
      The :class:`~snnjax.datasets.Dataset`; float inputs as float32, labels as int32.

    Raises:
      ValueError: naming ``name``, for inputs whose kind cannot be told or does not fit their
        shape, labels that are not one per input or out of range, NaN or infinite inputs.

    Examples:
      >>> import numpy as np
      >>> from snnjax.datasets import batches, from_arrays
      >>> data = from_arrays(np.random.rand(6, 28, 3), np.array([0, 1, 2, 0, 1, 2]))  # sequences, T = 28
      >>> data.kind, data.num_classes
      ('sequence', 3)
      >>> next(batches(data, 2))[0].shape  # time-major
      (28, 2, 3)
    """
    return _dataset(inputs, labels, num_classes, kind, name, name)


def array_file(name: str, directory: str | os.PathLike | None = None) -> Path | None:
    """The ``.npz`` file that ``name`` means: ``name`` itself if it ends in ``.npz``, else
    ``directory/name.npz`` if that exists; ``None`` otherwise (a built-in data set's name)."""
    if str(name).endswith(".npz"):
        path = Path(name)
        return path if path.is_absolute() or directory is None or path.exists() else Path(directory) / path
    if directory is not None and (Path(directory) / f"{name}.npz").exists():
        return Path(directory) / f"{name}.npz"
    return None


def _open(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such .npz file.")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npz file ({error}).") from None


def _required(files: list[str], key: str, path: Path) -> None:
    if key not in files:
        raise ValueError(
            f"{path}: has no array {key!r}; a .npz data set holds x_train, y_train, x_test, y_test (and optionally "
            f"kind, num_classes); this one has {', '.join(files) or 'none'}."
        )


def npz_info(path: str | os.PathLike) -> tuple[str, tuple[int, ...]]:
    """``(kind, x_train's shape)`` of a ``.npz`` data set, read from its headers (the arrays stay on disk).

    Raises:
      FileNotFoundError: for a missing file.
      ValueError: naming the file, for one that is not a ``.npz`` data set, or whose kind cannot be told.
    """
    path = Path(path)
    with _open(path) as f:
        _required(f.files, "x_train", path)
        kind = str(f["kind"]) if "kind" in f.files else None
    with zipfile.ZipFile(path) as z, z.open("x_train.npy") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    if kind is None:
        kind = _kind_of(np.dtype(dtype), len(shape), f"{path}: x_train")
    if kind not in KINDS:
        raise ValueError(f"{path}: kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    return kind, tuple(shape)


def load_npz(path: str | os.PathLike, split: str = "train", *, num_classes: int | None = None) -> Dataset:
    """A split of a ``.npz`` data set (module docstring).

    Args:
      path: the file.
      split: ``"train"`` or ``"test"``.
      num_classes: default: the file's ``num_classes``, else the largest label of both splits plus one.

    Returns:
      The :class:`~snnjax.datasets.Dataset`, named after the file (without ``.npz``).

    Raises:
      FileNotFoundError: for a missing file.
      ValueError: naming the file and array, for a file that cannot be read, a missing array, or
        inputs and labels that :func:`from_arrays` refuses.

    Examples:
      >>> import numpy as np, tempfile, os
      >>> from snnjax.datasets import load_npz
      >>> path = os.path.join(tempfile.mkdtemp(), "mine.npz")
      >>> np.savez(path, x_train=np.ones((4, 5)), y_train=np.array([0, 1, 0, 1]),
      ...          x_test=np.ones((2, 5)), y_test=np.array([1, 3]))
      >>> data = load_npz(path, "train")
      >>> data.name, data.kind, data.num_classes  # the test labels count too
      ('mine', 'static', 4)
    """
    if split not in ("train", "test"):
        raise ValueError(f"{path}: split must be 'train' or 'test', got {split!r}.")
    path = Path(path)
    with _open(path) as f:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            _required(f.files, key, path)
        if num_classes is None and "num_classes" in f.files:
            num_classes = int(f["num_classes"])
        if num_classes is None:
            both = [f[key] for key in ("y_train", "y_test")]
            for key, labels in zip(("y_train", "y_test"), both):
                check_labels(labels, 2**31 - 1, f"{path}: {key}")
            num_classes = int(max(int(y.max()) if y.size else 0 for y in both)) + 1
        kind = str(f["kind"]) if "kind" in f.files else None
        inputs, labels = f[f"x_{split}"], f[f"y_{split}"]
    return _dataset(inputs, labels, num_classes, kind, path.stem, f"{path}: x_{split}, y_{split}")
