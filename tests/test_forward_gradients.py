"""Forward gradients (FG-W, FG-A, LG-FG-A) against jax.grad, and the gradient diagnostics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import snnjax
import snnjax.nn as snn
from snnjax import rules
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


def snn_tapped(method):
    graphdef, params, rest = nnx.split(snn_model(method), nnx.Param, ...)

    def model(params, xs, labels, tap):
        v = nnx.merge(graphdef, params, rest)(xs, tap=tap)
        logits = v.max(axis=0)
        return -jax.nn.log_softmax(logits)[jnp.arange(labels.shape[0]), labels], logits

    return model, params


@pytest.mark.parametrize("method", ["inject", "bypass", "custom_jvp"])
def test_weight_perturbation_is_unbiased_for_a_scanned_spiking_network(method):
    model, params = snn_tapped(method)
    loss_fn, k = rules.as_loss(model), 4000
    rule = rules.forward_gradient(loss_fn, k)
    _, estimate = jax.jit(lambda p: rule(p, XS, LABELS, key=jax.random.key(4)))(params)
    g = flat(jax.grad(lambda p: loss_fn(p, XS, LABELS)[0])(params))
    assert np.abs(g).max() > 1e-3
    sigma = np.sqrt((g @ g + g**2) / k)
    assert np.all(np.abs(flat(estimate) - g) <= 5 * sigma + 1e-7)


@pytest.mark.parametrize("make_rule", [rules.forward_gradient, rules.activity_forward_gradient], ids=["FG-W", "FG-A"])
@pytest.mark.parametrize("jit", [False, True])
def test_custom_vjp_spikes_fail_with_the_clear_error(make_rule, jit):
    model, params = snn_tapped("custom_vjp")
    rule = make_rule(rules.as_loss(model)) if make_rule is rules.forward_gradient else make_rule(model)
    call = lambda p: rule(p, XS, LABELS, key=jax.random.key(0))
    with pytest.raises(TypeError) as info:
        (jax.jit(call) if jit else call)(params)
    assert str(info.value) == FORWARD_MODE_ERROR


# --- activity perturbation ----------------------------------------------------------------------


def test_activity_perturbation_one_layer_matches_hand_computation():
    x = np.asarray(X, np.float64)
    y = np.random.default_rng(2).normal(size=(6, 3))
    w = np.random.default_rng(3).normal(size=(4, 3))

    def model(w, x, y, tap):
        return jnp.sum(jnp.tanh(tap(x @ w)) * y, axis=-1), None

    key = jax.random.key(5)
    (loss, _), estimate = rules.activity_forward_gradient(model)(
        jnp.asarray(w, jnp.float32), X, jnp.asarray(y, jnp.float32), key=key
    )
    u = np.asarray(jax.random.normal(jax.random.fold_in(jax.random.split(key, 1)[0], 0), (6, 3)), np.float64)
    grad_z = (1 - np.tanh(x @ w) ** 2) * y  # d L_b / d z_b, per example
    expected = x.T @ (np.sum(grad_z * u, axis=1, keepdims=True) * u) / 6
    assert float(loss) == pytest.approx(np.mean(np.sum(np.tanh(x @ w) * y, axis=1)), rel=1e-5)
    np.testing.assert_allclose(np.asarray(estimate), expected, rtol=1e-4, atol=1e-5)


def test_activity_perturbation_is_unbiased_for_a_scanned_spiking_network():
    model, params = snn_tapped("inject")
    comparison = snnjax.compare_gradients(
        rules.activity_forward_gradient(model), params, XS, LABELS, key=jax.random.key(6), draws=600
    )
    overall = comparison.rows()[-1]
    # Unbiased: |mean - g| is noise, with expected size bias_if_unbiased (chi-square, 83 dof).
    assert overall["bias"] < 1.5 * overall["bias_if_unbiased"], comparison.table()
    assert 0.85 < overall["coverage"] <= 1.0
    fg_w = snnjax.compare_gradients(
        rules.forward_gradient(rules.as_loss(model)), params, XS, LABELS, key=jax.random.key(6), draws=50
    )
    assert overall["variance"] < fg_w.rows()[-1]["variance"]  # FG-A: lower variance than FG-W


def blockwise_model(params, x, y, tap):
    """Two blocks cut by a stop-gradient, a linear head and a loss each (per example)."""
    idx = jnp.arange(y.shape[0])
    h1 = jnp.tanh(tap(x @ params["w1"], block=0))
    loss1 = -jax.nn.log_softmax(tap(h1 @ params["head1"], block=0))[idx, y]
    h2 = jnp.tanh(tap(jax.lax.stop_gradient(h1) @ params["w2"], block=1))
    loss2 = -jax.nn.log_softmax(tap(h2 @ params["head2"], block=1))[idx, y]
    return jnp.stack([loss1, loss2]), None


def block_params(scale2=1.0):
    k = jax.random.split(jax.random.key(7), 4)
    return {
        "w1": jax.random.normal(k[0], (4, 5)),
        "head1": jax.random.normal(k[1], (5, 2)),
        "w2": scale2 * jax.random.normal(k[2], (5, 5)),
        "head2": scale2 * jax.random.normal(k[3], (5, 2)),
    }


def test_local_losses_a_block_is_untouched_by_another_blocks_perturbation_and_weights():
    rule = rules.activity_forward_gradient(blockwise_model, 3)
    _, g_a = rule(block_params(1.0), X, Y, key=jax.random.key(8))
    _, g_b = rule(block_params(-2.0), X, Y, key=jax.random.key(8))
    for name in ("w1", "head1"):
        np.testing.assert_array_equal(np.asarray(g_a[name]), np.asarray(g_b[name]))
    assert not np.allclose(np.asarray(g_a["w2"]), np.asarray(g_b["w2"]))


def test_local_forward_gradient_is_unbiased_for_local_backprop():
    lg_bp = rules.bptt(rules.as_loss(blockwise_model))
    comparison = snnjax.compare_gradients(
        rules.activity_forward_gradient(blockwise_model),
        block_params(),
        X,
        Y,
        key=jax.random.key(9),
        draws=800,
        reference=lg_bp,
    )
    assert comparison.rows()[-1]["bias"] < 1.5 * comparison.rows()[-1]["bias_if_unbiased"], comparison.table()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rules.forward_gradient(mlp_loss)(mlp_params(), X, Y), "call it with key"),
        (lambda: rules.forward_gradient(mlp_loss, 0), "num_directions must be an int >= 1"),
        (lambda: rules.forward_gradient(mlp_loss, distribution="uniform"), "distribution must be one of"),
        (
            lambda: rules.activity_forward_gradient(lambda p, x, tap: (x @ p, None))(
                jnp.ones((4, 2)), X, key=jax.random.key(0)
            ),
            "never called tap",
        ),
        (
            lambda: rules.activity_forward_gradient(lambda p, x, tap: (tap(x @ p).sum(-1), None), batch_axis=-1)(
                jnp.ones((4, 2)), X, key=jax.random.key(0)
            ),
            "batch axis",
        ),
        (
            lambda: rules.activity_forward_gradient(lambda p, x, tap: (tap(x @ p, block=1).sum(-1), None))(
                jnp.ones((4, 2)), X, key=jax.random.key(0)
            ),
            "block=1",
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
    assert comparison.names == ["['b1']", "['w1']", "['w2']", "overall"]
    np.testing.assert_allclose(comparison.cosine, 1.0, rtol=1e-6)
    np.testing.assert_allclose(comparison.norm_ratio, 1.0, rtol=1e-6)
    assert np.all(comparison.bias < 1e-6)  # jit and eager may round differently
    assert "bptt vs bptt, 3 draws" in comparison.table() and "overall" in str(comparison)
    assert comparison.rows()[-1]["name"] == "overall"


def test_compare_gradients_detects_a_biased_rule():
    def scaled(state, params, *args, key=None):
        (loss, aux), g = jax.value_and_grad(mlp_loss, has_aux=True)(params, *args)
        noise = rules.directions(key, g)
        return (loss, aux), jax.tree.map(lambda a, n: 1.3 * a + 0.01 * n, g, noise), state

    biased = rules.Rule(lambda p: rules.EmptyState(), scaled, name="biased", loss_fn=mlp_loss)
    comparison = snnjax.compare_gradients(biased, mlp_params(), X, Y, key=jax.random.key(1), draws=64)
    overall = comparison.rows()[-1]
    assert overall["norm_ratio"] == pytest.approx(1.3, rel=0.01)
    assert overall["bias"] > 10 * overall["bias_if_unbiased"] and overall["coverage"] < 0.5


def test_stateful_rules_are_compared_with_their_state():
    def apply(state, params, *args, key=None):
        (loss, aux), g = jax.value_and_grad(mlp_loss, has_aux=True)(params, *args)
        return (loss, aux), jax.tree.map(lambda a: state * a, g), state + 1

    rule = rules.Rule(lambda p: jnp.float32(2.0), apply, stateful=True, name="doubler", loss_fn=mlp_loss)
    comparison = snnjax.compare_gradients(rule, mlp_params(), X, Y, key=jax.random.key(0), draws=2)
    np.testing.assert_allclose(comparison.norm_ratio, 2.0, rtol=1e-6)


def test_comparison_plot_writes_a_figure(tmp_path):
    comparison = snnjax.compare_gradients(
        rules.forward_gradient(mlp_loss), mlp_params(), X, Y, key=jax.random.key(0), draws=4
    )
    figure = comparison.plot(tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 1000 and len(figure.axes) == 3
