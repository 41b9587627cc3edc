"""Straight-through estimators: exact forward values, documented gradient masks, forward mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import ste

X = np.concatenate([np.linspace(-3.0, 3.0, 41), [0.0, 1e8, -1e8, 0.5, 1.5, 2.5]]).astype(np.float32)


def assert_exact(y, hard_jax, reference_np, maxulp=1):
    """The identity adds no error: bit-equal to the hard function computed by JAX alone; and that
    function is within 1 ulp of the NumPy formula (XLA's CPU division is not correctly rounded)."""
    np.testing.assert_array_equal(np.asarray(y), np.asarray(hard_jax))
    np.testing.assert_array_max_ulp(np.asarray(y), reference_np.astype(np.float32), maxulp=maxulp)


def _grad(f, x):
    return np.asarray(jax.grad(lambda v: jnp.sum(f(v)))(jnp.asarray(x)))


def _jvp(f, x, t):
    return np.asarray(jax.jvp(f, (jnp.asarray(x),), (jnp.asarray(t),))[1])


def test_sign_values_mask_and_jvp():
    np.testing.assert_array_equal(np.asarray(ste.sign(X)), np.where(X >= 0, 1.0, -1.0))
    np.testing.assert_array_equal(_grad(ste.sign, X), (np.abs(X) <= 1).astype(np.float32))
    t = np.arange(X.size, dtype=np.float32)
    np.testing.assert_array_equal(_jvp(ste.sign, X, t), t * (np.abs(X) <= 1))


def test_round_values_identity_gradient():
    np.testing.assert_array_equal(np.asarray(ste.round(X)), np.round(X))  # ties to even, 1e8 exact
    np.testing.assert_array_equal(_grad(ste.round, X), np.ones_like(X))
    np.testing.assert_array_equal(_jvp(ste.round, X, 2 * np.ones_like(X)), 2 * np.ones_like(X))


def test_sign_and_round_match_jnp_at_infinities_large_values_zero_and_nan():
    x = np.array([np.inf, -np.inf, 3e38, -3e38, 1e8, -1e8, 0.0, -0.0, np.nan, 0.7, -2.5, 2.5, -1.0], np.float32)
    finite = np.isfinite(x)
    np.testing.assert_array_equal(np.asarray(ste.round(x)), np.asarray(jnp.round(x)))  # NaN where jnp has NaN
    # jnp.sign, except that 0 maps to +1 (the BNN convention, so that the output is binary)
    np.testing.assert_array_equal(np.asarray(ste.sign(x)), np.asarray(jnp.where(x == 0, 1.0, jnp.sign(x))))
    # The straight-through gradients on finite x; 0 (finite) at +-inf and NaN. Reverse and forward mode.
    t = np.arange(1, x.size + 1, dtype=np.float32)
    for f, derivative in ((ste.round, finite), (ste.sign, np.abs(np.nan_to_num(x, nan=2.0)) <= 1)):
        np.testing.assert_array_equal(_grad(f, x), derivative.astype(np.float32))
        np.testing.assert_array_equal(_jvp(f, x, t), t * derivative)
        np.testing.assert_array_equal(np.asarray(jax.jit(f)(x)), np.asarray(f(x)))


@pytest.mark.parametrize("bits, signed, zero_point", [(4, True, 0), (8, True, 0), (3, False, 2), (2, True, 1)])
def test_fake_quantize_values_and_mask(bits, signed, zero_point):
    scale = np.float32(0.25)
    y = ste.fake_quantize(X, bits, scale, zero_point=zero_point, signed=signed)
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    shifted = np.round(X / scale) + zero_point
    expected = (np.clip(shifted, qmin, qmax) - zero_point) * scale
    np.testing.assert_array_equal(np.asarray(y), expected.astype(np.float32))
    # LSQ's straight-through mask: x / s + z in [qmin, qmax], before rounding.
    mask = ((X / scale + zero_point >= qmin) & (X / scale + zero_point <= qmax)).astype(np.float32)
    np.testing.assert_allclose(
        _grad(lambda v: ste.fake_quantize(v, bits, scale, zero_point=zero_point, signed=signed), X), mask, atol=1e-6
    )
    assert 0 < mask.mean() < 1


def _lsq_scale_gradient(u, q_n, q_p):
    # Esser et al. 2020, equation 3: -v/s + round(v/s) if -Q_N < v/s < Q_P; -Q_N if v/s <= -Q_N; Q_P if v/s >= Q_P.
    return np.where(u <= -q_n, -q_n, np.where(u >= q_p, q_p, -u + np.round(u)))


def test_fake_quantize_scale_gradient_is_lsq():
    x = jnp.asarray(X[:41])
    g = jax.grad(lambda s: jnp.sum(ste.fake_quantize(x, 4, s)))(jnp.float32(0.25))
    expected = np.sum(_lsq_scale_gradient(np.asarray(x, np.float64) / 0.25, 8, 7))
    assert float(g) == pytest.approx(expected, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("bits, signed, zero_point", [(4, True, 0), (3, False, 2)])
def test_fake_quantize_lsq_mask_in_the_half_step_bands(bits, signed, zero_point):
    # Within half a step beyond either end, x / s rounds onto the end level, yet LSQ clips it:
    # derivative 0 with respect to x, and the clipped level's derivative with respect to s.
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    lo, hi = qmin - zero_point, qmax - zero_point  # the range of x / s
    offsets = np.array([-0.75, -0.49, -0.3, -0.01, 0.0, 0.01, 0.3, 0.5], np.float32)
    u = np.concatenate([lo + offsets, hi - offsets]).astype(np.float32)
    scale = np.float32(0.25)
    x = u * scale  # exact: a power of two
    y = ste.fake_quantize(x, bits, scale, zero_point=zero_point, signed=signed)
    np.testing.assert_array_equal(np.asarray(y), np.clip(np.round(u), lo, hi) * scale)
    in_range = ((u >= lo) & (u <= hi)).astype(np.float32)
    assert 0 < in_range.mean() < 1 and np.any((np.round(u) == lo) & (u < lo)) and np.any((np.round(u) == hi) & (u > hi))
    np.testing.assert_array_equal(
        _grad(lambda v: ste.fake_quantize(v, bits, scale, zero_point=zero_point, signed=signed), x), in_range
    )
    g_scale = jax.vmap(
        jax.grad(lambda s, v: ste.fake_quantize(v, bits, s, zero_point=zero_point, signed=signed)), (None, 0)
    )(jnp.float32(scale), jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(g_scale), _lsq_scale_gradient(u.astype(np.float64), -lo, hi), atol=1e-6)


def test_fake_quantize_absmax_keeps_the_largest_values_in_range():
    # With scale=None, max|x| / s is the end level in exact arithmetic; rounding must not clip it.
    w = np.random.default_rng(5).lognormal(size=(512, 16)).astype(np.float32)
    w = w * np.where(np.random.default_rng(6).random((512, 16)) < 0.5, -1.0, 1.0).astype(np.float32)
    for axis in (-1, None):
        np.testing.assert_array_equal(
            _grad(lambda v, axis=axis: ste.fake_quantize(v, 8, axis=axis), w), np.ones_like(w)
        )
        unsigned = _grad(lambda v, axis=axis: ste.fake_quantize(v, 8, signed=False, axis=axis), w)
        np.testing.assert_array_equal(unsigned, (w >= 0).astype(np.float32))


def test_fake_quantize_per_row_scale():
    w = jnp.asarray(np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)) * jnp.array(
        [[1.0], [10.0], [100.0]]
    )
    y = ste.fake_quantize(w, 8, axis=-1)
    scale = np.abs(np.asarray(w)).max(axis=-1, keepdims=True) / np.float32(127)
    s_jax = jnp.max(jnp.abs(w), axis=-1, keepdims=True) / 127
    assert_exact(
        y,
        jnp.clip(jnp.round(w / s_jax), -128, 127) * s_jax,
        np.clip(np.round(np.asarray(w) / scale), -128, 127) * scale,
        maxulp=2,
    )  # two divisions
    np.testing.assert_array_equal(_grad(lambda v: ste.fake_quantize(v, 8, axis=-1), w), np.ones((3, 16), np.float32))


def test_ternary_matches_matmulfree_reference():
    w = np.random.default_rng(1).normal(size=(8, 8)).astype(np.float32)
    s = np.float32(1.0) / np.maximum(np.abs(w).mean(), np.float32(1e-5))
    s_jax = 1.0 / jnp.maximum(jnp.mean(jnp.abs(jnp.asarray(w))), 1e-5)
    y = np.asarray(ste.ternary(w))
    assert_exact(y, jnp.clip(jnp.round(w * s_jax), -1, 1) / s_jax, np.clip(np.round(w * s), -1, 1) / s)
    assert len(np.unique(y)) == 3
    np.testing.assert_array_equal(_grad(ste.ternary, w), np.ones_like(w))
    np.testing.assert_array_equal(_jvp(ste.ternary, w, w), w)


def test_absmax_matches_matmulfree_reference():
    x = np.random.default_rng(2).normal(size=(2, 5, 16)).astype(np.float32)
    s = np.float32(127.0) / np.maximum(np.abs(x).max(axis=-1, keepdims=True), np.float32(1e-5))
    s_jax = 127.0 / jnp.maximum(jnp.max(jnp.abs(jnp.asarray(x)), axis=-1, keepdims=True), 1e-5)
    assert_exact(
        ste.absmax_quantize(x),
        jnp.clip(jnp.round(x * s_jax), -128, 127) / s_jax,
        np.clip(np.round(x * s), -128, 127) / s,
    )
    np.testing.assert_array_equal(_grad(ste.absmax_quantize, x), np.ones_like(x))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ste.fake_quantize(X, 1), "signed quantisation needs bits >= 2"),
        (lambda: ste.fake_quantize(X, 40), r"bits must be an int in \[1, 16\]"),
        (lambda: ste.fake_quantize(X, 8, -1.0), "scale must be positive"),
        (lambda: ste.sign(np.arange(3)), "floating-point"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
