"""Exact RTRL in forward mode and truncated BPTT on recurrent spiking networks.

References: ``jax.grad`` of the same loss (RTRL must equal it); a hand-written Python loop that
cuts the gradient at the window boundaries (TBPTT must equal it); XLA's temporary memory at two
sequence lengths (neither rule may grow with T, while BPTT does).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import snnjax
import snnjax.nn as snn
from snnjax import rules

LABELS = jnp.array([0, 1, 0, 1])
CE = optax.softmax_cross_entropy_with_integer_labels


def _inputs(steps, key=1):
    return jax.random.uniform(jax.random.key(key), (steps, 4, 3)) * 2.0


class Recurrent(nnx.Module):
    """A plain NNX model: linear -> recurrent LIF or ALIF -> linear -> leaky integrator, max over time."""

    def __init__(self, neuron, rngs):
        self.inp = nnx.Linear(3, 6, rngs=rngs)
        self.rec = (
            snn.LIF(6, beta=0.9, recurrent=True, rngs=rngs)
            if neuron == "lif"
            else snn.ALIF(6, recurrent=True, rngs=rngs)
        )
        self.out = nnx.Linear(6, 2, rngs=rngs)
        self.readout = snn.LeakyIntegrator(2, kappa=0.9)

    def __call__(self, xs):
        _, z = self.rec.run(self.inp(xs))
        return self.readout.run(self.out(z))[1]


class ResonatorState(NamedTuple):
    v: jax.Array
    w: jax.Array


def resonator(omega, decay=0.85, threshold=0.8):
    """A user's own neuron: a damped oscillator that spikes, with trainable frequencies."""

    def init(shape, dtype=jnp.float32):
        return ResonatorState(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))

    def step(state, x):
        o = omega.reshape((1,) * (x.ndim - 1) + (-1,))  # [1, N]: no implicit rank promotion
        v = decay * (state.v - o * state.w) + x
        w = decay * (state.w + o * state.v)
        z = snnjax.spike(v - threshold)
        return ResonatorState(v - z * threshold, w), z

    return snnjax.Neuron(init, step)


def _stepped(neuron):
    def network(p):
        hidden = {
            "lif": lambda: snnjax.lif(0.9, recurrent=p["rec"]),
            "alif": lambda: snnjax.alif(0.9, recurrent=p["rec"]),
            "own": lambda: resonator(p["omega"]),
        }[neuron]()
        return snnjax.chain(snnjax.dense(p["in"]), hidden, snnjax.dense(p["out"]), snnjax.leaky_integrator(0.9))

    keys = jax.random.split(jax.random.key(0), 3)
    params = {"in": jax.random.normal(keys[0], (3, 6)), "out": jax.random.normal(keys[2], (6, 2))}
    params.update(
        {"omega": jnp.linspace(0.1, 0.5, 6)} if neuron == "own" else {"rec": jax.random.normal(keys[1], (6, 6)) * 0.3}
    )
    return rules.per_step_loss(network, CE), params


def _close(a, b, atol):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=atol), a, b)


@pytest.mark.parametrize("neuron", ["lif", "alif"])
def test_rtrl_equals_bptt_on_a_plain_nnx_recurrent_model(neuron):
    graphdef, params, rest = nnx.split(Recurrent(neuron, nnx.Rngs(0)), nnx.Param, ...)

    def loss_fn(p, xs, labels):  # a maximum over time: not a per-step loss
        logits = nnx.merge(graphdef, p, rest)(xs).max(axis=0)
        return jnp.mean(CE(logits, labels)), logits

    xs = _inputs(30)
    (loss, logits), exact = jax.value_and_grad(loss_fn, has_aux=True)(params, xs, LABELS)
    for chunk in (256, 7):  # one chunk of all 68 coordinates; ten chunks, the last one padded
        (value, aux), grads = rules.rtrl(loss_fn, chunk=chunk)(params, xs, LABELS)
        assert float(value) == float(loss) and jnp.array_equal(aux, logits)
        _close(grads, exact, atol=1e-6)
    assert any(float(jnp.max(jnp.abs(g))) > 1e-3 for g in jax.tree.leaves(exact["rec"]))  # the test can fail


@pytest.mark.parametrize("neuron", ["lif", "alif", "own"])
def test_rtrl_equals_bptt_on_a_stepped_network(neuron):
    loss_fn, params = _stepped(neuron)
    xs = _inputs(25)
    exact = jax.grad(lambda p: loss_fn(p, xs, LABELS)[0])(params)
    _, grads = rules.rtrl(loss_fn, chunk=16)(params, xs, LABELS)
    _close(grads, exact, atol=1e-6)


def _cut_by_hand(loss_fn, params, xs, window):
    """The TBPTT objective, step by step in Python: the state is detached every ``window`` steps."""

    def objective(p):
        net = loss_fn.network(p)
        state, total = net.init(xs.shape[1:], xs.dtype), 0.0
        for t in range(xs.shape[0]):
            if t % window == 0:
                state = jax.lax.stop_gradient(state)
            state, y = net.step(state, xs[t])
            total = total + jnp.mean(CE(y, LABELS))
        return total / xs.shape[0]

    return jax.value_and_grad(objective)(params)


@pytest.mark.parametrize("neuron", ["lif", "alif", "own"])
def test_tbptt_equals_a_hand_written_truncated_loop(neuron):
    loss_fn, params = _stepped(neuron)
    xs = _inputs(10)
    exact = jax.grad(lambda p: loss_fn(p, xs, LABELS)[0])(params)
    for window in (10, 4, 3, 1):  # one window (= BPTT), a remainder window, windows that divide T, one step
        (loss, ys), grads = rules.tbptt(loss_fn, window)(params, xs, LABELS)
        value, by_hand = _cut_by_hand(loss_fn, params, xs, window)
        np.testing.assert_allclose(loss, value, rtol=1e-6)
        _close(grads, by_hand, atol=1e-6)
        assert ys.shape == (10, 4, 2)
        if window == 10:
            _close(grads, exact, atol=1e-6)
    differs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), grads, exact)
    assert max(jax.tree.leaves(differs)) > 1e-4  # k = 1 is not BPTT: the comparison can fail


def test_rtrl_and_tbptt_memory_does_not_grow_with_t():
    loss_fn, params = _stepped("alif")

    def temp(rule, steps):
        xs = jnp.zeros((steps, 4, 3))
        compiled = jax.jit(rule.apply).lower(rule.init(params), params, xs, LABELS).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    for rule in (rules.rtrl(loss_fn, chunk=32), rules.tbptt(loss_fn, 8)):
        assert temp(rule, 512) <= 1.05 * temp(rule, 64), rule.name
    assert temp(rules.bptt(loss_fn), 512) > 4 * temp(rules.bptt(loss_fn), 64)  # what the two rules avoid


def test_bad_options_and_models_are_named():
    loss_fn, params = _stepped("lif")
    with pytest.raises(ValueError, match="rtrl: chunk must be an int >= 1, got 0"):
        rules.rtrl(loss_fn, chunk=0)
    with pytest.raises(ValueError, match="tbptt: window must be an int >= 1, got 0"):
        rules.tbptt(loss_fn, 0)
    with pytest.raises(ValueError, match="tbptt: needs the loss of a stepped network"):
        rules.tbptt(lambda p, xs, labels: (jnp.sum(xs), None), 4)
    with pytest.raises(ValueError, match="tbptt: xs must be time-major"):
        rules.tbptt(loss_fn, 4)(params, jnp.zeros((0, 4, 3)), LABELS)

    def reverse_only(p, xs, labels):
        _, z = snnjax.run(snnjax.lif(0.9, method="custom_vjp"), xs @ p["in"])
        return jnp.mean(z), None

    with pytest.raises(TypeError, match="inject"):
        rules.rtrl(reverse_only)(params, _inputs(5), LABELS)


def _eprop_network(neuron, recurrent=True):
    """``per_step_loss`` of dense -> neuron -> dense -> leaky integrator (kappa 0.8), and parameters."""
    makers = {
        "lif": lambda **kw: snnjax.lif(0.9, **kw),
        "lif detached": lambda **kw: snnjax.lif(0.9, detach_reset=True, **kw),
        "alif": lambda **kw: snnjax.alif(0.9, **kw),
    }

    def network(p):
        hidden = (
            resonator(jnp.linspace(0.1, 0.5, 5))
            if neuron == "own"
            else makers[neuron](recurrent=p["rec"] if recurrent else None)
        )
        return snnjax.chain(
            snnjax.dense(p["in"], p["b"]), hidden, snnjax.dense(p["out"], p["bo"]), snnjax.leaky_integrator(0.8)
        )

    keys = jax.random.split(jax.random.key(0), 3)
    params = {
        "in": jax.random.normal(keys[0], (3, 5)) * 1.5,
        "b": jnp.full(5, 0.1),
        "out": jax.random.normal(keys[2], (5, 2)),
        "bo": jnp.zeros(2),
    }
    if recurrent and neuron != "own":
        params["rec"] = jax.random.normal(keys[1], (5, 5)) * 0.5
    return (
        rules.per_step_loss(network, CE),
        params,
        (makers.get(neuron) or (lambda: resonator(jnp.linspace(0.1, 0.5, 5)))),
    )


def _eprop(loss_fn, params, xs, feedback="symmetric", state=None):
    rule = rules.eprop(loss_fn, feedback=feedback)
    state = rule.init(params, key=jax.random.key(5)) if state is None else state
    return rule(params, xs, LABELS, state=state)


@pytest.mark.parametrize("neuron, last", [("lif", None), ("alif", None), ("alif", 5)])
def test_symmetric_eprop_is_the_gradient_with_the_recurrent_spikes_detached(neuron, last):
    """On the loss of every step, or of the last 5 (a readout window; the readout keeps memory, kappa = 0.8)."""
    loss_fn, params, make = _eprop_network(neuron)
    loss_fn = rules.per_step_loss(loss_fn.network, CE, last=last)
    xs = _inputs(25)
    first = 0 if last is None else xs.shape[0] - last

    def detached(p):  # the same network by hand, z_{t-1} in the recurrent input cut from the gradient
        cell, readout = make(), snnjax.leaky_integrator(0.8)
        s, r, total = cell.init((4, 5)), readout.init((4, 2)), 0.0
        for t in range(xs.shape[0]):
            s, z = cell.step(s, xs[t] @ p["in"] + p["b"][None] + jax.lax.stop_gradient(s.z) @ p["rec"])
            r, y = readout.step(r, z @ p["out"] + p["bo"][None])
            total = total + (jnp.mean(CE(y, LABELS)) if t >= first else 0.0)
        return total / (xs.shape[0] - first)

    (loss, ys), grads, _ = _eprop(loss_fn, params, xs)
    np.testing.assert_allclose(loss, detached(params), rtol=1e-6)
    _close(grads, jax.grad(detached)(params), atol=2e-6)
    exact = jax.grad(lambda p: loss_fn(p, xs, LABELS)[0])(params)
    assert float(jnp.max(jnp.abs(grads["rec"] - exact["rec"]))) > 1e-4  # e-prop is not BPTT here
    _close(grads["out"], exact["out"], atol=1e-6)  # the readout's gradient is exact


def test_eprop_without_recurrence_is_exact_for_a_user_neuron():
    loss_fn, params, _ = _eprop_network("own", recurrent=False)
    xs = _inputs(25)
    _, grads, _ = _eprop(loss_fn, params, xs)
    _close(grads, jax.grad(lambda p: loss_fn(p, xs, LABELS)[0])(params), atol=2e-6)


def test_eprop_equals_the_published_lif_formula_by_hand():
    """Bellec et al. (2020), LIF with a detached reset: eps_t = beta eps_{t-1} + pre_t,
    e_t = psi_t eps_t, filtered by the readout's kappa, times L_t = (dL/dy_t) W_out^T."""
    loss_fn, params, _ = _eprop_network("lif detached")
    xs = _inputs(25)
    (_, ys), grads, _ = _eprop(loss_fn, params, xs)
    derivative = snnjax.surrogates.resolve("fast_sigmoid").derivative
    beta, kappa, steps = 0.9, 0.8, xs.shape[0]
    v, z_prev = np.zeros((4, 5)), np.zeros((4, 5))
    eps_in, eps_rec = np.zeros((4, 3, 5)), np.zeros((4, 5, 5))
    bar_in, bar_rec = np.zeros((4, 3, 5)), np.zeros((4, 5, 5))
    g_in, g_rec = np.zeros((3, 5)), np.zeros((5, 5))
    p = jax.tree.map(np.asarray, params)
    for t in range(steps):
        x = np.asarray(xs[t])
        v = beta * v + x @ p["in"] + p["b"] + z_prev @ p["rec"]  # before the reset
        psi = np.asarray(derivative(jnp.asarray(v - 1.0)))
        eps_in, eps_rec = beta * eps_in + x[:, :, None], beta * eps_rec + z_prev[:, :, None]
        bar_in, bar_rec = kappa * bar_in + psi[:, None, :] * eps_in, kappa * bar_rec + psi[:, None, :] * eps_rec
        probs = np.asarray(jax.nn.softmax(ys[t]))
        error = (probs - np.eye(2)[np.asarray(LABELS)]) / (4 * steps)  # dL/dy_t
        signal = error @ p["out"].T
        g_in += np.einsum("bj,bij->ij", signal, bar_in)
        g_rec += np.einsum("bj,bij->ij", signal, bar_rec)
        z = (v > 1.0).astype(np.float64)
        v, z_prev = v - z, z
    np.testing.assert_allclose(grads["in"], g_in, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["rec"], g_rec, rtol=1e-4, atol=1e-6)


def test_random_eprop_uses_its_fixed_feedback():
    loss_fn, params, _ = _eprop_network("alif")
    xs = _inputs(15)
    _, symmetric, _ = _eprop(loss_fn, params, xs)
    rule = rules.eprop(loss_fn, feedback="random")
    state = rule.init(params, key=jax.random.key(5))
    assert state.matrices[0].shape == (5, 2)
    (_, _), random, _ = rule(params, xs, LABELS, state=state)
    assert float(jnp.max(jnp.abs(random["rec"] - symmetric["rec"]))) > 1e-5
    _close(random["out"], symmetric["out"], atol=1e-7)  # the readout never uses the feedback
    as_symmetric = state._replace(matrices=(params["out"],))
    _, same, _ = rule(params, xs, LABELS, state=as_symmetric)
    _close(same, symmetric, atol=1e-7)


@pytest.mark.parametrize("scale_input", [False, True])
def test_learned_eprop_feedback_is_the_forward_mode_estimate_and_converges_to_the_output_weights(scale_input):
    """The update B <- B - rate (B - sum u^T y' / (g T B)), with y' the readout's tangent along the noise u on the
    hidden spikes' contribution, written by hand (y'_t = kappa y'_{t-1} + g u_t W_out, g = 1 - kappa with a scaled
    input); the call's gradient is random e-prop's with that B; repeated calls bring it to symmetric e-prop's."""
    base, params, _ = _eprop_network("alif")
    readout = snnjax.leaky_integrator(0.8, scale_input=scale_input)
    loss_fn = rules.per_step_loss(lambda p: snnjax.chain(*base.network(p).layers[:3], readout), CE)
    gain = 0.2 if scale_input else 1.0
    xs, key = _inputs(15), jax.random.key(3)
    rule = rules.eprop(loss_fn, feedback="learned", rate=0.3)
    start = rule.init(params)._replace(matrices=(0.1 * jnp.ones((5, 2)),))
    (_, _), grads, state = rule(params, xs, LABELS, state=start, key=key)
    random = rules.eprop(loss_fn, feedback="random")
    _close(grads, random(params, xs, LABELS, state=start)[1], atol=1e-6)  # the gradient uses the B it started with
    y_dot, total = jnp.zeros((4, 2)), jnp.zeros((5, 2))
    for t in range(15):
        u = jax.random.normal(jax.random.fold_in(key, t), (4, 5))
        y_dot = 0.8 * y_dot + gain * u @ params["out"]
        total = total + u.T @ y_dot
    expected = start.matrices[0] - 0.3 * (start.matrices[0] - total / (15 * 4 * gain))
    _close(state.matrices[0], expected, atol=1e-5)
    step = jax.jit(lambda s, k: rule(params, xs, LABELS, state=s, key=k)[2])
    for i in range(30):
        state = step(state, jax.random.key(10 + i))
    b, w = state.matrices[0].ravel(), params["out"].ravel()
    assert float(b @ w / jnp.linalg.norm(b) / jnp.linalg.norm(w)) > 0.95
    assert 0.7 < float(jnp.linalg.norm(b) / jnp.linalg.norm(w)) < 1.3  # W_out itself, whatever the gain
    with pytest.raises(ValueError, match="eprop\\(feedback='learned'\\) is stochastic"):
        rule(params, xs, LABELS, state=state)


def test_eprop_memory_does_not_grow_with_t():
    loss_fn, params, _ = _eprop_network("alif")
    rule = rules.eprop(loss_fn)

    def temp(steps):
        xs = jnp.zeros((steps, 4, 3))
        compiled = jax.jit(rule.apply).lower(rule.init(params), params, xs, LABELS).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp(512) <= 1.05 * temp(64)


def test_eprop_refuses_what_it_cannot_train():
    loss_fn, params, _ = _eprop_network("lif")
    with pytest.raises(ValueError, match="eprop: feedback must be one of 'symmetric', 'random', 'learned', got 'fdfa'"):
        rules.eprop(loss_fn, feedback="fdfa")
    with pytest.raises(ValueError, match="needs init\\(..., key=key\\)"):
        rules.eprop(loss_fn, feedback="random").init(params)
    no_readout = rules.per_step_loss(
        lambda p: snnjax.chain(snnjax.dense(p["in"]), snnjax.lif(0.9), snnjax.dense(p["out"])), CE
    )
    with pytest.raises(ValueError, match="eprop: the network must be snnjax.chain"):
        rules.eprop(no_readout).init(params)
    spiking_readout = rules.per_step_loss(
        lambda p: snnjax.chain(snnjax.dense(p["in"]), snnjax.lif(0.9), snnjax.dense(p["out"]), snnjax.lif(0.9)), CE
    )
    with pytest.raises(ValueError, match="the readout must be linear with one decay"):
        rules.eprop(spiking_readout).init(params)
    trainable = rules.per_step_loss(
        lambda p: snnjax.chain(
            snnjax.dense(p["in"]),
            snnjax.lif(jax.nn.sigmoid(p["b"])),
            snnjax.dense(p["out"]),
            snnjax.leaky_integrator(0.8),
        ),
        CE,
    )
    with pytest.raises(ValueError, match="hidden layer 0's dynamics depend on the parameters"):
        rules.eprop(trainable).init(params)
    with pytest.raises(ValueError, match="eprop: needs the loss of a stepped network"):
        rules.eprop(lambda p, xs, labels: (jnp.sum(xs), None)).init(params)
