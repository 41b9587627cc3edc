r"""BPTT with every parameter's gradient formed outside the time loop.

:func:`snnjax.run` leaves reverse mode to JAX, which transposes the scan step by step. A
parameter used at every step then has its gradient accumulated inside the backward loop. The
recurrent weights need one outer product :math:`z_{t-1}^\top \delta_t` per step, and a
per-neuron decay needs one reduction over the batch per step.

:func:`run_bptt` gives the same values and the same gradients, written by hand as a
``jax.custom_vjp``. The backward loop carries only the state's cotangent, and each step emits
the cotangent of its input current :math:`\delta_t = \partial L / \partial c_t`, where
:math:`c_t = x_t + z_{t-1} W_\text{rec}`. After the loop,

.. math::

    \frac{\partial L}{\partial W_\text{rec}} = \sum_t z_{t-1}^\top \delta_t
    = Z_{\text{prev}}^\top \Delta \qquad ([N, TB] \times [TB, N]\text{, one product})

and the other parameters' per-example cotangents, carried as ``[B, ...]`` arrays through the loop
(elementwise work that fuses with the rest of the step), are summed over the batch once. The
step's elementwise work is recomputed in the backward pass, as with ``run(..., remat=True)``.
The forward loop keeps, per step, the state before it and the input current; a state field that
is also the step's output (the spikes :math:`z`, a readout's :math:`v`) is not kept twice: the
backward pass reads it from the outputs, one step back. It trains recurrent networks faster
than :func:`snnjax.run` (``docs/benchmarks.md`` has the measurements).

Reverse mode only: a ``jax.custom_vjp`` has no forward mode, so ``jax.jvp`` and the
forward-gradient and feedback-alignment rules need :func:`snnjax.run`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from snnjax.neurons.neuron import Neuron, check_run_inputs, recurrent_input
from snnjax.spikes import is_custom_vjp_jvp_error

__all__ = ["run_bptt"]

State = Any

FORWARD_MODE_ERROR = (
    "run_bptt has no forward mode (it is a jax.custom_vjp): use snnjax.run for jax.jvp, jax.jacfwd and "
    "the forward-gradient and feedback-alignment rules; both give the same values and gradients."
)


def run_bptt(
    neuron: Neuron, xs: ArrayLike, state: State | None = None, *, unroll: int | bool = 1
) -> tuple[State, jax.Array]:
    r"""Run ``neuron`` like :func:`snnjax.run`; differentiate it with the gradients formed outside the loop.

    .. math::

        (s_t, y_t) = \text{step}(s_{t-1}, x_t), \qquad t = 1, \dots, T

    For a neuron built with recurrent weights (``neuron.recurrence`` set, as by
    ``snnjax.lif(recurrent=W)``, :func:`snnjax.alif` and :func:`snnjax.cuba_lif`), the gradient
    of ``W`` is one matrix product after the loop; parameters closed over by the step (decays,
    thresholds, traced or not) get theirs with one batch reduction. The values and gradients
    equal :func:`snnjax.run`'s (see the module docstring). Choose it for recurrent layers, where
    it computes the gradient faster than ``run`` with the same or less temporary memory; for
    feed-forward layers ``run`` is faster (``docs/benchmarks.md``, ``benchmarks/remat.py``).

    Args:
      neuron: the model, e.g. ``snnjax.alif(..., recurrent=W)``.
      xs: inputs, time-major ``[T, B, ...]``, floating point.
      state: the initial state, each array ``[B, ...]``; resting state if ``None``.
      unroll: how many steps each :func:`jax.lax.scan` unrolls.

    Returns:
      ``(final_state, ys)`` with ``ys`` of shape ``[T, B, ...]``.

    Raises:
      ValueError: as :func:`snnjax.run` for bad inputs, or recurrent weights that are not ``[N, N]``.
      TypeError: under ``jax.jvp`` (reverse mode only).

    Examples:
      >>> import jax, jax.numpy as jnp, snnjax
      >>> w = 0.1 * jnp.ones((3, 3))
      >>> loss = lambda w, run: run(snnjax.lif(0.9, recurrent=w), jnp.full((5, 2, 3), 0.6))[1].sum()
      >>> g_run, g_bptt = jax.grad(loss)(w, snnjax.run), jax.grad(loss)(w, snnjax.run_bptt)
      >>> bool(jnp.allclose(g_run, g_bptt))
      True
    """
    xs, state = check_run_inputs(neuron, xs, state, unroll, "run_bptt")
    rec = neuron.recurrence
    # The weights enter the custom_vjp in the input's dtype, so their cotangent has the dtype of theirs.
    cell, weights = (neuron.step, None) if rec is None else (rec.cell, rec.weights.astype(xs.dtype))
    cells, consts = _convert(cell, state, xs[0])
    try:
        return _scan(cells, unroll, weights, xs, state, *consts)
    except TypeError as err:
        if is_custom_vjp_jvp_error(err):
            raise TypeError(FORWARD_MODE_ERROR) from err
        raise


def _convert(cell, state: State, x: jax.Array):
    """The cell as pure functions of its parameters: ``((batched, one), consts)``.

    ``batched(s, c, *consts)`` takes ``[B, ...]`` arrays, ``one`` a batch of 1, so that the
    backward pass can map it over the examples with their own copy of the parameters (see
    ``_scan_bwd``). One conversion of both keeps one list of parameters.
    """
    zeros = lambda a: np.zeros(a.shape, a.dtype)  # noqa: E731  (concrete placeholders, removed as dead code)
    state_1, x_1 = jax.tree.map(lambda a: a[:1], state), x[:1]
    both, consts = jax.closure_convert(lambda s, c, s1, c1: (cell(s, c), cell(s1, c1)), state, x, state_1, x_1)
    pad_b, pad_1 = (jax.tree.map(zeros, state), zeros(x)), (jax.tree.map(zeros, state_1), zeros(x_1))

    def batched(s, c, *k):
        return both(s, c, *pad_1, *k)[0]

    def one(s, c, *k):
        return both(*pad_b, s, c, *k)[1]

    return (batched, one), consts


def _current(x: jax.Array, state: State, weights: jax.Array | None) -> jax.Array:
    return x if weights is None else x + recurrent_input(state.z, weights)  # checks the weights are [N, N]


def _mapped(cell_fn, state, current, consts, const_axes):
    """``cell_fn`` (for a batch of 1) applied to each example of ``[B, ...]`` arrays."""
    expand, squeeze = (lambda a: a[:, None]), (lambda a: a[:, 0])
    out = jax.vmap(cell_fn, in_axes=(0, 0, *const_axes))(jax.tree.map(expand, state), expand(current), *consts)
    return jax.tree.map(squeeze, out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _scan(cells, unroll, weights, xs, state, *consts):
    def step(s, x):
        return cells[0](s, _current(x, s, weights), *consts)

    return jax.lax.scan(step, state, xs, unroll=unroll)


def _scan_fwd(cells, unroll, weights, xs, state, *consts):
    output_fields = []  # found while tracing the step: the state fields that are the step's output

    def step(s, x):
        c = _current(x, s, weights)
        s_next, y = cells[0](s, c, *consts)
        output_fields[:] = [f for f in getattr(s_next, "_fields", ()) if getattr(s_next, f) is y]
        # A field that is the output (LIF's z, a readout's v) is ys shifted by a step: not stacked twice.
        s = s._replace(**dict.fromkeys(output_fields)) if output_fields else s
        return s_next, (y, s, c)  # the state before the step and its input current, for the backward pass

    final, (ys, states, currents) = jax.lax.scan(step, state, xs, unroll=unroll)
    shifted = {f: jnp.concatenate([getattr(state, f)[None], ys[:-1]]) for f in output_fields}
    return (final, ys), (weights, consts, states._replace(**shifted) if shifted else states, currents)


def _scan_bwd(cells, unroll, residuals, cotangents):
    weights, consts, states, currents = residuals
    g_final, g_ys = cotangents
    batch = currents.shape[1]
    floats = [jnp.issubdtype(k.dtype, jnp.inexact) for k in consts]
    # Parameters are broadcast over the batch and the cell mapped over it, so their cotangents stay
    # [B, ...] in the loop (elementwise, fused with the step) and are summed over B once, after it.
    per_example = [jnp.broadcast_to(k, (batch, *k.shape)) if f else k for k, f in zip(consts, floats)]
    axes = [0 if f else None for f in floats]

    def step(carry, inputs):
        g_state, g_params = carry
        s, c, g_y = inputs
        _, vjp = jax.vjp(lambda s, c, *k: _mapped(cells[1], s, c, k, axes), s, c, *per_example)
        g_prev, g_c, *g_k = vjp((g_state, g_y))
        if weights is not None:  # c_t = x_t + z_{t-1} W: dL/dz_{t-1} += delta_t W^T
            g_prev = g_prev._replace(z=g_prev.z + g_c @ weights.T)
        g_params = [a + b if f else a for a, b, f in zip(g_params, g_k, floats)]
        return (g_prev, g_params), g_c

    zeros = [jnp.zeros_like(k) if f else None for k, f in zip(per_example, floats)]
    (g_state, g_params), g_currents = jax.lax.scan(
        step, (g_final, zeros), (states, currents, g_ys), reverse=True, unroll=unroll
    )
    g_weights = None
    if weights is not None:  # sum_t z_{t-1}^T delta_t as one product over all steps and examples
        z_prev = states.z.reshape(-1, weights.shape[0])
        g_weights = z_prev.T @ g_currents.reshape(-1, weights.shape[1])
    g_consts = [g.sum(0) if f else _zero_cotangent(k) for g, k, f in zip(g_params, consts, floats)]
    return (g_weights, g_currents, g_state, *g_consts)


def _zero_cotangent(x: jax.Array) -> jax.Array:
    return jnp.zeros(x.shape, jax.dtypes.float0)


_scan.defvjp(_scan_fwd, _scan_bwd)
