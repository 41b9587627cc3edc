"""FA, DFA and FDFA (offline): exact where the theory says so, FDFA's estimate converges."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import snnjax
import snnjax.nn as snn
from snnjax import compare_gradients, rules
from snnjax.train.models import MLP

KEY = jax.random.key(0)


def _mlp_model(sizes, seed=0):
    graphdef, params = nnx.split(MLP(sizes, rngs=nnx.Rngs(seed)))

    def model(p, x, y, route):
        out = nnx.merge(graphdef, p)(x, route=route)
        return jnp.sum((out - y) ** 2, axis=-1), out

    return model, params


def _close(a, b, **tol):
    return all(jax.tree.leaves(jax.tree.map(lambda u, v: bool(jnp.allclose(u, v, **tol)), a, b)))


def _true_grad(model, params, *args):
    return jax.grad(lambda p: rules.as_routed_loss(model)(p, *args)[0])(params)


def _kernels(params):
    return tuple(layer["kernel"][...] for layer in params["layers"].values())


def test_fa_with_the_forward_weights_is_backpropagation():
    model, params = _mlp_model((5, 7, 6, 3))
    x, y = jax.random.normal(KEY, (4, 5)), jax.random.normal(jax.random.key(1), (4, 3))
    rule = rules.fa(model, (x, y), key=KEY)
    state = rule.init(params)
    assert [b.shape for b in state.matrices] == [(5, 7), (7, 6), (6, 3)]
    (_, _), grads, _ = rule.apply(state._replace(matrices=_kernels(params)), params, x, y)
    assert _close(grads, _true_grad(model, params, x, y), rtol=1e-6, atol=1e-7)
    (_, _), random_grads, _ = rule(params, x, y, state=state)
    assert not _close(random_grads["layers"][0], grads["layers"][0], rtol=1e-2)  # random B: a different gradient
    assert _close(random_grads["layers"][2], grads["layers"][2], rtol=1e-6)  # the output layer's is exact either way


def test_dfa_and_fdfa_with_the_true_jacobian_are_backpropagation_for_one_hidden_layer():
    model, params = _mlp_model((5, 8, 3))
    x, y = jax.random.normal(KEY, (6, 5)), jax.random.normal(jax.random.key(1), (6, 3))
    jacobian = (params["layers"][1]["kernel"][...],)  # dy/dh = W2^T, stored as B = W2: [8, 3]
    true = _true_grad(model, params, x, y)
    dfa = rules.dfa(model, (x, y), key=KEY)
    assert [b.shape for b in dfa.init(params).matrices] == [(8, 3)]
    (loss, _), grads, _ = dfa.apply(dfa.init(params)._replace(matrices=jacobian), params, x, y)
    assert _close(grads, true, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(loss, rules.as_routed_loss(model)(params, x, y)[0], rtol=1e-7)
    fdfa = rules.fdfa(model, (x, y), rate=1e-9)  # a negligible update keeps B at the Jacobian
    (_, _), grads, state = fdfa.apply(fdfa.init(params)._replace(matrices=jacobian), params, x, y, key=KEY)
    assert _close(grads, true, rtol=1e-5, atol=1e-6) and int(state.step) == 1


def test_dfa_offline_through_a_spiking_layer_is_bptt_when_the_output_is_instantaneous():
    rngs = nnx.Rngs(0)
    net = snn.Sequential(
        nnx.Linear(4, 6, rngs=rngs),
        snn.LIF(6, beta=0.8, surrogate=snnjax.surrogates.fast_sigmoid(slope=5.0)),
        nnx.Linear(6, 3, rngs=rngs),
    )
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)

    def model(p, xs, y, route):
        out = nnx.merge(graphdef, p, rest)(xs, route=route)  # [T, B, 3], y_t = W2 s_t + b: J_t = W2^T
        return jnp.sum((out - y) ** 2, axis=(0, 2)), out

    xs = 2.0 * jax.random.uniform(KEY, (12, 5, 4))
    y = jax.random.normal(jax.random.key(1), (12, 5, 3))
    rule = rules.dfa(model, (xs, y), key=KEY)
    state = rule.init(params)._replace(matrices=(params["layers"][2]["kernel"][...],))
    (_, out), grads, _ = jax.jit(rule.apply)(state, params, xs, y)
    assert 0 < float(jnp.mean(nnx.merge(graphdef, params, rest)(xs, record=True)[1][0])) < 1  # the layer spikes
    assert _close(grads, _true_grad(model, params, xs, y), rtol=1e-5, atol=1e-6)


def test_fdfa_estimate_converges_to_the_jacobian_of_a_linear_network():
    k1, k2, k3, kx = jax.random.split(KEY, 4)
    w1, w2, w3 = (
        jax.random.normal(k1, (4, 6)) / 2,
        jax.random.normal(k2, (6, 5)) / 2.4,
        jax.random.normal(k3, (5, 3)) / 2.2,
    )

    def model(p, x, route):
        h1 = route.hidden(route.linear(x, p[0]))
        h2 = route.hidden(route.linear(h1, p[1]))
        out = route.output(route.linear(h2, p[2]))
        return jnp.sum(out**2, axis=-1), None

    params, x = (w1, w2, w3), jax.random.normal(kx, (32, 4))
    rule = rules.fdfa(model, (x,), rate=0.05)

    def step(state, key):
        return rule.apply(state, params, x, key=key)[2], None

    state, _ = jax.lax.scan(step, rule.init(params), jax.random.split(KEY, 400))
    for b, j in zip(state.matrices, (w2 @ w3, w3)):
        error = float(jnp.linalg.norm(b - j) / jnp.linalg.norm(j))
        # Per step the batch estimate has relative error about sqrt(N_l / B) <= 0.43; the
        # running mean with rate 0.05 keeps sqrt(0.05 / 1.95) of it, about 0.07; 0.2 is > 2.5 sigma.
        assert error < 0.2, error


def test_fdfa_learns_and_needs_forward_mode_spikes():
    def make(method):
        rngs = nnx.Rngs(0)
        net = snn.Sequential(
            nnx.Linear(4, 6, rngs=rngs),
            snn.LIF(6, method=method),
            nnx.Linear(6, 5, rngs=rngs),
            snn.LIF(5, method=method),
            nnx.Linear(5, 2, rngs=rngs),
            snn.LeakyIntegrator(2),
        )
        graphdef, params, rest = nnx.split(net, nnx.Param, ...)

        def model(p, xs, labels, route):
            logits = nnx.merge(graphdef, p, rest)(xs, route=route).max(axis=0)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels), logits

        return model, params

    xs, labels = 2.0 * jax.random.uniform(KEY, (10, 3, 4)), jnp.array([0, 1, 0])
    model, params = make("inject")
    rule = rules.fdfa(model, (xs, labels))
    (loss, _), grads, state = jax.jit(rule.apply)(rule.init(params), params, xs, labels, key=KEY)
    assert np.isfinite(float(loss)) and float(jnp.abs(state.matrices[0]).sum()) > 0
    assert float(jnp.abs(grads["layers"][0]["kernel"][...]).sum()) > 0
    model, params = make("custom_vjp")
    rule = rules.fdfa(model, (xs, labels))
    with pytest.raises(TypeError, match="custom_vjp"):  # the first layer's noise crosses the second layer's spikes
        rule.apply(rule.init(params), params, xs, labels, key=KEY)


def test_compare_gradients_measures_feedback_rules():
    model, params = _mlp_model((5, 8, 3))
    x, y = jax.random.normal(KEY, (6, 5)), jax.random.normal(jax.random.key(1), (6, 3))
    rule = rules.dfa(model, (x, y), key=KEY)
    exact = compare_gradients(
        rule,
        params,
        x,
        y,
        key=KEY,
        draws=2,
        state=rule.init(params)._replace(matrices=(params["layers"][1]["kernel"][...],)),
    )
    assert exact.names[-1] == "overall" and exact.cosine[-1] > 1 - 1e-6
    random = compare_gradients(rule, params, x, y, key=KEY, draws=2)
    assert random.cosine[-1] < 0.99


def test_feedback_rules_reject_models_without_routes():
    def no_hidden(p, x, route):
        return jnp.sum(route.output(route.linear(x, p)), axis=-1), None

    x, p = jnp.ones((2, 3)), jnp.ones((3, 1))
    with pytest.raises(ValueError, match="never called route.hidden"):
        rules.dfa(no_hidden, (x,), key=KEY).init(p)
    with pytest.raises(ValueError, match="per-example losses"):
        rules.fa(lambda p, x, route: (jnp.sum(route.output(route.linear(x, p))), None), (x,), key=KEY).init(p)
    with pytest.raises(ValueError, match="rate must lie"):
        rules.fdfa(no_hidden, (x,), rate=0.0)
    with pytest.raises(ValueError, match="pass state="):
        rules.fa(no_hidden, (x,), key=KEY)(p, x)
