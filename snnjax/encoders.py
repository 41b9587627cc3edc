r"""Spike encoders: turn static values or sequences into time-major spike trains ``[T, B, ...]``.

- :func:`rate`: Bernoulli spikes with probability equal to the value at every step.
- :func:`latency`: one spike per value, earlier for larger values (time to first spike).
- :func:`delta`: a spike where a sequence changes by more than a threshold.

Outputs are floats, exactly 0 or 1 (``delta`` with ``off_spikes`` also gives -1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from snnjax.checks import concrete

__all__ = ["rate", "latency", "delta"]


def _check_unit(x: jax.Array, name: str) -> None:
    v = concrete(x)
    if v is not None and v.size and not np.all((v >= 0) & (v <= 1)):
        raise ValueError(
            f"{name}: values must lie in [0, 1] (scale your data first), got range [{v.min()}, {v.max()}]."
        )


def _check_steps(num_steps: int, name: str) -> None:
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"{name}: num_steps must be a positive int, got {num_steps!r}.")


def rate(
    key: jax.Array, x: ArrayLike, num_steps: int, *, gain: float = 1.0, dtype: DTypeLike = jnp.float32
) -> jax.Array:
    r"""Bernoulli rate code: :math:`z_t \sim \operatorname{Bernoulli}(\text{gain}\cdot x)`, independent over t.

    Args:
      key: a PRNG key.
      x: intensities in ``[0, 1]``, ``[B, ...]``.
      num_steps: ``T``.
      gain: scales the probability (clipped to 1).
      dtype: the output dtype.

    Returns:
      Spikes ``[T, B, ...]``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import encoders
      >>> z = encoders.rate(jax.random.key(0), jnp.array([[0.0, 1.0]]), num_steps=5)
      >>> z.shape, float(z[:, 0, 0].sum()), float(z[:, 0, 1].sum())
      ((5, 1, 2), 0.0, 5.0)
    """
    x = jnp.asarray(x)
    _check_unit(x, "rate")
    _check_steps(num_steps, "rate")
    p = jnp.clip(gain * x, 0.0, 1.0)
    return jax.random.bernoulli(key, jnp.broadcast_to(p, (num_steps, *x.shape))).astype(dtype)


def latency(
    x: ArrayLike,
    num_steps: int,
    *,
    silent_below: float = 0.0,
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
    r"""Time-to-first-spike code: one spike at step :math:`t = \operatorname{round}((T - 1)(1 - x))`.

    The largest value 1 spikes first (t = 0), 0 last (t = T - 1), matching
    :math:`t = T_w (1 - \text{pixel}/255)` on a grid; values at or below ``silent_below``
    do not spike at all (pass ``silent_below=0.0`` to silence zero pixels, ``-1.0`` to keep them).

    Args:
      x: intensities in ``[0, 1]``, ``[B, ...]``.
      num_steps: ``T``.
      silent_below: values ``<=`` this stay silent.
      dtype: the output dtype.

    Returns:
      Spikes ``[T, B, ...]``, at most one per input.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import encoders
      >>> encoders.latency(jnp.array([[1.0, 0.5, 0.0]]), num_steps=5)[:, 0]
      Array([[1., 0., 0.],
             [0., 0., 0.],
             [0., 1., 0.],
             [0., 0., 0.],
             [0., 0., 0.]], dtype=float32)
    """
    x = jnp.asarray(x)
    _check_unit(x, "latency")
    _check_steps(num_steps, "latency")
    t = jnp.round((num_steps - 1) * (1.0 - x)).astype(jnp.int32)
    steps = jnp.arange(num_steps, dtype=jnp.int32).reshape((num_steps,) + (1,) * x.ndim)
    return ((steps == t[None]) & (x > silent_below)[None]).astype(dtype)


def delta(xs: ArrayLike, threshold: float = 0.1, *, off_spikes: bool = False, first: str = "zero") -> jax.Array:
    r"""Delta (change) code of a sequence: :math:`z_t = H(x_t - x_{t-1} - \vartheta)`.

    With ``off_spikes`` a decrease larger than the threshold gives :math:`-1`.

    Args:
      xs: a time-major sequence ``[T, B, ...]``.
      threshold: :math:`\vartheta \ge 0`.
      off_spikes: also emit -1 for decreases.
      first: what ``x_0`` is compared with: ``"zero"`` (a step from nothing) or ``"self"``
        (no spike at t = 0).

    Returns:
      Spikes ``[T, B, ...]`` in ``xs``'s dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import encoders
      >>> encoders.delta(jnp.array([[0.0], [0.5], [0.5], [0.0]]), 0.1, off_spikes=True)[:, 0]
      Array([ 0.,  1.,  0., -1.], dtype=float32)
    """
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        raise ValueError(f"delta: xs must be time-major [T, B, ...], got shape {xs.shape}.")
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise ValueError(f"delta: xs must be floating point, got dtype {xs.dtype}.")
    if threshold < 0:
        raise ValueError(f"delta: threshold must be >= 0, got {threshold}.")
    if first not in ("zero", "self"):
        raise ValueError(f"delta: first must be 'zero' or 'self', got {first!r}.")
    previous = jnp.zeros_like(xs[:1]) if first == "zero" else xs[:1]
    change = xs - jnp.concatenate([previous, xs[:-1]], axis=0)
    on = (change > threshold).astype(xs.dtype)
    if not off_spikes:
        return on
    return on - (change < -threshold).astype(xs.dtype)
