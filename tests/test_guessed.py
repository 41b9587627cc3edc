"""Forward gradient along a guessed direction: the projection of jax.grad on the guess, written out."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import snnjax
from snnjax import rules

K = jax.random.split(jax.random.key(3), 4)
PARAMS = {"w1": jax.random.normal(K[0], (4, 6)), "w2": jax.random.normal(K[1], (6, 3))}
X = jax.random.normal(K[2], (5, 4))
Y = jnp.array([0, 1, 2, 1, 0])


def loss_fn(p, x, y):
    logits = jnp.tanh(x @ p["w1"]) @ p["w2"]
    return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(5), y]), logits


def other_loss(p, x, y):  # a different loss: its gradient is the guess
    return jnp.mean(jnp.sin(x @ p["w1"]) ** 2) + jnp.sum(p["w2"] ** 3) / 10, None


def _flat(tree):
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in jax.tree.leaves(tree)])


def test_the_estimate_is_the_gradient_projected_on_the_guess():
    g = _flat(jax.grad(lambda p: loss_fn(p, X, Y)[0])(PARAMS))
    v_tree = jax.grad(lambda p: other_loss(p, X, Y)[0])(PARAMS)
    v = _flat(v_tree)
    (loss, logits), est = rules.guessed_forward_gradient(loss_fn, rules.bptt(other_loss))(PARAMS, X, Y)
    np.testing.assert_allclose(_flat(est), (g @ v) / (v @ v) * v, rtol=1e-4, atol=1e-7)
    assert float(loss) == pytest.approx(float(loss_fn(PARAMS, X, Y)[0])) and logits.shape == (5, 3)
    # per leaf: each layer on its own guess
    _, est = rules.guessed_forward_gradient(loss_fn, rules.bptt(other_loss), per_leaf=True)(PARAMS, X, Y)
    true = jax.grad(lambda p: loss_fn(p, X, Y)[0])(PARAMS)
    for name in PARAMS:
        gl, vl = _flat(true[name]), _flat(v_tree[name])
        np.testing.assert_allclose(_flat(est[name]), (gl @ vl) / (vl @ vl) * vl, rtol=1e-4, atol=1e-7)
    # the true gradient as its own guess: exact; the option of forward_gradient is the same rule
    exact = rules.forward_gradient(loss_fn, guess=rules.bptt(loss_fn))(PARAMS, X, Y, key=jax.random.key(0))[1]
    np.testing.assert_allclose(_flat(exact), g, rtol=1e-4, atol=1e-7)


def test_compare_gradients_measures_the_bias_as_the_sine_of_the_angle_to_the_gradient():
    w = jax.random.normal(K[3], (6,))

    def quartic(w):
        return jnp.sum(w**4) / 4 + jnp.sum(jnp.sin(w)), None

    def guess_loss(w):
        return jnp.sum(w**2) / 2, None  # its gradient, w, is the guess

    rule = rules.guessed_forward_gradient(quartic, rules.bptt(guess_loss))
    c = snnjax.compare_gradients(rule, w, key=jax.random.key(1), draws=4)
    g = np.asarray(w**3 + jnp.cos(w), np.float64)
    v = np.asarray(w, np.float64)
    cos = g @ v / np.linalg.norm(g) / np.linalg.norm(v)
    assert float(c.bias[0]) == pytest.approx(np.sqrt(1 - cos**2), rel=1e-3)
    assert float(c.cosine[0]) == pytest.approx(abs(cos), rel=1e-3)
    assert float(c.variance[0]) < 1e-8  # a fixed guess: no variance


def test_a_guess_on_a_loss_cut_into_blocks_projects_the_gradient_every_rule_reads():
    """With rules.block cuts, the estimate projects the local (cut) gradient: guessing with that very
    gradient returns it exactly."""

    def blockwise(p, x, y):  # w1 reaches the first loss only (the cut), w2 both
        h = jnp.tanh(x @ p["w1"])
        first = jnp.mean((h @ p["w2"]) ** 2)
        second = jnp.mean(jnp.tanh(rules.block(h) @ p["w2"]) ** 2)
        return (first, second), None

    lg_bp = rules.bptt(blockwise)(PARAMS, X, Y)[1]
    est = rules.guessed_forward_gradient(blockwise, rules.bptt(blockwise), per_leaf=True)(PARAMS, X, Y)[1]
    np.testing.assert_allclose(_flat(est), _flat(lg_bp), rtol=1e-4, atol=1e-7)


def test_a_stateful_guess_carries_its_state_and_its_direction():
    dfa = rules.dfa(loss_fn)
    rule = rules.guessed_forward_gradient(loss_fn, dfa)
    key = jax.random.key(4)
    state = rule.init(PARAMS, X, Y, key=key)
    (_, _), est, new_state = rule(PARAMS, X, Y, state=state, key=key)
    _, v_tree, _ = dfa(PARAMS, X, Y, state=state, key=jax.random.fold_in(key, 1))
    g, v = _flat(jax.grad(lambda p: loss_fn(p, X, Y)[0])(PARAMS)), _flat(v_tree)
    np.testing.assert_allclose(_flat(est), (g @ v) / (v @ v) * v, rtol=1e-4, atol=1e-7)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_bad_guesses_are_refused():
    with pytest.raises(ValueError, match="guess must be a snnjax.rules.Rule, got function"):
        rules.guessed_forward_gradient(loss_fn, other_loss)
    with pytest.raises(ValueError, match="a guess is one direction"):
        rules.forward_gradient(loss_fn, 4, guess=rules.bptt(other_loss))


@pytest.mark.parametrize("per_leaf", [False, True])
def test_parameters_the_loss_does_not_reach_learn_from_the_guess(per_leaf):
    params = {**PARAMS, "head": jax.random.normal(K[3], (6, 2))}

    def local(p, x, y):  # a head on the hidden layer, which loss_fn does not use
        return other_loss(p, x, y)[0] + jnp.mean((jnp.tanh(x @ p["w1"]) @ p["head"]) ** 2), None

    _, est = rules.guessed_forward_gradient(loss_fn, rules.bptt(local), per_leaf=per_leaf)(params, X, Y)
    guess = jax.grad(lambda p: local(p, X, Y)[0])(params)
    np.testing.assert_array_equal(np.asarray(est["head"]), np.asarray(guess["head"]))
    g = _flat({k: v for k, v in jax.grad(lambda p: loss_fn(p, X, Y)[0])(params).items() if k != "head"})
    v = _flat({k: guess[k] for k in ("w1", "w2")})
    if not per_leaf:  # the projection is on the reached leaves' guess only
        np.testing.assert_allclose(_flat({k: est[k] for k in ("w1", "w2")}), (g @ v) / (v @ v) * v, rtol=1e-4)
    else:
        true = jax.grad(lambda p: loss_fn(p, X, Y)[0])(params)
        for k in ("w1", "w2"):
            gl, vl = _flat(true[k]), _flat(guess[k])
            np.testing.assert_allclose(_flat(est[k]), (gl @ vl) / (vl @ vl) * vl, rtol=1e-4, atol=1e-7)
