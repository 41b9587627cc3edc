r"""Real-time recurrent learning, exact, in forward mode: the gradient carried forward in time.

RTRL (Williams & Zipser 1989) carries the sensitivities of the state to the parameters,
:math:`S_t = \partial s_t / \partial\theta`, forward through time beside the state,

.. math::

    S_t = \frac{\partial f}{\partial s}(s_{t-1}, x_t)\, S_{t-1} + \frac{\partial f}{\partial \theta},
    \qquad
    \frac{dL}{d\theta} = \sum_t \frac{\partial \ell_t}{\partial s_t} S_t + \frac{\partial \ell_t}{\partial \theta},

so nothing of the past needs to be stored. Pushing one tangent :math:`e_i` per parameter
coordinate through the loss with ``jax.jvp`` is exactly this recursion, column :math:`i` of
:math:`S_t` riding in the scan's carry as the tangent of the state, through each neuron's own
Jacobian (its surrogate derivative included). The result equals ``jax.grad`` (BPTT) up to float
rounding, for any loss the model computes in one pass: per-step losses, a maximum or a mean over
time, a readout at the last step.

Memory: the sensitivities do not grow with the number of steps ``T``. What the loss itself
keeps over time (a readout's ``[T, B, C]`` outputs before a maximum over time, say) is kept once
per tangent pushed at a time; a loss summed as the scan runs keeps nothing, and the rule's
memory is then flat in ``T``. The loss of a stepped network, :func:`snnjax.rules.per_step_loss`,
is summed so.

The price is ``P`` forward passes for ``P`` parameters (``O(N^4)`` for a recurrent layer of
``N`` neurons over time): the exact reference that online approximations (e-prop, OSTL, OTTT)
are measured against, for small networks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from snnjax.rules import forward_mode
from snnjax.rules.graph import evaluate, trace
from snnjax.rules.protocol import Rule, stateless, total
from snnjax.rules.stepped import SteppedLoss

__all__ = ["rtrl"]


def rtrl(loss_fn: Callable[..., tuple[Any, Any]], chunk: int = 256) -> Rule:
    r"""Exact RTRL: the gradient of ``loss_fn`` by forward-mode sensitivities (module docstring).

    Args:
      loss_fn: ``(params, *args) -> (loss, aux)`` with a floating-point scalar loss (or a tuple
        of local losses, trained block by block as :func:`snnjax.rules.bptt` does).
      chunk: how many parameter coordinates are pushed forward at once (``vmap``); the rest
        follow in sequence (``lax.map``). Memory grows with ``chunk`` times the state size,
        never with ``T``; time with the number of chunks.

    Returns:
      A :class:`snnjax.rules.Rule`: ``(loss, aux), grads = rule(params, *args)``.

    Raises:
      ValueError: for ``chunk < 1``, or, at trace time, a ``loss_fn`` that does not return
        ``(loss, aux)`` with a scalar loss.
      TypeError: if ``loss_fn`` uses ``jax.custom_vjp`` (e.g. ``snnjax.spike(method="custom_vjp")``
        or ``snnjax.run_bptt``), which has no forward mode, naming the spike methods that work.

    Examples:
      >>> import jax, jax.numpy as jnp, snnjax
      >>> from snnjax import rules
      >>> xs = jax.random.uniform(jax.random.key(0), (20, 2, 3))
      >>> def loss_fn(w, xs):
      ...     _, z = snnjax.run(snnjax.lif(0.9, recurrent=w["rec"]), xs @ w["in"])
      ...     return jnp.mean(z), None
      >>> w = {"in": jnp.ones((3, 4)), "rec": jnp.eye(4) * 0.1}
      >>> (loss, _), g = rules.rtrl(loss_fn)(w, xs)
      >>> exact = jax.grad(lambda w: loss_fn(w, xs)[0])(w)
      >>> bool(jnp.allclose(g["rec"], exact["rec"], atol=1e-6))
      True
    """
    if not callable(loss_fn):
        raise ValueError("rtrl: loss_fn must be a callable (params, *args) -> (loss, aux).")
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"rtrl: chunk must be an int >= 1, got {chunk!r}.")

    def apply(state, params, *args, key=None):
        del key  # deterministic
        graph = trace(loss_fn, params, args, "rtrl")
        flat, unravel = ravel_pytree(params)
        size = flat.shape[0]
        width = min(chunk, max(size, 1))
        count = -(-size // width)

        def objective(vector):
            p = unravel(vector)
            loss, aux = evaluate(graph, p, args)[0] if graph.blocks else loss_fn(p, *args)
            return total(loss), aux

        def scalar(vector):  # a stepped network's loss summed as it runs: nothing kept over time
            if isinstance(loss_fn, SteppedLoss) and not graph.blocks:
                return loss_fn.running_loss(unravel(vector), *args)
            return objective(vector)[0]

        def along(index):  # dL/dtheta_index: the loss's tangent along e_index (zero past the end)
            tangent = jax.nn.one_hot(index, size, dtype=flat.dtype)
            return forward_mode.jvp(scalar, (flat,), (tangent,))[1]

        derivatives = jax.lax.map(lambda start: jax.vmap(along)(start + jnp.arange(width)), jnp.arange(count) * width)
        grads = unravel(derivatives.reshape(-1)[:size].astype(flat.dtype))
        return objective(flat), grads, state  # the aux once, not once per tangent

    return stateless(apply, "RTRL", loss_fn)
