r"""Backpropagation through time: the exact gradient of the loss through the whole scan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from snnjax.rules.graph import evaluate, trace
from snnjax.rules.protocol import Rule, stateless, total

__all__ = ["bptt"]


def bptt(loss_fn: Callable[..., tuple[Any, Any]]) -> Rule:
    r"""BPTT: ``jax.value_and_grad`` of ``loss_fn`` through every time step (reverse mode).

    With spiking neurons the derivative of each spike is its surrogate, so this is the
    surrogate-gradient BPTT of Neftci, Mostafa & Zenke (2019). Memory grows with the number of
    time steps (one saved state per step). A model cut into blocks by
    :func:`snnjax.rules.block`, each with its own local loss, trains block by block (LG-BP of
    Ren et al. 2023): each block's parameters get the gradient of its own loss only.

    Args:
      loss_fn: ``(params, *args) -> (loss, aux)`` with a floating-point scalar loss (or a tuple
        of local losses); differentiated in its first argument.

    Returns:
      A :class:`snnjax.rules.Rule`: ``(loss, aux), grads = rule(params, *args)``.

    Raises:
      ValueError: at trace time, if ``loss_fn`` does not return ``(loss, aux)`` with a scalar loss.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import rules
      >>> rule = rules.bptt(lambda w, x: ((w * x) ** 2, None))
      >>> (loss, aux), g = rule(2.0, 3.0)
      >>> float(loss), float(g)
      (36.0, 36.0)
    """
    if not callable(loss_fn):
        raise ValueError("bptt: loss_fn must be a callable (params, *args) -> (loss, aux).")

    def apply(state, params, *args, key=None):
        del key  # deterministic
        graph = trace(loss_fn, params, args, "bptt")  # checks the loss; finds the block markers

        def objective(p):
            loss, aux = evaluate(graph, p, args)[0] if graph.blocks else loss_fn(p, *args)
            return total(loss), aux

        return (*jax.value_and_grad(objective, has_aux=True)(params), state)

    return stateless(apply, "bptt", loss_fn)
