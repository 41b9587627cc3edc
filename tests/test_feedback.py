"""FA, DFA and FDFA (offline): FDFA's estimate converges, the rules learn, and they refuse what they cannot do.

Exactness (FA with B = W, DFA with B = the Jacobian) and what each rule does to convolutions and
recurrent weights are checked on four NNX models in test_protocol.py.
"""

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


def _mlp_loss(sizes, seed=0):
    graphdef, params = nnx.split(MLP(sizes, rngs=nnx.Rngs(seed)))

    def loss_fn(p, x, y):
        out = nnx.merge(graphdef, p)(x)
        return jnp.mean(jnp.sum((out - y) ** 2, axis=-1)), out

    return loss_fn, params


def test_fdfa_estimate_converges_to_the_jacobian_of_a_linear_network():
    k1, k2, k3, kx = jax.random.split(KEY, 4)
    w1, w2, w3 = (
        jax.random.normal(k1, (4, 6)) / 2,
        jax.random.normal(k2, (6, 5)) / 2.4,
        jax.random.normal(k3, (5, 3)) / 2.2,
    )

    def loss_fn(p, x):
        out = ((x @ p[0]) @ p[1]) @ p[2]
        return jnp.mean(jnp.sum(out**2, axis=-1)), None

    params, x = (w1, w2, w3), jax.random.normal(kx, (32, 4))
    rule = rules.fdfa(loss_fn, rate=0.05)

    def step(state, key):
        return rule.apply(state, params, x, key=key)[2], None

    state, _ = jax.lax.scan(step, rule.init(params, x), jax.random.split(KEY, 400))
    for b, j in zip(state.matrices, (w2 @ w3, w3)):  # d out / d h_1 = (W2 W3)^T, d out / d h_2 = W3^T
        error = float(jnp.linalg.norm(b - j) / jnp.linalg.norm(j))
        # Per step the batch estimate has relative error about sqrt(N_l / B) <= 0.43; the
        # running mean with rate 0.05 keeps sqrt(0.05 / 1.95) of it, about 0.07; 0.2 is > 2.5 sigma.
        assert error < 0.2, error


def _two_blobs(n, seed):
    """A linearly separable toy problem: two Gaussian blobs in 4-D, rate-coded over 10 steps."""
    key_x, key_y, key_s = jax.random.split(jax.random.key(seed), 3)
    labels = jax.random.bernoulli(key_y, 0.5, (n,)).astype(jnp.int32)
    centres = jnp.array([[0.8, 0.2, 0.8, 0.2], [0.2, 0.8, 0.2, 0.8]])
    rates = jnp.clip(centres[labels] + 0.1 * jax.random.normal(key_x, (n, 4)), 0.0, 1.0)
    return (jax.random.uniform(key_s, (10, n, 4)) < rates[None]).astype(jnp.float32) * 2.0, labels


def _spiking_loss(method="inject"):
    rngs = nnx.Rngs(0)
    net = snn.Sequential(
        nnx.Linear(4, 16, rngs=rngs),
        snn.LIF(16, method=method),
        nnx.Linear(16, 16, rngs=rngs),
        snn.LIF(16, method=method),
        nnx.Linear(16, 2, rngs=rngs),
        snn.LeakyIntegrator(2),
    )
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)

    def loss_fn(p, xs, labels):
        logits = nnx.merge(graphdef, p, rest)(xs).max(axis=0)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)), logits

    return loss_fn, params


def test_fdfa_learns_a_separable_problem():
    """FDFA trains a two-hidden-layer spiking network on two blobs: the training loss falls by half and
    held-out accuracy is far above chance (0.5; 80 of 128 right by chance has probability < 0.3 %)."""
    loss_fn, params = _spiking_loss()
    xs, labels = _two_blobs(256, 0)
    test_xs, test_labels = _two_blobs(128, 1)
    rule, optimizer = rules.fdfa(loss_fn, rate=0.1), optax.adam(1e-2)
    state, opt_state = rule.init(params, xs, labels), optimizer.init(params)

    @jax.jit
    def step(params, opt_state, state, key):
        (loss, _), grads, state = rule.apply(state, params, xs, labels, key=key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state, loss

    losses = []
    for i in range(60):
        params, opt_state, state, loss = step(params, opt_state, state, jax.random.key(i))
        losses.append(float(loss))
    accuracy = float(jnp.mean(jnp.argmax(loss_fn(params, test_xs, test_labels)[1], axis=-1) == test_labels))
    assert np.mean(losses[-5:]) < 0.5 * losses[0], losses
    assert accuracy > 0.8, accuracy


def test_fdfa_needs_forward_mode_spikes():
    loss_fn, params = _spiking_loss("custom_vjp")
    xs, labels = _two_blobs(8, 0)
    rule = rules.fdfa(loss_fn)
    with pytest.raises(TypeError, match="custom_vjp"):  # the first layer's noise crosses the second layer's spikes
        rule.apply(rule.init(params, xs, labels), params, xs, labels, key=KEY)


def test_compare_gradients_measures_feedback_rules():
    loss_fn, params = _mlp_loss((5, 8, 3))
    x, y = jax.random.normal(KEY, (6, 5)), jax.random.normal(jax.random.key(1), (6, 3))
    rule = rules.dfa(loss_fn)
    w_out = params["layers"][1]["kernel"][...]
    exact = compare_gradients(
        rule, params, x, y, key=KEY, draws=2, state=rule.init(params, x, y, key=KEY)._replace(matrices=(w_out,))
    )
    assert np.allclose(exact.cosine, 1.0, atol=1e-5) and np.allclose(
        exact.coverage, 1.0
    )  # an exact rule shows as exact
    assert exact.names == ["layers.0.bias", "layers.0.kernel", "layers.1.bias", "layers.1.kernel", "layer mean"]


def test_fdfa_alignment_with_backpropagation_improves_as_it_learns_the_jacobian():
    """FDFA's hidden-layer gradient aligns with backpropagation's as B approaches the Jacobian: with 4
    examples a step, the first estimate is noisy; after 200 updates of B (weights fixed) the cosine
    is above 0.9 and well above the first step's."""
    loss_fn, params = _mlp_loss((5, 8, 3))
    x, y = jax.random.normal(KEY, (4, 5)), jax.random.normal(jax.random.key(1), (4, 3))
    rule = rules.fdfa(loss_fn, rate=0.05)
    true = jax.grad(lambda p: loss_fn(p, x, y)[0])(params)["layers"][0]["kernel"][...]
    apply = jax.jit(lambda state, key: rule.apply(state, params, x, y, key=key))

    def cosine(g):
        g = g["layers"][0]["kernel"][...]
        return float(jnp.vdot(g, true) / (jnp.linalg.norm(g) * jnp.linalg.norm(true)))

    state = rule.init(params, x, y)
    cosines = []
    for i in range(200):
        _, grads, state = apply(state, jax.random.key(i))
        cosines.append(cosine(grads))
    assert cosines[-1] > 0.9 and cosines[-1] > cosines[0] + 0.2, (cosines[0], cosines[-1])


def test_feedback_rules_refuse_what_they_cannot_do():
    w = jnp.ones((3, 2))
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="no hidden layer"):
        rules.dfa(lambda w, x: (jnp.mean((x @ w) ** 2), None)).init(w, x, key=KEY)
    two_heads = lambda p, x: (jnp.mean(x @ p[0]) + jnp.mean(jnp.tanh(x @ p[0]) @ p[1]), None)  # noqa: E731
    with pytest.raises(ValueError, match="exactly one network output"):
        rules.dfa(two_heads).init((w, jnp.ones((2, 2))), x, key=KEY)
    with pytest.raises(ValueError, match="no weight product"):
        rules.fa(lambda w, x: (jnp.sum(x * 2.0) + jnp.sum(w), None)).init(w, x, key=KEY)
    with pytest.raises(ValueError, match="needs key"):
        rules.fa(lambda w, x: (jnp.sum(x @ w), None)).init(w, x)
    with pytest.raises(ValueError, match="pass state=rule.init"):
        rules.fa(lambda w, x: (jnp.sum(x @ w), None))(w, x)
    with pytest.raises(ValueError, match="fdfa: rate"):
        rules.fdfa(lambda w, x: (jnp.sum(x @ w), None), rate=0.0)


def test_a_rule_cannot_change_a_layer_inside_a_custom_vjp_and_says_which():
    rngs = nnx.Rngs(0)
    net = snn.Sequential(
        nnx.Linear(3, 4, rngs=rngs), snn.LIF(4, recurrent=True, run_bptt=True, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)
    )
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)

    def loss_fn(p, xs):
        return jnp.mean(nnx.merge(graphdef, p, rest)(xs) ** 2), None

    xs = jnp.ones((5, 2, 3))
    with pytest.raises(
        ValueError, match=r"FA: the weight product dot_general \[2, 4\] x \[4, 4\] in recurrent_input.*custom_vjp"
    ):
        rules.fa(loss_fn)(params, xs, state=rules.fa(loss_fn).init(params, xs, key=KEY))
    # DFA leaves the recurrent product alone (the layer's own dynamics), so run_bptt is fine there.
    rule = rules.dfa(loss_fn)
    (_, _), grads, _ = rule(params, xs, state=rule.init(params, xs, key=KEY))
    assert float(jnp.abs(grads["layers"][1]["recurrent"]["kernel"][...]).max()) >= 0.0
    assert snnjax.FORWARD_MODE_METHODS  # the spike methods the forward-mode rules accept


def test_fa_reaches_products_inside_a_cond_and_refuses_a_while_loop():
    """FA rewrites a product inside a cond, and with B = W equals jax.grad there; DFA, which would
    collect values there, and any rule facing a product inside a while_loop refuse with the reason."""

    def loss_fn(p, x, n):
        h = jnp.tanh(x @ p["w_in"])
        h = jax.lax.cond(n > 1, lambda h: jnp.tanh(h @ p["w"]), lambda h: h, h)
        return jnp.mean(h @ p["out"]), None

    k = jax.random.split(KEY, 3)
    p = {
        "w_in": jax.random.normal(k[0], (3, 4)) / 2,
        "w": jax.random.normal(k[1], (4, 4)) / 2,
        "out": jax.random.normal(k[2], (4, 1)),
    }
    x, n = jax.random.normal(KEY, (5, 3)), jnp.array(3)
    rule = rules.fa(loss_fn)
    state = rule.init(p, x, n, key=KEY)
    assert [m.shape for m in state.matrices] == [(4, 4), (4, 1)]  # the cond's product, the output's
    exact = rule(p, x, n, state=state._replace(matrices=(p["w"], p["out"])))[1]
    true = jax.grad(lambda p: loss_fn(p, x, n)[0])(p)
    for name in p:
        np.testing.assert_allclose(np.asarray(exact[name]), np.asarray(true[name]), rtol=1e-5, atol=1e-6)
    random = rule(p, x, n, state=state)[1]
    assert not np.allclose(np.asarray(random["w_in"]), np.asarray(true["w_in"]))  # B reached inside the cond
    with pytest.raises(ValueError, match="inside a cond needs per-step inputs|hand back values"):
        dfa = rules.dfa(loss_fn)
        dfa(p, x, n, state=dfa.init(p, x, n, key=KEY))

    def looped(p, x, n):
        h = jax.lax.fori_loop(0, n, lambda i, h: jnp.tanh(h @ p["w"]), jnp.tanh(x @ p["w_in"]))  # traced bounds
        return jnp.mean(h @ p["out"]), None

    with pytest.raises(ValueError, match=r"FA: the weight product dot_general \[5, 4\] x \[4, 4\].*while_loop"):
        fa = rules.fa(looped)
        fa(p, x, n, state=fa.init(p, x, n, key=KEY))
