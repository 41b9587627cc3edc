"""Spikes and surrogates: exact forward values, documented derivatives, every transformation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snnjax
from snnjax import surrogates


def _normal(x, mean, std):
    return np.exp(-(((x - mean) / std) ** 2) / 2) / (std * np.sqrt(2 * np.pi))


def _yin(x, sigma=0.5, h=0.15, s=6.0):
    # Yin, Corradi & Bohte 2021 (Nature Machine Intelligence), from the paper, not from the code:
    # (1 + h) N(x; 0, sigma) - h N(x; sigma, s sigma) - h N(x; -sigma, s sigma), N the normal density.
    return (1 + h) * _normal(x, 0.0, sigma) - h * _normal(x, sigma, s * sigma) - h * _normal(x, -sigma, s * sigma)


# Independent formulas of each default surrogate's derivative (height 1: peak 1 at x = 0).


REFERENCE = {
    "fast_sigmoid": lambda x: 1 / (1 + 25 * np.abs(x)) ** 2,
    "superspike": lambda x: 1 / (1 + 25 * np.abs(x)) ** 2,
    "sigmoid": lambda x: 4 * np.exp(-25 * x) / (1 + np.exp(-25 * x)) ** 2,
    "arctan": lambda x: 1 / (1 + (math.pi * x) ** 2),
    "atan": lambda x: 1 / (1 + (math.pi * x) ** 2),
    "triangle": lambda x: np.maximum(0, 1 - np.abs(x)),
    "gaussian": lambda x: np.exp(-(x**2) / 2),
    "multi_gaussian": lambda x: _yin(x) / _yin(0.0),
    "rectangular": lambda x: (np.abs(x) <= 0.5).astype(float),
    "boxcar": lambda x: (np.abs(x) <= 0.5).astype(float),
    "exponential": lambda x: np.exp(-np.abs(x)),
    "straight_through": lambda x: np.ones_like(x),
}
assert set(REFERENCE) == set(surrogates.NAMES)

EXTREMES = np.array([-1e30, -3e7, -1.0, -1e-30, 0.0, 1e-30, 1.0, 3e7, 1e30, -3e38, 3e38], np.float32)
SAMPLES = np.linspace(-2.3, 2.3, 47, dtype=np.float32)  # avoids the kinks at 0, +-0.5, +-1
FORWARD_METHODS = snnjax.FORWARD_MODE_METHODS


@pytest.mark.parametrize("method", snnjax.METHODS)
@pytest.mark.parametrize("name", surrogates.NAMES)
def test_forward_is_exact_heaviside(name, method):
    z = snnjax.spike(jnp.asarray(EXTREMES), name, method)
    np.testing.assert_array_equal(np.asarray(z), (EXTREMES > 0).astype(np.float32))
    assert z.dtype == jnp.float32


@pytest.mark.parametrize("method", snnjax.METHODS)
@pytest.mark.parametrize("name", surrogates.NAMES)
def test_grad_is_documented_derivative(name, method):
    g = jax.vmap(jax.grad(lambda v: snnjax.spike(v, name, method)))(jnp.asarray(SAMPLES))
    np.testing.assert_allclose(np.asarray(g), REFERENCE[name](SAMPLES.astype(np.float64)), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("method", FORWARD_METHODS)
@pytest.mark.parametrize("name", surrogates.NAMES)
def test_jvp_equals_grad(name, method):
    x = jnp.asarray(SAMPLES)
    t = jnp.asarray(np.random.default_rng(0).normal(size=x.shape).astype(np.float32))
    primal, tangent = jax.jvp(lambda v: snnjax.spike(v, name, method), (x,), (t,))
    grad = jax.grad(lambda v: snnjax.spike(v, name, method).sum())(x)
    np.testing.assert_array_equal(np.asarray(primal), (SAMPLES > 0).astype(np.float32))
    np.testing.assert_allclose(np.asarray(tangent), np.asarray(grad * t), rtol=1e-6, atol=1e-7)
    jac = jax.jacfwd(lambda v: snnjax.spike(v, name, method))(x)
    np.testing.assert_allclose(np.diag(np.asarray(jac)), np.asarray(grad), rtol=1e-6, atol=1e-7)


def test_custom_vjp_refuses_forward_mode_naming_the_working_methods():
    x = jnp.linspace(-1.0, 1.0, 5)
    with pytest.raises(TypeError, match="inject.*bypass.*custom_jvp"):
        jax.jvp(lambda v: snnjax.spike(v, method="custom_vjp"), (x,), (x,))
    with pytest.raises(TypeError, match="forward-mode"):  # inside jit JAX raises its own error
        jax.jit(lambda v: jax.jvp(lambda u: snnjax.spike(u, method="custom_vjp"), (v,), (v,)))(x)


@pytest.mark.parametrize("method", snnjax.METHODS)
@pytest.mark.parametrize("name", ["fast_sigmoid", "gaussian", "triangle", "multi_gaussian"])
def test_same_under_jit_vmap_and_scan(name, method):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32))

    def f(v):
        return snnjax.spike(v, name, method)

    def loss(v):
        return jnp.sum(f(v) @ jnp.arange(5.0))

    eager_value, eager_grad = f(x), jax.grad(loss)(x)
    jit_value, jit_grad = jax.jit(f)(x), jax.jit(jax.grad(loss))(x)
    vmap_value, vmap_grad = jax.vmap(f)(x), jax.vmap(jax.grad(loss))(x)

    def scanned_loss(v):
        _, out = jax.lax.scan(lambda c, row: (c, f(row)), 0.0, v)
        return jnp.sum(out @ jnp.arange(5.0))

    scan_grad = jax.grad(scanned_loss)(x)
    for value in (jit_value, vmap_value):
        np.testing.assert_array_equal(np.asarray(value), np.asarray(eager_value))
    for grad in (jit_grad, vmap_grad, scan_grad):  # equal up to XLA's fusion rounding
        np.testing.assert_allclose(np.asarray(grad), np.asarray(eager_grad), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", [n for n in surrogates.NAMES if n not in ("straight_through",)])
def test_primitive_integrates_the_derivative(name):
    # sigma(b) - sigma(a) = integral of sigma' (trapezoid in float64): checks each primitive
    # against its own derivative formula, independently of autodiff.
    s = surrogates.resolve(name)
    grid = np.linspace(-3.0, 3.0, 200001)
    reference = REFERENCE[name](grid)
    integral = np.concatenate([[0.0], np.cumsum((reference[1:] + reference[:-1]) / 2 * np.diff(grid))])
    points = np.array([-2.0, -0.7, -0.1, 0.3, 1.1, 2.9])
    idx = np.searchsorted(grid, points)
    prim = np.asarray(s.primitive(jnp.asarray(grid[idx], jnp.float32)), np.float64)
    np.testing.assert_allclose(prim - prim[0], integral[idx] - integral[idx[0]], atol=2e-5)


@pytest.mark.parametrize(
    "name", ["fast_sigmoid", "sigmoid", "arctan", "gaussian", "exponential", "triangle", "rectangular"]
)
def test_unit_integral_convention(name):
    # height=None: the derivative integrates to 1, so the primitive is a step from 0 to 1.
    factory = getattr(surrogates, name)
    s = factory(height=None)
    lo, hi = np.asarray(s.primitive(jnp.array([-1e4, 1e4], jnp.float32)))
    assert lo == pytest.approx(0.0, abs=1e-3) and hi == pytest.approx(1.0, abs=1e-3)


def test_multi_gaussian_height_none_is_yin_et_al():
    # height=None is Yin et al.'s function itself: its values, and its area 1 - h (not 1).
    x = np.array([-4.0, -1.3, -0.5, -0.2, 0.0, 0.1, 0.5, 0.9, 2.0, 7.0])
    for params in ({}, {"sigma": 1.0, "h": 0.3, "s": 3.0}):
        kwargs = {"width": params["sigma"], "h": params["h"], "s": params["s"]} if params else {}
        s = surrogates.multi_gaussian(**kwargs, height=None)
        d = np.asarray(s.derivative(jnp.asarray(x, jnp.float32)), np.float64)
        np.testing.assert_allclose(d, _yin(x, **params), rtol=1e-5, atol=1e-7)
        h = params.get("h", 0.15)
        grid = np.linspace(-60.0, 60.0, 600001)  # the side lobes' std is at most 3: +-60 holds all the area
        area = np.trapezoid(np.asarray(s.derivative(jnp.asarray(grid, jnp.float32)), np.float64), grid)
        assert area == pytest.approx(np.trapezoid(_yin(grid, **params), grid), abs=1e-5)
        assert area == pytest.approx(1 - h, abs=1e-5)
        lo, hi = np.asarray(s.primitive(jnp.array([-1e4, 1e4], jnp.float32)), np.float64)
        assert hi - lo == pytest.approx(1 - h, abs=1e-5)
    # A number is the peak, as for every surrogate: the same shape scaled.
    d = np.asarray(surrogates.multi_gaussian(height=2.0).derivative(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(d, 2 * _yin(x) / _yin(0.0), rtol=1e-5, atol=1e-7)


def test_height_is_the_peak_and_slope_scales():
    s = surrogates.fast_sigmoid(slope=10.0, height=10.0)  # SuperSpike's beta / (1 + beta |x|)^2
    assert float(s.derivative(0.0)) == 10.0
    assert float(s.derivative(0.1)) == pytest.approx(10.0 / 4)


def test_bypass_second_derivative_inject_zero():
    f_bypass = jax.grad(jax.grad(lambda v: snnjax.spike(v, "gaussian", "bypass")))
    f_inject = jax.grad(jax.grad(lambda v: snnjax.spike(v, "gaussian", "inject")))
    assert float(f_bypass(0.5)) == pytest.approx(-0.5 * math.exp(-0.125), rel=1e-5)
    assert float(f_inject(0.5)) == 0.0


def test_custom_surrogate_and_bypass_without_primitive():
    s = surrogates.custom(lambda x: jnp.exp(-jnp.abs(x)), name="laplace")
    assert float(jax.grad(lambda v: snnjax.spike(v, s))(1.0)) == pytest.approx(math.exp(-1.0))
    with pytest.raises(ValueError, match="needs a surrogate with a primitive"):
        snnjax.spike(jnp.ones(3), s, "bypass")
    with_primitive = surrogates.custom(jnp.cos, jnp.sin)
    assert float(jax.grad(lambda v: snnjax.spike(v, with_primitive, "bypass"))(0.3)) == pytest.approx(
        math.cos(0.3), rel=1e-6
    )


def test_naive_straight_through_form_is_wrong_ours_is_exact():
    x = jnp.float32(3e7)
    naive = x + jax.lax.stop_gradient(snnjax.heaviside(x) - x)
    assert float(naive) == 0.0  # the form the reference warns about
    assert float(snnjax.spike(x)) == 1.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: snnjax.spike(jnp.ones(2), "nope"), "unknown surrogate"),
        (lambda: snnjax.spike(jnp.ones(2), method="nope"), "unknown method"),
        (lambda: snnjax.spike(jnp.ones(2, jnp.int32)), "floating point"),
        (lambda: surrogates.fast_sigmoid(slope=-1.0), "slope must be positive"),
        (lambda: surrogates.gaussian(width=0.0), "width must be positive"),
        (lambda: surrogates.straight_through(height=None), "no finite area"),
        (lambda: surrogates.multi_gaussian(h=10.0, s=1.0), "no positive peak"),
        (lambda: surrogates.resolve(3), "must be a name"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


NON_FINITE = np.array([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e30, -1e30, 0.0, 1.0, -1.0], np.float32)
FACTORIES = [name for name in surrogates.__all__ if name not in ("Surrogate", "custom", "resolve", "NAMES")]
EVERY_SURROGATE = {
    **{name: getattr(surrogates, name)() for name in FACTORIES},
    **{f"{name}-height10": getattr(surrogates, name)(height=10.0) for name in FACTORIES},
    "custom": surrogates.custom(lambda x: 10.0 / (1.0 + x * x), lambda x: 10.0 * jnp.arctan(x)),
}


@pytest.mark.parametrize("method", snnjax.METHODS)
@pytest.mark.parametrize("name", sorted(EVERY_SURROGATE))
def test_non_finite_and_huge_inputs(name, method):
    # NaN -> 0, +inf -> 1, -inf -> 0, +-3e38 -> 1, 0, for every method and surrogate, eager and jitted;
    # the derivative is finite everywhere, 0 at NaN and +-inf.
    s = EVERY_SURROGATE[name]
    x = jnp.asarray(NON_FINITE)
    expected = (NON_FINITE > 0).astype(np.float32)

    def f(v):
        return snnjax.spike(v, s, method)

    np.testing.assert_array_equal(np.asarray(f(x)), expected)
    np.testing.assert_array_equal(np.asarray(jax.jit(f)(x)), expected)
    finite = np.isfinite(NON_FINITE)
    grad = np.asarray(jax.vmap(jax.grad(f))(x))
    assert np.all(np.isfinite(grad)), grad
    np.testing.assert_array_equal(grad[~finite], 0.0)
    if method != "bypass":  # bypass differentiates the primitive, which overflows at 3e38 for a height-10 ramp
        np.testing.assert_array_equal(grad[finite], np.asarray(s.derivative(x))[finite])
    if method in snnjax.FORWARD_MODE_METHODS:
        primal, tangent = jax.jvp(f, (x,), (jnp.ones_like(x),))
        np.testing.assert_array_equal(np.asarray(primal), expected)
        np.testing.assert_array_equal(np.asarray(tangent)[~finite], 0.0)
        np.testing.assert_allclose(np.asarray(tangent), grad, rtol=1e-6, atol=1e-7)  # bypass: AD rounding


def _plain_inject(x, value, derivative):  # the identity without the non-finite guard
    h = x * jax.lax.stop_gradient(derivative)
    return h - jax.lax.stop_gradient(h) + jax.lax.stop_gradient(value)


def _plain_bypass(g, value):
    return g - jax.lax.stop_gradient(g) + jax.lax.stop_gradient(value)


def test_identities_are_exact_for_every_input():
    x = jnp.asarray([np.nan, np.inf, -np.inf, 3e38, -3e38, 2.0, -0.5, 0.0], jnp.float32)
    value = jnp.asarray([0.5, 2.0, -3.0, 7.0, np.inf, np.nan, 4.0, -1.0], jnp.float32)
    d = jnp.asarray([1.0, 1.0, 1.0, 10.0, 10.0, 3.0, np.inf, 2.0], jnp.float32)
    for fn in (snnjax.inject, jax.jit(snnjax.inject), jax.vmap(snnjax.inject)):
        np.testing.assert_array_equal(np.asarray(fn(x, value, d)), np.asarray(value))
    for fn in (snnjax.bypass, snnjax.straight_through, jax.jit(snnjax.bypass), jax.vmap(snnjax.straight_through)):
        np.testing.assert_array_equal(np.asarray(fn(x, value)), np.asarray(value))
        np.testing.assert_array_equal(np.asarray(fn(10.0 * x, value)), np.asarray(value))  # 10 * 3e38 = inf
    # Derivatives: d (inject) or 1 (straight through) where x and d are finite, 0 elsewhere; 3e38 * 10
    # overflows, yet inject's derivative there is still 10; bypass's is 0 where g = 10 x overflows.
    # Reverse and forward mode alike.
    inject_d = np.array([0.0, 0.0, 0.0, 10.0, 10.0, 3.0, 0.0, 2.0], np.float32)
    ones = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0], np.float32)
    cases = [
        (lambda v: snnjax.inject(v, value, d), inject_d),
        (lambda v: snnjax.straight_through(v, value), ones),
        (lambda v: snnjax.bypass(10.0 * v, value), np.array([0, 0, 0, 0, 0, 10, 10, 10], np.float32)),
    ]
    for f, expected in cases:
        grad = jax.grad(lambda v, f=f: jnp.sum(f(v) * jnp.arange(1.0, 9.0)))(x)
        np.testing.assert_allclose(np.asarray(grad), expected * np.arange(1.0, 9.0), rtol=1e-6)
        tangent = jax.jvp(f, (x,), (jnp.arange(1.0, 9.0),))[1]
        np.testing.assert_array_equal(np.asarray(tangent), np.asarray(grad))


def test_identities_derivatives_unchanged_on_finite_inputs():
    # Where x, d and x * d are finite, grad and jvp are bit for bit those of the plain identities
    # (eager, jitted and vmapped).
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(4, 32)) * 10.0 ** rng.integers(-30, 30, size=(4, 32))).astype(np.float32)
    x, d, t = (
        jnp.asarray(x),
        jnp.asarray(rng.normal(size=(4, 32)), jnp.float32),
        jnp.asarray(rng.normal(size=(4, 32)), jnp.float32),
    )
    pairs = [
        (lambda v, d: snnjax.inject(v, v > 0, d), lambda v, d: _plain_inject(v, v > 0, d)),
        (lambda v, d: snnjax.bypass(jnp.tanh(v) * d, v > 0), lambda v, d: _plain_bypass(jnp.tanh(v) * d, v > 0)),
        (lambda v, d: snnjax.straight_through(v * d, v > 0), lambda v, d: _plain_bypass(v * d, v > 0)),
    ]
    for ours, plain in pairs:
        for transform in (lambda f: f, jax.jit, jax.vmap):
            grads = [transform(jax.grad(lambda v, d, t, f=f: jnp.sum(f(v, d) * t)))(x, d, t) for f in (ours, plain)]
            np.testing.assert_array_equal(np.asarray(grads[0]), np.asarray(grads[1]))
            tangents = [
                transform(lambda v, d, t, f=f: jax.jvp(lambda u: f(u, d), (v,), (t,))[1])(x, d, t)
                for f in (ours, plain)
            ]
            np.testing.assert_array_equal(np.asarray(tangents[0]), np.asarray(tangents[1]))


def test_identities_keep_dtype_and_value():
    x = jnp.array([1e8, -2.0], jnp.bfloat16)
    y = snnjax.inject(x, x > 0, jnp.ones_like(x))
    assert y.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(y, np.float32), [1.0, 0.0])
    assert snnjax.spike(jnp.ones(2, jnp.float16)).dtype == jnp.float16
