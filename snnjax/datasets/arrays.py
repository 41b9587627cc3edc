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

_RANKS = {"image": (3, 4), "spikes": (3,), "static": (2,), "sequence": (3,), "frames": (5,)}


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
        shapes = {"image": "uint8 [N, H, W] or [N, H, W, C]", "static": "[N, L]", "frames": "[N, T, H, W, C]"}
        raise ValueError(
            f"{where}: {kind} inputs must be {shapes.get(kind, '[N, T, C]')}, got {inputs.dtype}{list(inputs.shape)}."
        )
    if labels.ndim != 1 or len(labels) != len(inputs):
        raise ValueError(f"{where}: labels must be [N] = [{len(inputs)}], one per input; got {list(labels.shape)}.")
    if not len(inputs):
        raise ValueError(f"{where}: holds no examples (N = 0).")
    if np.iscomplexobj(inputs) or inputs.dtype.hasobject:
        raise ValueError(f"{where}: inputs must be real numbers, got dtype {inputs.dtype}.")
    if num_classes is None:
        check_labels(labels, 2**31 - 1, where)  # integers, not negative
        num_classes = int(labels.max()) + 1 if labels.size else 1
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"{where}: num_classes must be a positive integer, got {num_classes!r}.")
    check_labels(labels, num_classes, where)
    if np.issubdtype(inputs.dtype, np.floating) or kind in ("static", "sequence"):
        with np.errstate(over="ignore"):  # float32 throughout; checked after the cast (float64 may overflow it)
            inputs = inputs.astype(np.float32)
    check_inputs(inputs, where)
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


def _header(z: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of array ``key`` in an open ``.npz`` archive, from its header alone."""
    with z.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    return tuple(shape), np.dtype(dtype)


def _kind(f: Any, path: Path) -> str | None:
    """The file's ``kind`` entry, a string (saved as str or bytes, scalar or one element), or ``None``."""
    if "kind" not in f.files:
        return None
    value = _array(f, "kind", path)
    value = value.item() if value.size == 1 else value
    value = value.decode() if isinstance(value, bytes) else value
    if value not in KINDS:
        raise ValueError(f"{path}: kind must be one of {', '.join(KINDS)}, got {value!r}.")
    return value


def _array(f: Any, key: str, path: Path) -> np.ndarray:
    try:
        return f[key]
    except ValueError as error:  # object arrays, refused without pickle
        raise ValueError(f"{path}: array {key!r} cannot be read without pickle ({error}); save plain arrays.") from None


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

    Args:
      path: the file.

    Returns:
      The kind of its inputs and the shape of ``x_train``; ``x_test`` is checked to have the
      same shape per example.

    Raises:
      FileNotFoundError: for a missing file.
      ValueError: naming the file, for one that is not a ``.npz`` data set, inputs of object
        dtype, a kind that cannot be told or does not fit the rank, or splits of different shapes.
    """
    path = Path(path)
    with _open(path) as f:
        for key in ("x_train", "x_test"):
            _required(f.files, key, path)
        kind = _kind(f, path)
    with zipfile.ZipFile(path) as z:
        (shape, dtype), (test_shape, _) = _header(z, "x_train"), _header(z, "x_test")
    if dtype.hasobject:
        raise ValueError(f"{path}: array 'x_train' holds Python objects; save a numeric array.")
    if kind is None:
        kind = _kind_of(dtype, len(shape), f"{path}: x_train")
    if len(shape) not in _RANKS[kind]:
        raise ValueError(f"{path}: x_train has shape {list(shape)}, which is not {kind} inputs (rank {_RANKS[kind]}).")
    if shape[1:] != test_shape[1:]:
        raise ValueError(
            f"{path}: x_train's examples have shape {list(shape[1:])} but x_test's {list(test_shape[1:])}; they must "
            "match."
        )
    return kind, shape


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
    npz_info(path)  # the splits' shapes agree, the kind fits
    with _open(path) as f:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            _required(f.files, key, path)
        if num_classes is None and "num_classes" in f.files:
            stored = _array(f, "num_classes", path)
            if stored.size != 1 or not np.issubdtype(stored.dtype, np.integer):
                raise ValueError(f"{path}: num_classes must be one integer, got {stored.dtype}{list(stored.shape)}.")
            num_classes = int(stored.item())
        if num_classes is None:
            both = [_array(f, key, path) for key in ("y_train", "y_test")]
            for key, labels in zip(("y_train", "y_test"), both):
                check_labels(labels, 2**31 - 1, f"{path}: {key}")
            num_classes = int(max(int(y.max()) if y.size else 0 for y in both)) + 1
        kind = _kind(f, path)
        inputs, labels = _array(f, f"x_{split}", path), _array(f, f"y_{split}", path)
    return _dataset(inputs, labels, num_classes, kind, path.stem, f"{path}: x_{split}, y_{split}")
