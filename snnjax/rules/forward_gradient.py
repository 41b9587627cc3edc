r"""Weight-perturbed forward gradient (Baydin et al. 2022): one ``jax.jvp`` per direction.

For a random direction :math:`v` over all parameters with i.i.d. entries of mean 0 and
variance 1, the directional derivative :math:`d = \nabla L \cdot v` costs one forward-mode
pass, and

.. math::

    \hat g = \frac{1}{K} \sum_{k=1}^{K} (\nabla L \cdot v_k)\, v_k,
    \qquad \mathbb E[\hat g] = \nabla L,
    \qquad \operatorname{Var}[\hat g_i] = \frac{\lVert\nabla L\rVert^2 + g_i^2}{K}
    \ \text{(Gaussian)}, \ \frac{\lVert\nabla L\rVert^2 - g_i^2}{K}\ \text{(Rademacher)}.

The variance grows with the number of parameters; see :func:`snnjax.rules.activity_forward_gradient`
for the lower-variance activity perturbation. No state is kept for a backward pass: if the
loss is computed step by step inside one ``lax.scan`` (a network scanned as a whole), peak
memory does not grow with the number of time steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from snnjax.rules import forward_mode
from snnjax.rules.graph import evaluate, trace
from snnjax.rules.guessed import guessed_forward_gradient
from snnjax.rules.protocol import Rule, stateless, total

__all__ = ["combine", "directional_derivatives", "forward_gradient"]


def forward_gradient(
    loss_fn: Callable[..., tuple[Any, Any]],
    num_directions: int = 1,
    *,
    distribution: str = "gaussian",
    guess: Rule | None = None,
) -> Rule:
    r"""Forward gradient by weight perturbation, a drop-in for ``jax.value_and_grad``.

    With local losses (a tuple of losses, the blocks cut by :func:`snnjax.rules.block`: LG-FG-W
    of Ren et al. 2023), each local loss has its own directional derivative :math:`d^{(l)}_k`,
    and a parameter's estimate uses only those of the losses it reaches:
    :math:`\hat g_\theta = \frac1K \sum_k \big(\sum_{l \ni \theta} d^{(l)}_k\big) v_{k,\theta}`,
    still unbiased, with the other blocks' noise left out.

    Args:
      loss_fn: ``(params, *args) -> (loss, aux)`` with a scalar loss (or a tuple of local
        losses). Any JAX function works, including a Flax NNX spiking model merged from
        ``params`` and scanned over time, as long as it is forward-mode differentiable (spike
        methods ``inject``, ``bypass``, ``custom_jvp``).
      num_directions: ``K``, directions averaged per call; evaluated with ``jax.vmap``, so the
        loss is traced once and the primal is computed once.
      distribution: ``"gaussian"`` or ``"rademacher"`` entries of :math:`v`.
      guess: a rule whose gradient is the direction instead of noise (a local loss's
        :func:`snnjax.rules.bptt`, :func:`snnjax.rules.dfa`): the gradient projected on it,
        biased, :func:`snnjax.rules.guessed_forward_gradient` (``num_directions`` must be 1).

    Returns:
      A :class:`snnjax.rules.Rule`: ``(loss, aux), grads = rule(params, *args, key=key)``.

    Raises:
      ValueError: for ``num_directions < 1``, an unknown distribution, or a call without key.
      TypeError: if ``loss_fn`` uses ``jax.custom_vjp`` (e.g. ``snnjax.spike(method="custom_vjp")``),
        naming the spike methods that work.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> rule = rules.forward_gradient(lambda w: (jnp.sum(w ** 2), None), num_directions=4)
      >>> (loss, _), g = rule(jnp.ones(3), key=jax.random.key(0))
      >>> float(loss), g.shape
      (3.0, (3,))
    """
    name = f"FG-W(K={num_directions})"
    if not callable(loss_fn):
        raise ValueError("forward_gradient: loss_fn must be a callable (params, *args) -> (loss, aux).")
    forward_mode.check_options(num_directions, distribution, "forward_gradient")
    if guess is not None:
        if num_directions != 1:
            raise ValueError("forward_gradient: a guess is one direction; leave num_directions at 1.")
        return guessed_forward_gradient(loss_fn, guess)

    def apply(state, params, *args, key=None):
        key = forward_mode.require_key(key, "forward_gradient")
        graph = trace(loss_fn, params, args, "forward_gradient")

        def objective(p):
            loss, aux = evaluate(graph, p, args)[0] if graph.blocks else loss_fn(p, *args)
            return jnp.stack([jnp.sum(leaf) for leaf in jax.tree.leaves(loss)]), aux

        losses, aux, derivatives, v = derivatives_along(objective, params, key, num_directions, distribution)
        # [K] per leaf: the directional derivatives of the losses the leaf reaches, summed
        per_leaf = [jnp.sum(derivatives[:, list(r)], axis=1) for r in graph.param_losses]
        leaves, treedef = jax.tree.flatten(params)
        grads = [combine(p, d, u) for p, d, u in zip(leaves, per_leaf, jax.tree.leaves(v))]
        return (jnp.sum(losses), aux), jax.tree.unflatten(treedef, grads), state

    return stateless(apply, name, loss_fn)


def derivatives_along(objective: Callable, params: Any, key: jax.Array, num_directions: int, distribution: str):
    r"""``(losses [L], aux, d [K, L], v)``: each of ``L`` losses' directional derivatives along ``K`` directions.

    ``objective(params) -> (losses [L], aux)``; ``v`` is the directions, stacked on a leading
    axis of length ``K``, drawn from ``split(key, K)`` and depending only on the key and the
    parameters' shapes (so devices that share the key share them).
    """

    def one_direction(k):
        v = forward_mode.directions(k, params, distribution)
        losses, dlosses, aux = forward_mode.jvp(objective, (params,), (v,), has_aux=True)
        return losses, aux, dlosses, v

    # The primal does not depend on the direction, so it stays unbatched (out_axes=None).
    return jax.vmap(one_direction, out_axes=(None, None, 0, 0))(jax.random.split(key, num_directions))


def directional_derivatives(
    loss_fn: Callable[..., tuple[Any, Any]],
    params: Any,
    args: tuple,
    key: jax.Array,
    num_directions: int,
    distribution: str,
):
    r"""``(loss, aux, d [K], v)``: the directional derivatives :math:`d_k = \nabla L \cdot v_k` along ``K`` directions.

    ``v`` is the directions, stacked on a leading axis of length ``K``. The directions depend
    only on ``key`` and the parameters' shapes, so devices that share the key share them.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax.rules.forward_gradient import directional_derivatives
      >>> loss_fn = lambda w: (jnp.sum(w), None)
      >>> loss, aux, d, v = directional_derivatives(loss_fn, jnp.ones(3), (), jax.random.key(0), 2, "gaussian")
      >>> d.shape, bool(jnp.allclose(d, v.sum(axis=1)))
      ((2,), True)
    """

    def objective(p):
        loss, aux = loss_fn(p, *args)
        if jnp.ndim(loss) != 0:
            raise ValueError(f"forward_gradient: loss_fn must return a scalar loss, got shape {jnp.shape(loss)}.")
        return jnp.reshape(total(loss), (1,)), aux

    losses, aux, d, v = derivatives_along(objective, params, key, num_directions, distribution)
    return losses[0], aux, d[:, 0], v


def combine(param: Any, derivatives: jax.Array, directions: Any) -> Any:
    r"""The estimate :math:`\hat g = \frac1K \sum_k d_k v_k` of one parameter (zero for integer leaves).

    Args:
      param: the parameter (a leaf).
      derivatives: ``[K]``.
      directions: ``[K, *param.shape]`` (``float0`` for integer leaves).

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.rules.forward_gradient import combine
      >>> combine(jnp.zeros(2), jnp.array([1.0, 3.0]), jnp.array([[1.0, 0.0], [0.0, 1.0]]))
      Array([0.5, 1.5], dtype=float32)
    """
    if not jnp.issubdtype(jnp.result_type(param), jnp.inexact):  # integer leaves (float0 directions): no update
        return jnp.zeros_like(param)
    return jnp.mean(derivatives.reshape((-1,) + (1,) * (directions.ndim - 1)) * directions, axis=0)
