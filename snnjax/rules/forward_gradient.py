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
from snnjax.rules.protocol import EmptyState, Rule

__all__ = ["combine", "directional_derivatives", "forward_gradient"]


def forward_gradient(
    loss_fn: Callable[..., tuple[jax.Array, Any]],
    num_directions: int = 1,
    *,
    distribution: str = "gaussian",
) -> Rule:
    r"""Forward gradient by weight perturbation, a drop-in for ``jax.value_and_grad``.

    Args:
      loss_fn: ``(params, *args) -> (loss, aux)`` with a scalar loss. Any JAX function works,
        including a Flax NNX spiking model merged from ``params`` and scanned over time, as long
        as it is forward-mode differentiable (spike methods ``inject``, ``bypass``, ``custom_jvp``).
      num_directions: ``K``, directions averaged per call; evaluated with ``jax.vmap``, so the
        loss is traced once and the primal is computed once.
      distribution: ``"gaussian"`` or ``"rademacher"`` entries of :math:`v`.

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
    if not callable(loss_fn):
        raise ValueError("forward_gradient: loss_fn must be a callable (params, *args) -> (loss, aux).")
    forward_mode.check_options(num_directions, distribution, "forward_gradient")

    def apply(state, params, *args, key=None):
        key = forward_mode.require_key(key, "forward_gradient")
        loss, aux, derivatives, v = directional_derivatives(loss_fn, params, args, key, num_directions, distribution)
        return (loss, aux), combine(params, derivatives, v), state

    return Rule(init=lambda params: EmptyState(), apply=apply, name=f"FG-W(K={num_directions})", loss_fn=loss_fn)


def directional_derivatives(
    loss_fn: Callable[..., tuple[jax.Array, Any]],
    params: Any,
    args: tuple,
    key: jax.Array,
    num_directions: int,
    distribution: str,
):
    r"""``(loss, aux, d [K], v)``: the directional derivatives :math:`d_k = \nabla L \cdot v_k` along ``K`` directions from ``key``.

    ``v`` is the directions, stacked on a leading axis of length ``K``. The directions depend
    only on ``key`` and the parameters' shapes, so devices that share the key share them.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax.rules.forward_gradient import directional_derivatives
      >>> loss, aux, d, v = directional_derivatives(lambda w: (jnp.sum(w), None), jnp.ones(3), (), jax.random.key(0), 2, "gaussian")
      >>> d.shape, bool(jnp.allclose(d, v.sum(axis=1)))
      ((2,), True)
    """

    def one_direction(k):
        v = forward_mode.directions(k, params, distribution)
        loss, dloss, aux = forward_mode.jvp(lambda p: loss_fn(p, *args), (params,), (v,), has_aux=True)
        if jnp.ndim(loss) != 0:
            raise ValueError(f"forward_gradient: loss_fn must return a scalar loss, got shape {jnp.shape(loss)}.")
        return loss, aux, dloss, v

    # The primal does not depend on the direction, so it stays unbatched (out_axes=None).
    return jax.vmap(one_direction, out_axes=(None, None, 0, 0))(jax.random.split(key, num_directions))


def combine(params: Any, derivatives: jax.Array, v: Any) -> Any:
    r"""The estimate :math:`\hat g = \frac1K \sum_k d_k v_k`, shaped like ``params`` (zero for integer leaves).

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.rules.forward_gradient import combine
      >>> combine(jnp.zeros(2), jnp.array([1.0, 3.0]), jnp.array([[1.0, 0.0], [0.0, 1.0]]))
      Array([0.5, 1.5], dtype=float32)
    """

    def leaf(param, directions):
        if not jnp.issubdtype(jnp.result_type(param), jnp.inexact):  # integer leaves (float0 directions): no update
            return jnp.zeros_like(param)
        return jnp.mean(derivatives.reshape((-1,) + (1,) * (directions.ndim - 1)) * directions, axis=0)

    return jax.tree.map(leaf, params, v)
