r"""Stop-gradient identities: a forward value from one function, a derivative from another.

These two identities are the whole mechanism behind :func:`snnjax.spike` and the
straight-through estimators in :mod:`snnjax.ste` (forward gradient injection, Otte 2024,
arXiv 2406.00177). They are written with :func:`jax.lax.stop_gradient` only, so they
work under every JAX transformation: ``grad``, ``jvp``, ``jacfwd``, ``vmap``, ``scan``
and ``jit``. A ``jax.custom_vjp`` cannot do that: it has no forward mode.

With :math:`\operatorname{sg}` the stop-gradient,

.. math::

    \text{bypass:}\quad y = g(x) - \operatorname{sg}(g(x)) + \operatorname{sg}(f(x)),
    \qquad \frac{\partial y}{\partial x} = g'(x)

    \text{inject:}\quad h = x \operatorname{sg}(d(x)),\quad
    y = h - \operatorname{sg}(h) + \operatorname{sg}(f(x)),
    \qquad \frac{\partial y}{\partial x} = d(x)

**Exactness rule.** The order of the terms matters. ``h - sg(h)`` is exactly ``0`` for any
finite ``h``, so ``y`` is bit-for-bit ``f(x)``. The tempting straight-through form
``x + sg(f(x) - x)`` is *not* exact: in float32, ``x = 3e7`` with ``f(x) = 1`` gives
``3e7 + (1 - 3e7) = 0``. Injection needs ``x * d(x)`` to be finite (always true for
surrogates that decay, and for any ``|x| * max|d| < 3.4e38`` in float32); bypass needs
``g(x)`` finite.

Injection gives a second derivative of ``0`` (the derivative sits inside the
stop-gradient); bypass gives ``g''``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["inject", "bypass", "straight_through"]

_sg = jax.lax.stop_gradient


def _float_array(x: ArrayLike, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {x.dtype}.")
    return x


def inject(x: ArrayLike, value: ArrayLike, derivative: ArrayLike) -> jax.Array:
    r"""Return ``value`` in the forward pass, with derivative ``derivative`` with respect to ``x``.

    .. math::

        h = x \operatorname{sg}(d), \qquad y = h - \operatorname{sg}(h) + \operatorname{sg}(v)

    so that :math:`y = v` exactly and :math:`\partial y / \partial x = d` elementwise,
    in reverse mode (``grad``) and forward mode (``jvp``) alike.

    Args:
      x: the differentiable input, any shape ``[...]``, floating point.
      value: the forward value ``f(x)``, broadcastable to ``x``; cast to ``x.dtype``
        (so a boolean mask such as ``x > 0`` is fine).
      derivative: the derivative to inject, ``d(x)``, broadcastable to ``x``; never
        differentiated (it sits inside a stop-gradient).

    Returns:
      An array of ``x``'s shape and dtype equal to ``value``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import inject
      >>> step = lambda x: inject(x, x > 0, jnp.exp(-x**2 / 2))
      >>> step(jnp.array([-1.0, 3e7]))
      Array([0., 1.], dtype=float32)
      >>> float(jax.grad(step)(0.0))
      1.0
    """
    x = _float_array(x, "x")
    value = jnp.broadcast_to(jnp.asarray(value).astype(x.dtype), x.shape)
    h = x * _sg(jnp.asarray(derivative).astype(x.dtype))
    return h - _sg(h) + _sg(value)


def bypass(smooth: ArrayLike, value: ArrayLike) -> jax.Array:
    r"""Return ``value`` in the forward pass, differentiated as ``smooth``.

    .. math::

        y = g - \operatorname{sg}(g) + \operatorname{sg}(v)

    where ``smooth`` is :math:`g(x)`, computed by the caller from the differentiable input,
    so :math:`y = v` exactly and every derivative of :math:`y` is the derivative of
    :math:`g` (second derivatives included).

    Note the argument order: the differentiated term first, as in the paper's
    :math:`g(x) - \operatorname{sg}(g(x)) + \operatorname{sg}(f(x))`. The reference
    code's ``bypass(x, fx)`` puts them the other way round.

    Args:
      smooth: :math:`g(x)`, any shape ``[...]``, floating point, finite.
      value: :math:`f(x)`, broadcastable to ``smooth``; cast to ``smooth.dtype``.

    Returns:
      An array of ``smooth``'s shape and dtype equal to ``value``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import bypass
      >>> step = lambda x: bypass(jax.nn.sigmoid(x), x > 0)
      >>> step(jnp.array([-2.0, 2.0]))
      Array([0., 1.], dtype=float32)
      >>> float(jax.grad(step)(0.0))
      0.25
    """
    g = _float_array(smooth, "smooth")
    value = jnp.broadcast_to(jnp.asarray(value).astype(g.dtype), g.shape)
    return g - _sg(g) + _sg(value)


def straight_through(x: ArrayLike, value: ArrayLike) -> jax.Array:
    r"""Straight-through estimator: forward ``value``, derivative ``1`` with respect to ``x``.

    Equal to :func:`bypass` with :math:`g(x) = x`:
    :math:`y = x - \operatorname{sg}(x) + \operatorname{sg}(v)`, exact in the forward
    pass (unlike ``x + sg(v - x)``).

    Args:
      x: the differentiable input ``[...]``, floating point.
      value: the forward value, broadcastable to ``x``; cast to ``x.dtype``.

    Returns:
      ``value`` with ``x``'s shape and dtype; its derivative with respect to ``x`` is 1.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import straight_through
      >>> f = lambda x: straight_through(x, jnp.round(x))
      >>> f(jnp.array([0.4, 1e8 + 0.6]))
      Array([0.e+00, 1.e+08], dtype=float32)
      >>> float(jax.grad(f)(0.4))
      1.0
    """
    return bypass(x, value)
