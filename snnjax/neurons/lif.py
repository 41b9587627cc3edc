r"""Leaky integrate-and-fire (LIF) and integrate-and-fire (IF) neurons.

Discrete time, integrate then fire then reset, in one step:

.. math::

    v_t &= \beta\, v_{t-1} + x_t + z_{t-1} W_\text{rec} \\
    z_t &= H(v_t - \vartheta) \\
    v_t &\leftarrow v_t - z_t \vartheta \quad (\text{reset="subtract"})
        \quad\text{or}\quad v_t (1 - z_t) \quad (\text{"zero"})

with :math:`x_t` the synaptic input current at step :math:`t` (already projected by the
weights), :math:`\beta = e^{-\Delta t/\tau}` the membrane decay and :math:`H` the spike of
:func:`snnjax.spike`. IF is the same neuron with :math:`\beta = 1`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from snnjax import surrogates as _surrogates
from snnjax.checks import DECAY_HINT, check_finite, check_unit_interval
from snnjax.neurons.neuron import (
    Neuron,
    apply_reset,
    check_reset,
    per_neuron,
    with_recurrence,
    zeros_state,
)
from snnjax.spikes import DEFAULT_SURROGATE, check_method, spike

__all__ = ["LIFState", "lif", "iaf"]


class LIFState(NamedTuple):
    """State of a LIF or IF population.

    Attributes:
      v: membrane potential after the reset, ``[B, ...]``.
      z: spikes of the last step, ``[B, ...]`` (read by recurrent weights).
    """

    v: jax.Array
    z: jax.Array


def lif(
    beta: ArrayLike = 0.9,
    *,
    threshold: ArrayLike = 1.0,
    reset: str = "subtract",
    detach_reset: bool = False,
    recurrent: ArrayLike | None = None,
    surrogate: _surrogates.SurrogateLike = DEFAULT_SURROGATE,
    method: str = "inject",
) -> Neuron:
    r"""A leaky integrate-and-fire population (module docstring for the equations).

    Args:
      beta: membrane decay :math:`\beta \in [0, 1]`, scalar or per neuron ``[N]``; may be a
        traced, trainable value (see :mod:`snnjax.decay`).
      threshold: :math:`\vartheta`, scalar or per neuron.
      reset: ``"subtract"`` (soft reset, keeps the overshoot) or ``"zero"``.
      detach_reset: stop the gradient through the spike in the reset term.
      recurrent: recurrent weights :math:`W_\text{rec}` ``[N, N]`` (``z @ W``), or ``None``.
      surrogate: the spike's surrogate derivative (a Surrogate or its name).
      method: how the surrogate is attached, one of :data:`snnjax.METHODS`.

    Returns:
      A :class:`snnjax.Neuron` whose state is :class:`LIFState` and output the spikes ``z_t``.

    Raises:
      ValueError: for ``beta`` outside ``[0, 1]``, an unknown reset, surrogate or method, a
        non-finite threshold; at trace time, for parameters whose shape does not fit the input.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> neuron = snnjax.lif(beta=0.5, reset="zero")
      >>> _, z = snnjax.run(neuron, jnp.ones((3, 2, 4)))
      >>> z.shape
      (3, 2, 4)
    """
    check_unit_interval(beta, "beta", DECAY_HINT)
    check_finite(threshold, "threshold")
    check_reset(reset)
    surrogate = _surrogates.resolve(surrogate)
    check_method(method, surrogate)  # at build time, as a string

    def init(shape, dtype=jnp.float32) -> LIFState:
        return zeros_state(LIFState, shape, dtype)

    def cell(state: LIFState, current: jax.Array) -> tuple[LIFState, jax.Array]:
        b = per_neuron(beta, state.v, "beta")
        theta = per_neuron(threshold, state.v, "threshold")
        v = b * state.v + current
        z = spike(v - theta, surrogate, method)
        v = apply_reset(v, z, theta, reset, detach_reset)
        return LIFState(v, z), z

    return with_recurrence(init, cell, recurrent)


def iaf(
    *,
    threshold: ArrayLike = 1.0,
    reset: str = "subtract",
    detach_reset: bool = False,
    recurrent: ArrayLike | None = None,
    surrogate: _surrogates.SurrogateLike = DEFAULT_SURROGATE,
    method: str = "inject",
) -> Neuron:
    r"""An integrate-and-fire population: :func:`lif` with :math:`\beta = 1` (no leak).

    Args:
      threshold: as for :func:`lif`.
      reset: as for :func:`lif`.
      detach_reset: as for :func:`lif`.
      recurrent: as for :func:`lif`.
      surrogate: as for :func:`lif`.
      method: as for :func:`lif`.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> _, z = snnjax.run(snnjax.iaf(), jnp.full((4, 1, 1), 0.5))
      >>> z[:, 0, 0]  # v = 0.5, 1.0 (not above 1), 1.5 -> spike, reset to 0.5, 1.0
      Array([0., 0., 1., 0.], dtype=float32)
    """
    return lif(
        1.0,
        threshold=threshold,
        reset=reset,
        detach_reset=detach_reset,
        recurrent=recurrent,
        surrogate=surrogate,
        method=method,
    )
