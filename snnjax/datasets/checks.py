"""The checks every loader runs on what it read: labels in range, inputs finite.

Training on labels outside ``[0, num_classes)`` gives no error in JAX (the one-hot row is
zero or the gather clips), so a bad label file shows up only later as a loss that will not
fall or becomes NaN. These checks stop it at load time, naming the file.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_inputs", "check_labels"]


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``labels`` are integers in ``[0, num_classes)``.

    Examples:
      >>> import numpy as np
      >>> from snnjax.datasets.checks import check_labels
      >>> check_labels(np.array([0, 9]), 10, "labels.idx")
      >>> check_labels(np.array([0, 255]), 10, "labels.idx")
      Traceback (most recent call last):
      ...
      ValueError: labels.idx: labels must be integers in [0, 10), found 255 (1 of 2 labels out of range).
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}.")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        worst = labels[bad][np.argmax(np.abs(labels[bad].astype(np.int64)))]
        raise ValueError(
            f"{where}: labels must be integers in [0, {num_classes}), found {worst} "
            f"({int(bad.sum())} of {labels.size} labels out of range)."
        )


def check_inputs(inputs: np.ndarray, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if floating-point ``inputs`` hold NaN or infinities."""
    inputs = np.asarray(inputs)
    if np.issubdtype(inputs.dtype, np.floating) and not np.isfinite(inputs).all():
        raise ValueError(f"{where}: inputs hold {int((~np.isfinite(inputs)).sum())} NaN or infinite values.")
