"""SFDFA as the released code runs it: its grades, its update order, its hidden error, its presets.

Each option is checked against an independent computation: the released grades against a
NumPy walk over the single-spike network's spike steps, the update order and the hidden error
against the default rule run with the matrices they stand for.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from snnjax.spike_time import SpikeTimeNet, init_weights, simulate, ttfs

from snnjax.rules import SFDFA_PRESETS, sfdfa, sfdfa_preset, spike_count_loss
from snnjax.rules.sfdfa import perturbations

NET = SpikeTimeNet((20, 12, 8, 3), theta=(0.2, 0.2, 0.7), window=0.1, dt=2e-3)
LABELS = jnp.array([0, 1, 2, 0, 1, 2])


def _weights(single: bool):
    w = init_weights(jax.random.key(1), NET)
    shift = (3.0, 6.0) if single else (1.2, 1.5)
    return (jnp.abs(w[0]) * 2.0 + 0.5, w[1] + shift[0], w[2] + shift[1])


@pytest.fixture(scope="module")
def times():
    return ttfs(jax.random.randint(jax.random.key(0), (6, 20), 0, 256).astype(jnp.uint8), window=0.05)


def test_released_grades_by_hand_on_a_single_spike_network(times):
    """With one spike per neuron: g_i = v_i + sum_j w_ij g_j over the inputs delivered by i's spike step
    (a spike in step n arrives at step n + 1); the first hidden layer's inputs have no grade."""
    net, w = NET._replace(max_spikes=1), _weights(True)
    v = perturbations(jax.random.key(4), net, times.shape[0])
    run = simulate(net, w, times, released_grades=v)
    spiked = [np.asarray(c) > 0 for c in run.counts]
    steps = [np.floor(np.asarray(t) / net.dt + 1e-3).astype(int) for t in run.time_sums]
    assert all(s.mean() > 0.3 for s in spiked), "most neurons must fire for the test to mean something"
    expected = [np.where(spiked[0], np.asarray(v[0]), 0.0)]
    for l in (1, 2):
        seed = np.asarray(v[l]) if l < 2 else np.zeros(spiked[l].shape)
        arrived = spiked[l - 1][:, :, None] & (steps[l - 1][:, :, None] + 1 <= steps[l][:, None, :])  # [B, j, i]
        total = np.einsum("bji,ji,bj->bi", arrived, np.asarray(w[l]), expected[l - 1]) + seed
        expected.append(np.where(spiked[l], total, 0.0))
    for got, want in zip(run.grades, expected):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("w_in, w_out, counts", [(3.5, 10.0, (1, 3)), (5.0, 20.0, (2, 10))])
def test_released_grades_reset_after_each_spike_by_hand(w_in, w_out, counts):
    """One input spike, one hidden neuron, one output neuron. The hidden neuron's first spike has grade v
    (its second, if any, 0: no new input and v on the first spike only); the output's first spike takes
    w_out v and resets, so its later spikes add nothing: D = w_out v, whatever the output's count."""
    net = SpikeTimeNet((1, 1, 1), theta=(0.2, 0.2), window=0.2, dt=1e-3)
    v = 0.7
    run = simulate(
        net, (jnp.array([[w_in]]), jnp.array([[w_out]])), jnp.zeros((1, 1)), released_grades=(jnp.full((1, 1), v),)
    )
    assert tuple(int(c[0, 0]) for c in run.counts) == counts
    np.testing.assert_allclose([float(g[0, 0]) for g in run.grades], [v, w_out * v], rtol=1e-6)


def test_released_grades_put_v_on_the_first_spike_only(times):
    net, w = NET, _weights(False)
    v = perturbations(jax.random.key(5), net, times.shape[0])
    run = simulate(net, w, times, released_grades=v)
    assert float(jnp.max(run.counts[0])) >= 3  # several spikes, yet the first layer's grade is v once
    np.testing.assert_array_equal(np.asarray(run.grades[0]), np.where(run.counts[0] > 0, v[0], 0.0))
    plain = simulate(net, w, times)
    for a, b in zip(run.counts + run.time_sums, plain.counts + plain.time_sums):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the grades do not change the run


def test_the_rule_learns_its_feedback_from_the_released_grades(times):
    net, w = NET, _weights(False)
    rule = sfdfa(spike_count_loss(net), grades="released", feedback_rate=0.5)
    key = jax.random.key(6)
    state = rule.init(w)
    (_, aux), _, new = jax.jit(rule.apply)(state, w, times, LABELS, key)
    v = perturbations(key, net, times.shape[0])
    run = simulate(net, w, times, released_grades=v)
    for g, want in zip(aux.grades, run.grades):
        np.testing.assert_allclose(np.asarray(g), np.asarray(want), rtol=1e-6)
    for m, v_l, n_l in zip(new.matrices, v, run.counts[:-1]):  # from B = 0: 0.5 * the mean over firing examples
        active = np.asarray(n_l > 0, np.float64)
        estimate = np.einsum("bi,bc->ic", active * np.asarray(v_l), np.asarray(run.grades[-1]))
        want = 0.5 * estimate / np.maximum(active.sum(0), 1.0)[:, None]
        np.testing.assert_allclose(np.asarray(m), want, rtol=1e-5, atol=1e-7)


def _random_state(rule, w):
    state = rule.init(w, key=jax.random.key(19))
    return state._replace(
        matrices=tuple(jax.random.normal(jax.random.key(20 + i), m.shape) for i, m in enumerate(state.matrices))
    )


def test_feedback_first_uses_the_updated_matrices(times):
    net, w = NET, _weights(False)
    loss_fn, key = spike_count_loss(net), jax.random.key(8)
    first = sfdfa(loss_fn, feedback_rate=0.3)
    state = _random_state(first, w)
    _, _, updated = first.apply(state, w, times, LABELS, key)
    _, g_ff, after_ff = sfdfa(loss_fn, feedback_rate=0.3, order="feedback_first").apply(state, w, times, LABELS, key)
    _, g_new, _ = first.apply(updated, w, times, LABELS, key)  # errors from the updated B, same perturbations
    for a, b in zip(after_ff.matrices, updated.matrices):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(g_ff, g_new):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-8)
    _, g_old, _ = first.apply(state, w, times, LABELS, key)
    assert not np.allclose(np.asarray(g_ff[0]), np.asarray(g_old[0]))  # the option changes something


@pytest.mark.parametrize("feedback", ["sfdfa", "dfa"])
def test_rate_hidden_error_ignores_the_feedback(times, feedback):
    """The released hidden error is the regulariser alone: the same grads as the paper's rule with B = 0."""
    net, w, key = NET, _weights(False), jax.random.key(9)
    loss_fn = spike_count_loss(net)
    released = sfdfa(loss_fn, feedback=feedback, hidden_error="rate")
    state = _random_state(released, w)
    _, g_rate, _ = released.apply(state, w, times, LABELS, key)
    zero = state._replace(matrices=tuple(jnp.zeros_like(m) for m in state.matrices))
    _, g_zero, _ = sfdfa(loss_fn, feedback=feedback).apply(zero, w, times, LABELS, key)
    for a, b in zip(g_rate, g_zero):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-9)
    _, g_paper, _ = sfdfa(loss_fn, feedback=feedback).apply(state, w, times, LABELS, key)
    assert not np.allclose(np.asarray(g_rate[0]), np.asarray(g_paper[0]))


def test_presets_hold_the_released_settings():
    fm = sfdfa_preset("fashion_mnist")
    assert fm.net.sizes == (784, 400, 400, 10) and fm.epochs == 50
    assert fm.rule_options("sfdfa") == {"regularizer": 0.3, "rate_target": 0.4, "feedback_rate": 1e-4}
    assert fm.rule_options("dfa") == {"regularizer": 1.0, "rate_target": 0.4}
    shd = sfdfa_preset("shd")
    assert (shd.net.tau_s, shd.net.theta, shd.net.window, shd.learning_rate) == (0.1, (1.0, 1.2), 1.0, 1e-3)
    assert sfdfa_preset("emnist").rule_options("dfa")["regularizer"] == 4.0
    for preset in SFDFA_PRESETS.values():
        preset.net.check()
        sfdfa(spike_count_loss(preset.net), **preset.rule_options())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: sfdfa(spike_count_loss(NET), grades="jvp"), "sfdfa: grades must be one of 'exact', 'released'"),
        (lambda: sfdfa(spike_count_loss(NET), order="later"), "sfdfa: order must be one of"),
        (lambda: sfdfa(spike_count_loss(NET), hidden_error="bp"), "sfdfa: hidden_error must be one of"),
        (lambda: sfdfa_preset("cifar10"), "sfdfa_preset: unknown data set 'cifar10'"),
        (lambda: sfdfa_preset("mnist").rule_options("fa"), "rule_options: feedback must be"),
        (
            lambda: simulate(NET, _weights(False), jnp.zeros((2, 20)), released_grades=(jnp.zeros((2, 12)),)),
            "simulate: expected 2 released_grades arrays",
        ),
        (
            lambda: simulate(NET, _weights(False), jnp.zeros((2, 20)), released_grades=(jnp.zeros(12), jnp.zeros(8))),
            "simulate: released_grades[0] must have shape [B, N] = (2, 12)",
        ),
    ],
)
def test_bad_options_name_themselves(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)
