r"""DFA and FDFA online: eligibility traces in the ``lax.scan`` state, memory independent of T.

For a feed-forward network of neuron layers, :math:`I_t = x_t W + b`, :math:`(s_t, o_t) =
\text{step}(s_{t-1}, I_t)`, the dependence of a layer's output on its own weights runs only
through its own state, so it is carried forward exactly by an eligibility trace per synapse
and state component (real-time recurrent learning restricted to the layer, as in e-prop):

.. math::

    \varepsilon_t = \frac{\partial s_t}{\partial s_{t-1}}\,\varepsilon_{t-1}
                  + \frac{\partial s_t}{\partial I_t}\, x_t, \qquad
    \frac{\partial o_t}{\partial W} = \frac{\partial o_t}{\partial s_{t-1}}\,\varepsilon_{t-1}
                  + \frac{\partial o_t}{\partial I_t}\, x_t,

with the per-neuron Jacobians of the neuron's own ``step`` taken by ``jax.jvp`` at every step
(so any snnjax neuron works: LIF, adaptive LIF, current-based LIF, a spike's surrogate
derivative included). The loss is a sum over time, :math:`L = \frac1T \sum_t \operatorname{mean}_b
\ell(y_t)`, :math:`y_t` the last layer's output; its error :math:`e_t = \partial L / \partial y_t`
is known at step :math:`t`, and each layer's weights accumulate

.. math:: \Delta W_l \mathrel{+}= \sum_b \delta_{l,t} \cdot \frac{\partial o_{l,t}}{\partial W_l},
   \qquad \delta_{L,t} = e_t, \quad \delta_{l,t} = e_t B_l^\top \ (\text{hidden}),

as the sequence runs. Nothing per step is kept: memory holds the traces,
:math:`O(B\, N_{in}\, N\, k)` per layer for a neuron with :math:`k` state arrays, whatever T.
The gradient equals that of the offline rules (:func:`snnjax.rules.dfa`, ``fdfa``) on the same
network and loss: DFA cuts every path between layers, so a layer's own dynamics is all there
is to differentiate. The readout's gradient is exact.

For FDFA the forward-mode tangent of a perturbation :math:`u_{l,t}` of every hidden output is
carried in the scan as well, :math:`y'_t = \sum J u`, and the estimates are updated once per
sequence from :math:`\operatorname{mean}_{t,b}(u_{l,t}^\top y'_t)`, after the sequence's
gradient (which uses the estimates the call started with).

Limits: layers must be ``nnx.Linear`` followed by a neuron layer, repeated, without recurrent
weights (e-prop's approximation for those is not implemented); only the linear layers' kernels
and biases are trained (neuron parameters get a zero gradient); FA has no online form here
(its error travels back through the layers above).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax.nn.neurons import NeuronCell
from snnjax.rules import forward_mode
from snnjax.rules.feedback import FeedbackState
from snnjax.rules.protocol import Rule

__all__ = ["online_dfa", "per_step_loss"]


def _layers(net: nnx.Module, rule: str = "online_dfa") -> list[tuple[int, int]]:
    """Indices of (linear, neuron) pairs, checked."""
    layers = list(getattr(net, "layers", ()))
    pairs = list(zip(range(0, len(layers), 2), range(1, len(layers), 2)))
    ok = (
        len(layers) >= 4
        and len(layers) % 2 == 0
        and all(isinstance(layers[i], nnx.Linear) and isinstance(layers[j], NeuronCell) for i, j in pairs)
    )
    if not ok:
        raise ValueError(
            f"{rule}: the network must be a snnjax.nn.Sequential of (nnx.Linear, neuron layer) pairs, at least two pairs."
        )
    for _, j in pairs:
        if getattr(layers[j], "recurrent", None) is not None:
            raise ValueError(f"{rule}: recurrent neuron layers are not supported online; use the offline rule.")
    return pairs


def _unpack(graphdef, params, rest, pairs):
    """The linear layers' ``(W, b)`` (a zero bias where there is none) and the neurons, from ``params``."""
    model = nnx.merge(graphdef, params, rest)
    weights = [(model.layers[i].kernel[...], model.layers[i].bias) for i, _ in pairs]
    weights = [(w, jnp.zeros(w.shape[1], w.dtype) if b is None else b[...]) for w, b in weights]
    return weights, [model.layers[j].neuron() for _, j in pairs]


def _grad_state(params, pairs, grads):
    """``params``-shaped gradients: ``(g_W, g_b)`` per linear layer, zero elsewhere."""
    pure = jax.tree.map(jnp.zeros_like, nnx.to_pure_dict(params))
    for (i, _), (g_w, g_b) in zip(pairs, grads):
        pure["layers"][i]["kernel"] = g_w
        if "bias" in pure["layers"][i]:
            pure["layers"][i]["bias"] = g_b
    grad_state = jax.tree.map(jnp.zeros_like, params)
    nnx.replace_by_pure_dict(grad_state, pure)
    return grad_state


def per_step_loss(net: nnx.Module, loss_t: Callable[[jax.Array, jax.Array], jax.Array]):
    """The offline ``loss_fn(params, xs, labels) -> (loss, y)`` the online rules follow:
    :math:`\\frac1T \\sum_t \\operatorname{mean}_b \\ell(y_t)` of the network run as a whole, for
    :func:`snnjax.compare_gradients` and ``jax.grad``.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> import snnjax.nn as snn
      >>> from snnjax.rules.online import per_step_loss
      >>> net = snn.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), snn.LeakyIntegrator(3))
      >>> loss_fn = per_step_loss(net, optax.softmax_cross_entropy_with_integer_labels)
      >>> loss, y = loss_fn(nnx.state(net, nnx.Param), jnp.zeros((4, 1, 2)), jnp.array([0]))
      >>> round(float(loss), 4), y.shape  # log 3 for all-zero outputs
      (1.0986, (4, 1, 3))
    """
    graphdef, _, rest = nnx.split(net, nnx.Param, ...)

    def loss_fn(params, xs, labels):
        y = nnx.merge(graphdef, params, rest)(xs)
        return jnp.mean(jax.vmap(loss_t, in_axes=(0, None))(y, labels)), y

    return loss_fn


def _read_fields(step: Callable, state: Any, current: jax.Array) -> list[int]:
    """The state arrays that ``step`` reads; the others (a LIF's stored spike) need no trace."""
    closed = jax.make_jaxpr(step)(state, current)
    jaxpr = closed.jaxpr
    variables = [v for eqn in jaxpr.eqns for v in eqn.invars] + list(jaxpr.outvars)
    used = {id(v) for v in variables if type(v).__name__ != "Literal"}
    return [m for m, var in enumerate(jaxpr.invars[: len(state)]) if id(var) in used]


def _local_jacobians(step: Callable, state: Any, current: jax.Array, fields: list[int]):
    """Per-neuron derivatives of ``(state', out)`` with respect to the state arrays ``fields`` and the current.

    Returns ``(new_state, out, d_state, d_current)``: ``d_state[i]`` is the tangent of
    ``(state', out)`` along state array ``fields[i]`` (ones), ``d_current`` along the current.
    Neurons are independent (no recurrence), so a tangent of ones gives every neuron's own derivative.
    """
    zeros = [jnp.zeros_like(f) for f in state]
    (new_state, out), d_current = forward_mode.jvp(lambda i: step(state, i), (current,), (jnp.ones_like(current),))
    d_state = []
    for m in fields:
        tangent = type(state)(*[jnp.ones_like(f) if n == m else z for n, (f, z) in enumerate(zip(state, zeros))])
        d_state.append(forward_mode.jvp(lambda s: step(s, current), (state,), (tangent,))[1])
    return new_state, out, d_state, d_current


def online_dfa(
    net: nnx.Module,
    loss_t: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    key: jax.Array | None = None,
    feedback: str = "dfa",
    scale: float = 1.0,
    rate: float = 0.01,
    distribution: str = "gaussian",
) -> Rule:
    r"""DFA (or FDFA) with eligibility traces, one pass forward in time (module docstring).

    Args:
      net: a :class:`snnjax.nn.Sequential` of ``(nnx.Linear, neuron layer)`` pairs; its
        ``nnx.Param`` state is what the rule is called with, the rest stays as it is now.
      loss_t: ``(y_t [B, C], labels) -> [B]``, the per-example loss of one time step.
      key: draws DFA's fixed matrices (``feedback="dfa"``), as :func:`snnjax.rules.dfa` does.
      feedback: ``"dfa"`` (fixed random :math:`B_l`) or ``"fdfa"`` (estimated, from zero).
      scale: DFA's matrices' standard deviation relative to :math:`1/\sqrt{C}`.
      rate: FDFA's update rate.
      distribution: FDFA's perturbations, ``"gaussian"`` or ``"rademacher"``.

    Returns:
      A stateful :class:`~snnjax.rules.Rule` with a :class:`~snnjax.rules.FeedbackState`:
      ``(loss, y), grads, state = rule(params, xs, labels, key=key, state=state)`` for inputs
      ``xs: [T, B, N_in]``; ``y: [T, B, C]`` is the readout.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> import snnjax.nn as snn
      >>> from snnjax import rules
      >>> rngs = nnx.Rngs(0)
      >>> net = snn.Sequential(nnx.Linear(4, 8, rngs=rngs), snn.LIF(8), nnx.Linear(8, 2, rngs=rngs), snn.LeakyIntegrator(2))
      >>> rule = rules.online_dfa(net, optax.softmax_cross_entropy_with_integer_labels, key=jax.random.key(1))
      >>> params = nnx.state(net, nnx.Param)
      >>> xs, labels = jnp.ones((30, 3, 4)), jnp.array([0, 1, 0])
      >>> (loss, ys), grads, state = rule(params, xs, labels, state=rule.init(params))
      >>> ys.shape, grads["layers"][0]["kernel"].shape
      ((30, 3, 2), (4, 8))
    """
    if feedback not in ("dfa", "fdfa"):
        raise ValueError(f"online_dfa: feedback must be 'dfa' or 'fdfa', got {feedback!r}.")
    if feedback == "dfa" and key is None:
        raise ValueError("online_dfa: feedback='dfa' needs key= to draw its fixed matrices.")
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"online_dfa: rate must lie in (0, 1], got {rate}.")
    forward_mode.check_options(1, distribution, "online_dfa")
    pairs = _layers(net)
    graphdef, _, rest = nnx.split(net, nnx.Param, ...)
    sizes = [net.layers[i].kernel.shape for i, _ in pairs]
    classes = sizes[-1][1]

    def init(params):
        shapes = [(n_out, classes) for _, n_out in sizes[:-1]]
        if feedback == "fdfa":
            return FeedbackState(tuple(jnp.zeros(s) for s in shapes), jnp.zeros((), jnp.int32))
        keys = jax.random.split(key, len(shapes))
        return FeedbackState(
            tuple(scale * jax.random.normal(k, s) / jnp.sqrt(classes) for k, s in zip(keys, shapes)),
            jnp.zeros((), jnp.int32),
        )

    def apply(state, params, xs, labels, key=None):
        if feedback == "fdfa":
            key = forward_mode.require_key(key, "online_dfa(feedback='fdfa')")
        weights, neurons = _unpack(graphdef, params, rest, pairs)
        steps, batch = xs.shape[0], xs.shape[1]
        dtype = xs.dtype

        def network(states, x, noise):
            """One time step of the whole network, ``(states, outputs)``; hidden outputs get ``+ noise``."""
            new_states, outs = [], []
            for l, ((w, b), neuron) in enumerate(zip(weights, neurons)):
                s, out = neuron.step(states[l], x @ w + b.reshape(1, -1))
                new_states.append(s)
                outs.append(out)
                x = out + noise[l] if l < len(noise) else out
            return new_states, outs

        states0 = [n.init((batch, n_out), dtype) for n, (_, n_out) in zip(neurons, sizes)]
        # One [B, N_in, N] trace (and [B, N] for the bias) per state array: the neuron axis
        # stays innermost, so every update below is a vectorised elementwise pass.
        fields = [
            _read_fields(n.step, s, jnp.zeros((batch, n_out), dtype))
            for n, s, (_, n_out) in zip(neurons, states0, sizes)
        ]
        traces0 = [
            ([jnp.zeros((batch, n_in, n_out), dtype)] * len(f), [jnp.zeros((batch, n_out), dtype)] * len(f))
            for (n_in, n_out), f in zip(sizes, fields)
        ]
        grads0 = [(jnp.zeros_like(w), jnp.zeros_like(b)) for w, b in weights]
        hidden_shapes = [(batch, n_out) for _, n_out in sizes[:-1]]
        fdfa_carry0 = (
            ([jax.tree.map(jnp.zeros_like, s) for s in states0], [jnp.zeros(m.shape, dtype) for m in state.matrices])
            if feedback == "fdfa"
            else None
        )

        def body(carry, inputs_t):
            states, traces, grads, loss_sum, fdfa_carry = carry
            x_t, t = inputs_t
            if fdfa_carry is not None:  # carry the tangent of every hidden output's noise forward
                tangents, sums = fdfa_carry
                noise = [
                    forward_mode.draw(jax.random.fold_in(jax.random.fold_in(key, l), t), s, dtype, distribution)
                    for l, s in enumerate(hidden_shapes)
                ]
                zeros = [jnp.zeros(s, dtype) for s in hidden_shapes]
                _, (tangents, d_outs) = forward_mode.jvp(
                    lambda s, e: network(s, x_t, e), (states, zeros), (tangents, noise)
                )
                fdfa_carry = (tangents, [acc + jnp.einsum("bn,bc->nc", u, d_outs[-1]) for acc, u in zip(sums, noise)])
            local, x = [], x_t
            for l, ((w, b), neuron) in enumerate(zip(weights, neurons)):
                local.append((x, *_local_jacobians(neuron.step, states[l], x @ w + b.reshape(1, -1), fields[l])))
                x = local[-1][2]
            y = x
            loss, error = jax.value_and_grad(lambda y: jnp.mean(loss_t(y, labels)) / steps)(y)
            signals = [error @ b.T for b in state.matrices] + [error]  # delta_l: e B_l^T, and e for the readout
            new_states, new_traces, new_grads = [], [], []
            for l, (x, s, out, d_state, d_current) in enumerate(local):
                eps_w, eps_b = traces[l]
                delta = signals[l]
                k = len(eps_w)
                # delta times d out / d state_{t-1}[m] and d out / d I, per neuron: [B, N]
                signal_ds = [delta * d[1] for d in d_state]
                signal_di = delta * d_current[1]
                g_w = sum(jnp.einsum("bj,bij->ij", sig, e) for sig, e in zip(signal_ds, eps_w)) + x.T @ signal_di
                g_b = sum(jnp.sum(sig * e, axis=0) for sig, e in zip(signal_ds, eps_b)) + jnp.sum(signal_di, axis=0)
                # eps_t[n] = sum_m (d state'[n] / d state[m]) eps_{t-1}[m] + (d state'[n] / d I) x
                read = fields[l]  # traces of the state arrays the step reads, in order
                eps_w = [
                    sum(d_state[m][0][n][:, None, :] * eps_w[m] for m in range(k))
                    + d_current[0][n][:, None, :] * x[:, :, None]
                    for n in read
                ]
                eps_b = [sum(d_state[m][0][n] * eps_b[m] for m in range(k)) + d_current[0][n] for n in read]
                new_states.append(s)
                new_traces.append((eps_w, eps_b))
                new_grads.append((grads[l][0] + g_w, grads[l][1] + g_b))
            return (new_states, new_traces, new_grads, loss_sum + loss, fdfa_carry), y

        carry0 = (states0, traces0, grads0, jnp.zeros((), dtype), fdfa_carry0)
        (_, _, grads, loss, fdfa_carry), ys = jax.lax.scan(body, carry0, (xs, jnp.arange(steps)))
        grad_state = _grad_state(params, pairs, grads)
        matrices = state.matrices
        if fdfa_carry is not None:
            matrices = tuple(b - rate * (b - acc / (steps * batch)) for b, acc in zip(matrices, fdfa_carry[1]))
        return (loss, ys), grad_state, FeedbackState(matrices, state.step + 1)

    return Rule(
        init=init, apply=apply, stateful=True, name=f"{feedback.upper()} online", loss_fn=per_step_loss(net, loss_t)
    )
