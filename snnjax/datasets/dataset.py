"""What every loader returns: a :class:`Dataset`, a split of a data set as arrays."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["KINDS", "Dataset"]

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
