"""snnjax.chain: layers stepped in one loop give the values and gradients of running them one by one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snnjax

T, B, I, N, C = 9, 3, 5, 6, 4
RNG = np.random.default_rng(0)
XS = jnp.asarray(RNG.normal(size=(T, B, I)).astype(np.float32))
PARAMS = {
    "w_in": jnp.asarray(RNG.normal(size=(I, N)).astype(np.float32)),
    "w_rec": jnp.asarray(0.5 * RNG.normal(size=(N, N)).astype(np.float32)),
    "w_out": jnp.asarray(RNG.normal(size=(N, C)).astype(np.float32)),
    "decay": jnp.asarray(RNG.uniform(0.6, 0.95, size=(N,)).astype(np.float32)),
    "kappa": jnp.asarray(RNG.uniform(0.6, 0.95, size=(C,)).astype(np.float32)),
}


def _layers(p):
    hidden = snnjax.alif(p["decay"], 0.9, form="fgi", recurrent=p["w_rec"], surrogate="gaussian")
    return hidden, lambda z: z @ p["w_out"], snnjax.leaky_integrator(p["kappa"])


def _one_by_one(p, xs):
    hidden, project, readout = _layers(p)
    _, z = snnjax.run(hidden, jnp.einsum("tbi,in->tbn", xs, p["w_in"]))
    return snnjax.run(readout, project(z))[1]


def _chained(p, xs, run=snnjax.run):
    return run(snnjax.chain(*_layers(p)), jnp.einsum("tbi,in->tbn", xs, p["w_in"]))[1]


def _loss(outputs):
    return lambda p, xs: jnp.sum(jnp.sin(outputs(p, xs)))


def test_values_equal_running_the_layers_one_by_one():
    expected, got = _one_by_one(PARAMS, XS), jax.jit(_chained)(PARAMS, XS)
    assert got.shape == (T, B, C)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(expected).max()) > 0  # the hidden layer spiked


@pytest.mark.parametrize("run", [snnjax.run, snnjax.run_bptt], ids=["run", "run_bptt"])
def test_gradients_equal_running_the_layers_one_by_one(run):
    expected = jax.grad(_loss(_one_by_one))(PARAMS, XS)
    got = jax.jit(jax.grad(_loss(lambda p, xs: _chained(p, xs, run))))(PARAMS, XS)
    for name in PARAMS:
        assert float(jnp.abs(expected[name]).max()) > 0, name
        np.testing.assert_allclose(got[name], expected[name], rtol=2e-5, atol=2e-5, err_msg=name)


def test_forward_mode_equals_running_the_layers_one_by_one():
    tangent = jax.tree.map(jnp.ones_like, PARAMS)
    _, expected = jax.jvp(lambda p: _loss(_one_by_one)(p, XS), (PARAMS,), (tangent,))
    _, got = jax.jvp(lambda p: _loss(_chained)(p, XS), (PARAMS,), (tangent,))
    np.testing.assert_allclose(got, expected, rtol=2e-5)


def test_state_is_each_neurons_at_its_input_shape():
    hidden, project, readout = _layers(PARAMS)
    state = snnjax.chain(hidden, project, readout).init((B, N))
    assert isinstance(state[0], snnjax.ALIFState) and state[0].v.shape == (B, N)
    assert isinstance(state[1], snnjax.LeakyIntegratorState) and state[1].v.shape == (B, C)
    final, _ = snnjax.run(snnjax.chain(hidden, project, readout), jnp.ones((T, B, N)))
    assert jax.tree.map(jnp.shape, final) == jax.tree.map(jnp.shape, state)
    # A chain's state can be passed back in (a later layer's has its own shape), and is checked.
    again, _ = snnjax.run(snnjax.chain(hidden, project, readout), jnp.ones((T, B, N)), final)
    assert jax.tree.map(jnp.shape, again) == jax.tree.map(jnp.shape, state)
    wrong = (
        state[0],
        snnjax.LeakyIntegratorState(jnp.zeros((B, N))),
    )  # the readout's state at the hidden layer's shape
    with pytest.raises(
        ValueError, match=r"state.3 has shape \(3, 6\) but the neuron's resting state there has shape \(3, 4\)"
    ):
        snnjax.run(snnjax.chain(hidden, project, readout), jnp.ones((T, B, N)), wrong)


def test_functions_only_and_bad_layers():
    _, ys = snnjax.run(snnjax.chain(lambda x: 2 * x, jnp.tanh), XS)
    np.testing.assert_allclose(ys, jnp.tanh(2 * XS), rtol=1e-6)  # two programs: tanh may differ in the last bit
    with pytest.raises(ValueError, match="at least one layer"):
        snnjax.chain()
    with pytest.raises(TypeError, match="layer 1 must be"):
        snnjax.chain(snnjax.lif(), 3.0)
