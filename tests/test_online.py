"""Online DFA, FDFA and FG-A on a stepped network: eligibility traces reproduce the offline rules; memory flat in T."""

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

import snnjax
import snnjax.nn as snn
from snnjax import rules
from snnjax.rules.forward_mode import draw

KEY = jax.random.key(0)
SURROGATE = snnjax.surrogates.fast_sigmoid(slope=5.0)


def loss_t(y, labels):
    return optax.softmax_cross_entropy_with_integer_labels(y, labels)


def model(hidden="lif", kappa=0.9, seed=0):
    """An NNX network of (Linear, neuron) pairs; the online rules take it through snnjax.nn.network."""
    rngs = nnx.Rngs(seed)
    second = (
        snn.ALIF(5, alpha=0.8, adaptation=0.3, surrogate=SURROGATE)
        if hidden == "alif"
        else snn.CubaLIF(5, alpha=0.7, beta=0.8, surrogate=SURROGATE)
    )
    return snn.Sequential(
        nnx.Linear(4, 6, rngs=rngs),
        snn.LIF(6, beta=0.8, surrogate=SURROGATE),
        nnx.Linear(6, 5, rngs=rngs),
        second,
        nnx.Linear(5, 3, rngs=rngs),
        snn.LeakyIntegrator(3, kappa=kappa),
    )


def stepped(hidden="lif", kappa=0.9, last=None):
    net = model(hidden, kappa)
    return rules.per_step_loss(snn.network(net), loss_t, last=last), nnx.state(net, nnx.Param)


def data(steps=15, batch=4):
    xs = (jax.random.uniform(KEY, (steps, batch, 4)) < 0.5).astype(jnp.float32) * 2.0
    return xs, jnp.arange(batch) % 3


def _close(a, b, **tol):
    return all(jax.tree.leaves(jax.tree.map(lambda u, v: bool(jnp.allclose(u, v, **tol)), a, b)))


@pytest.mark.parametrize("hidden", ["alif", "cuba"])
def test_online_dfa_equals_offline_dfa_when_the_readout_keeps_no_memory(hidden):
    loss_fn, params = stepped(hidden, kappa=0.0)
    xs, labels = data()
    online, offline = rules.online_dfa(loss_fn), rules.dfa(loss_fn)
    state = online.init(params, xs, labels, key=KEY)
    assert (
        [b.shape for b in state.matrices]
        == [b.shape for b in offline.init(params, xs, labels, key=KEY).matrices]
        == [(6, 3), (5, 3)]
    )
    (loss_on, y_on), g_on, _ = jax.jit(online.apply)(state, params, xs, labels)
    (loss_off, y_off), g_off, _ = jax.jit(offline.apply)(state, params, xs, labels)
    assert jnp.allclose(loss_on, loss_off, rtol=1e-6) and jnp.allclose(y_on, y_off, atol=1e-6)
    assert float(jnp.abs(g_off["layers"][0]["kernel"][...]).sum()) > 0  # the first layer learns
    assert _close(g_on, g_off, rtol=2e-4, atol=1e-6)


def test_online_dfa_differs_from_offline_dfa_through_a_readout_with_memory():
    """Offline DFA's error at the readout's input carries later steps' errors; online's cannot (docstring)."""
    loss_fn, params = stepped("alif", kappa=0.9)
    xs, labels = data()
    online, offline = rules.online_dfa(loss_fn), rules.dfa(loss_fn)
    state = online.init(params, xs, labels, key=KEY)
    g_on = jax.jit(online.apply)(state, params, xs, labels)[1]
    g_off = jax.jit(offline.apply)(state, params, xs, labels)[1]
    assert _close(g_on["layers"][4], g_off["layers"][4], rtol=2e-4, atol=1e-6)  # the readout's weights: exact in both
    assert not _close(g_on["layers"][0], g_off["layers"][0], rtol=1e-2, atol=1e-6)


def test_online_fdfa_equals_offline_fdfa_with_the_same_noise():
    loss_fn, params = stepped("alif", kappa=0.0)
    xs, labels = data()
    online, offline = rules.online_dfa(loss_fn, feedback="fdfa", rate=0.5), rules.fdfa(loss_fn, rate=0.5)
    state = online.init(params, xs, labels)
    state = state._replace(
        matrices=tuple(jax.random.normal(jax.random.key(i), b.shape) for i, b in enumerate(state.matrices))
    )
    _, g_on, new_on = jax.jit(online.apply)(state, params, xs, labels, key=KEY)
    _, g_off, new_off = jax.jit(offline.apply)(state, params, xs, labels, key=KEY)
    for a, b in zip(new_on.matrices, new_off.matrices):
        assert jnp.allclose(a, b, rtol=1e-4, atol=1e-5)
    # online: the gradient uses the matrices the call started with; offline: the updated ones.
    g_off_start = rules.dfa(loss_fn).apply(state, params, xs, labels)[1]
    assert _close(g_on, g_off_start, rtol=2e-4, atol=1e-6)
    assert not _close(g_off, g_off_start, rtol=1e-3, atol=1e-6)


def test_online_fdfa_update_matches_the_jvp_with_the_same_noise():
    """B <- B - rate (B - mean_{t,b} u_t^T y'_t), u drawn per layer l and step t from fold_in(fold_in(key, l), t)."""
    loss_fn, params = stepped("alif")
    xs, labels = data()
    rule = rules.online_dfa(loss_fn, feedback="fdfa", rate=0.5)
    state = rule.init(params, xs, labels)
    state = state._replace(
        matrices=tuple(jax.random.normal(jax.random.key(i), b.shape) for i, b in enumerate(state.matrices))
    )
    _, _, new_state = jax.jit(rule.apply)(state, params, xs, labels, key=KEY)
    steps, batch = xs.shape[:2]
    noise = [
        jnp.stack([draw(jax.random.fold_in(jax.random.fold_in(KEY, l), t), (batch, n)) for t in range(steps)])
        for l, n in enumerate((6, 5))
    ]
    net = loss_fn.network(params)
    (d1, lif), (d2, alif), (d3, readout) = zip(net.layers[0::2], net.layers[1::2])

    def output(eps):
        def step(states, inputs):
            x, e1, e2 = inputs
            s1, h1 = lif.step(states[0], d1(x))
            s2, h2 = alif.step(states[1], d2(h1 + e1))
            s3, y = readout.step(states[2], d3(h2 + e2))
            return (s1, s2, s3), y

        init = (lif.init((batch, 6)), alif.init((batch, 5)), readout.init((batch, 3)))
        return jax.lax.scan(step, init, (xs, *eps))[1]

    _, dy = jax.jvp(output, ([jnp.zeros_like(u) for u in noise],), (noise,))
    for b_old, b_new, u in zip(state.matrices, new_state.matrices, noise):
        expected = b_old - 0.5 * (b_old - jnp.einsum("tbn,tbc->nc", u, dy) / (steps * batch))
        assert jnp.allclose(b_new, expected, rtol=1e-4, atol=1e-5)


def test_online_memory_does_not_grow_with_time():
    loss_fn, params = stepped("alif")
    rule = rules.online_dfa(loss_fn)
    state = rule.init(params, *data(), key=KEY)

    def temp_bytes(steps):
        xs, labels = data(steps)
        return jax.jit(rule.apply).lower(state, params, xs, labels).compile().memory_analysis().temp_size_in_bytes

    short, long = temp_bytes(20), temp_bytes(400)
    assert long < 1.2 * short + 4 * 400 * 4 * 3, (short, long)  # at most the [T, B, C] readout output grows


def test_online_rules_refuse_what_they_cannot_trace():
    xs, labels = data()
    rngs = nnx.Rngs(0)

    def init(net):
        loss_fn = rules.per_step_loss(snn.network(net), loss_t)
        return rules.online_dfa(loss_fn).init(nnx.state(net, nnx.Param), xs, labels, key=KEY)

    with pytest.raises(ValueError, match="pairs"):
        init(snn.Sequential(nnx.Linear(4, 3, rngs=rngs), snn.LIF(3)))
    with pytest.raises(ValueError, match="recurrent"):
        init(
            snn.Sequential(
                nnx.Linear(4, 3, rngs=rngs),
                snn.LIF(3, recurrent=True, rngs=rngs),
                nnx.Linear(3, 2, rngs=rngs),
                snn.LeakyIntegrator(2),
            )
        )
    with pytest.raises(ValueError, match="neuron layer 0 .*depends on the parameters"):
        init(
            snn.Sequential(
                nnx.Linear(4, 3, rngs=rngs),
                snn.LIF(3, trainable_decay=True),
                nnx.Linear(3, 2, rngs=rngs),
                snn.LeakyIntegrator(2),
            )
        )
    with pytest.raises(ValueError, match="needs init.*key"):
        rules.online_dfa(stepped()[0]).init(stepped()[1], xs, labels)
    with pytest.raises(ValueError, match="per_step_loss"):
        rules.online_dfa(lambda p, xs, y: (jnp.sum(xs), None)).init({}, xs, labels, key=KEY)
    with pytest.raises(ValueError, match="nnx.Linear nor a neuron layer"):
        snn.network(snn.Sequential(nnx.Linear(4, 3, rngs=rngs), jax.nn.relu))


# --- FG-A online ---------------------------------------------------------------------------


@pytest.mark.parametrize("last", [None, 4])
def test_online_fg_a_equals_the_offline_estimate_with_the_same_noise(last):
    """The whole sequence's loss, or the last 4 steps' (a readout window)."""
    loss_fn, params = stepped("alif", last=last)
    xs, labels = data()
    rule = rules.online_activity_forward_gradient(loss_fn)
    (loss, _), grads = jax.jit(lambda p, x, y: rule(p, x, y, key=KEY))(params, xs, labels)
    # By hand: the same per-step noise on every layer's input current, the network run as a whole.
    steps, batch = xs.shape[:2]
    k = jax.random.split(KEY, 1)[0]
    noise = [
        jnp.stack([draw(jax.random.fold_in(jax.random.fold_in(k, l), t), (batch, n)) for t in range(steps)])
        for l, n in enumerate((6, 5, 3))
    ]
    net = loss_fn.network(params)
    pairs = list(zip(net.layers[0::2], net.layers[1::2]))

    def per_example(eps):
        def step(states, inputs):
            x, *e = inputs
            new, layer_inputs = [], []
            for (synapse, neuron), s, u in zip(pairs, states, e):
                layer_inputs.append(x)
                s, x = neuron.step(s, synapse(x) + u)
                new.append(s)
            return tuple(new), (x, layer_inputs)

        init = tuple(neuron.init((batch, synapse.kernel.shape[1])) for synapse, neuron in pairs)
        y, layer_inputs = jax.lax.scan(step, init, (xs, *eps))[1]
        weights = jnp.full((steps, 1), 1 / steps) if last is None else (jnp.arange(steps) >= steps - 4)[:, None] / 4
        return jnp.sum(weights * jax.vmap(loss_t, in_axes=(0, None))(y, labels), axis=0), layer_inputs  # [B]

    losses, d, inputs = jax.jvp(per_example, ([jnp.zeros_like(u) for u in noise],), (noise,), has_aux=True)
    for l, (i, u) in enumerate(zip((0, 2, 4), noise)):
        expected = jnp.einsum("tbi,tbj->ij", inputs[l], d[None, :, None] * u) / batch
        assert jnp.allclose(grads["layers"][i]["kernel"][...], expected, rtol=1e-4, atol=1e-6), l
        assert jnp.allclose(grads["layers"][i]["bias"][...], jnp.einsum("tbj,b->j", u, d) / batch, rtol=1e-4, atol=1e-6)
    assert jnp.allclose(loss, jnp.mean(losses), rtol=1e-6)


def test_online_fg_a_is_unbiased():
    loss_fn, params = stepped("cuba")
    xs, labels = data(steps=10)
    rule = rules.online_activity_forward_gradient(loss_fn, num_directions=8)
    c = snnjax.compare_gradients(rule, params, xs, labels, key=KEY, draws=64)
    # 512 directions in all: each layer's mean error should be noise (bias within 2.5x what noise alone
    # gives, most 95 % intervals covering the true gradient); a biased rule fails both.
    assert c.names[-1] == "layer mean" and all(c.bias[:-1] < 2.5 * c.bias_if_unbiased[:-1]), c.table()
    assert c.coverage[-1] > 0.85, c.table()


def test_online_fg_a_memory_does_not_grow_with_time():
    loss_fn, params = stepped("alif")
    rule = rules.online_activity_forward_gradient(loss_fn)

    def temp_bytes(steps):
        xs, labels = data(steps)
        return (
            jax.jit(lambda p, x, y: rule(p, x, y, key=KEY))
            .lower(params, xs, labels)
            .compile()
            .memory_analysis()
            .temp_size_in_bytes
        )

    short, long = temp_bytes(20), temp_bytes(400)
    assert long < 1.2 * short + 4 * 400 * 4 * 3, (short, long)
