"""e-prop with several hidden layers: symmetric, random and learned feedback.

References: ``jax.grad`` of the same network with the recurrent spikes detached, where the
layer above is linear (its same-step Jacobian is constant, so e-prop's factorised gradient is
exact); OSTL on a spiking stack whose readout has no memory (the two rules then coincide);
random e-prop with the feedback set to the layers' true same-step Jacobians.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import snnjax
from snnjax import rules

CE = optax.softmax_cross_entropy_with_integer_labels
LABELS = jnp.array([0, 1, 0, 1])


def _params():
    keys = jax.random.split(jax.random.key(0), 4)
    return {
        "in": jax.random.normal(keys[0], (3, 6)) * 1.5,
        "b": jnp.full(6, 0.1),
        "rec": jax.random.normal(keys[1], (6, 6)) * 0.5,
        "mid": jax.random.normal(keys[2], (6, 5)) * 0.8,
        "out": jax.random.normal(keys[3], (5, 2)),
        "bo": jnp.zeros(2),
    }


def _loss(upper, kappa: float = 0.8):
    """dense -> recurrent ALIF -> dense -> ``upper`` -> dense -> leaky integrator (``kappa``), a loss at every step."""

    def network(p):
        return snnjax.chain(
            snnjax.dense(p["in"], p["b"]),
            snnjax.alif(0.9, recurrent=p["rec"]),
            snnjax.dense(p["mid"]),
            upper,
            snnjax.dense(p["out"], p["bo"]),
            snnjax.leaky_integrator(kappa),
        )

    return rules.per_step_loss(network, CE)


XS = jax.random.uniform(jax.random.key(1), (20, 4, 3)) * 2.0
LINEAR = snnjax.leaky_integrator(0.0)  # no memory, output = current: a constant same-step Jacobian


def _close(a, b, atol):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol, rtol=1e-5), a, b)


def test_deep_symmetric_eprop_is_the_detached_gradient_when_the_layer_above_is_linear():
    params, loss_fn = _params(), _loss(LINEAR)

    def detached(p):  # by hand: z_{t-1} in the recurrent input cut from the gradient
        cell, readout = snnjax.alif(0.9), snnjax.leaky_integrator(0.8)
        s, r, total = cell.init((4, 6)), readout.init((4, 2)), 0.0
        for t in range(XS.shape[0]):
            s, z = cell.step(s, XS[t] @ p["in"] + p["b"][None] + jax.lax.stop_gradient(s.z) @ p["rec"])
            r, y = readout.step(r, (z @ p["mid"]) @ p["out"] + p["bo"][None])
            total = total + jnp.mean(CE(y, LABELS))
        return total / XS.shape[0]

    rule = rules.eprop(loss_fn)
    (loss, ys), grads, _ = rule(params, XS, LABELS, state=rule.init(params))
    np.testing.assert_allclose(loss, detached(params), rtol=1e-6)
    _close(grads, jax.grad(detached)(params), atol=2e-6)
    assert ys.shape == (20, 4, 2)


@pytest.mark.parametrize("upper", ["lif", "alif"])
def test_deep_symmetric_eprop_equals_ostl_without_readout_memory(upper):
    params = _params()
    loss_fn = _loss(snnjax.lif(0.8) if upper == "lif" else snnjax.alif(0.8), kappa=0.0)
    rule = rules.eprop(loss_fn)
    (loss, _), grads, _ = rule(params, XS, LABELS, state=rule.init(params))
    (want, _), ostl = rules.ostl(loss_fn)(params, XS, LABELS)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    _close(grads, ostl, atol=2e-6)
    assert float(jnp.max(jnp.abs(grads["in"]))) > 1e-4  # the signal reaches the lowest layer


def test_deep_random_eprop_broadcasts_each_layers_own_feedback():
    """With B_1 = W_mid W_out and B_2 = W_out (the true same-step Jacobians when the layer above is linear)
    random e-prop is symmetric e-prop; with its own draws it differs in the lower layer only."""
    params, loss_fn = _params(), _loss(LINEAR)
    symmetric = rules.eprop(loss_fn)
    _, exact, _ = symmetric(params, XS, LABELS, state=symmetric.init(params))
    rule = rules.eprop(loss_fn, feedback="random")
    state = rule.init(params, key=jax.random.key(5))
    assert [m.shape for m in state.matrices] == [(6, 2), (5, 2)]
    true = state._replace(matrices=(params["mid"] @ params["out"], params["out"]))
    _close(rule(params, XS, LABELS, state=true)[1], exact, atol=2e-6)
    _, drawn, _ = rule(params, XS, LABELS, state=state._replace(matrices=(state.matrices[0], params["out"])))
    _close(drawn["mid"], exact["mid"], atol=1e-7)
    _close(drawn["out"], exact["out"], atol=1e-7)
    assert float(jnp.max(jnp.abs(drawn["in"] - exact["in"]))) > 1e-4


def test_deep_learned_eprop_feedback_converges_to_each_layers_jacobian():
    params, loss_fn = _params(), _loss(LINEAR)
    rule = rules.eprop(loss_fn, feedback="learned", rate=0.2)
    state = rule.init(params)
    step = jax.jit(lambda s, k: rule(params, XS, LABELS, state=s, key=k)[2])
    for i in range(40):
        state = step(state, jax.random.key(10 + i))
    for b, w in zip(state.matrices, (params["mid"] @ params["out"], params["out"])):
        b, w = b.ravel(), w.ravel()
        assert float(b @ w / jnp.linalg.norm(b) / jnp.linalg.norm(w)) > 0.95
        assert 0.7 < float(jnp.linalg.norm(b) / jnp.linalg.norm(w)) < 1.3


def test_deep_eprop_memory_does_not_grow_with_t():
    params, loss_fn = _params(), _loss(snnjax.lif(0.8))
    rule = rules.eprop(loss_fn)

    def temp(steps):
        xs = jnp.ones((steps, 4, 3))
        compiled = jax.jit(rule.apply).lower(rule.init(params), params, xs, LABELS).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp(512) <= 1.05 * temp(64)


def test_the_command_trains_deep_networks_with_eprop(tmp_path):
    import json

    from snnjax import cli

    common = "train --model rsnn --hidden 16 16 --steps 30 --epochs 4 --lr 0.01 --batch-size 16".split()
    common += ["--no-progress", "--no-plots", "--no-checkpoints", "--data-option", "num_classes=2"]
    common += ["--data-option", "units=20", "--data-option", "samples_per_class=100"]
    for rule in ("eprop", "eprop-learned"):
        assert cli.main([*common, "--rule", rule, "--out", str(tmp_path / rule)]) == 0
        history = [json.loads(line) for line in (tmp_path / rule / "metrics.jsonl").read_text().splitlines()]
        assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.05, (rule, history)
