"""The exact-time network against an independent event-driven simulator, in float64.

``snnjax.spike_time.simulate`` runs the SFDFA neuron on a time grid with growing exponentials in
float32. The simulator here is written separately, from the model's definition in decaying form,

    u_i(t) = sum_j w_ij sum_z [exp(-(t - t_j)/tau) - exp(-(t - t_j)/tau_s)] - theta sum_k exp(-(t - t_i^k)/tau),

with the grid's documented semantics (a spike emitted inside step n reaches the next layer at the
start of step n + 1 with its exact kernel; a neuron already above threshold at a step's start fires
there; one spike per neuron per step; at most ``max_spikes``), and closed-form spike times
between deliveries (with y = exp(-t / tau), u = A y - C y^2 is a quadratic in y), one neuron and
one step at a time in NumPy float64. It checks the spike counts, the spike times, and the exact
(``fix=False``) eligibility traces against finite differences of its own spike times.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from snnjax.spike_time import SpikeTimeNet, init_weights, simulate, ttfs


def event_driven(net: SpikeTimeNet, weights, times) -> list[list[list[list[float]]]]:
    """Spike times ``[layer][example][neuron] -> list`` of the network, float64, one event at a time."""
    dt, tau_s = net.dt, net.tau_s
    tau = 2.0 * tau_s
    weights = [np.asarray(w, np.float64) for w in weights]
    inputs = [[[float(t)] if np.isfinite(t) else [] for t in row] for row in np.asarray(times, np.float64)]
    layers = []
    for l, w in enumerate(weights):
        theta = net.theta[l] / tau
        out = []
        for spikes_in in inputs:
            # every input spike with the step at whose start it arrives
            arrivals = [(int(np.floor(t / dt)) + 1, j, t) for j, ts in enumerate(spikes_in) for t in ts]
            row = []
            for i in range(w.shape[1]):
                emitted = []
                for n in range(net.steps):
                    start, end = n * dt, (n + 1) * dt
                    known = [(j, t) for step, j, t in arrivals if step <= n]
                    a = sum(w[j, i] * np.exp(t / tau) for j, t in known) - theta * sum(np.exp(t / tau) for t in emitted)
                    c = sum(w[j, i] * np.exp(t / tau_s) for j, t in known)

                    def u(t, a=a, c=c):
                        y = np.exp(-t / tau)
                        return a * y - c * y * y

                    if len(emitted) >= net.max_spikes:
                        break
                    if u(start) >= theta:  # above threshold when the step begins: fire there
                        emitted.append(start)
                        continue
                    disc = a * a - 4.0 * c * theta
                    if c <= 0 or disc <= 0:
                        continue
                    y = (a + np.sqrt(disc)) / (2.0 * c)  # the larger root: the upward crossing
                    if y > 0:
                        t = -tau * np.log(y)
                        if start <= t < end:
                            emitted.append(t)
                row.append(emitted)
            out.append(row)
        layers.append(out)
        inputs = out
    return layers


def _network(seed):
    net = SpikeTimeNet((12, 8, 3), theta=(0.2, 0.7), window=0.2, dt=4e-3, max_spikes=30)
    w = init_weights(jax.random.key(seed), net)
    w = (jnp.abs(w[0]) * 2.0 + 0.3, w[1] + 4.0)  # both layers fire, 7-22 times per neuron, some spikes forced
    images = jax.random.randint(jax.random.key(100 + seed), (3, 12), 0, 256).astype(jnp.uint8)
    return net, w, ttfs(images, window=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_simulation_equals_the_event_driven_one(seed):
    net, w, times = _network(seed)
    run = simulate(net, w, times)
    events = event_driven(net, w, times)
    assert float(jnp.sum(run.diagnostics.violations)) == 0  # no second crossing inside a step here
    for l, layer in enumerate(events):
        counts = np.array([[len(ts) for ts in row] for row in layer], np.float64)
        sums = np.array([[sum(ts) for ts in row] for row in layer], np.float64)
        assert counts.sum() > 0 and counts.max() >= 2, "both layers fire, some neurons several times"
        np.testing.assert_array_equal(np.asarray(run.counts[l]), counts)
        # float32 growing exponentials against float64: times agree to a few ulps of the window
        np.testing.assert_allclose(np.asarray(run.time_sums[l], np.float64), sums, atol=2e-6 * max(1.0, counts.max()))


def test_exact_eligibility_traces_are_the_derivatives_of_the_event_driven_spike_times():
    """E_ij = d(sum_k t_ik) / d w_ji with everything before the layer fixed; central differences of the
    float64 simulator, at synapses that carry spikes, with no spike appearing or vanishing."""
    net, w, times = _network(0)
    run = simulate(net, w, times, fix=False, eligibility=True)
    rng = np.random.default_rng(0)
    h = 1e-6
    checked = 0
    for l in range(2):
        elig = np.asarray(run.eligibility[l], np.float64)  # [B, N_l, N_in]
        candidates = np.argwhere(np.abs(elig) > 1e-3)
        for b, i, j in candidates[rng.permutation(len(candidates))[:6]]:
            sides = []
            for sign in (1.0, -1.0):
                ws = [np.asarray(x, np.float64).copy() for x in w]
                ws[l][j, i] += sign * h
                sides.append(event_driven(net, ws, times)[l][b][i])
            if len(sides[0]) != len(sides[1]):
                continue  # a spike appears or vanishes: no derivative there
            derivative = (sum(sides[0]) - sum(sides[1])) / (2 * h)
            np.testing.assert_allclose(elig[b, i, j], derivative, rtol=2e-3, atol=1e-5)
            checked += 1
    assert checked >= 8
