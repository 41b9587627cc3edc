"""Neurons: dynamics against NumPy references, gradients against a hand-written BPTT and
against forward mode, and invariance to the spike method and the scan unroll."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snnjax

T, B, N_IN, N = 12, 3, 5, 4
RNG = np.random.default_rng(0)
INPUTS = RNG.normal(0.0, 1.0, (T, B, N_IN)).astype(np.float32)
W_IN = RNG.normal(0.0, 0.8, (N_IN, N)).astype(np.float32)
W_REC = RNG.normal(0.0, 0.5, (N, N)).astype(np.float32)
READ = RNG.normal(0.0, 1.0, (T, B, N)).astype(np.float32)
SURROGATE = snnjax.surrogates.gaussian(width=0.5)


def _h(x):
    return (x > 0).astype(np.float32)


# --- NumPy references of the documented equations (float32, step by step) -------------------


def ref_lif(xs, beta, theta=1.0, reset="subtract", w_rec=None):
    v = np.zeros(xs.shape[1:], np.float32)
    z = np.zeros_like(v)
    out = []
    for x in xs:
        current = x if w_rec is None else x + z @ w_rec
        v = np.float32(beta) * v + current
        z = _h(v - theta)
        v = v - z * np.float32(theta) if reset == "subtract" else v * (1 - z)
        out.append(z)
    return np.stack(out)


def ref_cuba(xs, alpha, beta, theta=1.0):
    i = np.zeros(xs.shape[1:], np.float32)
    v = np.zeros_like(i)
    out = []
    for x in xs:
        i = np.float32(alpha) * i + x
        v = np.float32(beta) * v + i
        z = _h(v - theta)
        v = v - z * np.float32(theta)
        out.append(z)
    return np.stack(out)


def ref_alif(xs, alpha, rho, form):
    theta, beta_a = (0.1, 0.8) if form == "fgi" else (1.0, 1.8)
    v = np.zeros(xs.shape[1:], np.float32)
    a = np.zeros_like(v)
    out = []
    for x in xs:
        if form == "fgi":
            v = np.float32(alpha) * v + np.float32(1 - alpha) * x
        else:
            v = np.float32(alpha) * v + x
        threshold = np.float32(theta) + np.float32(beta_a) * a
        z = _h(v - threshold)
        v = v - z * (threshold if form == "fgi" else np.float32(theta))
        a = np.float32(rho) * a + (np.float32(1 - rho) * z if form == "fgi" else z)
        out.append(z)
    return np.stack(out)


def ref_leaky(xs, kappa):
    v = np.zeros(xs.shape[1:], np.float32)
    out = []
    for x in xs:
        v = np.float32(kappa) * v + x
        out.append(v)
    return np.stack(out)


CURRENTS = (INPUTS @ W_IN).astype(np.float32)


@pytest.mark.parametrize(
    "neuron, xs, reference",
    [
        (snnjax.lif(0.8), CURRENTS, lambda xs: ref_lif(xs, 0.8)),
        (snnjax.lif(0.8, reset="zero"), CURRENTS, lambda xs: ref_lif(xs, 0.8, reset="zero")),
        (snnjax.lif(0.8, threshold=0.5, recurrent=W_REC), CURRENTS, lambda xs: ref_lif(xs, 0.8, 0.5, w_rec=W_REC)),
        (snnjax.iaf(), CURRENTS, lambda xs: ref_lif(xs, 1.0)),
        (snnjax.cuba_lif(0.7, 0.8), CURRENTS, lambda xs: ref_cuba(xs, 0.7, 0.8)),
        (snnjax.alif(0.8, 0.9), CURRENTS, lambda xs: ref_alif(xs, 0.8, 0.9, "bellec")),
        (snnjax.alif(0.8, 0.9, form="fgi"), CURRENTS * 5, lambda xs: ref_alif(xs, 0.8, 0.9, "fgi")),
        (snnjax.leaky_integrator(0.7), CURRENTS, lambda xs: ref_leaky(xs, 0.7)),
    ],
    ids=["lif", "lif-zero", "lif-rec", "iaf", "cuba", "alif-bellec", "alif-fgi", "leaky"],
)
def test_dynamics_match_reference(neuron, xs, reference):
    _, out = snnjax.run(neuron, jnp.asarray(xs))
    expected = reference(xs)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6, atol=1e-6)
    if set(np.unique(expected)) <= {0.0, 1.0}:
        assert 0.02 < expected.mean() < 0.98, "the trace should contain both spikes and silence"


def test_lif_hand_computed_trace():
    # beta = 0.5, threshold 1, input 0.6 each step: v = 0.6, 0.9, 1.05 -> spike, 0.05 + 0.6...
    state, z = snnjax.run(snnjax.lif(0.5), jnp.full((5, 1, 1), 0.6))
    np.testing.assert_array_equal(np.asarray(z[:, 0, 0]), [0, 0, 1, 0, 0])
    assert float(state.v[0, 0]) == pytest.approx(0.05 * 0.25 + 0.6 * 0.5 + 0.6, rel=1e-6)


# --- gradients ---------------------------------------------------------------------------


def lif_bptt_reference(inputs, w, beta, theta, surrogate_derivative, read, detach=False):
    """Hand-written BPTT for loss = sum_t read_t . z_t through a soft-reset LIF (float64).

    With ``detach`` the reset term carries no gradient (v_hat = v - theta * sg(z)).
    """
    x = inputs.astype(np.float64) @ w.astype(np.float64)
    steps = x.shape[0]
    v_hat = np.zeros(x.shape[1:])
    vs, prev = [], []
    for t in range(steps):
        prev.append(v_hat)
        v = beta * v_hat + x[t]
        z = (v - theta > 0).astype(np.float64)
        vs.append(v)
        v_hat = v - theta * z
    grad_w = np.zeros_like(w, dtype=np.float64)
    grad_beta = 0.0
    dv_hat = np.zeros(x.shape[1:])
    for t in reversed(range(steps)):
        d = surrogate_derivative(vs[t] - theta)
        g_v = read[t] * d + dv_hat * (1 - (0.0 if detach else theta * d))
        grad_w += inputs[t].astype(np.float64).T @ g_v
        grad_beta += np.sum(g_v * prev[t])
        dv_hat = beta * g_v
    return grad_w, grad_beta


@pytest.mark.parametrize("detach", [False, True], ids=["attached", "detached"])
@pytest.mark.parametrize("method", snnjax.METHODS)
def test_lif_grad_matches_hand_written_bptt(method, detach):
    def loss(w, beta):
        neuron = snnjax.lif(beta, threshold=0.5, detach_reset=detach, surrogate=SURROGATE, method=method)
        _, z = snnjax.run(neuron, jnp.asarray(INPUTS) @ w)
        return jnp.sum(z * READ)

    g_w, g_beta = jax.grad(loss, argnums=(0, 1))(jnp.asarray(W_IN), jnp.float32(0.8))
    ref_w, ref_beta = lif_bptt_reference(INPUTS, W_IN, 0.8, 0.5, lambda u: np.exp(-2 * u**2), READ, detach)
    assert np.abs(ref_w).max() > 0.1
    np.testing.assert_allclose(np.asarray(g_w), ref_w, rtol=1e-4, atol=1e-5)
    assert float(g_beta) == pytest.approx(ref_beta, rel=1e-4, abs=1e-5)


def _builders(method, beta):
    s = SURROGATE
    return {
        "lif": lambda: snnjax.lif(beta, threshold=0.5, surrogate=s, method=method),
        "lif-detached-zero": lambda: snnjax.lif(
            beta, threshold=0.5, reset="zero", detach_reset=True, surrogate=s, method=method
        ),
        "lif-rec": lambda: snnjax.lif(beta, threshold=0.5, recurrent=W_REC, surrogate=s, method=method),
        "iaf": lambda: snnjax.iaf(threshold=2.0, surrogate=s, method=method),
        "cuba": lambda: snnjax.cuba_lif(0.6, beta, threshold=0.8, surrogate=s, method=method),
        "alif-bellec": lambda: snnjax.alif(beta, 0.9, threshold=0.5, adaptation=0.3, surrogate=s, method=method),
        "alif-fgi": lambda: snnjax.alif(beta, 0.9, form="fgi", surrogate=s, method=method),
        "leaky": lambda: snnjax.leaky_integrator(beta),
    }


NEURONS = list(_builders("inject", 0.8))


def _loss(name, method, unroll, w, beta, xs=INPUTS, remat=False):
    neuron = _builders(method, beta)[name]()
    scale = 0.3 if name == "alif-fgi" else 1.0
    _, out = snnjax.run(neuron, jnp.asarray(xs) @ w, unroll=unroll, remat=remat)
    return jnp.sum(out * READ) * scale


@functools.cache
def _grads(name, method, unroll, remat=False):
    f = jax.jit(jax.value_and_grad(functools.partial(_loss, name, method, unroll, remat=remat), argnums=(0, 1)))
    value, (g_w, g_beta) = f(jnp.asarray(W_IN), jnp.float32(0.8))
    return np.asarray(value), np.asarray(g_w), np.asarray(g_beta)


@pytest.mark.parametrize("name", NEURONS)
def test_jvp_of_whole_simulation_equals_grad_dot_tangent(name):
    tangent_w = RNG.normal(size=W_IN.shape).astype(np.float32)
    tangent_beta = np.float32(0.37)
    f = functools.partial(_loss, name, "inject", 1)
    _, jvp = jax.jvp(f, (jnp.asarray(W_IN), jnp.float32(0.8)), (jnp.asarray(tangent_w), jnp.float32(tangent_beta)))
    _, g_w, g_beta = _grads(name, "inject", 1)
    expected = np.sum(g_w * tangent_w) + g_beta * tangent_beta
    assert np.abs(g_w).max() > 1e-3, "the gradient should not vanish in this test"
    assert float(jvp) == pytest.approx(float(expected), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("method", ["bypass", "custom_jvp", "custom_vjp"])
@pytest.mark.parametrize("name", NEURONS)
def test_gradients_identical_across_spike_methods(name, method):
    value, g_w, g_beta = _grads(name, method, 1)
    ref_value, ref_w, ref_beta = _grads(name, "inject", 1)
    np.testing.assert_array_equal(value, ref_value)
    np.testing.assert_allclose(g_w, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_beta, ref_beta, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("unroll", [2, 4])
@pytest.mark.parametrize("name", NEURONS)
def test_results_identical_for_unroll(name, unroll):
    value, g_w, g_beta = _grads(name, "inject", unroll)
    ref_value, ref_w, ref_beta = _grads(name, "inject", 1)
    np.testing.assert_array_equal(value, ref_value)  # forward: bit for bit
    # backward: equal up to float32 summation order, which XLA may fuse differently per unroll
    np.testing.assert_allclose(g_w, ref_w, rtol=1e-5, atol=1e-6 * np.abs(ref_w).max())
    np.testing.assert_allclose(g_beta, ref_beta, rtol=1e-5, atol=1e-6 * np.abs(ref_w).max())


@pytest.mark.parametrize("method", ["inject", "custom_vjp"])
@pytest.mark.parametrize("name", NEURONS)
def test_remat_recomputes_the_same_values_and_gradients(name, method):
    value, g_w, g_beta = _grads(name, method, 1, remat=True)
    ref_value, ref_w, ref_beta = _grads(name, method, 1)
    np.testing.assert_array_equal(value, ref_value)
    np.testing.assert_allclose(g_w, ref_w, rtol=1e-5, atol=1e-6 * np.abs(ref_w).max())
    np.testing.assert_allclose(g_beta, ref_beta, rtol=1e-5, atol=1e-6 * np.abs(ref_w).max())


def test_remat_keeps_less_for_the_backward_pass():
    xs = jnp.asarray(np.tile(INPUTS, (20, 1, 1)))  # 240 steps

    def temp_bytes(remat):
        def loss(w):
            _, z = snnjax.run(snnjax.alif(0.8, 0.9, form="fgi", surrogate=SURROGATE), xs @ w, remat=remat)
            return jnp.sum(z)

        return jax.jit(jax.grad(loss)).lower(jnp.asarray(W_IN)).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(True) < temp_bytes(False)


def test_readout_gradients_by_finite_differences():
    from jax.test_util import check_grads

    def f(xs, kappa):
        return snnjax.run(snnjax.leaky_integrator(kappa, scale_input=True), xs)[1]

    check_grads(f, (jnp.asarray(CURRENTS[:4]), jnp.float32(0.7)), order=2, modes=["fwd", "rev"], atol=1e-2, rtol=1e-2)


def test_per_neuron_parameters_broadcast_explicitly():
    betas = jnp.array([0.0, 0.5, 0.9, 1.0])
    _, z = snnjax.run(snnjax.lif(betas), jnp.full((6, 2, 4), 0.4))
    counts = np.asarray(z.sum(axis=(0, 1)))
    assert counts[0] == 0 and counts[-1] > counts[1]


def test_dtype_follows_the_input():
    state, z = snnjax.run(snnjax.alif(jnp.full((4,), 0.9, jnp.float32), 0.9), jnp.ones((3, 2, 4), jnp.bfloat16))
    assert z.dtype == jnp.bfloat16 and state.v.dtype == jnp.bfloat16


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: snnjax.run(snnjax.lif(), jnp.ones((5,))), r"time-major \[T, B, ...\]"),
        (lambda: snnjax.run(snnjax.lif(), jnp.ones((0, 2, 3))), "no time steps"),
        (lambda: snnjax.run(snnjax.lif(), jnp.ones((5, 2, 3), jnp.int32)), "floating point"),
        (
            lambda: snnjax.run(snnjax.lif(), jnp.ones((5, 2, 3)), snnjax.lif().init((4, 3))),
            r"state.v has shape \(4, 3\)",
        ),
        (lambda: snnjax.run(snnjax.lif(), jnp.ones((5, 2, 3)), unroll=0), "unroll"),
        (lambda: snnjax.run(snnjax.lif(jnp.full((4,), 0.9)), jnp.ones((5, 2, 3))), r"beta has shape \(4,\)"),
        (
            lambda: snnjax.run(snnjax.lif(recurrent=jnp.ones((2, 2))), jnp.ones((5, 2, 3))),
            r"recurrent weights must have shape",
        ),
        (lambda: snnjax.lif(beta=1.5), r"beta must lie in \[0, 1\].*decay_from_tau"),
        (lambda: snnjax.lif(beta=-0.1), r"beta must lie in \[0, 1\]"),
        (lambda: snnjax.cuba_lif(alpha=2.0), "alpha must lie"),
        (lambda: snnjax.alif(form="nope"), "form must be one of"),
        (lambda: snnjax.lif(reset="hard"), "reset must be one of"),
        (lambda: snnjax.lif(threshold=float("nan")), "threshold must be finite"),
        (lambda: snnjax.lif(surrogate="nope"), "unknown surrogate"),
        (lambda: snnjax.lif(method="nope"), "unknown method"),
        (lambda: snnjax.decay_from_tau(0.0), "tau must be positive"),
        (lambda: snnjax.decay_from_tau(-5.0), "tau must be positive"),
        (lambda: snnjax.decay_from_tau(5.0, dt=0.0), "dt must be positive"),
        (lambda: snnjax.lif().init((), jnp.float32), r"shape must be \[B, ...\]"),
    ],
)
def test_bad_input_raises_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_shapes_raise_at_trace_time_inside_jit():
    with pytest.raises(ValueError, match=r"beta has shape \(4,\)"):
        jax.jit(lambda xs: snnjax.run(snnjax.lif(jnp.full((4,), 0.9)), xs)[1])(jnp.ones((5, 2, 3)))
    with pytest.raises(ValueError, match="state.v has shape"):
        jax.jit(lambda xs, s: snnjax.run(snnjax.lif(), xs, s)[1])(jnp.ones((5, 2, 3)), snnjax.lif().init((3, 3)))


def test_decay_parameterisations_round_trip():
    beta = jnp.array([0.5, 0.9, 0.99])
    np.testing.assert_allclose(snnjax.sigmoid_decay(snnjax.decay.sigmoid_decay_inverse(beta)), beta, rtol=1e-6)
    np.testing.assert_allclose(snnjax.softplus_decay(snnjax.decay.softplus_decay_inverse(beta)), beta, rtol=1e-5)
    np.testing.assert_allclose(
        snnjax.tau_from_decay(snnjax.decay_from_tau(jnp.array([2.0, 20.0]))), [2.0, 20.0], rtol=1e-5
    )
