r"""Time constants and the decay factors the discrete neurons use, and trainable parameterisations.

A leaky neuron forgets with a factor :math:`\beta = e^{-\Delta t / \tau}` per step. Trainable
time constants are kept in range by a parameterisation of an unconstrained raw value
:math:`r`:

.. math::

    \text{sigmoid:}\ \beta = \frac{1}{1 + e^{-r}} \in (0, 1), \qquad
    \text{softplus:}\ \tau = \tau_\min + \log(1 + e^{r}),\ \beta = e^{-\Delta t / \tau}

The inverses give the raw value that starts training at a chosen :math:`\beta`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from snnjax.checks import check_positive, concrete

__all__ = [
    "decay_from_tau",
    "tau_from_decay",
    "sigmoid_decay",
    "sigmoid_decay_inverse",
    "softplus_decay",
    "softplus_decay_inverse",
]


def _check_open_unit(beta: ArrayLike, name: str) -> None:
    b = concrete(beta)
    if b is not None and not np.all((b > 0) & (b < 1)):
        raise ValueError(f"{name}: beta must lie in the open interval (0, 1), got {beta!r}.")


def decay_from_tau(tau: ArrayLike, dt: ArrayLike = 1.0) -> jax.Array:
    r"""The per-step decay :math:`\beta = e^{-\Delta t / \tau}`.

    Args:
      tau: time constant(s), scalar or per neuron ``[N]``, positive, in the units of ``dt``.
      dt: the time step, positive.

    Raises:
      ValueError: if a concrete ``tau`` or ``dt`` is zero or negative.

    Examples:
      >>> import snnjax
      >>> round(float(snnjax.decay_from_tau(20.0, dt=1.0)), 4)
      0.9512
    """
    check_positive(tau, "tau")
    check_positive(dt, "dt")
    return jnp.exp(-jnp.asarray(dt, jnp.result_type(float)) / jnp.asarray(tau, jnp.result_type(float)))


def tau_from_decay(beta: ArrayLike, dt: ArrayLike = 1.0) -> jax.Array:
    r"""The time constant :math:`\tau = -\Delta t / \log \beta` of a decay factor in ``(0, 1)``.

    Examples:
      >>> import math
      >>> from snnjax.neurons.decay import tau_from_decay
      >>> round(float(tau_from_decay(math.exp(-1 / 20))), 3)
      20.0
    """
    _check_open_unit(beta, "tau_from_decay")
    b = jnp.asarray(beta, jnp.result_type(float))
    return -jnp.asarray(dt, b.dtype) / jnp.log(b)


def sigmoid_decay(raw: ArrayLike) -> jax.Array:
    r"""Trainable decay :math:`\beta = \operatorname{sigmoid}(r) \in (0, 1)` (the FGI ALIF's choice).

    Examples:
      >>> from snnjax.neurons.decay import sigmoid_decay
      >>> round(float(sigmoid_decay(0.0)), 3)
      0.5
    """
    return jax.nn.sigmoid(jnp.asarray(raw))


def sigmoid_decay_inverse(beta: ArrayLike) -> jax.Array:
    r"""The raw value :math:`r = \log(\beta / (1 - \beta))` with ``sigmoid_decay(r) == beta``.

    Examples:
      >>> from snnjax.neurons.decay import sigmoid_decay, sigmoid_decay_inverse
      >>> round(float(sigmoid_decay(sigmoid_decay_inverse(0.9))), 4)
      0.9
    """
    _check_open_unit(beta, "sigmoid_decay_inverse")
    b = jnp.asarray(beta, jnp.result_type(float))
    return jnp.log(b) - jnp.log1p(-b)


def softplus_decay(raw: ArrayLike, dt: float = 1.0, tau_min: float = 0.0) -> jax.Array:
    r"""Trainable decay through the time constant.

    :math:`\tau = \tau_\min + \operatorname{softplus}(r)`, :math:`\beta = e^{-\Delta t/\tau}`.

    Examples:
      >>> from snnjax.neurons.decay import softplus_decay
      >>> 0.0 < float(softplus_decay(1.0)) < 1.0
      True
    """
    tau = tau_min + jax.nn.softplus(jnp.asarray(raw))
    return jnp.exp(-dt / tau)


def softplus_decay_inverse(beta: ArrayLike, dt: float = 1.0, tau_min: float = 0.0) -> jax.Array:
    r"""The raw value with ``softplus_decay(raw, dt, tau_min) == beta``; needs :math:`\tau > \tau_\min`.

    Examples:
      >>> from snnjax.neurons.decay import softplus_decay, softplus_decay_inverse
      >>> round(float(softplus_decay(softplus_decay_inverse(0.9))), 4)
      0.9
    """
    tau = tau_from_decay(beta, dt) - tau_min
    t = concrete(tau)
    if t is not None and not np.all(t > 0):
        raise ValueError(f"softplus_decay_inverse: beta {beta!r} gives a time constant at or below tau_min={tau_min}.")
    return tau + jnp.log(-jnp.expm1(-tau))  # inverse softplus, stable
