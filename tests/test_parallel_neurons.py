"""The parallel neurons (snnjax.neurons.parallel): the parallel form against the sequential step,
gradients against independent computations, exact spikes, the NNX layers and their errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import snnjax
import snnjax.nn as snn
from snnjax.neurons.parallel import psn_weights

T, B, N = 16, 3, 5


def _dyadic(shape, seed):
    """Inputs in quarters within [-2, 2]: with beta = 1/2 every sum is exact in float32 (T = 16)."""
    return jax.random.randint(jax.random.key(seed), shape, -8, 9).astype(jnp.float32) / 4


def test_parallel_lif_equals_its_step_bit_for_bit_where_the_arithmetic_is_exact():
    neuron = snnjax.parallel_lif(0.5, threshold=0.75)
    xs = _dyadic((T, B, N), 0)
    state = snnjax.LIFState(_dyadic((B, N), 1), jnp.zeros((B, N)))
    (v_seq, z_seq), ys_seq = snnjax.run(neuron, xs, state)
    (v_par, z_par), ys_par = snnjax.run_parallel(neuron, xs, state)
    np.testing.assert_array_equal(ys_par, ys_seq)
    np.testing.assert_array_equal(v_par, v_seq)
    np.testing.assert_array_equal(z_par, z_seq)
    assert 0 < float(ys_seq.mean()) < 1  # both spikes and silence are tested


def test_parallel_lif_membrane_by_hand_and_random_inputs_to_rounding():
    beta = jnp.linspace(0.5, 0.95, N)
    xs = jax.random.normal(jax.random.key(2), (T, B, N))
    neuron = snnjax.parallel_lif(beta, threshold=0.5)
    v, want = jnp.zeros((B, N)), []
    for t in range(T):  # v_t = beta v_{t-1} + x_t, written out
        v = beta[None] * v + xs[t]
        want.append(v)
    want = jnp.stack(want)
    (v_last, _), z = snnjax.run_parallel(neuron, xs)
    np.testing.assert_allclose(v_last, want[-1], rtol=1e-5, atol=1e-6)
    far = jnp.abs(want - 0.5) > 1e-4  # away from the threshold rounding cannot flip a spike
    np.testing.assert_array_equal(np.asarray(z)[far], np.asarray(want > 0.5, np.float32)[far])


def _readout_loss(run, neuron_of):
    weights = jax.random.normal(jax.random.key(3), (T, B, N))

    def loss(params, xs):
        return jnp.sum(weights * run(neuron_of(params), xs)[1])

    return loss


@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "atan"])
def test_parallel_lif_gradients_equal_the_sequential_ones(surrogate):
    """jax.grad through the associative scan against jax.grad through the step (x and a per-neuron decay)."""
    xs = jax.random.normal(jax.random.key(4), (T, B, N))
    beta = jnp.linspace(0.6, 0.9, N)

    def neuron_of(b):
        return snnjax.parallel_lif(b, threshold=0.4, surrogate=surrogate)

    par = jax.grad(_readout_loss(snnjax.run_parallel, neuron_of), argnums=(0, 1))(beta, xs)
    seq = jax.grad(_readout_loss(snnjax.run, neuron_of), argnums=(0, 1))(beta, xs)
    for got, want in zip(par, seq):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)
    assert float(jnp.abs(par[0]).min()) > 0


def test_spikes_are_exactly_zero_or_one_for_nan_and_inf():
    xs = jnp.array([0.5, jnp.nan, 0.2, jnp.inf, -jnp.inf, 0.3]).reshape(6, 1, 1)
    for neuron in (snnjax.parallel_lif(0.5), snnjax.sliding_psn(psn_weights(2))):
        for run in (snnjax.run, snnjax.run_parallel):
            z = np.asarray(run(neuron, xs)[1]).ravel()
            assert set(z.tolist()) <= {0.0, 1.0}
            assert z[1] == 0.0  # NaN does not fire


def test_sliding_psn_by_hand_and_both_forms_bit_for_bit():
    w = jnp.array([0.3, -0.2, 1.1])
    xs = jax.random.normal(jax.random.key(5), (T, B, N))
    window = jax.random.normal(jax.random.key(6), (B, N, 2))
    neuron = snnjax.sliding_psn(w, threshold=0.2)
    state = snnjax.PSNState(window)
    history = jnp.concatenate([jnp.moveaxis(window, -1, 0), xs])
    h = w[0] * history[:-2] + w[1] * history[1:-1] + w[2] * history[2:]  # h_t = sum_i w_i x_{t-k+1+i}
    final_par, z_par = snnjax.run_parallel(neuron, xs, state)
    final_seq, z_seq = snnjax.run(neuron, xs, state)
    np.testing.assert_array_equal(z_par, z_seq)
    np.testing.assert_array_equal(final_par.window, final_seq.window)
    np.testing.assert_array_equal(final_par.window, jnp.moveaxis(xs[-2:], 0, -1))
    far = jnp.abs(h - 0.2) > 1e-5
    np.testing.assert_array_equal(np.asarray(z_par)[far], np.asarray(h > 0.2, np.float32)[far])


def test_sliding_psn_filter_and_threshold_gradients_by_hand():
    r"""d/dw_i sum_t c_t z_t = sum_t c_t s'(h_t - theta) x_{t-k+1+i}; d/dtheta = -sum_t c_t s'(h_t - theta)."""
    xs = jax.random.normal(jax.random.key(7), (T, B, N))
    c = jax.random.normal(jax.random.key(8), (T, B, N))
    w, theta = jnp.array([0.25, 0.5, 1.0]), 0.3
    surrogate = snnjax.surrogates.resolve("fast_sigmoid")

    def loss(params):
        neuron = snnjax.sliding_psn(params[0], threshold=params[1], surrogate=surrogate)
        return jnp.sum(c * snnjax.run_parallel(neuron, xs)[1])

    g_w, g_theta = jax.grad(loss)((w, jnp.float32(theta)))
    history = jnp.concatenate([jnp.zeros((2, B, N)), xs])
    taps = [history[i : i + T] for i in range(3)]
    h = w[0] * taps[0] + w[1] * taps[1] + w[2] * taps[2]
    slope = c * surrogate.derivative(h - theta)
    np.testing.assert_allclose(g_w, [jnp.sum(slope * tap) for tap in taps], rtol=1e-5)
    np.testing.assert_allclose(g_theta, -jnp.sum(slope), rtol=1e-5)


def test_the_nnx_layers_step_as_they_run_and_learn():
    xs = _dyadic((T, B, N), 9)  # exact arithmetic in both forms (beta and the filter are powers of two)
    for layer in (snn.ParallelLIF(N, beta=0.5, trainable_decay=True), snn.SlidingPSN(N, k=3)):
        _, parallel = layer.run(xs)
        stepped = nnx.RNN(layer, time_major=True)(xs)
        np.testing.assert_allclose(stepped, parallel)
        params = nnx.state(layer, nnx.Param)
        assert jax.tree.leaves(params), type(layer).__name__

        def loss(p, layer=layer):
            graphdef, _, rest = nnx.split(layer, nnx.Param, ...)
            return jnp.sum(nnx.merge(graphdef, p, rest).run(xs)[1] * xs)

        grads = jax.grad(loss)(params)
        assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
    fixed = snn.SlidingPSN(N, trainable=False)
    assert not jax.tree.leaves(nnx.state(fixed, nnx.Param))


def test_in_sequential_the_parallel_form_runs():
    net = snn.Sequential(nnx.Linear(N, 4, rngs=nnx.Rngs(0)), snn.ParallelLIF(4, beta=0.5), snn.SlidingPSN(4, k=2))
    assert net(jnp.ones((T, B, N))).shape == (T, B, 4)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: snnjax.run_parallel(snnjax.lif(), jnp.ones((3, 1, 2))), "run_parallel: this neuron has no parallel"),
        (lambda: snnjax.parallel_lif(1.5), "beta"),
        (lambda: snnjax.parallel_lif(0.5, threshold=jnp.inf), "threshold"),
        (lambda: snnjax.sliding_psn(jnp.ones((2, 2))), "sliding_psn: weights must be a float array [k]"),
        (lambda: snnjax.sliding_psn(jnp.ones((3,), jnp.int32)), "sliding_psn: weights must be a float array [k]"),
        (lambda: psn_weights(0), "psn_weights: k must be an int >= 1"),
        (lambda: snnjax.run_parallel(snnjax.parallel_lif(), jnp.ones((3, 2), jnp.int32)), "xs must be floating"),
        (lambda: snn.SlidingPSN(3, weights=jnp.ones(2)), "SlidingPSN: the filter is the layer's parameter"),
        (lambda: snn.ParallelLIF(3, reset="zero"), "unknown option 'reset'"),
        (lambda: snn.ParallelLIF(3, run_bptt=True), "ParallelLIF: runs in parallel over time"),
        (lambda: snn.SlidingPSN(3, trainable_decay=True), "SlidingPSN: has no decays to train"),
    ],
)
def test_bad_input_names_what_to_change(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value), str(error.value)
    assert "\n" not in str(error.value)
