"""Online DFA and FDFA: eligibility traces reproduce the offline rules; memory flat in T."""

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

import snnjax
import snnjax.nn as snn
from snnjax import rules
from snnjax.rules.feedback import _Perturb
from snnjax.rules.forward_mode import draw

KEY = jax.random.key(0)
SURROGATE = snnjax.surrogates.fast_sigmoid(slope=5.0)


def loss_t(y, labels):
    return optax.softmax_cross_entropy_with_integer_labels(y, labels)


def network(hidden="lif", seed=0):
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
        snn.LeakyIntegrator(3, kappa=0.9),
    )


def offline_model(net):
    graphdef, _, rest = nnx.split(net, nnx.Param, ...)

    def model(p, xs, labels, route):
        y = nnx.merge(graphdef, p, rest)(xs, route=route)  # [T, B, C]
        return jnp.mean(jax.vmap(loss_t, in_axes=(0, None))(y, labels), axis=0), y

    return model


def data(steps=15, batch=4):
    xs = (jax.random.uniform(KEY, (steps, batch, 4)) < 0.5).astype(jnp.float32) * 2.0
    return xs, jnp.arange(batch) % 3


def _close(a, b, **tol):
    return all(jax.tree.leaves(jax.tree.map(lambda u, v: bool(jnp.allclose(u, v, **tol)), a, b)))


@pytest.mark.parametrize("hidden", ["alif", "cuba"])
def test_online_dfa_equals_offline_dfa(hidden):
    net = network(hidden)
    params = nnx.state(net, nnx.Param)
    xs, labels = data()
    online = rules.online_dfa(net, loss_t, key=KEY)
    offline = rules.dfa(offline_model(net), (xs, labels), key=KEY)
    state = online.init(params)
    assert [b.shape for b in state.matrices] == [b.shape for b in offline.init(params).matrices] == [(6, 3), (5, 3)]
    (loss_on, y_on), g_on, _ = jax.jit(online.apply)(state, params, xs, labels)
    (loss_off, y_off), g_off, _ = jax.jit(offline.apply)(state, params, xs, labels)
    assert jnp.allclose(loss_on, loss_off, rtol=1e-6) and jnp.allclose(y_on, y_off, atol=1e-6)
    assert float(jnp.abs(g_off["layers"][0]["kernel"][...]).sum()) > 0  # the first layer learns
    assert _close(g_on, g_off, rtol=2e-4, atol=1e-6)


def test_online_fdfa_update_matches_the_offline_jvp_with_the_same_noise():
    net = network("alif")
    params = nnx.state(net, nnx.Param)
    xs, labels = data()
    rule = rules.online_dfa(net, loss_t, feedback="fdfa", rate=0.5)
    state = rule.init(params)
    state = state._replace(
        matrices=tuple(jax.random.normal(jax.random.key(i), b.shape) for i, b in enumerate(state.matrices))
    )
    _, grads, new_state = jax.jit(rule.apply)(state, params, xs, labels, key=KEY)
    # The same noise, drawn per layer and step as the rule does, through the offline network.
    model = offline_model(net)
    steps, batch = xs.shape[:2]
    noise = [
        jnp.stack([draw(jax.random.fold_in(jax.random.fold_in(KEY, l), t), (batch, n)) for t in range(steps)])
        for l, n in enumerate((6, 5))
    ]

    def output(eps):
        route = _Perturb(eps)
        model(params, xs, labels, route=route)
        return route.outputs[0]

    _, dy = jax.jvp(output, ([jnp.zeros_like(u) for u in noise],), (noise,))
    for b_old, b_new, u in zip(state.matrices, new_state.matrices, noise):
        expected = b_old - 0.5 * (b_old - jnp.einsum("tbn,tbc->nc", u, dy) / (steps * batch))
        assert jnp.allclose(b_new, expected, rtol=1e-4, atol=1e-5)
    # The gradient uses the matrices the call started with: offline DFA with them.
    offline = rules.dfa(model, (xs, labels), key=KEY)
    assert _close(grads, offline.apply(state, params, xs, labels)[1], rtol=2e-4, atol=1e-6)


def test_online_memory_does_not_grow_with_time():
    net = network("alif")
    params = nnx.state(net, nnx.Param)
    rule = rules.online_dfa(net, loss_t, key=KEY)
    state = rule.init(params)

    def temp_bytes(steps):
        xs, labels = data(steps)
        return jax.jit(rule.apply).lower(state, params, xs, labels).compile().memory_analysis().temp_size_in_bytes

    short, long = temp_bytes(20), temp_bytes(400)
    assert long < 1.2 * short + 4 * 400 * 4 * 3, (short, long)  # at most the [T, B, C] readout output grows


def test_online_rejects_networks_it_cannot_trace():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="pairs"):
        rules.online_dfa(snn.Sequential(nnx.Linear(2, 3, rngs=rngs), snn.LIF(3)), loss_t, key=KEY)
    recurrent = snn.Sequential(
        nnx.Linear(2, 3, rngs=rngs),
        snn.LIF(3, recurrent=True, rngs=rngs),
        nnx.Linear(3, 2, rngs=rngs),
        snn.LeakyIntegrator(2),
    )
    with pytest.raises(ValueError, match="recurrent"):
        rules.online_dfa(recurrent, loss_t, key=KEY)
    with pytest.raises(ValueError, match="needs key"):
        rules.online_dfa(network(), loss_t)


# --- FG-A online ---------------------------------------------------------------------------


def test_online_fg_a_equals_the_offline_estimate_with_the_same_noise():
    net = network("alif")
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    xs, labels = data()
    rule = rules.online_activity_forward_gradient(net, loss_t)
    (loss, _), grads = jax.jit(lambda p, x, y: rule(p, x, y, key=KEY))(params, xs, labels)
    # Offline: the same per-step noise on every layer's input current, through the tapped Sequential.
    steps, batch = xs.shape[:2]
    k = jax.random.split(KEY, 1)[0]
    noise = [
        jnp.stack([draw(jax.random.fold_in(jax.random.fold_in(k, l), t), (batch, n)) for t in range(steps)])
        for l, n in enumerate((6, 5, 3))
    ]

    def per_example(eps):
        calls = iter(range(3))
        y = nnx.merge(graphdef, params, rest)(xs, tap=lambda z: z + eps[next(calls)])
        return jnp.mean(jax.vmap(loss_t, in_axes=(0, None))(y, labels), axis=0)  # [B]

    losses, d = jax.jvp(per_example, ([jnp.zeros_like(u) for u in noise],), (noise,))
    _, layers = nnx.merge(graphdef, params, rest)(xs, record=True)
    inputs = [xs, layers[0], layers[1]]
    for l, (i, u) in enumerate(zip((0, 2, 4), noise)):
        expected = jnp.einsum("tbi,tbj->ij", inputs[l], d[None, :, None] * u) / batch
        assert jnp.allclose(grads["layers"][i]["kernel"][...], expected, rtol=1e-4, atol=1e-6), l
        assert jnp.allclose(grads["layers"][i]["bias"][...], jnp.einsum("tbj,b->j", u, d) / batch, rtol=1e-4, atol=1e-6)
    assert jnp.allclose(loss, jnp.mean(losses), rtol=1e-6)


def test_online_fg_a_is_unbiased():
    net = network("cuba")
    params = nnx.state(net, nnx.Param)
    xs, labels = data(steps=10)
    rule = rules.online_activity_forward_gradient(net, loss_t, num_directions=8)
    c = snnjax.compare_gradients(rule, params, xs, labels, key=KEY, draws=64)
    # 512 directions in all: the mean's error should be noise (bias within 2.5x what noise alone
    # gives, and most 95 % intervals covering the true gradient); a biased rule fails both.
    assert c.names[-1] == "overall" and c.bias[-1] < 2.5 * c.bias_if_unbiased[-1], c.table()
    assert c.coverage[-1] > 0.85, c.table()


def test_online_fg_a_memory_does_not_grow_with_time():
    net = network("alif")
    params = nnx.state(net, nnx.Param)
    rule = rules.online_activity_forward_gradient(net, loss_t)

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
