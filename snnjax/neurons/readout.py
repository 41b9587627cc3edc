r"""Leaky-integrator readout: a non-spiking membrane, the usual output layer of an SNN.

.. math::

    v_t = \kappa\, v_{t-1} + g\, x_t, \qquad g = 1 \ \text{or}\ g = 1 - \kappa\ (\text{scale_input})

The output is the membrane :math:`v_t` itself, to be read by a loss such as
:func:`snnjax.losses.membrane_cross_entropy` (summed over time) or
:func:`snnjax.losses.max_membrane_cross_entropy`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from snnjax.checks import DECAY_HINT, check_unit_interval
from snnjax.neurons.neuron import Neuron, per_neuron, zeros_state

__all__ = ["LeakyIntegratorState", "leaky_integrator"]


class LeakyIntegratorState(NamedTuple):
    """State of a leaky-integrator readout.

    Attributes:
      v: membrane potential, ``[B, ...]``.
    """

    v: jax.Array


def leaky_integrator(kappa: ArrayLike = 0.9, *, scale_input: bool = False) -> Neuron:
    r"""A leaky-integrator population that never spikes.

    Args:
      kappa: membrane decay :math:`\kappa \in [0, 1]`, scalar or per neuron ``[N]``.
      scale_input: multiply the input by :math:`1 - \kappa` (an exponential moving average).

    Returns:
      A :class:`snnjax.Neuron` with :class:`LeakyIntegratorState`, outputting ``v_t`` ``[B, ...]``.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> _, v = snnjax.run(snnjax.leaky_integrator(0.5), jnp.ones((3, 1, 1)))
      >>> v[:, 0, 0]
      Array([1.  , 1.5 , 1.75], dtype=float32)
    """
    check_unit_interval(kappa, "kappa", DECAY_HINT)

    def init(shape, dtype=jnp.float32) -> LeakyIntegratorState:
        return zeros_state(LeakyIntegratorState, shape, dtype)

    def step(state: LeakyIntegratorState, x: jax.Array) -> tuple[LeakyIntegratorState, jax.Array]:
        k = per_neuron(kappa, state.v, "kappa")
        v = k * state.v + ((1.0 - k) * x if scale_input else x)
        return LeakyIntegratorState(v), v

    return Neuron(init, step)
