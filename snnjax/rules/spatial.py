r"""OSTL and OTTT: online rules whose learning signal is backpropagated through space only.

Both run a stepped network (:func:`snnjax.rules.per_step_loss` of a chain of ``(dense, neuron)``
pairs, feed-forward or recurrent) forward in one ``lax.scan``, memory independent of T, and
split the gradient of :math:`L = \sum_t w_t \operatorname{mean}_b \ell(y_t)` (with :math:`w_t =
1/T`, or :math:`1/k` on the last :math:`k` steps of a readout window (``per_step_loss(...,
last=k)``) and 0 before) into a
*spatial* part, backpropagated through the layers at one time step (the states of the step
before held fixed), and a *temporal* part carried forward in the scan.

**OSTL** (Bohnstingl et al. 2022, online spatio-temporal learning): the temporal part is each
layer's exact eligibility trace through its own state (:func:`snnjax.rules.stepped.eligibility_step`,
the traces of :func:`snnjax.rules.online_dfa` and :func:`snnjax.rules.eprop`), the learning
signal the spatial gradient of the step's loss with respect to the layer's output,

.. math:: \Delta W_l = \sum_{t,b} \frac{\partial \ell_t}{\partial o_{l,t}}
    \cdot \frac{\partial o_{l,t}}{\partial W_l}\Big|_\text{own state}.

It is the exact gradient for one layer feeding a readout without memory; it drops the
temporal paths through the states of the layers above (and, in a recurrent layer, through the
other neurons' recurrent spikes, as e-prop does). Memory: :math:`O(B\, N_{in} N k)` per layer.

**OTTT** (Xiao et al. 2022, online training through time): the temporal part is only a
presynaptic trace :math:`\hat a_t = \lambda\, \hat a_{t-1} + \text{pre}_t`, with
:math:`\lambda` the postsynaptic layer's leak, and the signal the spatial gradient with respect
to the layer's input current,

.. math:: \Delta W_l = \sum_{t,b} \hat a_{l,t}^\top\, \frac{\partial \ell_t}{\partial I_{l,t}}.

For a LIF layer with a detached reset (``detach_reset=True``) feeding a readout without memory
this is the exact gradient (the membrane's only temporal path is its leak); otherwise it drops
the reset's path too. Memory: :math:`O(B\, N_{in})` per layer, the rule's point. The leak
:math:`\lambda` of each layer is read from its neuron (the state array that a current drives,
checked to decay linearly with one rate for all neurons), or given as ``decays``.

The dense layers' kernels and biases are trained, and recurrent weights; a neuron layer whose
dynamics depend on the parameters is refused. Both rules are deterministic and stateless.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snnjax.neurons.neuron import Neuron, recurrent_input
from snnjax.rules.protocol import Rule, stateless
from snnjax.rules.stepped import SteppedLoss, cell_of, eligibility_step, local_jacobians, read_fields, start, to_params

__all__ = ["ostl", "ottt", "trace_decay"]


def trace_decay(neuron: Neuron, size: int, dtype: Any = jnp.float32, where: str = "ottt") -> float:
    r"""The leak :math:`\lambda` of a neuron layer: how its input-driven state array decays in one step.

    The state array that a (negative, so sub-threshold) current changes from rest must be unique;
    set to :math:`-1` and :math:`-2` with no input, it must come back as :math:`-\lambda` and
    :math:`-2\lambda`, the same for every neuron. A LIF gives its :math:`\beta`, a leaky
    integrator its :math:`\kappa`.

    Args:
      neuron: the layer's :class:`snnjax.Neuron` (recurrent or not: its cell is measured).
      size: the layer's number of neurons.
      dtype: the state's dtype.
      where: the rule's name, for messages.

    Returns:
      :math:`\lambda \in [0, 1]`.

    Raises:
      ValueError: naming ``where``, for a neuron with two input-driven state arrays (a
        current-based LIF), a leak that is not one linear rate in ``[0, 1]``, or one that is
        traced; pass ``decays`` instead.

    Examples:
      >>> import snnjax
      >>> from snnjax.rules.spatial import trace_decay
      >>> round(trace_decay(snnjax.lif(0.8), 3), 6)
      0.8
    """
    try:
        lam = _measured_leak(neuron, size, dtype, where)
    except jax.errors.TracerArrayConversionError:
        raise ValueError(
            f"{where}: the layer's leak is a traced value, not known when the rule is traced; pass decays=[...] "
            "(one per layer)."
        ) from None
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"{where}: the layer's measured leak {lam:g} lies outside [0, 1]; pass decays=[...].")
    return lam


def _measured_leak(neuron: Neuron, size: int, dtype: Any, where: str) -> float:
    cell, _ = cell_of(neuron)
    with jax.ensure_compile_time_eval():
        rest = neuron.init((1, size), dtype)
        driven = cell(rest, jnp.full((1, size), -1.0, dtype))[0]
        moved = [m for m, (a, b) in enumerate(zip(rest, driven)) if not np.array_equal(np.asarray(a), np.asarray(b))]
        if len(moved) != 1:
            raise ValueError(
                f"{where}: cannot read the layer's leak: a current drives {len(moved)} of its state arrays "
                f"{list(type(rest)._fields) if hasattr(rest, '_fields') else ''}; pass decays=[...] (one per layer)."
            )
        (m,) = moved
        leaks = []
        for value in (-1.0, -2.0):
            state = type(rest)(*[jnp.full_like(a, value) if n == m else a for n, a in enumerate(rest)])
            leaks.append(np.asarray(cell(state, jnp.zeros((1, size), dtype))[0][m]) / value)
    lam = leaks[0].ravel()
    if not (np.allclose(leaks[1].ravel(), lam) and np.allclose(lam, lam[0])):
        raise ValueError(
            f"{where}: the layer's leak is not one linear rate for all neurons (per-neuron or state-dependent decay); "
            "pass decays=[...] (one per layer), or use snnjax.rules.ostl, whose traces are per synapse."
        )
    return float(lam[0])


def _spatial(pairs: list, states: list, x_t: jax.Array, labels: Any, loss_t: Any, weight: jax.Array):
    """The step's loss as a function of additive perturbations of every layer's current and output."""
    cells = [cell_of(neuron) for _, neuron in pairs]

    def loss(d_currents, d_outs):
        x, new_states, inputs = x_t, [], []
        for (synapse, _), (cell, rec), s, du, do in zip(pairs, cells, states, d_currents, d_outs):
            inputs.append(x)
            current = synapse(x) + du
            if rec is not None:
                current = current + recurrent_input(s.z, rec)
            s, x = cell(s, current)
            x = x + do
            new_states.append(s)
        return weight * jnp.mean(loss_t(x, labels)), (x, new_states, inputs)

    return loss


def _step(
    loss_fn: SteppedLoss, pairs: list, states: list, x_t: jax.Array, labels: Any, t: jax.Array, steps: int, at: int
):
    """One step: ``(loss, (y, new_states, layer_inputs), signals)``, the signals the step's weighted loss's
    spatial gradient at every layer's input current (``at=0``) or output (``at=1``)."""
    zeros = [jnp.zeros((x_t.shape[0], d.kernel.shape[1]), x_t.dtype) for d, _ in pairs]
    spatial = _spatial(pairs, states, x_t, labels, loss_fn.loss_t, loss_fn.weight(t, steps, x_t.dtype))
    (loss, aux), signals = jax.value_and_grad(spatial, argnums=at, has_aux=True)(zeros, zeros)
    return loss, aux, signals


def _pres(x: jax.Array, state: Any, rec: jax.Array | None) -> list[jax.Array]:
    """The presynaptic inputs of a layer's kernel, bias (ones) and recurrent weights (the last spikes)."""
    ones = jnp.ones((x.shape[0], 1), x.dtype)
    return [x, ones] + ([state.z] if rec is not None else [])


def _widths(sizes: list[tuple[int, int]], cells: list) -> list[list[int]]:
    """Per layer, the presynaptic widths of its kernel, bias and recurrent weights (as :func:`_pres`)."""
    return [[n_in, 1] + ([n] if rec is not None else []) for (n_in, n), (_, rec) in zip(sizes, cells)]


def _finish(loss_fn: SteppedLoss, params: Any, grads: list[list[jax.Array]]) -> Any:
    """Per layer ``[W, b [1, N], W_rec?]`` to the gradient of ``params``."""
    return to_params(loss_fn, params, [(g[0], g[1][0], *g[2:]) for g in grads])


def ostl(loss_fn: SteppedLoss) -> Rule:
    r"""OSTL: exact per-layer eligibility traces, a spatially backpropagated signal (module docstring).

    Args:
      loss_fn: :func:`snnjax.rules.per_step_loss` of a chain of ``(snnjax.dense, neuron)`` pairs
        (at least two; any neurons, recurrent or not; the last pair is the readout).

    Returns:
      A stateless :class:`snnjax.rules.Rule`: ``(loss, ys), grads = rule(params, xs, labels)``
      for ``xs`` ``[T, B, N_in]``; ``ys`` ``[T, B, C]``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, snnjax
      >>> from snnjax import rules
      >>> loss_fn = rules.per_step_loss(
      ...     lambda p: snnjax.chain(snnjax.dense(p["in"]), snnjax.alif(0.9), snnjax.dense(p["out"]),
      ...                            snnjax.leaky_integrator(0.0)),
      ...     optax.softmax_cross_entropy_with_integer_labels)
      >>> params = {"in": jnp.full((3, 5), 0.4), "out": jnp.full((5, 2), 0.1)}
      >>> xs, labels = jnp.ones((20, 4, 3)), jnp.array([0, 1, 0, 1])
      >>> (loss, ys), grads = rules.ostl(loss_fn)(params, xs, labels)
      >>> exact = jax.grad(lambda p: loss_fn(p, xs, labels)[0])(params)  # one layer, readout without memory
      >>> bool(jnp.allclose(grads["in"], exact["in"], atol=1e-6))
      True
    """

    def apply(state, params, xs, labels, key=None):
        del key  # deterministic
        pairs, sizes, steps, batch, dtype = start(loss_fn, params, xs, "ostl", recurrent=True)
        cells = [cell_of(neuron) for _, neuron in pairs]
        states0 = [neuron.init((batch, n), dtype) for (_, neuron), (_, n) in zip(pairs, sizes)]
        fields = [read_fields(c, s, jnp.zeros((batch, n), dtype)) for (c, _), s, (_, n) in zip(cells, states0, sizes)]
        widths = _widths(sizes, cells)
        traces0 = [
            [[jnp.zeros((batch, p, n), dtype)] * len(f) for p in w] for w, f, (_, n) in zip(widths, fields, sizes)
        ]
        grads0 = [[jnp.zeros((p, n), dtype) for p in w] for w, (_, n) in zip(widths, sizes)]

        def body(carry, x_t):
            states, traces, grads, total, t = carry
            loss, (y, _, inputs), deltas = _step(loss_fn, pairs, states, x_t, labels, t, steps, at=1)
            new_states, new_traces, new_grads = [], [], []
            for l, ((synapse, _), (cell, rec)) in enumerate(zip(pairs, cells)):
                current = synapse(inputs[l]) + (0.0 if rec is None else recurrent_input(states[l].z, rec))
                s, _, d_state, d_current = local_jacobians(cell, states[l], current, fields[l])
                layer_traces, layer_grads = [], []
                for pre, eps, g in zip(_pres(inputs[l], states[l], rec), traces[l], grads[l]):
                    g_new, eps = eligibility_step(pre, d_state, d_current, eps, deltas[l], fields[l])
                    layer_traces.append(eps)
                    layer_grads.append(g + g_new)
                new_states.append(s)
                new_traces.append(layer_traces)
                new_grads.append(layer_grads)
            return (new_states, new_traces, new_grads, total + loss, t + 1), y

        carry0 = (states0, traces0, grads0, jnp.zeros((), dtype), jnp.zeros((), jnp.int32))
        (_, _, grads, loss, _), ys = jax.lax.scan(body, carry0, xs)
        return (loss, ys), _finish(loss_fn, params, grads), state

    return stateless(apply, "OSTL", loss_fn)


def ottt(loss_fn: SteppedLoss, *, decays: Sequence[float] | None = None) -> Rule:
    r"""OTTT: presynaptic traces and a spatially backpropagated signal at the current (module docstring).

    Args:
      loss_fn: :func:`snnjax.rules.per_step_loss` of a chain of ``(snnjax.dense, neuron)`` pairs
        (at least two; recurrent or not; the last pair is the readout).
      decays: the trace decay :math:`\lambda` of each pair's neuron layer; by default read from
        the neurons (:func:`trace_decay`).

    Returns:
      A stateless :class:`snnjax.rules.Rule`: ``(loss, ys), grads = rule(params, xs, labels)``.

    Raises:
      ValueError: for ``decays`` of the wrong length or outside ``[0, 1]``, or a layer whose
        leak cannot be read (at the first call).

    Examples:
      >>> import jax, jax.numpy as jnp, optax, snnjax
      >>> from snnjax import rules
      >>> loss_fn = rules.per_step_loss(
      ...     lambda p: snnjax.chain(snnjax.dense(p["in"]), snnjax.lif(0.9, detach_reset=True),
      ...                            snnjax.dense(p["out"]), snnjax.leaky_integrator(0.0)),
      ...     optax.softmax_cross_entropy_with_integer_labels)
      >>> params = {"in": jnp.full((3, 5), 0.4), "out": jnp.full((5, 2), 0.1)}
      >>> xs, labels = jnp.ones((20, 4, 3)), jnp.array([0, 1, 0, 1])
      >>> (loss, ys), grads = rules.ottt(loss_fn)(params, xs, labels)
      >>> exact = jax.grad(lambda p: loss_fn(p, xs, labels)[0])(params)  # a detached reset, no readout memory
      >>> bool(jnp.allclose(grads["in"], exact["in"], atol=1e-6))
      True
    """
    if decays is not None:
        try:
            decays = [float(d) for d in decays]
        except (TypeError, ValueError):
            raise ValueError(f"ottt: decays must be numbers, one per layer, got {decays!r}.") from None
        if not all(0.0 <= d <= 1.0 for d in decays):
            raise ValueError(f"ottt: decays must lie in [0, 1], got {decays}.")

    def apply(state, params, xs, labels, key=None):
        del key  # deterministic
        pairs, sizes, steps, batch, dtype = start(loss_fn, params, xs, "ottt", recurrent=True)
        if decays is not None and len(decays) != len(pairs):
            raise ValueError(f"ottt: decays needs one value per (dense, neuron) pair, {len(pairs)}; got {len(decays)}.")
        if decays is None:
            with jax.ensure_compile_time_eval():  # a model's fixed decays are constants, even under jit
                neurons = loss_fn.network(params).layers[1::2]
            lams = [trace_decay(neuron, n, dtype) for neuron, (_, n) in zip(neurons, sizes)]
        else:
            lams = decays
        cells = [cell_of(neuron) for _, neuron in pairs]
        widths = _widths(sizes, cells)
        states0 = [neuron.init((batch, n), dtype) for (_, neuron), (_, n) in zip(pairs, sizes)]
        traces0 = [[jnp.zeros((batch, p), dtype) for p in w] for w in widths]
        grads0 = [[jnp.zeros((p, n), dtype) for p in w] for w, (_, n) in zip(widths, sizes)]

        def body(carry, x_t):
            states, traces, grads, total, t = carry
            loss, (y, new_states, inputs), signals = _step(loss_fn, pairs, states, x_t, labels, t, steps, at=0)
            new_traces, new_grads = [], []
            for l, (_, rec) in enumerate(cells):
                a = [lams[l] * a_old + pre for a_old, pre in zip(traces[l], _pres(inputs[l], states[l], rec))]
                new_traces.append(a)
                new_grads.append([g + a_k.T @ signals[l] for g, a_k in zip(grads[l], a)])
            return (new_states, new_traces, new_grads, total + loss, t + 1), y

        carry0 = (states0, traces0, grads0, jnp.zeros((), dtype), jnp.zeros((), jnp.int32))
        (_, _, grads, loss, _), ys = jax.lax.scan(body, carry0, xs)
        return (loss, ys), _finish(loss_fn, params, grads), state

    return stateless(apply, "OTTT", loss_fn)
