"""Encoders and losses against direct computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from snnjax import encoders, losses


def test_rate_frequency_matches_probability():
    p = jnp.array([[0.0, 0.2, 0.7, 1.0]])
    z = encoders.rate(jax.random.key(3), p, num_steps=4000)
    assert z.shape == (4000, 1, 4) and set(np.unique(np.asarray(z))) <= {0.0, 1.0}
    freq = np.asarray(z.mean(axis=0))[0]
    # binomial standard error at most 0.008 here; 5 sigma
    np.testing.assert_allclose(freq, [0.0, 0.2, 0.7, 1.0], atol=0.04)
    np.testing.assert_array_equal(
        np.asarray(encoders.rate(jax.random.key(3), p, 10)), np.asarray(encoders.rate(jax.random.key(3), p, 10))
    )


def test_latency_one_spike_at_the_documented_step():
    x = jnp.asarray(np.random.default_rng(0).random((3, 7)).astype(np.float32)).at[0, 0].set(0.0)
    z = np.asarray(encoders.latency(x, num_steps=20))
    counts = z.sum(axis=0)
    assert counts[0, 0] == 0  # zero pixels are silent
    on = np.asarray(x) > 0
    np.testing.assert_array_equal(counts[on], 1)
    np.testing.assert_array_equal(z.argmax(axis=0)[on], np.round(19 * (1 - np.asarray(x)))[on])
    assert np.asarray(encoders.latency(x, 20, silent_below=-1.0)).sum() == x.size


def test_delta_on_and_off():
    xs = jnp.array([0.0, 0.05, 0.5, 0.5, 0.1, 0.2])[:, None, None]
    np.testing.assert_array_equal(np.asarray(encoders.delta(xs, 0.1))[:, 0, 0], [0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(encoders.delta(xs, 0.1, off_spikes=True))[:, 0, 0], [0, 0, 1, 0, -1, 0])
    np.testing.assert_array_equal(np.asarray(encoders.delta(xs + 1.0, 0.1, first="self"))[0], [[0.0]])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: encoders.rate(jax.random.key(0), jnp.array([1.5]), 3), r"lie in \[0, 1\]"),
        (lambda: encoders.latency(jnp.array([0.5]), 0), "num_steps must be a positive int"),
        (lambda: encoders.delta(jnp.ones(3)), "time-major"),
        (lambda: losses.rate_cross_entropy(jnp.ones((4, 2)), jnp.array([0, 1])), r"\[T, B, C\]"),
        (lambda: losses.rate_cross_entropy(jnp.ones((4, 2, 3)), jnp.array([0, 1, 2])), r"labels must be \[B\]"),
        (lambda: losses.spike_count_mse(jnp.ones((4, 2, 3)), jnp.array([0.0, 1.0])), "integers"),
        (lambda: losses.firing_rate_regularizer(jnp.ones((4, 2, 3)), 0.5, 0.1), "lower <= upper"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


OUT = jnp.asarray(np.random.default_rng(1).random((6, 4, 3)).astype(np.float32))
LABELS = jnp.array([0, 2, 1, 2])


def _ce(logits, labels):
    logits = np.asarray(logits, np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -logp[np.arange(len(labels)), np.asarray(labels)].mean()


def test_cross_entropies_use_the_documented_logits():
    assert float(losses.rate_cross_entropy(OUT, LABELS, scale=3.0)) == pytest.approx(
        _ce(3 * np.asarray(OUT).mean(0), LABELS), rel=1e-5
    )
    assert float(losses.membrane_cross_entropy(OUT, LABELS)) == pytest.approx(
        _ce(np.asarray(OUT).sum(0), LABELS), rel=1e-5
    )
    assert float(losses.max_membrane_cross_entropy(OUT, LABELS)) == pytest.approx(
        _ce(np.asarray(OUT).max(0), LABELS), rel=1e-5
    )


def test_spike_count_mse_and_its_gradient():
    z = (OUT > 0.5).astype(jnp.float32)
    counts = np.asarray(z.sum(0))
    target = np.where(np.eye(3)[np.asarray(LABELS)] > 0, 15.0, 3.0)
    assert float(losses.spike_count_mse(z, LABELS)) == pytest.approx(0.5 * ((counts - target) ** 2).sum(-1).mean())
    g = jax.grad(losses.spike_count_mse)(z, LABELS)
    np.testing.assert_allclose(np.asarray(g), np.broadcast_to((counts - target) / 4, (6, 4, 3)), rtol=1e-6)


def test_firing_rate_regularizer_band():
    z = jnp.zeros((10, 2, 3)).at[:, :, 0].set(1.0)  # neuron 0 always fires, 1 and 2 never
    assert float(losses.firing_rate_regularizer(z, 0.1, 0.5)) == pytest.approx((0.5**2 + 0.1**2 + 0.1**2) / 3)
    assert float(losses.firing_rate_regularizer(z, 0.0, 1.0)) == 0.0


def test_accuracy():
    assert float(losses.accuracy(OUT, LABELS)) == pytest.approx(
        np.mean(np.asarray(OUT).sum(0).argmax(-1) == np.asarray(LABELS))
    )
