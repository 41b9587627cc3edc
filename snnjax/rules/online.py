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
derivative included). The loss is a sum over time, :math:`L = \sum_t w_t \operatorname{mean}_b
\ell(y_t)` (with :math:`w_t = 1/T`, or :math:`1/k` on the last :math:`k` steps of a readout window
(``per_step_loss(..., last=k)``) and 0 before), :math:`y_t` the last layer's output; its error
:math:`e_t = \partial L / \partial y_t`
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

**Against the offline rules.** The online rule delivers the error of step :math:`t` at the
readout's *output*, :math:`e_t = \partial \ell_t / \partial y_t`, the only error known at step
:math:`t`. Offline :func:`snnjax.rules.dfa` delivers it at the readout's *input* (the output
product), :math:`\partial L / \partial o_t`, which through a readout with memory (a leaky
integrator's :math:`\kappa > 0`) also carries the errors of later steps. The two are equal
when the readout keeps no memory (a leaky integrator with :math:`\kappa = 0`; tested), and
so are FDFA's estimates, drawn with the same noise (:func:`snnjax.rules.feedback.draw_steps`).

Limits: the network is the :func:`snnjax.rules.per_step_loss` of a chain of
``(dense, neuron)`` pairs without recurrent weights (for those, :func:`snnjax.rules.eprop`,
:func:`snnjax.rules.rtrl` or :func:`snnjax.rules.tbptt`); the dense layers' kernels and biases
are trained, and a neuron layer whose dynamics depend on the parameters is refused with a
``ValueError``; FA has no online form here (its error travels back through the layers above).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from snnjax.rules import forward_mode
from snnjax.rules.feedback import FeedbackState, fdfa_update
from snnjax.rules.protocol import Rule
from snnjax.rules.stepped import dense_layers, eligibility_step, local_jacobians, read_fields, start, to_params

__all__ = ["online_dfa"]


def online_dfa(
    loss_fn: Any,
    *,
    feedback: str = "dfa",
    scale: float = 1.0,
    rate: float = 0.01,
    distribution: str = "gaussian",
) -> Rule:
    r"""DFA (or FDFA) with eligibility traces, one pass forward in time (module docstring).

    Args:
      loss_fn: the loss of a stepped network, :func:`snnjax.rules.per_step_loss`.
      feedback: ``"dfa"`` (fixed random :math:`B_l`) or ``"fdfa"`` (estimated, from zero).
      scale: DFA's matrices' standard deviation relative to :math:`1/\sqrt{C}`.
      rate: FDFA's update rate.
      distribution: FDFA's perturbations, ``"gaussian"`` or ``"rademacher"``.

    Returns:
      A stateful :class:`~snnjax.rules.Rule` with a :class:`~snnjax.rules.FeedbackState`:
      ``state = rule.init(params, xs, labels, key=key)`` (DFA draws its matrices from ``key``
      as :func:`snnjax.rules.dfa` does), then ``(loss, ys), grads, state = rule(params, xs,
      labels, key=key, state=state)`` for inputs ``xs: [T, B, N_in]``; ``ys: [T, B, C]`` is the
      readout. FDFA draws the noise of hidden layer ``l`` at step ``t`` from
      ``fold_in(fold_in(key, l), t)``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, snnjax
      >>> from snnjax import rules
      >>> def network(p):
      ...     layers = (snnjax.dense(p["w1"]), snnjax.lif(0.9), snnjax.dense(p["w2"]), snnjax.leaky_integrator(0.9))
      ...     return snnjax.chain(*layers)
      >>> loss_fn = rules.per_step_loss(network, optax.softmax_cross_entropy_with_integer_labels)
      >>> params = {"w1": jnp.full((4, 8), 0.3), "w2": jnp.full((8, 2), 0.1)}
      >>> xs, labels = jnp.ones((30, 3, 4)), jnp.array([0, 1, 0])
      >>> rule = rules.online_dfa(loss_fn)
      >>> state = rule.init(params, xs, labels, key=jax.random.key(1))
      >>> (loss, ys), grads, state = rule(params, xs, labels, state=state)
      >>> ys.shape, grads["w1"].shape
      ((30, 3, 2), (4, 8))
    """
    if feedback not in ("dfa", "fdfa"):
        raise ValueError(f"online_dfa: feedback must be 'dfa' or 'fdfa', got {feedback!r}.")
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"online_dfa: rate must lie in (0, 1], got {rate}.")
    forward_mode.check_options(1, distribution, "online_dfa")
    name = "online_dfa"

    def init(params, *args, key=None):
        pairs = dense_layers(loss_fn, params, name)
        classes = pairs[-1][0].kernel.shape[1]
        shapes = [(d.kernel.shape[1], classes) for d, _ in pairs[:-1]]
        if feedback == "fdfa":
            return FeedbackState(tuple(jnp.zeros(s) for s in shapes), jnp.zeros((), jnp.int32))
        if key is None:
            raise ValueError("online_dfa: feedback='dfa' needs init(..., key=key) to draw its fixed matrices.")
        keys = jax.random.split(key, len(shapes))
        return FeedbackState(
            tuple(scale * jax.random.normal(k, s) / jnp.sqrt(classes) for k, s in zip(keys, shapes)),
            jnp.zeros((), jnp.int32),
        )

    def apply(state, params, xs, labels, key=None):
        if feedback == "fdfa":
            key = forward_mode.require_key(key, "online_dfa(feedback='fdfa')")
        pairs, sizes, steps, batch, dtype = start(loss_fn, params, xs, name)
        loss_t = loss_fn.loss_t

        def network(states, x, noise):
            """One time step of the whole network, ``(states, outputs)``; hidden outputs get ``+ noise``."""
            new_states, outs = [], []
            for l, (synapse, neuron) in enumerate(pairs):
                s, out = neuron.step(states[l], synapse(x))
                new_states.append(s)
                outs.append(out)
                x = out + noise[l] if l < len(noise) else out
            return new_states, outs

        states0 = [neuron.init((batch, n_out), dtype) for (_, neuron), (_, n_out) in zip(pairs, sizes)]
        # One [B, N_in, N] trace (and [B, 1, N] for the bias) per state array: the neuron axis
        # stays innermost, so every update below is a vectorised elementwise pass.
        fields = [
            read_fields(neuron.step, s, jnp.zeros((batch, n_out), dtype))
            for (_, neuron), s, (_, n_out) in zip(pairs, states0, sizes)
        ]
        traces0 = [
            ([jnp.zeros((batch, n_in, n_out), dtype)] * len(f), [jnp.zeros((batch, 1, n_out), dtype)] * len(f))
            for (n_in, n_out), f in zip(sizes, fields)
        ]
        grads0 = [(jnp.zeros((n_in, n_out), dtype), jnp.zeros((n_out,), dtype)) for n_in, n_out in sizes]
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
            for l, (synapse, neuron) in enumerate(pairs):
                local.append((x, *local_jacobians(neuron.step, states[l], synapse(x), fields[l])))
                x = local[-1][2]
            y = x
            loss, error = jax.value_and_grad(lambda y: loss_fn.weight(t, steps, dtype) * jnp.mean(loss_t(y, labels)))(y)
            signals = [error @ b.T for b in state.matrices] + [error]  # delta_l: e B_l^T, and e for the readout
            new_states, new_traces, new_grads = [], [], []
            for l, (x, s, _, d_state, d_current) in enumerate(local):
                eps_w, eps_b = traces[l]
                ones = jnp.ones((batch, 1), dtype)
                g_w, eps_w = eligibility_step(x, d_state, d_current, eps_w, signals[l], fields[l])
                g_b, eps_b = eligibility_step(ones, d_state, d_current, eps_b, signals[l], fields[l])
                new_states.append(s)
                new_traces.append((eps_w, eps_b))
                new_grads.append((grads[l][0] + g_w, grads[l][1] + g_b[0]))
            return (new_states, new_traces, new_grads, loss_sum + loss, fdfa_carry), y

        carry0 = (states0, traces0, grads0, jnp.zeros((), dtype), fdfa_carry0)
        (_, _, grads, loss, fdfa_carry), ys = jax.lax.scan(body, carry0, (xs, jnp.arange(steps)))
        matrices = state.matrices
        if fdfa_carry is not None:
            matrices = tuple(fdfa_update(b, acc / (steps * batch), rate) for b, acc in zip(matrices, fdfa_carry[1]))
        return (loss, ys), to_params(loss_fn, params, grads), FeedbackState(matrices, state.step + 1)

    return Rule(init=init, apply=apply, stateful=True, name=f"{feedback.upper()} online", loss_fn=loss_fn)
