"""Forward gradients (FG-W, FG-A, LG-FG-A) against jax.grad, and the gradient diagnostics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import snnjax
import snnjax.nn as snn
from snnjax import rules
from snnjax.rules.graph import trace
from snnjax.spikes import FORWARD_MODE_ERROR

X = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
Y = jnp.array([0, 1, 0, 1, 1, 0])


def mlp_loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    logits = h @ params["w2"]
    return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(y.shape[0]), y]), logits


def mlp_params():
    k1, k2 = jax.random.split(jax.random.key(1))
    return {"w1": jax.random.normal(k1, (4, 5)), "b1": jnp.full((5,), 0.1), "w2": jax.random.normal(k2, (5, 2))}


def flat(tree):
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


# --- weight perturbation ----------------------------------------------------------------------


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_weight_perturbation_is_unbiased_for_an_mlp(distribution):
    """Mean of K = 20000 estimates within 5 sigma of jax.grad in every coordinate, sigma from
    the estimator's exact variance (|g|^2 +- g_i^2) / K; the same bound rejects a 10 % bias."""
    params, k = mlp_params(), 20000
    (loss, _), estimate = jax.jit(
        lambda p: rules.forward_gradient(mlp_loss, k, distribution=distribution)(p, X, Y, key=jax.random.key(2))
    )(params)
    (ref_loss, _), true = jax.value_and_grad(mlp_loss, has_aux=True)(params, X, Y)
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-6)
    g, e = flat(true), flat(estimate)
    sign = 1.0 if distribution == "gaussian" else -1.0
    sigma = np.sqrt((g @ g + sign * g**2) / k)
    assert np.all(np.abs(e - g) <= 5 * sigma + 1e-7), np.max(np.abs(e - g) / sigma)
    assert not np.all(np.abs(1.1 * e - g) <= 5 * sigma + 1e-7)  # the test has power


def test_weight_perturbation_single_direction_is_directional_derivative_times_direction():
    params = mlp_params()
    (_, _), estimate = rules.forward_gradient(mlp_loss)(params, X, Y, key=jax.random.key(3))
    v = rules.directions(jax.random.split(jax.random.key(3), 1)[0], params)
    true = jax.grad(lambda p: mlp_loss(p, X, Y)[0])(params)
    d = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(true), jax.tree.leaves(v)))
    np.testing.assert_allclose(flat(estimate), float(d) * flat(v), rtol=2e-5, atol=1e-6)


def snn_model(method):
    rngs = nnx.Rngs(0)
    surrogate = snnjax.surrogates.fast_sigmoid(slope=5.0)
    return snn.Sequential(
        nnx.Linear(4, 8, rngs=rngs),
        snn.LIF(8, beta=0.8, threshold=0.5, surrogate=surrogate, method=method),
        nnx.Linear(8, 3, rngs=rngs),
        snn.LeakyIntegrator(3, kappa=0.8),
    )


XS = jnp.asarray(np.random.default_rng(1).normal(0.4, 1.0, (15, 6, 4)).astype(np.float32))
LABELS = jnp.array([0, 1, 2, 0, 1, 2])


def snn_loss(method):
    graphdef, params, rest = nnx.split(snn_model(method), nnx.Param, ...)

    def loss_fn(params, xs, labels):
        logits = nnx.merge(graphdef, params, rest)(xs).max(axis=0)
        return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(labels.shape[0]), labels]), logits

    return loss_fn, params


@pytest.mark.parametrize("method", ["inject", "bypass", "custom_jvp"])
def test_weight_perturbation_is_unbiased_for_a_scanned_spiking_network(method):
    loss_fn, params = snn_loss(method)
    k = 4000
    rule = rules.forward_gradient(loss_fn, k)
    _, estimate = jax.jit(lambda p: rule(p, XS, LABELS, key=jax.random.key(4)))(params)
    g = flat(jax.grad(lambda p: loss_fn(p, XS, LABELS)[0])(params))
    assert np.abs(g).max() > 1e-3
    sigma = np.sqrt((g @ g + g**2) / k)
    assert np.all(np.abs(flat(estimate) - g) <= 5 * sigma + 1e-7)


@pytest.mark.parametrize("make_rule", [rules.forward_gradient, rules.activity_forward_gradient], ids=["FG-W", "FG-A"])
@pytest.mark.parametrize("jit", [False, True])
def test_custom_vjp_spikes_fail_with_the_clear_error(make_rule, jit):
    loss_fn, params = snn_loss("custom_vjp")
    rule = make_rule(loss_fn)
    call = lambda p: rule(p, XS, LABELS, key=jax.random.key(0))
    with pytest.raises(TypeError) as info:
        (jax.jit(call) if jit else call)(params)
    assert str(info.value) == FORWARD_MODE_ERROR


# --- activity perturbation ----------------------------------------------------------------------


def test_activity_perturbation_one_layer_matches_hand_computation():
    """Example b's estimate is d_b u_b, with u_b drawn from fold_in(fold_in(split(key, 1)[0], b), 0)."""
    x = np.asarray(X, np.float64)
    y = np.random.default_rng(2).normal(size=(6, 3))
    w = np.random.default_rng(3).normal(size=(4, 3))

    def loss_fn(w, x, y):
        return jnp.mean(jnp.sum(jnp.tanh(x @ w) * y, axis=-1)), None

    key = jax.random.key(5)
    (loss, _), estimate = rules.activity_forward_gradient(loss_fn)(
        jnp.asarray(w, jnp.float32), X, jnp.asarray(y, jnp.float32), key=key
    )
    k0 = jax.random.split(key, 1)[0]
    u = np.concatenate(
        [
            np.asarray(jax.random.normal(jax.random.fold_in(jax.random.fold_in(k0, b), 0), (1, 3)), np.float64)
            for b in range(6)
        ]
    )
    grad_z = (1 - np.tanh(x @ w) ** 2) * y  # d L_b / d z_b, per example
    expected = x.T @ (np.sum(grad_z * u, axis=1, keepdims=True) * u) / 6
    assert float(loss) == pytest.approx(np.mean(np.sum(np.tanh(x @ w) * y, axis=1)), rel=1e-5)
    np.testing.assert_allclose(np.asarray(estimate), expected, rtol=1e-4, atol=1e-5)


def test_activity_perturbation_masks_dead_relus():
    """A hidden unit that is off for every example has zero true gradient; with the mask its estimate
    is exactly zero, without it pure noise."""

    def loss_fn(p, x, y):
        h = jax.nn.relu(x @ p["w1"] + p["b1"][None, :])
        return jnp.mean(jnp.sum((h @ p["w2"] - y) ** 2, axis=-1)), None

    params = {"w1": jnp.full((4, 3), 0.1), "b1": jnp.array([0.5, -100.0, 0.5]), "w2": jnp.ones((3, 2))}
    y = jnp.zeros((6, 2))
    true = jax.grad(lambda p: loss_fn(p, X, y)[0])(params)
    assert float(jnp.abs(true["w1"][:, 1]).max()) == 0.0
    masked = rules.activity_forward_gradient(loss_fn)(params, X, y, key=jax.random.key(0))[1]
    unmasked = rules.activity_forward_gradient(loss_fn, mask=False)(params, X, y, key=jax.random.key(0))[1]
    assert float(jnp.abs(masked["w1"][:, 1]).max()) == 0.0 and float(jnp.abs(masked["b1"][1])) == 0.0
    assert float(jnp.abs(unmasked["w1"][:, 1]).max()) > 0.0
    np.testing.assert_array_equal(np.asarray(masked["w1"][:, 0]), np.asarray(unmasked["w1"][:, 0]))


def test_activity_perturbation_masks_the_right_units_when_the_activation_is_transposed():
    """A token-mixing layer reads the ReLU's output transposed: the mask must stay on the units it
    belongs to, so a live unit's estimate is the unmasked one and a dead unit's is zero."""

    def loss_fn(p, x, y):
        h = jax.nn.relu(x @ p["w1"] + p["b1"][None, :])  # [B, 6]: 2 tokens of 3 channels
        mixed = jnp.swapaxes(h.reshape(-1, 2, 3), 1, 2).reshape(-1, 6)  # read channel-major
        return jnp.mean(jnp.sum((mixed @ p["w2"] - y) ** 2, axis=-1)), None

    b1 = jnp.array([0.5, -100.0, 0.5, 0.5, 0.5, 0.5])  # unit 1 is off for every example
    params = {"w1": jnp.full((4, 6), 0.1), "b1": b1, "w2": jnp.ones((6, 2))}
    y = jnp.zeros((6, 2))
    masked = rules.activity_forward_gradient(loss_fn)(params, X, y, key=jax.random.key(0))[1]
    unmasked = rules.activity_forward_gradient(loss_fn, mask=False)(params, X, y, key=jax.random.key(0))[1]
    assert float(jnp.abs(masked["w1"][:, 1]).max()) == 0.0
    live = np.array([0, 2, 3, 4, 5])
    np.testing.assert_array_equal(np.asarray(masked["w1"])[:, live], np.asarray(unmasked["w1"])[:, live])


def _layer_norm(z):
    return (z - z.mean(-1, keepdims=True)) / jnp.sqrt(z.var(-1, keepdims=True) + 1e-5)


def _normalised_loss(p, x, y):
    """A layer whose normalised pre-activation is marked, as Ren et al. perturb it."""
    n = rules.grouped(_layer_norm(x @ p["w1"] + p["b1"][None, :]), 1)
    return jnp.mean(jnp.sum((jax.nn.relu(n) @ p["w2"] - y) ** 2, axis=-1)), None


def test_activity_perturbation_of_a_normalised_pre_activation_matches_hand_computation():
    """A ``grouped`` marker after a layer norm moves the noise there: the estimate is
    x^T J_LN^T (d_b u_b m_b) / B, with the ReLUs that are off masked, learnt through the
    normalisation's own Jacobian; the readout (exact_output) learns its exact gradient."""
    y = jnp.asarray(np.random.default_rng(2).normal(size=(6, 2)), jnp.float32)
    params = {
        "w1": jax.random.normal(jax.random.key(3), (4, 5)),
        "b1": jnp.full((5,), 0.1),
        "w2": jax.random.normal(jax.random.key(4), (5, 2)),
    }
    graph = trace(_normalised_loss, params, (X, y))
    assert [s.groups for s in graph.sites] == [1, None]  # the marker ends the first layer's pre-activation
    key = jax.random.key(5)
    rule = rules.activity_forward_gradient(_normalised_loss, exact_output=True)
    estimate = rule(params, X, y, key=key)[1]
    x, w1, w2 = (np.asarray(a, np.float64) for a in (X, params["w1"], params["w2"]))
    z = x @ w1 + 0.1
    mean, s = z.mean(-1, keepdims=True), np.sqrt(z.var(-1, keepdims=True) + 1e-5)
    n = (z - mean) / s
    grad_n = 2 * ((np.maximum(n, 0) @ w2 - np.asarray(y)) @ w2.T) * (n > 0)  # d L_b / d n_b
    k0 = jax.random.split(key, 1)[0]
    u = np.concatenate(
        [np.asarray(jax.random.normal(jax.random.fold_in(jax.random.fold_in(k0, b), 0), (1, 5))) for b in range(6)]
    )
    g_n = np.sum(grad_n * u, axis=1, keepdims=True) * u * (n > 0)
    g_z = (g_n - g_n.mean(-1, keepdims=True) - n * (g_n * n).mean(-1, keepdims=True)) / s  # J_LN^T g_n
    np.testing.assert_allclose(np.asarray(estimate["w1"]), x.T @ g_z / 6, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(estimate["b1"]), g_z.sum(0) / 6, rtol=2e-4, atol=1e-5)
    exact = jax.grad(lambda p: _normalised_loss(p, X, y)[0])(params)["w2"]
    np.testing.assert_allclose(np.asarray(estimate["w2"]), np.asarray(exact), rtol=1e-5, atol=1e-6)


def test_a_marker_after_a_normalisation_used_elsewhere_is_not_taken_as_the_pre_activation():
    """The steps between a product and its marker must be the normalisation's own: when its mean
    also feeds the loss, the pre-activation stays the product's output, and the group-wise rule
    refuses the marker it cannot use (``groupwise=False`` runs)."""

    def loss_fn(p, x, y):
        z = x @ p["w1"] + p["b1"][None, :]
        n = rules.grouped(_layer_norm(z), 1)
        out = jnp.sum((jax.nn.relu(n) @ p["w2"] - y) ** 2, axis=-1) + jnp.mean(z, axis=-1)
        return jnp.mean(out), None

    y = jnp.zeros((6, 2))
    params = {"w1": jnp.full((4, 5), 0.3), "b1": jnp.zeros(5), "w2": jnp.ones((5, 2))}
    assert [s.groups for s in trace(loss_fn, params, (X, y)).sites] == [None, None]
    assert [s.groups for s in trace(_normalised_loss, params, (X, y)).sites] == [1, None]
    with pytest.raises(ValueError, match=r"grouped marker in .* ends no layer's pre-activation"):
        rules.activity_forward_gradient(loss_fn)(params, X, y, key=jax.random.key(0))
    g = rules.activity_forward_gradient(loss_fn, groupwise=False)(params, X, y, key=jax.random.key(0))[1]
    assert jax.tree.structure(g) == jax.tree.structure(params)


def test_activity_perturbation_is_unbiased_for_a_scanned_spiking_network():
    loss_fn, params = snn_loss("inject")
    comparison = snnjax.compare_gradients(
        rules.activity_forward_gradient(loss_fn), params, XS, LABELS, key=jax.random.key(6), draws=600
    )
    for row in comparison.rows()[:-1]:  # unbiased per layer: |mean - g| is noise of expected size bias_if_unbiased
        assert row["bias"] < 1.5 * row["bias_if_unbiased"] + 1e-6, comparison.table()
    assert 0.85 < comparison.rows()[-1]["coverage"] <= 1.0
    fg_w = snnjax.compare_gradients(
        rules.forward_gradient(loss_fn), params, XS, LABELS, key=jax.random.key(6), draws=50
    )
    assert comparison.rows()[-1]["variance"] < fg_w.rows()[-1]["variance"]  # FG-A: lower variance than FG-W


def blockwise_loss(params, x, y, cut=True):
    """Two blocks, the first cut by rules.block, a linear head and a loss each."""
    idx = jnp.arange(y.shape[0])
    h1 = jnp.tanh(x @ params["w1"])
    loss1 = jnp.mean(-jax.nn.log_softmax(h1 @ params["head1"])[idx, y])
    h2 = jnp.tanh((rules.block(h1) if cut else h1) @ params["w2"])
    loss2 = jnp.mean(-jax.nn.log_softmax(h2 @ params["head2"])[idx, y])
    return (loss1, loss2), None


def block_params(scale2=1.0):
    k = jax.random.split(jax.random.key(7), 4)
    return {
        "w1": jax.random.normal(k[0], (4, 5)),
        "head1": jax.random.normal(k[1], (5, 2)),
        "w2": scale2 * jax.random.normal(k[2], (5, 5)),
        "head2": scale2 * jax.random.normal(k[3], (5, 2)),
    }


@pytest.mark.parametrize(
    "make_rule", [rules.activity_forward_gradient, rules.forward_gradient], ids=["LG-FG-A", "LG-FG-W"]
)
def test_local_losses_a_block_is_untouched_by_another_blocks_perturbation_and_weights(make_rule):
    rule = make_rule(blockwise_loss, 3)
    _, g_a = rule(block_params(1.0), X, Y, key=jax.random.key(8))
    _, g_b = rule(block_params(-2.0), X, Y, key=jax.random.key(8))
    for name in ("w1", "head1"):
        np.testing.assert_array_equal(np.asarray(g_a[name]), np.asarray(g_b[name]))
    assert not np.allclose(np.asarray(g_a["w2"]), np.asarray(g_b["w2"]))


def test_block_is_the_identity_without_a_rule_and_a_cut_for_every_rule():
    params = block_params()
    (l1, l2), _ = blockwise_loss(params, X, Y)
    (c1, c2), _ = blockwise_loss(params, X, Y, cut=False)
    assert float(l1) == float(c1) and float(l2) == float(c2)
    uncut = jax.grad(lambda p: sum(blockwise_loss(p, X, Y)[0]))(params)  # plain jax.grad: the identity
    lg_bp = rules.bptt(blockwise_loss)(params, X, Y)[1]
    assert float(jnp.abs(uncut["w1"] - lg_bp["w1"]).max()) > 1e-4  # the rule cuts: w1 learns from loss 1 only
    only_first = jax.grad(lambda p: blockwise_loss(p, X, Y)[0][0])(params)
    np.testing.assert_allclose(np.asarray(lg_bp["w1"]), np.asarray(only_first["w1"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lg_bp["w2"]), np.asarray(uncut["w2"]), rtol=1e-6)


@pytest.mark.parametrize(
    "make_rule", [rules.activity_forward_gradient, rules.forward_gradient], ids=["LG-FG-A", "LG-FG-W"]
)
def test_local_forward_gradients_are_unbiased_for_local_backprop(make_rule):
    comparison = snnjax.compare_gradients(
        make_rule(blockwise_loss),
        block_params(),
        X,
        Y,
        key=jax.random.key(9),
        draws=800,
        reference=rules.bptt(blockwise_loss),
    )
    for row in comparison.rows()[:-1]:
        assert row["bias"] < 1.5 * row["bias_if_unbiased"] + 1e-6, comparison.table()


def test_local_activity_gradient_refuses_a_block_without_its_cut():
    rule = rules.activity_forward_gradient(lambda p, x, y: blockwise_loss(p, x, y, cut=False))
    with pytest.raises(ValueError, match=r"reaches the local losses \[0, 1\].*snnjax.rules.block"):
        rule(block_params(), X, Y, key=jax.random.key(0))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rules.forward_gradient(mlp_loss)(mlp_params(), X, Y), "call it with key"),
        (lambda: rules.forward_gradient(mlp_loss, 0), "num_directions must be an int >= 1"),
        (lambda: rules.forward_gradient(mlp_loss, distribution="uniform"), "distribution must be one of"),
        (lambda: rules.bptt(lambda p, x: jnp.sum(x @ p))(jnp.ones((4, 2)), X), "must return a pair"),
        (lambda: rules.bptt(lambda p, x: (x @ p, None))(jnp.ones((4, 2)), X), "scalar loss"),
        (lambda: rules.bptt(lambda p, x: ((jnp.sum(x @ p, axis=1),), None))(jnp.ones((4, 2)), X), "scalar loss"),
        (
            lambda: rules.activity_forward_gradient(lambda p, x: (jnp.mean(x * p[0, 0]), None), batch_axes=0)(
                jnp.ones((4, 2)), X, key=jax.random.key(0)
            ),
            "no weight product",
        ),
        (
            lambda: rules.activity_forward_gradient(lambda p, x: (jnp.mean(x @ p), None))(
                jnp.ones((4, 2)), X, key=jax.random.key(0)
            ),
            "cannot tell the batch axis",
        ),
        (
            lambda: rules.activity_forward_gradient(lambda p, x: (jnp.mean(x @ p), None), batch_axes=(0, 1))(
                jnp.ones((4, 2)), X, key=jax.random.key(0)
            ),
            "batch_axes names 2 arguments",
        ),
        (
            lambda: rules.activity_forward_gradient(lambda p, x, y: (jnp.mean(x @ p), jnp.sum(y)))(
                jnp.ones((4, 2)), X, Y, key=jax.random.key(0)
            ),
            "no batch axis",
        ),
        (
            lambda: snnjax.compare_gradients(
                rules.Rule(lambda p: None, lambda *a, **k: None), 1.0, key=jax.random.key(0)
            ),
            "no loss_fn",
        ),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- diagnostics ----------------------------------------------------------------------------------


def test_compare_gradients_of_bptt_with_itself_is_perfect_and_prints():
    comparison = snnjax.compare_gradients(rules.bptt(mlp_loss), mlp_params(), X, Y, key=jax.random.key(0), draws=3)
    assert comparison.names == ["b1", "w1", "w2", "layer mean"]
    np.testing.assert_allclose(comparison.cosine, 1.0, rtol=1e-6)
    np.testing.assert_allclose(comparison.norm_ratio, 1.0, rtol=1e-6)
    assert np.all(comparison.bias < 1e-6)  # jit and eager may round differently
    assert "bptt vs bptt, 3 draws" in comparison.table() and "layer mean" in str(comparison)
    assert comparison.rows()[-1]["name"] == "layer mean"
    np.testing.assert_allclose(comparison.coverage, 1.0)  # an exact rule shows as exact


def test_compare_gradients_detects_a_biased_rule():
    def scaled(state, params, *args, key=None):
        (loss, aux), g = jax.value_and_grad(mlp_loss, has_aux=True)(params, *args)
        noise = rules.directions(key, g)
        return (loss, aux), jax.tree.map(lambda a, n: 1.3 * a + 0.01 * n, g, noise), state

    biased = rules.Rule(lambda p, *a, key=None: rules.EmptyState(), scaled, name="biased", loss_fn=mlp_loss)
    comparison = snnjax.compare_gradients(biased, mlp_params(), X, Y, key=jax.random.key(1), draws=64)
    overall = comparison.rows()[-1]
    assert overall["norm_ratio"] == pytest.approx(1.3, rel=0.01)
    assert overall["bias"] > 10 * overall["bias_if_unbiased"] and overall["coverage"] < 0.5


def test_stateful_rules_are_compared_with_their_state():
    def apply(state, params, *args, key=None):
        (loss, aux), g = jax.value_and_grad(mlp_loss, has_aux=True)(params, *args)
        return (loss, aux), jax.tree.map(lambda a: state * a, g), state + 1

    rule = rules.Rule(lambda p, *a, key=None: jnp.float32(2.0), apply, stateful=True, name="doubler", loss_fn=mlp_loss)
    comparison = snnjax.compare_gradients(rule, mlp_params(), X, Y, key=jax.random.key(0), draws=2)
    np.testing.assert_allclose(comparison.norm_ratio, 2.0, rtol=1e-6)


def test_comparison_plot_writes_a_figure(tmp_path):
    comparison = snnjax.compare_gradients(
        rules.forward_gradient(mlp_loss), mlp_params(), X, Y, key=jax.random.key(0), draws=4
    )
    figure = comparison.plot(tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 1000 and len(figure.axes) == 3
