r"""Adaptive LIF (ALIF): a LIF neuron whose threshold rises with its own recent spikes.

Two published forms, chosen by ``form``:

``"bellec"`` (e-prop, Bellec et al. 2020, written integrate-fire-reset):

.. math::

    v_t &= \alpha v_{t-1} + x_t + z_{t-1} W_\text{rec}, &
    A_t &= \vartheta + \beta_a a_{t-1}, &
    z_t &= H(v_t - A_t), \\
    v_t &\leftarrow v_t - z_t \vartheta, &
    a_t &= \rho\, a_{t-1} + z_t

``"fgi"`` (the FGI benchmark, Otte 2024; also Bellec et al. 2018's LSNN):

.. math::

    v_t &= \alpha v_{t-1} + (1 - \alpha)(x_t + z_{t-1} W_\text{rec}), &
    A_t &= \vartheta + \beta_a a_{t-1}, &
    z_t &= H(v_t - A_t), \\
    v_t &\leftarrow v_t - z_t A_t, &
    a_t &= \rho\, a_{t-1} + (1 - \rho) z_t

The FGI benchmark uses :math:`\vartheta = 0.1`, :math:`\beta_a = 0.8`, a Gaussian surrogate,
and trainable per-neuron :math:`\alpha = \operatorname{sigmoid}(\mathcal N(3, 0.1))`,
:math:`\rho = \operatorname{sigmoid}(\mathcal N(4, 0.5))`; the reset is not detached.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
from jax.typing import ArrayLike

from snnjax.neurons.neuron import Neuron, apply_reset, per_neuron, resting, spiking, with_recurrence
from snnjax.spikes import spike

__all__ = ["ALIFState", "alif", "FORMS"]

FORMS = ("bellec", "fgi")


class ALIFState(NamedTuple):
    """State of an adaptive LIF population: membrane ``v``, adaptation ``a``, last spikes ``z``, ``[B, ...]``."""

    v: jax.Array
    a: jax.Array
    z: jax.Array


def alif(
    alpha: ArrayLike = 0.95,
    rho: ArrayLike = 0.99,
    *,
    form: str = "bellec",
    threshold: ArrayLike | None = None,
    adaptation: ArrayLike | None = None,
    **options: Any,
) -> Neuron:
    r"""An adaptive LIF population (module docstring for both forms' equations).

    Args:
      alpha: membrane decay in ``[0, 1]``, scalar or per neuron ``[N]``.
      rho: adaptation decay in ``[0, 1]``, scalar or per neuron ``[N]``.
      form: ``"bellec"`` or ``"fgi"``.
      threshold: base threshold :math:`\vartheta`; default 1.0 (``"bellec"``) or 0.1 (``"fgi"``).
      adaptation: adaptation strength :math:`\beta_a`; default 1.8 (``"bellec"``) or 0.8 (``"fgi"``).
      **options: the :class:`snnjax.Spiking` options (``reset``: ``"subtract"`` subtracts the
        form's reset amount).

    Returns:
      A :class:`snnjax.Neuron` with :class:`ALIFState`, outputting spikes ``z_t`` ``[B, ...]``.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> neuron = snnjax.alif(alpha=0.0, rho=0.5, threshold=1.0, adaptation=1.0)
      >>> _, z = snnjax.run(neuron, jnp.full((4, 1, 1), 1.6))
      >>> z[:, 0, 0]  # the threshold rises to 2 after the first spike
      Array([1., 0., 1., 0.], dtype=float32)
    """
    if form not in FORMS:
        raise ValueError(f"alif: form must be one of {', '.join(map(repr, FORMS))}, got {form!r}.")
    fgi = form == "fgi"
    threshold = (0.1 if fgi else 1.0) if threshold is None else threshold
    adaptation = (0.8 if fgi else 1.8) if adaptation is None else adaptation
    decays, finite = {"alpha": alpha, "rho": rho}, {"threshold": threshold, "adaptation": adaptation}
    o = spiking(options, "alif", decays=decays, finite=finite)

    def cell(state: ALIFState, current: jax.Array) -> tuple[ALIFState, jax.Array]:
        al = per_neuron(alpha, state.v, "alpha")
        r = per_neuron(rho, state.v, "rho")
        theta = per_neuron(threshold, state.v, "threshold")
        beta_a = per_neuron(adaptation, state.v, "adaptation")
        if fgi:
            current = (1.0 - al) * current
        v = al * state.v + current
        dynamic_threshold = theta + beta_a * state.a
        z = spike(v - dynamic_threshold, o.surrogate, o.method)
        v = apply_reset(v, z, dynamic_threshold if fgi else theta, o.reset, o.detach_reset)
        a = r * state.a + ((1.0 - r) * z if fgi else z)
        return ALIFState(v, a, z), z

    return with_recurrence(resting(ALIFState), cell, o.recurrent)
