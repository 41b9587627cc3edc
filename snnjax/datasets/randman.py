r"""Randman: the random-manifold spike-timing classification task (Zenke & Vogels 2021).

Each class is a smooth random map from a ``dim``-dimensional unit cube to ``units`` values.
A sample draws a point :math:`x \in [0, 1)^{\text{dim}}`, evaluates the class's map, rescales
every unit to :math:`[0, 1]` over the class's samples and turns each value into a single
spike time. Each coordinate of a map is a product over manifold dimensions of random
Fourier series with a power-law spectrum,

.. math::

    f_i(x) = \prod_{d} \sum_{k=1}^{K} \frac{a_{idk}}{k^{\alpha}}
             \sin\!\big(2\pi\,((k - 1)\, x_d\, b_{idk} + c_{idk})\big),
    \qquad K = \lceil \text{prec}^{-1/\alpha} \rceil,

with :math:`a, b, c \sim U[0, 1)` and no constant term (the first coefficient is zero), as in
the reference generator (``fzenke/randman``). Generation is deterministic for a seed; it is
a re-implementation, so samples are not bit-identical to the reference's.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing  # noqa: F401

__all__ = ["RandmanData", "randman"]


class RandmanData(NamedTuple):
    """A Randman data set.

    Attributes:
      spikes: spike rasters, ``[num_samples, steps, units]`` (float32 by default), one spike per unit.
      times: spike times in steps, ``[num_samples, units]`` int32.
      labels: class indices ``[num_samples]`` int32.
    """

    spikes: np.ndarray
    times: np.ndarray
    labels: np.ndarray


def _manifold(rng: np.random.Generator, units: int, dim: int, alpha: float, prec: float) -> np.ndarray:
    cutoff = int(min(math.ceil(prec ** (-1.0 / alpha)), 1000))
    params = rng.random((units, dim, 3, cutoff))
    params[:, :, 0, 0] = 0.0
    return params


def _evaluate(params: np.ndarray, x: np.ndarray, alpha: float) -> np.ndarray:
    cutoff = params.shape[-1]
    k = np.arange(cutoff)
    spectrum = 1.0 / (k + 1.0) ** alpha  # [K]
    a, b, c = params[:, :, 0], params[:, :, 1], params[:, :, 2]  # [U, D, K]
    # phase[n, u, d, k] = 2 pi (k x[n, d] b[u, d, k] + c[u, d, k])
    phase = 2 * np.pi * (k * x[:, None, :, None] * b[None] + c[None])
    series = np.sum(a[None] * spectrum * np.sin(phase), axis=-1)  # [N, U, D]
    return np.prod(series, axis=-1)  # [N, U]


def randman(
    num_classes: int = 10,
    units: int = 100,
    steps: int = 100,
    dim: int = 2,
    alpha: float = 2.0,
    samples_per_class: int = 1000,
    seed: int = 0,
    *,
    prec: float = 1e-3,
    step_fraction: float = 1.0,
    dtype: np.typing.DTypeLike = np.float32,
) -> RandmanData:
    r"""Generate a Randman data set (defaults: the reference's 10 classes, 100 units, 100 steps).

    Args:
      num_classes: number of classes (one manifold each).
      units: input channels.
      steps: time steps of the raster.
      dim: manifold dimension (2 in the reference; larger is harder).
      alpha: smoothness, the spectrum's power law.
      samples_per_class: samples drawn per class.
      seed: the generator's seed; the same seed gives the same data.
      prec: sets the number of Fourier terms, :math:`\lceil \text{prec}^{-1/\alpha}\rceil`.
      step_fraction: spikes occupy the first ``step_fraction`` of the steps.
      dtype: of the spike raster (``np.uint8`` takes a quarter of the memory).

    Returns:
      A shuffled :class:`RandmanData`.

    Examples:
      >>> from snnjax.datasets import randman
      >>> data = randman(num_classes=2, units=5, steps=10, samples_per_class=3)
      >>> data.spikes.shape, data.labels.shape, float(data.spikes.sum(axis=1).max())
      ((6, 10, 5), (6,), 1.0)
    """
    for name, value in (
        ("num_classes", num_classes),
        ("units", units),
        ("steps", steps),
        ("dim", dim),
        ("samples_per_class", samples_per_class),
    ):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"randman: {name} must be a positive int, got {value!r}.")
    if not 0.0 < step_fraction <= 1.0:
        raise ValueError(f"randman: step_fraction must lie in (0, 1], got {step_fraction}.")
    rng = np.random.default_rng(seed)
    times, labels = [], []
    for label in range(num_classes):
        params = _manifold(rng, units, dim, alpha, prec)
        x = rng.random((samples_per_class, dim))
        y = _evaluate(params, x, alpha)
        lo, hi = y.min(axis=0), y.max(axis=0)
        y = (y - lo) / (hi - lo + 1e-7)
        times.append(np.floor(y * (steps * step_fraction - 1) + 0.5).astype(np.int32))
        labels.append(np.full(samples_per_class, label, np.int32))
    times_arr, labels_arr = np.concatenate(times), np.concatenate(labels)
    order = rng.permutation(len(labels_arr))
    times_arr, labels_arr = times_arr[order], labels_arr[order]
    spikes = np.zeros((len(labels_arr), steps, units), dtype)
    n, u = np.meshgrid(np.arange(len(labels_arr)), np.arange(units), indexing="ij")
    spikes[n, times_arr, u] = 1.0
    return RandmanData(spikes, times_arr, labels_arr)
