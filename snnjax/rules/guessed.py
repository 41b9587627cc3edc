r"""Forward gradient along a guessed direction (Fournier, Rivaud, Belilovsky, Eickenberg & Oyallon, ICML 2023).

Instead of isotropic noise, the direction is a *guess* :math:`v` of the gradient, given by
another rule: the gradient of a local loss (:func:`snnjax.rules.bptt` of a model cut into
blocks by :func:`snnjax.rules.block`), or the feedback direction of
:func:`snnjax.rules.dfa` / :func:`snnjax.rules.fdfa`. One ``jax.jvp`` of the loss along
:math:`v` gives :math:`d = \nabla L \cdot v`, and the estimate is the true gradient projected
on the guess:

.. math::

    \hat g = \frac{\nabla L \cdot v}{\lVert v \rVert^2}\, v
    \qquad\text{or, per parameter leaf } l,\qquad
    \hat g_l = \frac{\nabla_l L \cdot v_l}{\lVert v_l \rVert^2}\, v_l .

This is **biased**: it keeps only the gradient's component along the guess (its expectation is
the projection, not :math:`\nabla L`), but it has no variance beyond the guess's own, and it
never points against the gradient (:math:`\hat g \cdot \nabla L \ge 0`). The bias is
:math:`\lVert \hat g - \nabla L\rVert / \lVert\nabla L\rVert = \sin\angle(v, \nabla L)`;
:func:`snnjax.compare_gradients` measures it. Per leaf (``per_leaf=True``) costs one ``jvp``
per parameter leaf that the loss reaches (vmapped) and projects each layer on its own guess,
which keeps more of the gradient.

Parameters the loss does not reach (the heads of the local losses that make the guess) have a
zero gradient, and so a zero projection; they learn from the guess itself instead, as Fournier
et al. train their auxiliary heads. The rule finds them in the traced loss
(:mod:`snnjax.rules.graph`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from snnjax.rules import forward_mode
from snnjax.rules.graph import evaluate, trace
from snnjax.rules.protocol import Rule, total

__all__ = ["guessed_forward_gradient"]


def guessed_forward_gradient(loss_fn: Callable[..., tuple[Any, Any]], guess: Rule, *, per_leaf: bool = False) -> Rule:
    r"""Forward gradient of ``loss_fn`` along the direction ``guess`` gives (module docstring).

    Args:
      loss_fn: ``(params, *args) -> (loss, aux)``, the loss whose gradient is estimated (a
        scalar, or a tuple of local losses whose sum is the objective).
      guess: a :class:`snnjax.rules.Rule` called with the same arguments; its gradient is the
        direction. Its state, if it has one, is this rule's state.
      per_leaf: project each parameter leaf on its own guess (one ``jvp`` per leaf the loss
        reaches), instead of
        the whole gradient on the whole guess (one ``jvp``).

    Returns:
      A :class:`snnjax.rules.Rule`; ``(loss, aux), grads = rule(params, *args, key=key)``
      (``state=`` too if ``guess`` is stateful). A zero guess gives a zero estimate; leaves the
      loss does not reach take the guess.

    Raises:
      ValueError: if ``guess`` is not a Rule or ``per_leaf`` not a bool.
      TypeError: for a loss using ``jax.custom_vjp`` (forward mode), naming the methods that work.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> loss_fn = lambda w: (jnp.sum(w**2), None)
      >>> rule = rules.guessed_forward_gradient(loss_fn, rules.bptt(loss_fn))  # the true gradient as guess
      >>> (loss, _), g = rule(jnp.array([1.0, 2.0]))
      >>> g  # projected on itself: the gradient
      Array([2., 4.], dtype=float32)
    """
    if not callable(loss_fn):
        raise ValueError("guessed_forward_gradient: loss_fn must be a callable (params, *args) -> (loss, aux).")
    if not isinstance(guess, Rule):
        raise ValueError(f"guessed_forward_gradient: guess must be a snnjax.rules.Rule, got {type(guess).__name__}.")
    if not isinstance(per_leaf, bool):
        raise ValueError(f"guessed_forward_gradient: per_leaf must be True or False, got {per_leaf!r}.")

    def apply(state, params, *args, key=None):
        guess_key = None if key is None else jax.random.fold_in(key, 1)
        _, v, state = guess.apply(state, params, *args, key=guess_key)

        graph = trace(loss_fn, params, args, "guessed_forward_gradient")

        def objective(p):  # the loss as every rule reads it: each rules.block a cut
            loss, aux = evaluate(graph, p, args)[0] if graph.blocks else loss_fn(p, *args)
            return total(loss), aux

        leaves, treedef = jax.tree.flatten(v)
        reached = [bool(r) for r in graph.param_losses]
        if per_leaf and any(reached):  # one tangent per leaf the loss reaches: its guess, zeros elsewhere

            def along(k):
                tangent = [jnp.where(i == k, u, jnp.zeros_like(u)) for i, u in enumerate(leaves)]
                loss, d, aux = forward_mode.jvp(
                    objective, (params,), (jax.tree.unflatten(treedef, tangent),), has_aux=True
                )
                return loss, d, aux

            ids = [i for i, r in enumerate(reached) if r]  # an unreached leaf's derivative is 0: no jvp
            loss, ds, aux = jax.vmap(along, out_axes=(None, 0, None))(jnp.array(ids))
            d_of = dict(zip(ids, ds))
            grads = [_scale(d_of[i], jnp.vdot(u, u), u) if i in d_of else u for i, u in enumerate(leaves)]
        else:  # the whole gradient on the whole guess (or, reaching no leaf, the loss along a zero direction)
            loss, d, aux = forward_mode.jvp(objective, (params,), (v,), has_aux=True)
            norm = sum(jnp.vdot(u, u) for u, r in zip(leaves, reached) if r)  # unreached leaves move no loss
            grads = [_scale(d, norm, u) if r else u for u, r in zip(leaves, reached)]  # unreached: the guess
        return (loss, aux), jax.tree.unflatten(treedef, grads), state

    return Rule(guess.init, apply, guess.stateful, f"FG-guess({guess.name})", loss_fn)


def _scale(d: jax.Array, norm: jax.Array, u: jax.Array) -> jax.Array:
    """``d u / norm``, zero where the guess is zero."""
    safe = jnp.where(norm > 0, norm, 1.0)
    return jnp.where(norm > 0, d / safe, 0.0).astype(u.dtype) * u
