r"""Current-based LIF: a synaptic current that decays, feeding a leaky membrane.

Neftci, Mostafa & Zenke (2019), with the current updated before the membrane in the same step:

.. math::

    i_t &= \alpha\, i_{t-1} + x_t + z_{t-1} W_\text{rec} \\
    v_t &= \beta\, v_{t-1} + i_t \\
    z_t &= H(v_t - \vartheta), \qquad v_t \leftarrow \text{reset}(v_t, z_t)

with :math:`\alpha = e^{-\Delta t/\tau_\text{syn}}` and :math:`\beta = e^{-\Delta t/\tau_\text{mem}}`.
(Neftci et al. feed :math:`i_{t-1}` to :math:`v_t`, one step later; shift the input by one
step to match.)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
from jax.typing import ArrayLike

from snnjax.neurons.neuron import Neuron, apply_reset, per_neuron, resting, spiking, with_recurrence
from snnjax.spikes import spike

__all__ = ["CubaLIFState", "cuba_lif"]


class CubaLIFState(NamedTuple):
    """State of a current-based LIF population: current ``i``, membrane ``v``, last spikes ``z``, ``[B, ...]``."""

    i: jax.Array
    v: jax.Array
    z: jax.Array


def cuba_lif(alpha: ArrayLike = 0.8, beta: ArrayLike = 0.9, *, threshold: ArrayLike = 1.0, **options: Any) -> Neuron:
    r"""A current-based LIF population (module docstring for the equations).

    Args:
      alpha: synaptic current decay in ``[0, 1]``, scalar or per neuron ``[N]``.
      beta: membrane decay in ``[0, 1]``, scalar or per neuron ``[N]``.
      threshold: as for :func:`snnjax.lif`.
      **options: the :class:`snnjax.Spiking` options (``reset``, ``detach_reset``, ``recurrent``,
        ``surrogate``, ``method``).

    Returns:
      A :class:`snnjax.Neuron` with :class:`CubaLIFState`, outputting spikes ``z_t`` ``[B, ...]``.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> _, z = snnjax.run(snnjax.cuba_lif(alpha=0.5, beta=0.5), jnp.full((3, 1, 1), 0.5))
      >>> z[:, 0, 0]  # i = 0.5, 0.75, 0.875; v = 0.5, 1.0 (not above 1), 1.375
      Array([0., 0., 1.], dtype=float32)
    """
    decays, finite = {"alpha": alpha, "beta": beta}, {"threshold": threshold}
    o = spiking(options, "cuba_lif", decays=decays, finite=finite)

    def cell(state: CubaLIFState, current: jax.Array) -> tuple[CubaLIFState, jax.Array]:
        a = per_neuron(alpha, state.v, "alpha")
        b = per_neuron(beta, state.v, "beta")
        theta = per_neuron(threshold, state.v, "threshold")
        i = a * state.i + current
        v = b * state.v + i
        z = spike(v - theta, o.surrogate, o.method)
        v = apply_reset(v, z, theta, o.reset, o.detach_reset)
        return CubaLIFState(i, v, z), z

    return with_recurrence(resting(CubaLIFState), cell, o.recurrent)
