"""SFDFA on the exact-time spiking network.

Eligibility = jax.grad, grades = jax.jvp, feedback -> Jacobian, flat memory.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from snnjax.spike_time import SpikeTimeNet, crossing, init_weights, simulate, ttfs

from snnjax.rules import sfdfa as _sfdfa
from snnjax.rules import spike_count_loss
from snnjax.rules import spike_time_bp as _spike_time_bp
from snnjax.rules.sfdfa import count_targets, perturbations

NET = SpikeTimeNet((20, 12, 8, 3), theta=(0.2, 0.2, 0.7), window=0.1, dt=2e-3)
LABELS = jnp.array([0, 1, 2, 0, 1, 2])


def _weights(max_spikes):
    """Excitatory enough that every layer fires: once per neuron (max_spikes=1) or 5-25 times."""
    w = init_weights(jax.random.key(1), NET)
    shift = (3.0, 6.0) if max_spikes == 1 else (1.2, 1.5)
    return (jnp.abs(w[0]) * 2.0 + 0.5, w[1] + shift[0], w[2] + shift[1])


@pytest.fixture(scope="module")
def times():
    images = jax.random.randint(jax.random.key(0), (6, 20), 0, 256).astype(jnp.uint8)
    return ttfs(images, window=0.05)


def _net(max_spikes):
    return NET._replace(max_spikes=max_spikes)


def sfdfa(net, **options):
    return _sfdfa(spike_count_loss(net), **options)


def spike_time_bp(net, **options):
    return _spike_time_bp(spike_count_loss(net), **options)


def test_ttfs_and_closed_form_crossing():
    t = ttfs(jnp.array([[255, 0, 128]], jnp.uint8), window=0.1)
    np.testing.assert_allclose(np.asarray(t), [[0.0, np.inf, 0.1 * (1 - 128 / 255)]], rtol=1e-6)
    # One input spike at 0 with weight w: u(t) = w (e^{-t/tau} - e^{-t/tau_s}); find the crossing by bisection.
    net, w = SpikeTimeNet((1, 1), theta=(0.2,), window=0.2, dt=1e-3), 4.0
    threshold, tau = net.thresholds[0], net.tau

    def u(t):
        return w * (np.exp(-t / tau) - np.exp(-t / net.tau_s))

    lo, hi = 0.0, tau * np.log(2.0)  # the kernel peaks at tau ln 2
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if u(mid) >= threshold else (mid, hi)
    step = int(hi // net.dt)
    c = crossing(net, 0, jnp.array([[w]]), jnp.array([[w]]), jnp.zeros((1, 1)), step)
    assert bool(c.exact[0, 0])
    np.testing.assert_allclose(tau * np.log(float(c.x[0, 0])), hi, rtol=1e-5)
    # and no crossing in the step before
    assert not bool(crossing(net, 0, jnp.array([[w]]), jnp.array([[w]]), jnp.zeros((1, 1)), step - 1).spiked[0, 0])


@pytest.mark.parametrize("max_spikes", [1, 30], ids=["single-spike", "multi-spike"])
def test_online_eligibility_equals_grad_of_spike_times(times, max_spikes):
    net, w = _net(max_spikes), _weights(max_spikes)
    rule = sfdfa(net, fix=False, chunk=5)
    state = rule.init(w)
    state = state._replace(
        matrices=tuple(jax.random.normal(jax.random.key(5 + i), m.shape) for i, m in enumerate(state.matrices))
    )
    (loss, aux), grads, _ = jax.jit(rule.apply)(state, w, times, LABELS, jax.random.key(3))
    counts = simulate(net, w, times).counts
    if max_spikes > 1:
        assert all(float(jnp.max(c)) >= 3 for c in counts), "the multi-spike case must have several spikes per neuron"
    assert all(float(jnp.sum(c)) > 0 for c in counts)
    delta = count_targets(LABELS, 3) - counts[-1]
    errors = [
        delta @ m.T + 0.3 * (0.4 - jnp.mean(c, axis=0, keepdims=True)) for m, c in zip(state.matrices, counts)
    ] + [delta]
    for l in range(3):

        def signal(w_l, l=l):
            ws = w[:l] + (w_l,) + w[l + 1 :]
            return jnp.mean(jnp.sum(errors[l] * simulate(net, ws, times).time_sums[l], axis=1))

        expected = jax.grad(signal)(w[l])
        assert float(jnp.max(jnp.abs(expected))) > 1e-4
        np.testing.assert_allclose(
            np.asarray(grads[l]), np.asarray(expected), rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(expected)))
        )


def test_spike_grades_equal_jvp(times):
    net, w = _net(30), _weights(30)
    rule = sfdfa(net, fix=False)
    key = jax.random.key(7)
    (_, aux), _, _ = jax.jit(rule.apply)(rule.init(w), w, times, LABELS, key)
    v = perturbations(key, net, times.shape[0])
    _, expected = jax.jvp(lambda s: simulate(net, w, times, s).time_sums, (tuple(jnp.zeros_like(x) for x in v),), (v,))
    for l in (1, 2):
        scale = float(jnp.max(jnp.abs(expected[l])))
        assert scale > 1e-2
        np.testing.assert_allclose(np.asarray(aux.grades[l]), np.asarray(expected[l]), atol=1e-5 * scale)
    assert float(jnp.max(jnp.abs(aux.grades[0]))) == 0.0  # the input layer's times are not perturbed


def test_critical_point_fix_changes_the_gradient_and_keeps_it_finite(times):
    net, w = _net(30), _weights(30)
    key = jax.random.key(3)
    outs = {fix: jax.jit(sfdfa(net, fix=fix).apply)(sfdfa(net).init(w), w, times, LABELS, key) for fix in (True, False)}
    g_fix, g_exact = outs[True][1], outs[False][1]
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in g_fix)
    assert not np.allclose(np.asarray(g_fix[-1]), np.asarray(g_exact[-1]))


def test_chunk_size_does_not_change_the_result(times):
    net, w = _net(30), _weights(30)
    key = jax.random.key(3)
    a = jax.jit(sfdfa(net, chunk=1).apply)(sfdfa(net).init(w), w, times, LABELS, key)
    b = jax.jit(sfdfa(net, chunk=256).apply)(sfdfa(net).init(w), w, times, LABELS, key)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)


def test_output_layer_matches_backprop_through_spike_times(times):
    # The output layer's local gradient is its exact gradient: SFDFA (fix off) and BP agree there.
    net, w = _net(30), _weights(30)
    (_, _), g_bp = spike_time_bp(net)(w, times, LABELS)
    (_, _), g_online, _ = jax.jit(sfdfa(net, fix=False).apply)(sfdfa(net).init(w), w, times, LABELS, jax.random.key(0))
    scale = float(jnp.max(jnp.abs(g_bp[-1])))
    np.testing.assert_allclose(np.asarray(g_online[-1]), np.asarray(g_bp[-1]), atol=1e-4 * scale)
    assert not np.allclose(np.asarray(g_online[0]), np.asarray(g_bp[0]), atol=1e-3 * float(jnp.max(jnp.abs(g_bp[0]))))


def test_learned_feedback_converges_to_output_jacobian(times):
    net, w = _net(30), _weights(30)
    rule = sfdfa(net, fix=False, feedback_rate=0.02)
    apply = jax.jit(rule.apply)
    # The target: per example, d(sum of output spike times) / d(shift of hidden neuron i), averaged
    # over the examples where neuron i fired (the examples SFDFA learns from).
    batch = times.shape[0]
    counts = simulate(net, w, times).counts
    targets = []
    for l, n in enumerate(net.sizes[1:-1]):

        def out(shift, l=l):
            shifts = [jnp.zeros((batch, m)) for m in net.sizes[1:-1]]
            shifts[l] = shift
            return simulate(net, w, times, shifts).time_sums[-1]

        jac = jax.jacfwd(out)(jnp.zeros((batch, n)))  # [B, C, B, N]
        per_example = jnp.einsum("bcbi->bic", jac)
        active = (counts[l] > 0).astype(jnp.float32)[:, :, None]
        targets.append(jnp.sum(active * per_example, axis=0) / jnp.maximum(jnp.sum(active, axis=0), 1.0))

    state = rule.init(w)
    key = jax.random.key(11)
    averages = [jnp.zeros_like(m) for m in state.matrices]
    for i in range(600):
        key, sub = jax.random.split(key)
        _, _, state = apply(state, w, times, LABELS, sub)
        if i >= 300:  # average the last iterates: the estimate's own noise shrinks, its bias would not
            averages = [avg + m / 300 for avg, m in zip(averages, state.matrices)]
    for b, target in zip(averages, targets):
        rel = float(jnp.linalg.norm(b - target) / jnp.linalg.norm(target))
        assert rel < 0.2, rel


def test_memory_is_flat_in_the_window(times):
    def temp_bytes(window):
        net = _net(30)._replace(window=window)
        w = _weights(30)
        rule = sfdfa(net)
        compiled = jax.jit(rule.apply).lower(rule.init(w), w, times, LABELS, jax.random.key(0)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    short, long = temp_bytes(0.05), temp_bytes(0.8)
    assert long <= 1.05 * short + 4096, (short, long)


def test_bad_input():
    net = _net(30)
    w = _weights(30)
    with pytest.raises(ValueError, match="key"):
        sfdfa(net, feedback="dfa").init(w)
    with pytest.raises(ValueError, match="spike_count_loss"):
        _sfdfa(net)
    with pytest.raises(ValueError, match="feedback"):
        sfdfa(net, feedback="fa")
    with pytest.raises(ValueError, match="hidden layer"):
        sfdfa(SpikeTimeNet((4, 2), theta=(0.7,)))
    rule = sfdfa(net)
    with pytest.raises(ValueError, match="key"):
        rule.apply(rule.init(w), w, jnp.zeros((6, 20)), LABELS)
    with pytest.raises(ValueError, match="shapes"):
        rule.apply(rule.init(w), w[:2], jnp.zeros((6, 20)), LABELS, jax.random.key(0))
    with pytest.raises(ValueError, match="40 tau_s"):
        SpikeTimeNet((4, 2), theta=(0.7,), window=10.0).check()
    with pytest.raises(ValueError, match="theta"):
        SpikeTimeNet((4, 3, 2), theta=(0.7,)).check()


def test_grid_diagnostics_count_what_they_say():
    # A strong input at t = 0 on a coarse grid: capped at max_spikes = 2 (the dropped crossings counted).
    net = SpikeTimeNet((1, 1, 1), theta=(0.2, 0.2), window=0.1, dt=1e-3, max_spikes=2)
    run = simulate(net, (jnp.array([[40.0]]), jnp.array([[40.0]])), jnp.zeros((1, 1)))
    assert float(run.counts[0][0, 0]) == 2.0
    assert float(run.diagnostics.capped[0]) > 0
    # A second crossing inside one 50 ms step is a violation; a neuron above threshold at a
    # step's start fires there, forced, with no exact crossing.
    coarse = SpikeTimeNet((1, 1), theta=(0.2,), window=0.1, dt=0.05)
    c = crossing(coarse, 0, jnp.array([[40.0]]), jnp.array([[40.0]]), jnp.zeros((1, 1)), 0)
    assert bool(c.exact[0, 0]) and bool(c.violation[0, 0])
    c = crossing(coarse, 0, jnp.array([[1.0]]), jnp.array([[5.0]]), jnp.zeros((1, 1)), 1)
    assert bool(c.forced[0, 0]) and bool(c.spiked[0, 0]) and not bool(c.exact[0, 0])
    assert float(c.x[0, 0]) == pytest.approx(np.exp(0.05 / coarse.tau))
