r"""Shuffled, deterministic batches over a :class:`~snnjax.datasets.Dataset`, with encoders on request.

The order of epoch ``e`` is a permutation drawn from ``numpy.random.default_rng([seed, e])``,
so any epoch can be replayed on its own (what resuming from a checkpoint needs). Images become
float32 in ``[0, 1]``; spike rasters become time-major ``[T, B, channels]`` float32; an
encoder turns images ``[B, D]`` into spikes ``[T, B, D]`` with a key folded from
``(seed, epoch, batch index)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from snnjax import encoders
from snnjax.datasets.load import Dataset

__all__ = ["ENCODINGS", "batch_indices", "batches", "encoding", "prepare"]

ENCODINGS = ("rate", "latency", "current", "none")


def encoding(name: str, num_steps: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    r"""An image encoder ``(key, x [B, ...] in [0, 1]) -> [T, B, ...]`` (``none``: ``x`` itself).

    ``rate``: Bernoulli spikes with probability ``x`` per step; ``latency``: one spike at
    :math:`\operatorname{round}((T-1)(1-x))`, zero pixels silent; ``current``: ``x`` as a
    constant input current for ``T`` steps.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax.datasets import encoding
      >>> encoding('latency', 3)(None, jnp.array([[1.0, 0.5]]))[:, 0].tolist()
      [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
      >>> encoding('rate', 10)(jax.random.key(0), jnp.ones((2, 4))).shape
      (10, 2, 4)
    """
    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; choose one of {', '.join(ENCODINGS)}.")
    if name != "none" and (not isinstance(num_steps, int) or num_steps < 1):
        raise ValueError(f"encoding {name!r} needs num_steps >= 1, got {num_steps!r}.")
    if name == "rate":
        return lambda key, x: encoders.rate(key, x, num_steps)
    if name == "latency":
        return lambda key, x: encoders.latency(x, num_steps)
    if name == "current":
        return lambda key, x: jnp.broadcast_to(x, (num_steps, *x.shape))
    return lambda key, x: x


def prepare(
    inputs: jax.Array,
    kind: str,
    encode: Callable[[jax.Array, jax.Array], jax.Array],
    key: jax.Array,
    flatten: bool = True,
) -> jax.Array:
    """Raw batch -> network input, traceable: uint8 images scaled and encoded; rasters made time-major.

    Args:
      inputs: a raw batch: images ``[B, H, W(, C)]`` uint8, rasters or sequences ``[B, T, channels]``,
        or static vectors ``[B, L]``.
      kind: one of :data:`snnjax.datasets.KINDS`: ``"image"`` (divided by 255, then encoded),
        ``"static"`` (encoded as it is), ``"spikes"`` or ``"sequence"`` (made time-major) or
        ``"frames"`` (made time-major ``[T, B, H, W, C]``, flattened to ``[T, B, H W C]`` with ``flatten``).
      encode: from :func:`encoding` (images and static vectors only).
      key: for stochastic encoders.
      flatten: flatten images to ``[B, D]`` before encoding.

    Examples:
      >>> import jax, numpy as np
      >>> from snnjax.datasets import encoding, prepare
      >>> images = np.full((2, 28, 28), 255, np.uint8)
      >>> prepare(images, 'image', encoding('current', 5), jax.random.key(0)).shape
      (5, 2, 784)
      >>> prepare(np.zeros((2, 7, 3), np.uint8), 'spikes', None, None).shape
      (7, 2, 3)
    """
    x = jnp.asarray(inputs).astype(jnp.float32)
    if kind in ("spikes", "sequence"):
        return jnp.swapaxes(x, 0, 1)
    if kind == "frames":
        x = jnp.swapaxes(x, 0, 1)
        return x.reshape(*x.shape[:2], -1) if flatten else x
    if kind == "image":
        x = x / 255.0
    if flatten:
        x = x.reshape(x.shape[0], -1)
    return encode(key, x)


def batch_indices(
    num_examples: int,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = True,
) -> list[np.ndarray]:
    """The example indices of each batch of one epoch (see the module docstring for the order).

    Examples:
      >>> from snnjax.datasets import batch_indices
      >>> tuple(tuple(b.tolist()) for b in batch_indices(5, 2, shuffle=False))
      ((0, 1), (2, 3))
      >>> tuple(tuple(b.tolist()) for b in batch_indices(5, 2, shuffle=False, drop_remainder=False))
      ((0, 1), (2, 3), (4,))
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if drop_remainder and batch_size > num_examples:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {num_examples} examples; lower it or pass "
            "drop_remainder=False."
        )
    order = np.random.default_rng([seed, epoch]).permutation(num_examples) if shuffle else np.arange(num_examples)
    stop = num_examples - num_examples % batch_size if drop_remainder else num_examples
    return [order[i : min(i + batch_size, stop)] for i in range(0, stop, batch_size)]


def batches(
    data: Dataset,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    drop_remainder: bool = True,
    encoder: str | None = None,
    num_steps: int | None = None,
    flatten: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterate over one epoch of ``(inputs, labels)`` NumPy batches.

    Args:
      data: from :func:`snnjax.datasets.load`.
      batch_size: B.
      seed: with ``epoch``, fixes the order (and the encoder's randomness).
      epoch: the epoch number.
      shuffle: shuffle the examples.
      drop_remainder: drop the last, smaller batch.
      encoder: one of ``ENCODINGS`` for image sets (``None``: no encoding).
      num_steps: T for the encoder.
      flatten: flatten images to ``[B, D]`` (implied by an encoder).

    Yields:
      ``(inputs, labels)``: spike rasters ``[T, B, channels]``, images ``[B, H, W(, C)]`` or
      ``[B, D]``, or encoded images ``[T, B, D]``, all float32; labels ``[B]`` int32.

    Examples:
      >>> from snnjax.datasets import load, batches
      >>> data = load("randman", "train", num_classes=2, units=3, steps=5, samples_per_class=10)
      >>> x, y = next(batches(data, 4, seed=0))
      >>> x.shape, x.dtype, y.shape
      ((5, 4, 3), dtype('float32'), (4,))
    """
    if encoder is not None and data.kind not in ("image", "static"):
        raise ValueError(f"{data.name} is already over time; encoder applies to images and static vectors only.")
    encode = encoding(encoder or "none", num_steps if num_steps is not None else 0)
    base = jax.random.fold_in(jax.random.key(seed), epoch)
    for i, idx in enumerate(
        batch_indices(
            len(data.labels), batch_size, seed=seed, epoch=epoch, shuffle=shuffle, drop_remainder=drop_remainder
        )
    ):
        x = prepare(data.inputs[idx], data.kind, encode, jax.random.fold_in(base, i), flatten or encoder is not None)
        yield np.asarray(x), data.labels[idx]
