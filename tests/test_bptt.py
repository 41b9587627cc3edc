"""snnjax.run_bptt: the values of snnjax.run, and the gradients of jax.grad through snnjax.run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snnjax

T, B, N, I = 7, 3, 4, 5
RNG = np.random.default_rng(0)
INPUTS = jnp.asarray(RNG.normal(size=(T, B, I)).astype(np.float32))
READOUT = jnp.asarray(RNG.normal(size=(N,)).astype(np.float32))
PARAMS = {
    "w_in": jnp.asarray(RNG.normal(size=(I, N)).astype(np.float32)),
    "w_rec": jnp.asarray(0.5 * RNG.normal(size=(N, N)).astype(np.float32)),
    "decay": jnp.asarray(RNG.uniform(0.6, 0.95, size=(N,)).astype(np.float32)),
    "threshold": jnp.asarray(0.5, jnp.float32),
}


def _neuron(name, p, method):
    decay, rec = p["decay"], p["w_rec"]
    return {
        "lif": lambda: snnjax.lif(decay, threshold=p["threshold"], method=method),
        "lif-recurrent": lambda: snnjax.lif(decay, threshold=p["threshold"], recurrent=rec, method=method),
        "lif-recurrent-zero-reset-detached": lambda: snnjax.lif(
            decay, reset="zero", detach_reset=True, recurrent=rec, method=method
        ),
        "iaf-recurrent": lambda: snnjax.iaf(threshold=p["threshold"], recurrent=rec, method=method),
        "alif-fgi-recurrent": lambda: snnjax.alif(
            decay, 0.9, form="fgi", recurrent=rec, surrogate="gaussian", method=method
        ),
        "alif-bellec-recurrent": lambda: snnjax.alif(decay, 0.9, recurrent=rec, method=method),
        "cuba-recurrent": lambda: snnjax.cuba_lif(0.8, decay, recurrent=rec, method=method),
        "leaky-integrator": lambda: snnjax.leaky_integrator(decay),
    }[name]()


NAMES = (
    "lif",
    "lif-recurrent",
    "lif-recurrent-zero-reset-detached",
    "iaf-recurrent",
    "alif-fgi-recurrent",
    "alif-bellec-recurrent",
    "cuba-recurrent",
    "leaky-integrator",
)


def _loss(p, xs, runner, name, method, start):
    neuron = _neuron(name, p, method)
    currents = 2.0 * jnp.einsum("tbi,in->tbn", xs, p["w_in"])
    state = None if start is None else jax.tree.map(lambda a: a * p["decay"][None, :], start(neuron))
    final, ys = runner(neuron, currents, state)
    return jnp.sum(jnp.cumsum(ys, axis=0) * READOUT[None, None, :]) + jnp.sum(jax.tree.leaves(final)[0] ** 2)


def _start(neuron):  # a non-resting initial state, spikes included, to exercise its gradient
    rng = np.random.default_rng(1)
    return jax.tree.map(lambda a: jnp.asarray(rng.uniform(0, 1, a.shape) > 0.5, jnp.float32) + 0.1, neuron.init((B, N)))


@pytest.mark.parametrize("method", ["inject", "custom_vjp"])
@pytest.mark.parametrize("name", NAMES)
def test_values_and_gradients_equal_run(name, method):
    start = _start if name != "leaky-integrator" else None
    run = lambda neuron, xs, state: snnjax.run(neuron, xs, state, remat=False)  # noqa: E731
    f_run = jax.jit(jax.value_and_grad(lambda p, x: _loss(p, x, run, name, method, start), argnums=(0, 1)))
    f_bptt = jax.jit(jax.value_and_grad(lambda p, x: _loss(p, x, snnjax.run_bptt, name, method, start), argnums=(0, 1)))
    (v_run, g_run), (v_bptt, g_bptt) = f_run(PARAMS, INPUTS), f_bptt(PARAMS, INPUTS)
    assert v_bptt == v_run  # the forward pass is the same computation
    flat_run, flat_bptt = jax.tree.leaves(g_run), jax.tree.leaves(g_bptt)
    assert any(float(jnp.abs(g).max()) > 0 for g in flat_run)
    for a, b in zip(flat_run, flat_bptt):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-5)


def test_outputs_and_final_state_equal_run():
    neuron = snnjax.alif(0.9, 0.8, form="fgi", recurrent=PARAMS["w_rec"])
    currents = jnp.einsum("tbi,in->tbn", INPUTS, PARAMS["w_in"])
    (s_run, y_run), (s_bptt, y_bptt) = snnjax.run(neuron, currents), snnjax.run_bptt(neuron, currents)
    assert jnp.array_equal(y_run, y_bptt) and bool(jnp.any(y_run == 1))
    assert all(jnp.array_equal(a, b) for a, b in zip(s_run, s_bptt))


def test_recurrent_weight_gradient_is_one_product_after_the_loop():
    def loss(w):
        neuron = snnjax.lif(0.9, recurrent=w)
        return snnjax.run_bptt(neuron, jnp.einsum("tbi,in->tbn", INPUTS, PARAMS["w_in"]))[1].sum()

    hlo = jax.jit(jax.grad(loss)).lower(PARAMS["w_rec"]).as_text()
    backward = hlo[hlo.rindex("while") :]  # after the last loop: the [N, T*B] x [T*B, N] product
    assert f"tensor<{N}x{T * B}xf32>" in backward or f"tensor<{T * B}x{N}xf32>" in backward


@pytest.mark.parametrize("name, stacked", [("lif-recurrent", 3), ("alif-fgi-recurrent", 4), ("leaky-integrator", 1)])
def test_forward_loop_stores_the_spikes_once(name, stacked):
    """The output of each step is a field of the next state (LIF's z, a readout's v): the forward
    loop stacks it once, beside the other state fields and the input current (none for a
    readout: it is the input itself)."""

    def loss(p):
        return snnjax.run_bptt(_neuron(name, p, "inject"), jnp.einsum("tbi,in->tbn", INPUTS, p["w_in"]))[1].sum()

    eqns = jax.make_jaxpr(jax.grad(loss))(PARAMS).jaxpr.eqns
    forward = next(e for e in eqns if e.primitive.name == "scan")
    assert sum(v.aval.shape == (T, B, N) for v in forward.outvars) == stacked


def test_forward_mode_raises_a_clear_error():
    neuron = snnjax.lif(0.9, recurrent=PARAMS["w_rec"])
    currents = jnp.ones((T, B, N))
    with pytest.raises(TypeError, match="snnjax.run"):
        jax.jvp(lambda x: snnjax.run_bptt(neuron, x)[1], (currents,), (currents,))


def test_gradient_under_vmap_equals_run():
    xs = jnp.stack([INPUTS, -INPUTS])

    def grads(runner):
        def loss(w, x):
            neuron = snnjax.lif(0.9, threshold=0.3, recurrent=w)
            return runner(neuron, jnp.einsum("tbi,in->tbn", x, PARAMS["w_in"]))[1].sum()

        return jax.vmap(jax.grad(loss), in_axes=(None, 0))(PARAMS["w_rec"], xs)

    np.testing.assert_allclose(grads(snnjax.run_bptt), grads(snnjax.run), rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="run_bptt: xs must be time-major"):
        snnjax.run_bptt(snnjax.lif(), jnp.ones(3))
    with pytest.raises(ValueError, match=r"recurrent weights must have shape \[N, N\]"):
        snnjax.run_bptt(snnjax.lif(recurrent=jnp.ones((3, 3))), jnp.ones((2, 1, 4)))
