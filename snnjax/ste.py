r"""Straight-through estimators for binarised, ternary and quantised networks.

Each is a hard function in the forward pass with a chosen derivative, built from the same
stop-gradient identities as the spike (:func:`snnjax.inject`, :func:`snnjax.straight_through`),
so the forward value is exact and they work under ``jax.jvp`` as well as ``jax.grad``.

=========================  ==================================  ===============================
function                   forward                              derivative with respect to x
=========================  ==================================  ===============================
:func:`sign`               :math:`+1` if :math:`x \ge 0` else -1  :math:`\mathbb 1_{|x| \le 1}` (BNN)
:func:`round`              :math:`\operatorname{round}(x)`      1
:func:`fake_quantize`      :math:`s(\operatorname{clip}(\lfloor x/s\rceil + z) - z)`  1 if x/s in range, else 0 (LSQ)
:func:`ternary`            :math:`\operatorname{clip}(\lfloor W/m\rceil, -1, 1)\,m`   1 (MatMul-free LM)
:func:`absmax_quantize`    8-bit per token, :math:`s = 127/\max|x|`  1 (MatMul-free LM)
=========================  ==================================  ===============================

Rounding is to nearest, ties to even (``jnp.round``). :func:`sign` and :func:`round` give the
values of ``jnp.sign`` and ``jnp.round`` at :math:`\pm\infty` and NaN too (``sign(0)`` is
``+1``, the BNN convention), with derivative ``0`` there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from snnjax.checks import check_positive, float_array
from snnjax.identities import inject, straight_through

__all__ = ["sign", "round", "fake_quantize", "absmax_scale", "ternary", "absmax_quantize"]

_sg = jax.lax.stop_gradient


def sign(x: ArrayLike) -> jax.Array:
    r"""Binarise to :math:`\pm 1` with the BNN clipped straight-through gradient (Hubara et al. 2016).

    .. math::

        y = \begin{cases} +1 & x \ge 0 \\ -1 & x < 0 \end{cases}, \qquad
        \frac{\partial y}{\partial x} = \mathbb 1_{|x| \le 1}

    ``jnp.sign`` everywhere except at ``0``, which maps to ``+1`` (so the output is binary):
    :math:`\pm\infty` maps to :math:`\pm 1` and NaN to NaN.

    Args:
      x: any shape ``[...]``, floating point.

    Returns:
      :math:`\pm 1` (NaN where ``x`` is NaN) in ``x``'s shape and dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import ste
      >>> ste.sign(jnp.array([-2.0, 0.0, 0.5]))
      Array([-1.,  1.,  1.], dtype=float32)
      >>> ste.sign(jnp.array([-jnp.inf, jnp.inf, jnp.nan]))
      Array([-1.,  1., nan], dtype=float32)
      >>> jax.grad(lambda x: ste.sign(x).sum())(jnp.array([-2.0, 0.0, 0.5]))
      Array([0., 1., 1.], dtype=float32)
    """
    x = float_array(x, "sign: x")
    value = jnp.where(x < 0, -1.0, jnp.where(x >= 0, 1.0, x))  # NaN is neither: it stays NaN
    return inject(x, value, jnp.abs(x) <= 1)


def round(x: ArrayLike) -> jax.Array:  # noqa: A001 - the field's name for it
    r"""Round to the nearest integer (ties to even) with derivative 1.

    Args:
      x: any shape ``[...]``, floating point.

    Returns:
      ``jnp.round(x)``, exactly, in ``x``'s dtype (:math:`\pm\infty` and NaN unchanged). The
      derivative is 1 where ``x`` is finite and 0 at :math:`\pm\infty` and NaN.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import ste
      >>> ste.round(jnp.array([0.4, 2.5, -jnp.inf]))
      Array([  0.,   2., -inf], dtype=float32)
    """
    x = float_array(x, "round: x")
    return straight_through(x, jnp.round(x))


def _int_range(bits: int, signed: bool) -> tuple[int, int]:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 16:
        raise ValueError(f"bits must be an int in [1, 16], got {bits!r}.")
    if signed:
        if bits < 2:
            raise ValueError("signed quantisation needs bits >= 2 (use snnjax.ste.sign for 1 bit).")
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def absmax_scale(
    x: ArrayLike, bits: int = 8, axis: int | tuple[int, ...] | None = None, eps: float = 1e-5
) -> jax.Array:
    r"""Symmetric scale :math:`s = \max(|x|, \epsilon) / q_\max` per tensor or per slice.

    Args:
      x: the array to quantise, ``[...]``.
      bits: bit width; :math:`q_\max = 2^{bits-1} - 1`.
      axis: axes reduced for the maximum: ``None`` for one scale per tensor, ``-1`` for one
        per row of a matrix ``[rows, cols]`` (per token for activations ``[B, T, D]``).
      eps: floor on the maximum, so all-zero slices do not divide by zero.

    Returns:
      The scale, broadcastable to ``x`` (reduced axes kept with size 1). Not differentiated.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import ste
      >>> ste.absmax_scale(jnp.array([[0.5, -2.0]]), bits=8, axis=-1)  # the step: max|x| / 127 per row
      Array([[0.01574803]], dtype=float32)
    """
    x = float_array(x, "absmax_scale: x")
    _, qmax = _int_range(bits, True)
    m = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
    return _sg(jnp.maximum(m, eps) / qmax)


def fake_quantize(
    x: ArrayLike,
    bits: int = 8,
    scale: ArrayLike | None = None,
    *,
    zero_point: int = 0,
    signed: bool = True,
    axis: int | tuple[int, ...] | None = None,
) -> jax.Array:
    r"""k-bit fake quantisation: quantise, clip and dequantise, with the straight-through gradient.

    .. math::

        q = \operatorname{clip}(\operatorname{round}(x/s) + z,\ q_\min,\ q_\max), \qquad
        y = s\,(q - z)

    The derivatives are those of LSQ (Esser et al. 2020), whose range test is on :math:`x/s`,
    before rounding. With respect to :math:`x`: 1 where
    :math:`q_\min \le x/s + z \le q_\max` and 0 outside, so a value less than half a step
    beyond either end, rounded onto the end level, has derivative 0. With respect to a given
    ``scale``: :math:`q - z - x/s` where :math:`q_\min < x/s + z < q_\max`, and :math:`q - z`
    (the clipped level) elsewhere, LSQ's equation 3 (the two ends themselves count as clipped).

    Args:
      x: values ``[...]``, floating point.
      bits: bit width, an int in ``[2, 16]`` (``[1, 16]`` unsigned).
      scale: step size :math:`s > 0`, scalar or broadcastable (per row, per channel); if
        ``None``, :func:`absmax_scale` over ``axis`` (detached, so no gradient to it); then
        :math:`x/s` is clipped to the absmax level :math:`\pm\max|x|/s` (:math:`2^{b-1} - 1`,
        or :math:`2^b - 1` unsigned), its exact bound, which float rounding can exceed by an ulp
        or two and so put the largest :math:`|x|` out of range.
      zero_point: integer offset :math:`z`.
      signed: range :math:`[-2^{b-1}, 2^{b-1}-1]` if true, else :math:`[0, 2^b - 1]`.
      axis: with ``scale=None``, the axes reduced for the scale (``None``: per tensor; ``-1``:
        per row).

    Returns:
      The dequantised values, ``x``'s shape and dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import ste
      >>> ste.fake_quantize(jnp.array([0.26, -3.0, 9.0]), bits=4, scale=0.5)
      Array([ 0.5, -3. ,  3.5], dtype=float32)
    """
    x = float_array(x, "fake_quantize: x")
    qmin, qmax = _int_range(bits, signed)
    absmax = scale is None
    if absmax:
        scale = absmax_scale(x, bits if signed else bits + 1, axis)
    check_positive(scale, "fake_quantize: scale")
    s = jnp.asarray(scale).astype(x.dtype)
    u = _sg(x / s)
    if absmax:  # |x| / s <= qabs in exact arithmetic; the rounding of s and x / s can exceed it by an ulp or two
        qabs = qmax if signed else 2**bits - 1
        u = jnp.clip(u, -qabs, qabs)
    lo, hi = qmin - zero_point, qmax - zero_point  # the range of x / s; integers, so compared exactly
    levels = jnp.clip(jnp.round(u) + zero_point, qmin, qmax) - zero_point
    y = inject(x, levels * s, (u >= lo) & (u <= hi))
    # LSQ's scale gradient, (q - z) - x/s strictly inside and (q - z) outside, added as an exact zero:
    # s * sg(c) - sg(s * c) is 0 in the forward pass and has derivative c with respect to s.
    c = _sg(levels - jnp.where((u > lo) & (u < hi), u, 0.0))
    return y + (s * c - _sg(s * c))


def ternary(w: ArrayLike, eps: float = 1e-5) -> jax.Array:
    r"""Ternary weights with an absmean scale, as in the MatMul-free LM (Zhu et al. 2024).

    .. math::

        m = \max(\operatorname{mean}|W|, \epsilon), \qquad
        y = \operatorname{clip}(\operatorname{round}(W/m), -1, 1)\, m

    with derivative 1 (a plain straight-through estimator, scale not differentiated). The
    reference writes the scale as :math:`s = 1/m` and computes ``round(W * s) / s``; this
    computes exactly that.

    Args:
      w: weights, any shape, floating point; one scale for the whole tensor.
      eps: floor on the mean absolute value.

    Returns:
      Values in :math:`\{-m, 0, m\}`, ``w``'s shape and dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import ste
      >>> w = jnp.array([-0.8, -0.1, 0.05, 0.9])
      >>> ste.ternary(w)
      Array([-0.4625,  0.    ,  0.    ,  0.4625], dtype=float32)
      >>> jax.grad(lambda w: ste.ternary(w).sum())(w)  # straight through
      Array([1., 1., 1., 1.], dtype=float32)
    """
    w = float_array(w, "ternary: w")
    s = _sg(1.0 / jnp.maximum(jnp.mean(jnp.abs(w)), eps))
    return straight_through(w, jnp.clip(jnp.round(w * s), -1, 1) / s)


def absmax_quantize(x: ArrayLike, bits: int = 8, axis: int = -1, eps: float = 1e-5) -> jax.Array:
    r"""Symmetric absmax activation quantisation per token, as in the MatMul-free LM.

    .. math::

        s = \frac{2^{b-1} - 1}{\max(\max_{\text{axis}} |x|, \epsilon)}, \qquad
        y = \operatorname{clip}(\operatorname{round}(x s), -2^{b-1}, 2^{b-1} - 1) / s

    with derivative 1 (scale not differentiated). ``bits=8`` gives the reference's
    ``127 / max|x|`` and ``clip(-128, 127)``.

    Args:
      x: activations, e.g. ``[B, T, D]``, floating point.
      bits: bit width, an int in ``[2, 16]``.
      axis: the axis reduced for the maximum (``-1``: one scale per token).
      eps: floor on the maximum.

    Returns:
      The quantised activations, ``x``'s shape and dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import ste
      >>> x = jnp.array([[0.5, -1.0, 0.25]])
      >>> ste.absmax_quantize(x, bits=2)
      Array([[ 0., -1.,  0.]], dtype=float32)
      >>> jax.grad(lambda x: ste.absmax_quantize(x, bits=2).sum())(x)
      Array([[1., 1., 1.]], dtype=float32)
    """
    x = float_array(x, "absmax_quantize: x")
    qmin, qmax = _int_range(bits, True)
    s = _sg(qmax / jnp.maximum(jnp.max(jnp.abs(x), axis=axis, keepdims=True), eps))
    return straight_through(x, jnp.clip(jnp.round(x * s), qmin, qmax) / s)
