r"""The spike: an exact Heaviside step in the forward pass, a surrogate derivative in both AD modes.

.. math::

    z = H(x) = \begin{cases} 1 & x > 0 \\ 0 & x \le 0 \end{cases}, \qquad
    \frac{\partial z}{\partial x} := \sigma'(x)

where :math:`x` is the membrane potential minus the threshold and :math:`\sigma'` a
:mod:`snnjax.surrogates` derivative. Four ways to attach :math:`\sigma'`:

==============  =====================================================  ======================
method          how                                                    forward mode (``jvp``)
==============  =====================================================  ======================
``inject``      :func:`snnjax.inject`, :math:`\sigma'` given directly   yes (default)
``bypass``      :func:`snnjax.bypass`, differentiates :math:`\sigma`     yes, needs a primitive
``custom_jvp``  a ``jax.custom_jvp`` rule                               yes
``custom_vjp``  a ``jax.custom_vjp`` rule (for comparison only)         **no**
==============  =====================================================  ======================

All four give the same values and the same first derivatives. The value is :func:`heaviside`'s,
exactly 0 or 1, for every input, NaN and :math:`\pm\infty` included (``+inf`` fires, ``-inf``
and NaN do not), and the derivative there is ``0``, never NaN. ``custom_vjp`` is what most
peers use; JAX cannot differentiate it in forward mode, so forward gradients, FDFA and SFDFA
need one of the other three.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from snnjax import surrogates as _surrogates
from snnjax.identities import bypass, inject

__all__ = ["spike", "heaviside", "METHODS", "FORWARD_MODE_METHODS", "DEFAULT_SURROGATE"]

METHODS: tuple[str, ...] = ("inject", "bypass", "custom_jvp", "custom_vjp")
"""Every way :func:`spike` can attach the surrogate derivative."""

FORWARD_MODE_METHODS: tuple[str, ...] = ("inject", "bypass", "custom_jvp")
"""The methods that work under ``jax.jvp`` and ``jax.jacfwd``."""

DEFAULT_SURROGATE: _surrogates.Surrogate = _surrogates.fast_sigmoid()
"""The surrogate used when none is given: ``fast_sigmoid(slope=25.0, height=1.0)``."""

FORWARD_MODE_ERROR = (
    "spike method 'custom_vjp' cannot be differentiated in forward mode (jax.jvp, jax.jacfwd, "
    "forward-gradient and feedback-alignment rules): JAX has no forward mode for jax.custom_vjp. "
    "Use method='inject' (the default), 'bypass' or 'custom_jvp', which give the same values and "
    "derivatives and work in both modes."
)


def is_custom_vjp_jvp_error(err: Exception) -> bool:
    """Whether ``err`` is JAX's "can't apply forward-mode autodiff (jvp) to a custom_vjp function"."""
    return isinstance(err, TypeError) and "forward-mode" in str(err)


def heaviside(x: ArrayLike) -> jax.Array:
    """The step :math:`H(x) = 1` for ``x > 0``, else ``0``, in ``x``'s dtype. Not differentiable.

    Args:
      x: any shape ``[...]``, floating point.

    Returns:
      Exactly 0 or 1, same shape and dtype as ``x``: ``+inf`` maps to 1, ``-inf`` and NaN to 0.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> snnjax.heaviside(jnp.array([-1.0, 0.0, 2.0]))
      Array([0., 0., 1.], dtype=float32)
      >>> snnjax.heaviside(jnp.array([jnp.nan, jnp.inf, -jnp.inf]))
      Array([0., 1., 0.], dtype=float32)
    """
    x = jnp.asarray(x)
    return (x > 0).astype(x.dtype)


def _derivative(surrogate: _surrogates.Surrogate, x: jax.Array) -> jax.Array:
    # sigma'(x) where x and sigma'(x) are finite, else 0: what inject and bypass give there.
    d = surrogate.derivative(x).astype(x.dtype)
    return jnp.where(jnp.isfinite(x) & jnp.isfinite(d), d, jnp.zeros_like(d))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _spike_custom_jvp(x, surrogate):
    return heaviside(x)


@_spike_custom_jvp.defjvp
def _spike_custom_jvp_rule(surrogate, primals, tangents):
    (x,), (t,) = primals, tangents
    return heaviside(x), _derivative(surrogate, x) * t


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _spike_custom_vjp(x, surrogate):
    return heaviside(x)


def _spike_custom_vjp_fwd(x, surrogate):
    return heaviside(x), x


def _spike_custom_vjp_bwd(surrogate, x, g):
    return (_derivative(surrogate, x) * g,)


_spike_custom_vjp.defvjp(_spike_custom_vjp_fwd, _spike_custom_vjp_bwd)


def check_method(method: str, surrogate: _surrogates.SurrogateLike = DEFAULT_SURROGATE) -> _surrogates.Surrogate:
    """Check a spike method and its surrogate without evaluating a spike; return the resolved surrogate.

    Raises:
      ValueError: for a method not in :data:`METHODS`, an unknown surrogate, or ``"bypass"`` with
        a surrogate that has no primitive.

    Examples:
      >>> from snnjax.spikes import check_method
      >>> check_method("inject", "gaussian").name
      'gaussian'
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"spike: unknown method {method!r}; expected one of {', '.join(METHODS)}.")
    s = _surrogates.resolve(surrogate)
    if method == "bypass" and not s.has_primitive:
        raise ValueError(
            f"spike: method='bypass' needs a surrogate with a primitive, and {s.name!r} has none; "
            "use method='inject' or 'custom_jvp', or give snnjax.surrogates.custom a primitive."
        )
    return s


def spike(
    x: ArrayLike,
    surrogate: _surrogates.SurrogateLike = DEFAULT_SURROGATE,
    method: str = "inject",
) -> jax.Array:
    r"""Heaviside spike with a surrogate derivative.

    .. math::

        z = H(x) \in \{0, 1\}, \qquad \partial z / \partial x = \sigma'(x)

    The value is exactly 0 or 1 for every ``x`` and every method and surrogate: ``x > 0``
    fires, ``+inf`` included; ``x <= 0``, ``-inf`` and NaN do not. The derivative is
    :math:`\sigma'(x)` for finite ``x`` (``bypass``: where the primitive :math:`\sigma(x)` is
    also finite) and ``0`` at NaN and :math:`\pm\infty`, so it is never NaN there. Works under
    ``grad``, ``jvp``, ``jacfwd``, ``vmap``, ``scan`` and ``jit``.

    Args:
      x: membrane potential minus threshold, any shape ``[...]``, floating point.
      surrogate: a :class:`snnjax.surrogates.Surrogate` or its name.
      method: one of :data:`METHODS`; ``"inject"`` by default.

    Returns:
      Spikes, same shape and dtype as ``x``.

    Raises:
      ValueError: for an unknown method or surrogate, a non-float ``x``, or ``"bypass"``
        with a surrogate that has no primitive.
      TypeError: with ``method="custom_vjp"`` under ``jax.jvp``. Called eagerly, the error
        names the methods that work; inside ``jax.jit`` JAX raises its own "can't apply
        forward-mode autodiff (jvp) to a custom_vjp function" while tracing, and the
        forward-mode rules in :mod:`snnjax.rules` re-raise it as the error above.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import snnjax
      >>> snnjax.spike(jnp.array([-0.5, 0.0, 1e-30, 3e7]))
      Array([0., 0., 1., 1.], dtype=float32)
      >>> snnjax.spike(jnp.array([jnp.nan, jnp.inf, -jnp.inf]), "straight_through", "bypass")
      Array([0., 1., 0.], dtype=float32)
      >>> jax.grad(lambda v: snnjax.spike(v).sum())(jnp.array([jnp.nan, jnp.inf, -jnp.inf]))
      Array([0., 0., 0.], dtype=float32)
      >>> g = jax.grad(lambda v: snnjax.spike(v, "gaussian"))(0.0)
      >>> t = jax.jvp(lambda v: snnjax.spike(v, "gaussian"), (0.0,), (1.0,))[1]
      >>> float(g), float(t)
      (1.0, 1.0)
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"spike: x must be floating point (membrane minus threshold), got dtype {x.dtype}.")
    s = check_method(method, surrogate)
    if method == "inject":
        return inject(x, heaviside(x), s.derivative(x))
    if method == "bypass":
        # The primitive sees 0 for non-finite x, so that its derivative there is 0, never NaN.
        finite_x = jnp.where(jnp.isfinite(x), x, jnp.zeros_like(x))
        return bypass(s.primitive(finite_x), heaviside(x))
    if method == "custom_jvp":
        return _spike_custom_jvp(x, s)
    if method == "custom_vjp":
        try:
            return _spike_custom_vjp(x, s)
        except TypeError as err:
            if is_custom_vjp_jvp_error(err):
                raise TypeError(FORWARD_MODE_ERROR) from err
            raise
    raise AssertionError(method)  # pragma: no cover - check_method refused it
