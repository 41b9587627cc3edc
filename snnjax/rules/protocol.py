r"""The learning-rule protocol: every rule is a drop-in for ``jax.value_and_grad``.

A rule is built from a loss function ``loss_fn(params, *args) -> (loss, aux)`` and options,
and is called the way ``jax.value_and_grad(loss_fn, has_aux=True)`` is, with a PRNG key
added::

    rule = snnjax.rules.dfa(loss_fn)
    state = rule.init(params, *args, key=key)         # stateful rules: one abstract trace finds the layers
    (loss, aux), grads, state = rule(params, *args, key=key, state=state)
    updates, opt_state = optimizer.update(grads, opt_state, params)

``grads`` has the structure of ``params``, so any optax optimiser consumes it. Stateless rules
return ``(loss, aux), grads`` and need no ``init``. Deterministic rules ignore ``key``;
stochastic ones raise if it is missing. Rules that keep state of their own across steps
(feedback matrices, say) expose it the way optax transformations do, so every call stays pure
and jit-compilable.

The model inside ``loss_fn`` is plain code: an NNX module merged from ``params``, or pure
functions. A rule that needs the model's layers (feedback alignment, activity perturbation)
finds them by itself in the traced loss (:mod:`snnjax.rules.graph`). ``loss`` is a
floating-point scalar; a model trained with local losses returns a tuple of them (one per
block, the blocks separated by :func:`snnjax.rules.block`), and the objective is their sum.
A local loss in the tuple may be an array, one loss per token and group (Ren et al.'s
patch- and group-wise losses, :func:`snnjax.group_local_loss`); every element counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["EmptyState", "Rule", "total"]

Params = Any
RuleState = Any


class EmptyState(NamedTuple):
    """The state of a rule that has none."""


class Rule(NamedTuple):
    """A learning rule (see the module docstring for the protocol).

    Attributes:
      init: ``(params, *args, key=None) -> state``, the rule's own state (an
        :class:`EmptyState` if it has none); ``args`` are example arguments (arrays or
        ``jax.ShapeDtypeStruct``), which stateful rules trace once to find the layers.
      apply: ``(state, params, *args, key) -> ((loss, aux), grads, state)``, the general form
        that a rule-agnostic training step calls.
      stateful: whether the rule carries state; if so, calls must pass ``state=``.
      name: a short label for tables and logs.
      loss_fn: the loss ``(params, *args) -> (loss, aux)`` whose gradient the rule estimates,
        where there is one; :func:`snnjax.compare_gradients` differentiates it exactly as the reference.
    """

    init: Callable[..., RuleState]
    apply: Callable[..., tuple[tuple[jax.Array, Any], Params, RuleState]]
    stateful: bool = False
    name: str = "rule"
    loss_fn: Callable[..., tuple[Any, Any]] | None = None

    def __call__(self, params: Params, *args: Any, key: jax.Array | None = None, state: RuleState | None = None):
        """``(loss, aux), grads`` like ``jax.value_and_grad``; stateful rules also return the new state."""
        if self.stateful:
            if state is None:
                raise ValueError(
                    f"rule {self.name!r} carries state: pass state=rule.init(params, *args, key=key) "
                    "and keep the returned state."
                )
            return self.apply(state, params, *args, key=key)
        (loss_aux, grads, _) = self.apply(EmptyState() if state is None else state, params, *args, key=key)
        return loss_aux, grads


def stateless(apply: Callable, name: str, loss_fn: Callable | None) -> Rule:
    """A :class:`Rule` without state of its own."""
    return Rule(init=lambda params, *args, key=None: EmptyState(), apply=apply, name=name, loss_fn=loss_fn)


def total(loss: Any) -> jax.Array:
    """The objective of a loss: the scalar itself, or the sum of a tuple of local losses (all their elements).

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.rules.protocol import total
      >>> float(total((jnp.array(1.0), jnp.array(2.5))))
      3.5
    """
    leaves = jax.tree.leaves(loss)
    if len(leaves) == 1 and jnp.ndim(leaves[0]) == 0:
        return leaves[0]
    return jnp.sum(jnp.stack([jnp.sum(leaf) for leaf in leaves]))
