r"""The learning-rule protocol: every rule is a drop-in for ``jax.value_and_grad``.

A rule is built from a loss function ``loss_fn(params, *args) -> (loss, aux)`` and options,
and is called the way ``jax.value_and_grad(loss_fn, has_aux=True)`` is, with a PRNG key
added::

    rule = snnjax.rules.bptt(loss_fn)
    (loss, aux), grads = rule(params, *args, key=key)
    updates, opt_state = optimizer.update(grads, opt_state, params)

``grads`` has the structure of ``params``, so any optax optimiser consumes it. Rules that carry
state of their own across steps (learned feedback matrices, say) expose it the way optax
transformations do, so every call stays pure and jit-compilable::

    rule_state = rule.init(params)
    (loss, aux), grads, rule_state = rule(params, *args, key=key, state=rule_state)

Deterministic rules ignore ``key``; stochastic ones raise if it is missing. A rule that needs
the layer structure of a network (feedback alignment, activity perturbation) is built from
an snnjax network and a loss instead of a bare ``loss_fn``, and is called the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

__all__ = ["Rule", "EmptyState"]

Params = Any
RuleState = Any


class EmptyState(NamedTuple):
    """The state of a rule that has none."""


class Rule(NamedTuple):
    """A learning rule (see the module docstring for the protocol).

    Attributes:
      init: ``params -> state``, the rule's own state (an :class:`EmptyState` if it has none).
      apply: ``(state, params, *args, key) -> ((loss, aux), grads, state)``, the general form
        that a rule-agnostic training step calls.
      stateful: whether the rule carries state; if so, calls must pass ``state=``.
      name: a short label for tables and logs.
      loss_fn: the loss ``(params, *args) -> (loss, aux)`` whose gradient the rule estimates,
        where there is one; :func:`snnjax.compare` differentiates it exactly as the reference.
    """

    init: Callable[[Params], RuleState]
    apply: Callable[..., tuple[tuple[jax.Array, Any], Params, RuleState]]
    stateful: bool = False
    name: str = "rule"
    loss_fn: Callable[..., tuple[jax.Array, Any]] | None = None

    def __call__(self, params: Params, *args: Any, key: jax.Array | None = None, state: RuleState | None = None):
        """``(loss, aux), grads`` like ``jax.value_and_grad``; stateful rules also return the new state."""
        if self.stateful:
            if state is None:
                raise ValueError(
                    f"rule {self.name!r} carries state: pass state=rule.init(params) and keep the returned state."
                )
            return self.apply(state, params, *args, key=key)
        (loss_aux, grads, _) = self.apply(EmptyState() if state is None else state, params, *args, key=key)
        return loss_aux, grads
