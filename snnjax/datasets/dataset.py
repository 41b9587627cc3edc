"""What every loader returns: a :class:`Dataset`, a split of a data set as arrays."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["KINDS", "Dataset", "data_folder"]

# What a data set's inputs are, which says how a batch becomes the network's input (batching.prepare).
KINDS = ("image", "spikes", "static", "sequence", "frames")


class Dataset(NamedTuple):
    """A split of a data set, as arrays.

    Attributes:
      inputs: sample-major, as stored (the batches are time-major), by ``kind``:

        - ``"image"``: ``[N, H, W]`` or ``[N, H, W, C]`` uint8, scaled to ``[0, 1]`` and
          encoded over T steps;
        - ``"spikes"``: spike rasters (or counts) ``[N, T, channels]``;
        - ``"static"``: float32 vectors ``[N, L]``, encoded over T steps as they are (a current,
          or rates, which must then lie in ``[0, 1]``);
        - ``"sequence"``: float32 sequences ``[N, T, channels]``, presented step by step;
        - ``"frames"``: binned event streams ``[N, T, H, W, C]`` (channels last: the polarities),
          presented step by step, whole to convolutions or flattened for dense layers.
      labels: ``[N]`` int32.
      num_classes: the number of classes.
      kind: one of :data:`KINDS`.
      name: the data set's name.
    """

    inputs: np.ndarray
    labels: np.ndarray
    num_classes: int
    kind: str
    name: str


def data_folder(directory: str | os.PathLike | None, name: str | None = None) -> Path:
    """Where a data set's files are: ``directory``, else ``$SNNJAX_DATA[/name]``, else ``~/.cache/snnjax[/name]``.

    Examples:
      >>> from snnjax.datasets.dataset import data_folder
      >>> str(data_folder("/data/sets", "shd"))  # a given directory is the folder itself
      '/data/sets'
    """
    if directory is not None:
        return Path(directory)
    base = Path(os.environ["SNNJAX_DATA"]) if os.environ.get("SNNJAX_DATA") else Path.home() / ".cache" / "snnjax"
    return base / name if name else base
