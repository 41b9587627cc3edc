r"""Stop-gradient identities: a forward value from one function, a derivative from another.

These two identities are the whole mechanism behind :func:`snnjax.spike` and the
straight-through estimators in :mod:`snnjax.ste` (forward gradient injection, Otte 2024,
arXiv 2406.00177). They are written with :func:`jax.lax.stop_gradient` only, so they
work under every JAX transformation: ``grad``, ``jvp``, ``jacfwd``, ``vmap``, ``scan``
and ``jit``. A ``jax.custom_vjp`` cannot do that: it has no forward mode.

With :math:`\operatorname{sg}` the stop-gradient and :math:`[z]_0` the value ``z`` where it is
finite and ``0`` where it is not (``jnp.where(jnp.isfinite(z), z, 0)``, whose derivative is
that of ``z`` on the finite entries and ``0`` on the others),

.. math::

    \text{bypass:}\quad y = [g(x) - \operatorname{sg}(g(x))]_0 + \operatorname{sg}(f(x)),
    \qquad \frac{\partial y}{\partial x} = g'(x)

    \text{inject:}\quad y = [x - \operatorname{sg}(x)]_0\,\operatorname{sg}([d(x)]_0)
    + \operatorname{sg}(f(x)),
    \qquad \frac{\partial y}{\partial x} = d(x)

Injection is Otte's :math:`h - \operatorname{sg}(h) + \operatorname{sg}(f(x))` with
:math:`h = x \operatorname{sg}(d(x))`, with the difference taken before the product: the value
and the derivative are the same wherever :math:`x\,d(x)` is finite, and it does not overflow
where :math:`x\,d(x)` does (``x = 3e38`` with ``d = 10`` in float32).

**Exactness rule.** The forward value is ``f(x)`` exactly (bit for bit, but for the sign of a
zero), for every input: the first term is exactly ``0`` (``z - sg(z)`` is ``0`` for finite
``z``, and the non-finite entries are replaced by ``0``), and ``0 + f(x) = f(x)``. So
``x = NaN`` or ``x = +-inf`` gives ``f(x)``, not ``NaN``. The order of the terms matters: the
tempting straight-through form ``x + sg(f(x) - x)`` is *not* exact: in float32, ``x = 3e7``
with ``f(x) = 1`` gives ``3e7 + (1 - 3e7) = 0``.

**Derivatives.** Injection's derivative is ``d(x)`` wherever ``x`` and ``d(x)`` are finite, and
``0`` where either is not, so it is finite everywhere, under ``jax.grad`` at ``x = +-inf`` and
``NaN`` too. Bypass's is ``g'(x)`` wherever ``g(x)`` is finite and ``0`` where it is not
(unless the caller's ``g`` itself turns that ``0`` into NaN, ``0 * inf`` in its own derivative:
:func:`snnjax.spike` evaluates the primitive at ``0`` for non-finite ``x`` for that reason).
On finite entries both are the plain identities' derivatives, bit for bit under ``grad`` and
``jvp`` op by op (under ``jit``, XLA may fuse the extra select differently and change the last
bits of ``g'``). Injection gives a second derivative of ``0`` (the derivative sits inside the
stop-gradient); bypass gives ``g''``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from snnjax.checks import float_array

__all__ = ["inject", "bypass", "straight_through"]

_sg = jax.lax.stop_gradient


def _finite_or_zero(z: jax.Array) -> jax.Array:
    # [z]_0: z where finite, else 0. A select, so the derivative of z passes on the finite entries.
    return jnp.where(jnp.isfinite(z), z, jnp.zeros_like(z))


def _exact_zero(z: jax.Array) -> jax.Array:
    # [z - sg(z)]_0: exactly 0 in value for every z (NaN and +-inf too), derivative 1 where z is finite, else 0.
    return _finite_or_zero(z - _sg(z))


def inject(x: ArrayLike, value: ArrayLike, derivative: ArrayLike) -> jax.Array:
    r"""Return ``value`` in the forward pass, with derivative ``derivative`` with respect to ``x``.

    .. math::

        y = [x - \operatorname{sg}(x)]_0 \, \operatorname{sg}([d]_0) + \operatorname{sg}(v)

    with :math:`[z]_0` the value ``z`` where it is finite and ``0`` elsewhere, so that
    :math:`y = v` exactly, for every ``x`` (NaN and :math:`\pm\infty` included), and
    :math:`\partial y / \partial x = d` elementwise wherever ``x`` and ``d`` are finite (``0``
    elsewhere), in reverse mode (``grad``) and forward mode (``jvp``) alike. This is Otte's
    :math:`h - \operatorname{sg}(h) + \operatorname{sg}(v)` with :math:`h = x\operatorname{sg}(d)`,
    the same value and derivative wherever :math:`x d` is finite, without its overflow.

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
      >>> step(jnp.array([-1.0, 3e7, jnp.inf, -jnp.inf, jnp.nan]))
      Array([0., 1., 1., 0., 0.], dtype=float32)
      >>> float(jax.grad(step)(0.0)), float(jax.grad(step)(jnp.inf))
      (1.0, 0.0)
      >>> ramp = lambda x: inject(x, 1.0, 10.0)  # x * d overflows at 3e38; y and dy/dx do not
      >>> float(ramp(3e38)), float(jax.grad(ramp)(3e38))
      (1.0, 10.0)
    """
    x = float_array(x, "x")
    value = jnp.broadcast_to(jnp.asarray(value).astype(x.dtype), x.shape)
    d = _finite_or_zero(jnp.broadcast_to(jnp.asarray(derivative).astype(x.dtype), x.shape))
    return _exact_zero(x) * _sg(d) + _sg(value)


def bypass(smooth: ArrayLike, value: ArrayLike) -> jax.Array:
    r"""Return ``value`` in the forward pass, differentiated as ``smooth``.

    .. math::

        y = [g - \operatorname{sg}(g)]_0 + \operatorname{sg}(v)

    where ``smooth`` is :math:`g(x)`, computed by the caller from the differentiable input,
    and :math:`[z]_0` is ``z`` where it is finite and ``0`` elsewhere. So :math:`y = v`
    exactly, for every ``g`` (NaN and :math:`\pm\infty` included), and every derivative of
    :math:`y` is the derivative of :math:`g` (second derivatives included) wherever
    :math:`g` is finite; where it is not, the derivative is ``0``.

    Note the argument order: the differentiated term first, as in the paper's
    :math:`g(x) - \operatorname{sg}(g(x)) + \operatorname{sg}(f(x))`. The reference
    code's ``bypass(x, fx)`` puts them the other way round.

    Args:
      smooth: :math:`g(x)`, any shape ``[...]``, floating point.
      value: :math:`f(x)`, broadcastable to ``smooth``; cast to ``smooth.dtype``.

    Returns:
      An array of ``smooth``'s shape and dtype equal to ``value``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import bypass
      >>> step = lambda x: bypass(jax.nn.sigmoid(x), x > 0)
      >>> step(jnp.array([-2.0, 2.0, jnp.inf, jnp.nan]))
      Array([0., 1., 1., 0.], dtype=float32)
      >>> float(jax.grad(step)(0.0))
      0.25
    """
    g = float_array(smooth, "smooth")
    value = jnp.broadcast_to(jnp.asarray(value).astype(g.dtype), g.shape)
    return _exact_zero(g) + _sg(value)


def straight_through(x: ArrayLike, value: ArrayLike) -> jax.Array:
    r"""Straight-through estimator: forward ``value``, derivative ``1`` with respect to ``x``.

    Equal to :func:`bypass` with :math:`g(x) = x`:
    :math:`y = [x - \operatorname{sg}(x)]_0 + \operatorname{sg}(v)`, exact in the forward
    pass for every ``x`` (unlike ``x + sg(v - x)``). The derivative is ``1`` where ``x`` is
    finite and ``0`` at NaN and :math:`\pm\infty`.

    Args:
      x: the differentiable input ``[...]``, floating point.
      value: the forward value, broadcastable to ``x``; cast to ``x.dtype``.

    Returns:
      ``value`` with ``x``'s shape and dtype; its derivative with respect to ``x`` is 1 on the
      finite entries of ``x``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import straight_through
      >>> f = lambda x: straight_through(x, jnp.round(x))
      >>> f(jnp.array([0.4, 1e8 + 0.6, -jnp.inf]))
      Array([0.e+00, 1.e+08,   -inf], dtype=float32)
      >>> float(jax.grad(f)(0.4))
      1.0
    """
    return bypass(x, value)
