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

from typing import Any, NamedTuple

import jax
from jax.typing import ArrayLike

from snnjax.neurons.neuron import Neuron, apply_reset, per_neuron, resting, spiking, with_recurrence
from snnjax.spikes import spike

__all__ = ["LIFState", "lif", "iaf"]


class LIFState(NamedTuple):
    """State of a LIF or IF population: the membrane ``v`` after the reset and the last spikes ``z``, ``[B, ...]``."""

    v: jax.Array
    z: jax.Array


def lif(beta: ArrayLike = 0.9, *, threshold: ArrayLike = 1.0, **options: Any) -> Neuron:
    r"""A leaky integrate-and-fire population (module docstring for the equations).

    Args:
      beta: membrane decay :math:`\beta \in [0, 1]`, scalar or per neuron ``[N]``; may be a
        traced, trainable value (see :mod:`snnjax.decay`).
      threshold: :math:`\vartheta`, scalar or per neuron.
      **options: the :class:`snnjax.Spiking` options (``reset``, ``detach_reset``, ``recurrent``,
        ``surrogate``, ``method``).

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
    o = spiking(options, "lif", decays={"beta": beta}, finite={"threshold": threshold})

    def cell(state: LIFState, current: jax.Array) -> tuple[LIFState, jax.Array]:
        b = per_neuron(beta, state.v, "beta")
        theta = per_neuron(threshold, state.v, "threshold")
        v = b * state.v + current
        z = spike(v - theta, o.surrogate, o.method)
        v = apply_reset(v, z, theta, o.reset, o.detach_reset)
        return LIFState(v, z), z

    return with_recurrence(resting(LIFState), cell, o.recurrent)


def iaf(**options: Any) -> Neuron:
    r"""An integrate-and-fire population: :func:`lif` with :math:`\beta = 1` (no leak).

    Args:
      **options: :func:`lif`'s keywords but ``beta``: ``threshold`` and the :class:`snnjax.Spiking` options.

    Raises:
      ValueError: for ``beta`` (an IF neuron has no leak; use :func:`lif`), and as :func:`lif`.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> _, z = snnjax.run(snnjax.iaf(), jnp.full((4, 1, 1), 0.5))
      >>> z[:, 0, 0]  # v = 0.5, 1.0 (not above 1), 1.5 -> spike, reset to 0.5, 1.0
      Array([0., 0., 1., 0.], dtype=float32)
    """
    if "beta" in options:
        raise ValueError("iaf: an integrate-and-fire neuron has no leak (beta = 1); use snnjax.lif for a leak.")
    return lif(1.0, **options)
