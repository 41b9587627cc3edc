r"""Backpropagation through time: the exact gradient of the loss through the whole scan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from snnjax.rules.protocol import EmptyState, Rule

__all__ = ["bptt"]


def bptt(loss_fn: Callable[..., tuple[jax.Array, Any]]) -> Rule:
    r"""BPTT: ``jax.value_and_grad`` of ``loss_fn`` through every time step (reverse mode).

    With spiking neurons the derivative of each spike is its surrogate, so this is the
    surrogate-gradient BPTT of Neftci, Mostafa & Zenke (2019). Memory grows with the number of
    time steps (one saved state per step).

    Args:
      loss_fn: ``(params, *args) -> (loss, aux)``, scalar loss; differentiated in its first
        argument.

    Returns:
      A :class:`snnjax.rules.Rule`: ``(loss, aux), grads = rule(params, *args, key=None)``.

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
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)

    def apply(state, params, *args, key=None):
        del key  # deterministic
        return (*value_and_grad(params, *args), state)

    return Rule(init=lambda params: EmptyState(), apply=apply, stateful=False, name="bptt", loss_fn=loss_fn)
