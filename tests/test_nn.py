"""Flax NNX modules: the same dynamics as the pure neurons, NNX cell protocol, trainable decays."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import snnjax
import snnjax.nn as snn

XS = jnp.asarray(np.random.default_rng(0).normal(0.5, 1.0, (9, 2, 4)).astype(np.float32))


@pytest.mark.parametrize(
    "module, pure",
    [
        (lambda: snn.LIF(4, beta=0.7, threshold=0.8), lambda: snnjax.lif(0.7, threshold=0.8)),
        (lambda: snn.IAF(4, threshold=2.0), lambda: snnjax.iaf(threshold=2.0)),
        (lambda: snn.CubaLIF(4, alpha=0.6, beta=0.7), lambda: snnjax.cuba_lif(0.6, 0.7)),
        (lambda: snn.ALIF(4, alpha=0.7, rho=0.9, form="fgi"), lambda: snnjax.alif(0.7, 0.9, form="fgi")),
        (lambda: snn.LeakyIntegrator(4, kappa=0.5), lambda: snnjax.leaky_integrator(0.5)),
    ],
    ids=["lif", "iaf", "cuba", "alif", "leaky"],
)
def test_module_equals_pure_neuron_and_nnx_rnn(module, pure):
    layer = module()
    _, expected = snnjax.run(pure(), XS)
    _, got = layer.run(XS)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    via_rnn = nnx.RNN(layer, time_major=True)(XS)
    np.testing.assert_array_equal(np.asarray(via_rnn), np.asarray(expected))
    carry = layer.initialize_carry((2, 4))
    carry, first = layer(carry, XS[0])
    np.testing.assert_array_equal(np.asarray(first), np.asarray(expected[0]))


def test_recurrent_layer_uses_its_weights():
    layer = snn.LIF(4, recurrent=True, rngs=nnx.Rngs(0))
    w = layer.recurrent.kernel[...]
    _, expected = snnjax.run(snnjax.lif(0.9, recurrent=w), XS)
    np.testing.assert_array_equal(np.asarray(layer.run(XS)[1]), np.asarray(expected))
    with pytest.raises(ValueError, match="needs rngs"):
        snn.LIF(4, recurrent=True)


@pytest.mark.parametrize("parametrization", ["sigmoid", "softplus"])
def test_trainable_decay_gets_gradients_and_stays_in_range(parametrization):
    rngs = nnx.Rngs(1)
    net = snn.Sequential(
        nnx.Linear(4, 6, rngs=rngs), snn.LIF(6, beta=0.9, trainable_decay=True, decay_parametrization=parametrization)
    )
    beta0 = np.asarray(net.layers[1].beta())
    np.testing.assert_allclose(beta0, 0.9, rtol=1e-5)
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)

    def loss(p):
        return jnp.sum(nnx.merge(graphdef, p, rest)(XS) * jnp.arange(6.0)[None, None, :])

    grads = jax.grad(loss)(params)
    assert np.abs(np.asarray(grads["layers"][1]["beta"]["value"][...])).max() > 0
    big_step = jax.tree.map(lambda p, g: p - 1e3 * g, params, grads)
    beta = np.asarray(nnx.merge(graphdef, big_step, rest).layers[1].beta())
    assert np.all((beta > 0) & (beta < 1))


def test_fixed_decay_is_not_a_param():
    layer = snn.LIF(3, beta=jnp.array([0.1, 0.5, 0.9]))
    assert not jax.tree.leaves(nnx.state(layer, nnx.Param))
    np.testing.assert_allclose(np.asarray(layer.beta()), [0.1, 0.5, 0.9])
    graphdef, state = nnx.split(layer)
    grads = jax.grad(
        lambda s: jnp.sum(nnx.merge(graphdef, s).run(XS[..., :3])[1]) + jnp.sum(nnx.merge(graphdef, s).beta())
    )(state)
    assert not np.any(np.asarray(grads["beta"]["value"][...]))


def test_sequential_hoists_linear_layers_and_records():
    rngs = nnx.Rngs(0)
    lin1, lif, lin2, out = nnx.Linear(4, 5, rngs=rngs), snn.LIF(5), nnx.Linear(5, 3, rngs=rngs), snn.LeakyIntegrator(3)
    net = snn.Sequential(lin1, lif, lin2, out)
    v, (z, v_rec) = net(XS, record=True)
    _, z_ref = snnjax.run(snnjax.lif(0.9), XS @ lin1.kernel[...] + lin1.bias[...][None, None, :])
    np.testing.assert_allclose(np.asarray(z), np.asarray(z_ref), atol=0)
    np.testing.assert_array_equal(np.asarray(v), np.asarray(v_rec))
    assert v.shape == (9, 2, 3)
    jaxpr = str(jax.make_jaxpr(lambda x: nnx.merge(*nnx.split(net))(x))(XS))
    scan_body = jaxpr[jaxpr.index("scan[") :]
    assert "dot_general" in jaxpr.split("scan[")[0] and "dot_general" not in scan_body.split("]")[0]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: snn.LIF(4).run(jnp.ones((5, 2, 3))), "last axis must be features=4"),
        (lambda: snn.LIF(4).initialize_carry((2, 3)), "last axis must be features=4"),
        (lambda: snn.LIF(4, beta=1.2), r"decay must lie in \[0, 1\]"),
        (lambda: snn.LIF(4, decay_parametrization="exp"), "parametrization must be one of"),
        (lambda: snn.IAF(4, beta=0.5), "IAF: beta is fixed at 1.0"),
        (lambda: snn.LIF(4, bogus=1), "LIF: unknown option 'bogus'; the options are beta, threshold"),
        (lambda: snn.LeakyIntegrator(4, recurrent=True, rngs=nnx.Rngs(0)), "LeakyIntegrator: has no recurrent weights"),
        (lambda: snn.Sequential(snn.LIF(4))(jnp.ones((5, 4))), r"time-major \[T, B, features\]"),
        (lambda: snn.Sequential(), "at least one layer"),
        (lambda: snn.LIF(4, method="nope"), "unknown method"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_optax_training_step_with_nnx_optimizer():
    rngs = nnx.Rngs(0)
    net = snn.Sequential(nnx.Linear(4, 8, rngs=rngs), snn.LIF(8), nnx.Linear(8, 2, rngs=rngs), snn.LeakyIntegrator(2))
    optimizer = nnx.Optimizer(net, optax.adam(1e-2), wrt=nnx.Param)
    labels = jnp.array([0, 1])

    @nnx.jit
    def step(net, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: snnjax.losses.membrane_cross_entropy(m(XS), labels))(net)
        optimizer.update(net, grads)
        return loss

    losses = [float(step(net, optimizer)) for _ in range(20)]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("layer", ["LIF", "ALIF"])
def test_remat_layers_give_the_same_gradients(layer):
    xs = jax.random.normal(jax.random.key(0), (12, 3, 4))

    def grads(remat):
        rngs = nnx.Rngs(0)
        neuron = (
            snn.LIF(5, recurrent=True, remat=remat, rngs=rngs)
            if layer == "LIF"
            else snn.ALIF(5, alpha=0.8, adaptation=0.3, remat=remat)
        )
        net = snn.Sequential(
            nnx.Linear(4, 5, rngs=nnx.Rngs(1)),
            neuron,
            nnx.Linear(5, 2, rngs=nnx.Rngs(2)),
            snn.LeakyIntegrator(2, remat=remat),
        )
        graphdef, params, rest = nnx.split(net, nnx.Param, ...)
        return jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(xs) ** 2))(params)

    for remat in (True, False):  # the option reaches the scan
        cell = snn.LIF(5, remat=remat) if layer == "LIF" else snn.ALIF(5, remat=remat)
        assert ("remat" in str(jax.make_jaxpr(lambda x, cell=cell: cell.run(x)[1])(jnp.zeros((3, 2, 5))))) == remat
    with_remat, without = grads(True), grads(False)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.allclose(a, b, rtol=1e-5, atol=1e-6)), with_remat, without))
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(without)) > 0


RUN_BPTT_LAYERS = {
    "LIF": lambda **kw: snn.LIF(5, beta=0.8, trainable_decay=True, recurrent=True, rngs=nnx.Rngs(0), **kw),
    "IAF": lambda **kw: snn.IAF(5, recurrent=True, rngs=nnx.Rngs(0), **kw),
    "CubaLIF": lambda **kw: snn.CubaLIF(5, trainable_decay=True, recurrent=True, rngs=nnx.Rngs(0), **kw),
    "ALIF": lambda **kw: snn.ALIF(
        5, alpha=0.8, rho=0.9, form="fgi", trainable_decay=True, recurrent=True, rngs=nnx.Rngs(0), **kw
    ),
}


@pytest.mark.parametrize("layer", list(RUN_BPTT_LAYERS))
def test_run_bptt_layers_give_the_same_values_and_gradients(layer):
    xs = 1.5 * jax.random.normal(jax.random.key(1), (12, 3, 4))

    def net(**kw):
        return snn.Sequential(
            nnx.Linear(4, 5, rngs=nnx.Rngs(1)),
            RUN_BPTT_LAYERS[layer](**kw),
            nnx.Linear(5, 2, rngs=nnx.Rngs(2)),
            snn.LeakyIntegrator(2, trainable_decay=True, **kw),
        )

    def value_and_grads(model):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        return jax.value_and_grad(lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(xs) ** 2))(params)

    fast, plain = net(run_bptt=True), net(remat=False)
    cell = fast.layers[1]
    assert "custom_vjp" in str(jax.make_jaxpr(lambda x: cell.run(x)[1])(jnp.zeros((3, 2, 5))))  # the option reaches run
    np.testing.assert_array_equal(np.asarray(fast(xs)), np.asarray(plain(xs)))
    (value, grads), (expected_value, expected) = value_and_grads(fast), value_and_grads(plain)
    assert float(value) == float(expected_value)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), grads, expected)
    assert float(jnp.abs(grads["layers"][1]["recurrent"]["kernel"][...]).max()) > 0
    with pytest.raises(TypeError, match="snnjax.run"):  # reverse mode only
        jax.jvp(lambda x: cell.run(x)[1], (jnp.ones((3, 2, 5)),), (jnp.ones((3, 2, 5)),))


def test_run_options_must_be_booleans():
    with pytest.raises(TypeError, match="run_bptt must be True or False"):
        snn.LIF(3, run_bptt="yes")
    with pytest.raises(TypeError, match="remat must be True or False"):
        snn.LeakyIntegrator(3, remat=None)
