r"""Activity-perturbed forward gradient (FG-A) in one scan forward in time, memory independent of T.

:func:`snnjax.rules.activity_forward_gradient` runs a network as its loss does (layer by layer,
say), so it holds every layer's ``[T, B, N]`` activity. Here the whole network steps together inside one
``lax.scan``: at step :math:`t` every layer's input current gets per-example noise
:math:`u_{l,t} \sim \mathcal N(0, I)`, the forward-mode tangent of the network state is carried
in the scan, and the directional derivative of each example's loss,
:math:`d_b = \sum_t \partial_{y_t} \ell_b \cdot y'_{t,b}`, accumulates as the sequence runs.
:math:`d_b` is known only at the end, so each layer keeps, per example, the sum
:math:`A_{l,b} = \sum_t x_{l,t,b}\, u_{l,t,b}^\top` (``[B, N_in, N]``) and the estimate is

.. math:: \hat g_{W_l} = \frac1B \sum_b d_b\, A_{l,b}, \qquad \hat g_{b_l} = \frac1B \sum_b d_b \sum_t u_{l,t,b},

the FG-A estimate of Ren et al. (unbiased; the weight gradient through each layer's own local
Jacobian) for the loss :math:`\sum_t w_t \operatorname{mean}_b \ell(y_t)` (with :math:`w_t = 1/T`,
or :math:`1/k` on the last :math:`k` steps of a readout window (``per_step_loss(..., last=k)``) and
0 before). Memory holds the
states, their tangents and :math:`A`: nothing grows with T.

Limits: as :func:`snnjax.rules.online_dfa` (the :func:`snnjax.rules.per_step_loss` of a chain of
``(dense, neuron)`` pairs, no recurrent weights, the dense layers trained); the loss is a sum
over time steps.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from snnjax.rules import forward_mode
from snnjax.rules.protocol import Rule, stateless
from snnjax.rules.stepped import start, to_params

__all__ = ["online_activity_forward_gradient"]


def online_activity_forward_gradient(loss_fn: Any, num_directions: int = 1, *, distribution: str = "gaussian") -> Rule:
    r"""FG-A with the network scanned as a whole (module docstring).

    Args:
      loss_fn: the loss of a stepped network, :func:`snnjax.rules.per_step_loss`.
      num_directions: ``K`` independent perturbations, vmapped and averaged (memory grows with K).
      distribution: ``"gaussian"`` or ``"rademacher"``.

    Returns:
      A :class:`~snnjax.rules.Rule`: ``(loss, ys), grads = rule(params, xs, labels, key=key)``
      for ``xs: [T, B, N_in]``. The noise of layer ``l`` at step ``t`` for direction ``k`` is
      drawn from ``fold_in(fold_in(split(key, K)[k], l), t)``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax, snnjax
      >>> from snnjax import rules
      >>> def network(w):  # current-based LIF neurons, a leaky-integrator readout
      ...     return snnjax.chain(snnjax.dense(w[0]), snnjax.cuba_lif(), snnjax.dense(w[1]), snnjax.leaky_integrator())
      >>> loss_fn = rules.per_step_loss(network, optax.softmax_cross_entropy_with_integer_labels)
      >>> w, xs, labels = (jnp.full((4, 8), 0.3), jnp.full((8, 2), 0.1)), jnp.ones((30, 3, 4)), jnp.array([0, 1, 0])
      >>> (loss, ys), grads = rules.online_activity_forward_gradient(loss_fn)(w, xs, labels, key=jax.random.key(0))
      >>> ys.shape, grads[1].shape
      ((30, 3, 2), (8, 2))
    """
    name = "online_activity_forward_gradient"
    forward_mode.check_options(num_directions, distribution, name)

    def apply(state, params, xs, labels, key=None):
        key = forward_mode.require_key(key, name)
        pairs, sizes, steps, batch, dtype = start(loss_fn, params, xs, name)
        loss_t = loss_fn.loss_t

        def network(states, x, noise):
            """One step of the whole network with ``noise`` added to every layer's input current."""
            new_states, outs, inputs = [], [], []
            for (synapse, neuron), state_l, u in zip(pairs, states, noise):
                inputs.append(x)
                s, x = neuron.step(state_l, synapse(x) + u)
                new_states.append(s)
                outs.append(x)
            return new_states, outs, inputs

        def one_direction(k):
            def body(carry, inputs_t):
                states, tangents, sums, d, loss = carry
                x_t, t = inputs_t
                noise = [
                    forward_mode.draw(jax.random.fold_in(jax.random.fold_in(k, l), t), (batch, n), dtype, distribution)
                    for l, (_, n) in enumerate(sizes)
                ]
                zeros = [jnp.zeros_like(u) for u in noise]
                (states, outs, layer_inputs), (tangents, d_outs, _) = forward_mode.jvp(
                    lambda s, e: network(s, x_t, e), (states, zeros), (tangents, noise)
                )
                losses, d_losses = jax.jvp(lambda y: loss_t(y, labels), (outs[-1],), (d_outs[-1],))
                sums = [
                    (a_w + x[:, :, None] * u[:, None, :], a_b + u)
                    for (a_w, a_b), x, u in zip(sums, layer_inputs, noise)
                ]
                w = loss_fn.weight(t, steps, dtype)
                return (states, tangents, sums, d + w * d_losses, loss + w * jnp.mean(losses)), outs[-1]

            states0 = [neuron.init((batch, n_out), dtype) for (_, neuron), (_, n_out) in zip(pairs, sizes)]
            tangents0 = [jax.tree.map(jnp.zeros_like, s) for s in states0]
            sums0 = [
                (jnp.zeros((batch, n_in, n_out), dtype), jnp.zeros((batch, n_out), dtype)) for n_in, n_out in sizes
            ]
            carry0 = (states0, tangents0, sums0, jnp.zeros((batch,), dtype), jnp.zeros((), dtype))
            (_, _, sums, d, loss), ys = jax.lax.scan(body, carry0, (xs, jnp.arange(steps)))
            grads = [(jnp.einsum("b,bij->ij", d, a_w) / batch, d @ a_b / batch) for a_w, a_b in sums]
            return loss, ys, grads

        loss, ys, grads = jax.vmap(one_direction, out_axes=(None, None, 0))(jax.random.split(key, num_directions))
        grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
        return (loss, ys), to_params(loss_fn, params, grads), state

    return stateless(apply, f"FG-A online(K={num_directions})", loss_fn)
