"""OSTL and OTTT: equal to the exact gradient where their factorisation is exact, to hand-written
constructions of their approximation elsewhere; memory flat in T; one-line errors."""

import jax
import jax.numpy as jnp
import optax
import pytest

import snnjax
from snnjax import rules

SURROGATE = snnjax.surrogates.fast_sigmoid(slope=5.0)
sg = jax.lax.stop_gradient


def loss_t(y, labels):
    return optax.softmax_cross_entropy_with_integer_labels(y, labels)


def hidden_neuron(kind, p, name):
    rec = p.get(f"rec{name}")
    if kind == "alif":
        return snnjax.alif(0.85, 0.9, adaptation=0.3, surrogate=SURROGATE, recurrent=rec)
    if kind == "cuba":
        return snnjax.cuba_lif(0.7, 0.8, surrogate=SURROGATE, recurrent=rec)
    return snnjax.lif(0.8, surrogate=SURROGATE, recurrent=rec, detach_reset=kind == "lif-detached")


def make(kinds, kappa, recurrent=(), seed=0, sizes=None, last=None):
    """A chain of dense + hidden layers of ``kinds`` and a leaky-integrator readout, its loss and parameters."""
    sizes = sizes or [4] + [6, 5][: len(kinds)] + [3]
    keys = iter(jax.random.split(jax.random.key(seed), 3 * len(sizes)))
    params = {}
    for l, (n_in, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"w{l}"] = jax.random.normal(next(keys), (n_in, n)) / jnp.sqrt(n_in) * 1.5
        params[f"b{l}"] = 0.1 * jax.random.normal(next(keys), (n,))
        if l in recurrent:
            params[f"rec{l}"] = 0.5 * jax.random.normal(next(keys), (n, n)) / jnp.sqrt(n)

    def network(p):
        layers = []
        for l, kind in enumerate(kinds):
            layers += [snnjax.dense(p[f"w{l}"], p[f"b{l}"]), hidden_neuron(kind, p, l)]
        top = len(kinds)
        return snnjax.chain(*layers, snnjax.dense(p[f"w{top}"], p[f"b{top}"]), snnjax.leaky_integrator(kappa))

    return rules.per_step_loss(network, loss_t, last=last), params


def data(steps=8, batch=3, seed=1):
    xs = (jax.random.uniform(jax.random.key(seed), (steps, batch, 4)) < 0.5).astype(jnp.float32) * 2.0
    return xs, jnp.arange(batch) % 3


def close(a, b, **tol):
    leaves = jax.tree.leaves(jax.tree.map(lambda u, v: bool(jnp.allclose(u, v, **tol)), a, b))
    return bool(leaves) and all(leaves)


def jitted(rule):
    return jax.jit(lambda p, x, y: rule(p, x, y))


def exact(loss_fn, params, xs, labels):
    return jax.grad(lambda p: loss_fn(p, xs, labels)[0])(params)


def pairs_of(loss_fn, p):
    layers = loss_fn.network(p).layers
    return list(zip(layers[0::2], layers[1::2]))


def cell_of(neuron):
    if neuron.recurrence is None:
        return neuron.step, None
    return neuron.recurrence.cell, neuron.recurrence.weights


@pytest.mark.parametrize("kind", ["lif", "alif", "cuba"])
def test_ostl_is_the_exact_gradient_of_one_layer_feeding_a_readout_without_memory(kind):
    loss_fn, params = make([kind], kappa=0.0)
    xs, labels = data()
    (loss, ys), grads = jitted(rules.ostl(loss_fn))(params, xs, labels)
    assert jnp.allclose(loss, loss_fn(params, xs, labels)[0], rtol=1e-6)
    assert close(grads, exact(loss_fn, params, xs, labels), rtol=1e-4, atol=1e-6)


def test_ostl_is_not_exact_through_a_readout_with_memory():
    loss_fn, params = make(["lif"], kappa=0.8)
    xs, labels = data()
    _, grads = rules.ostl(loss_fn)(params, xs, labels)
    true = exact(loss_fn, params, xs, labels)
    assert jnp.allclose(grads["w1"], true["w1"], rtol=1e-4, atol=1e-6)  # the readout's own weights: exact
    assert not jnp.allclose(grads["w0"], true["w0"], rtol=1e-2, atol=1e-4)


def handwritten_ostl(loss_fn, params, xs, labels):
    """Layer l's OSTL gradient: jax.grad of the loss with the states of the layers above l held fixed at
    every step and every recurrent input detached (the paths OSTL drops), by an unrolled loop."""

    def loss_cut(p, cut):
        pairs = pairs_of(loss_fn, p)
        states = [n.init((xs.shape[1], d.kernel.shape[1])) for d, n in pairs]
        total = 0.0
        for x in xs:
            h, new = x, []
            for l, (d, n) in enumerate(pairs):
                s = jax.tree.map(sg, states[l]) if l > cut else states[l]
                cell, rec = cell_of(n)
                s, h = cell(s, d(h) + (0.0 if rec is None else sg(s.z) @ rec))
                new.append(s)
            states = new
            total = total + jnp.mean(loss_t(h, labels))
        return total / xs.shape[0]

    grads = {}
    for l in range(len(pairs_of(loss_fn, params))):
        g = jax.jit(jax.grad(loss_cut), static_argnums=1)(params, l)
        grads.update({k: v for k, v in g.items() if k[-1] == str(l)})
    return grads


def test_ostl_equals_its_hand_written_approximation_on_a_deep_recurrent_network():
    loss_fn, params = make(["lif", "alif"], kappa=0.6, recurrent=(0,))
    xs, labels = data()
    _, grads = jitted(rules.ostl(loss_fn))(params, xs, labels)
    assert close(grads, handwritten_ostl(loss_fn, params, xs, labels), rtol=1e-4, atol=1e-6)
    assert not close(grads, exact(loss_fn, params, xs, labels), rtol=1e-2, atol=1e-4)  # an approximation


def test_ostl_on_one_recurrent_layer_is_symmetric_eprop():
    loss_fn, params = make(["alif"], kappa=0.0, recurrent=(0,))
    xs, labels = data()
    _, grads = rules.ostl(loss_fn)(params, xs, labels)
    eprop = rules.eprop(loss_fn)
    _, expected, _ = eprop(params, xs, labels, state=eprop.init(params))
    assert close(grads, expected, rtol=1e-4, atol=1e-6)


def test_ottt_is_the_exact_gradient_of_a_detached_lif_layer_feeding_a_readout_without_memory():
    loss_fn, params = make(["lif-detached"], kappa=0.0)
    xs, labels = data()
    (loss, _), grads = jitted(rules.ottt(loss_fn))(params, xs, labels)
    assert jnp.allclose(loss, loss_fn(params, xs, labels)[0], rtol=1e-6)
    assert close(grads, exact(loss_fn, params, xs, labels), rtol=1e-4, atol=1e-6)
    loss_fn, params = make(["lif"], kappa=0.0)  # the reset's path, dropped
    assert not close(rules.ottt(loss_fn)(params, xs, labels)[1], exact(loss_fn, params, xs, labels), rtol=1e-2)


def handwritten_ottt(loss_fn, params, xs, labels, decays):
    """OTTT as autodiff of a rewritten network: every carried state held fixed, and each current's gradient
    injected through the presynaptic traces, ``sg(I) + a W - sg(a W)`` with ``a_t = lam sg(a_{t-1}) + pre_t``."""

    def surrogate(p):
        pairs = pairs_of(loss_fn, p)
        batch = xs.shape[1]
        states = [n.init((batch, d.kernel.shape[1])) for d, n in pairs]
        traces = [None] * len(pairs)
        total = 0.0
        for x in xs:
            h = x
            for l, (d, n) in enumerate(pairs):
                s = jax.tree.map(sg, states[l])
                cell, rec = cell_of(n)
                pres = [h, jnp.ones((batch, 1))] + ([s.z] if rec is not None else [])
                weights = [d.kernel, d.bias[None]] + ([rec] if rec is not None else [])
                old = traces[l] or [jnp.zeros_like(pre) for pre in pres]
                traces[l] = [decays[l] * sg(a) + pre for a, pre in zip(old, pres)]
                real = sum(pre @ w for pre, w in zip(pres, weights))
                injected = sum(a @ w for a, w in zip(traces[l], weights))
                states[l], h = cell(s, sg(real) + injected - sg(injected))
            total = total + jnp.mean(loss_t(h, labels))
        return total / xs.shape[0]

    return jax.jit(jax.grad(surrogate))(params)


def test_ottt_equals_its_hand_written_construction_on_a_deep_recurrent_network():
    loss_fn, params = make(["lif", "alif"], kappa=0.6, recurrent=(1,))
    xs, labels = data()
    _, grads = jitted(rules.ottt(loss_fn))(params, xs, labels)
    assert close(grads, handwritten_ottt(loss_fn, params, xs, labels, [0.8, 0.85, 0.6]), rtol=1e-4, atol=1e-6)
    _, given = rules.ottt(loss_fn, decays=[0.5, 0.5, 0.5])(params, xs, labels)
    assert close(given, handwritten_ottt(loss_fn, params, xs, labels, [0.5] * 3), rtol=1e-4, atol=1e-6)


def test_online_spatial_rules_keep_memory_flat_in_time():
    loss_fn, params = make(["lif", "alif"], kappa=0.6, recurrent=(1,))

    def temp_bytes(rule, steps):
        xs, labels = data(steps)
        return jax.jit(rule.apply).lower((), params, xs, labels).compile().memory_analysis().temp_size_in_bytes

    for rule in (rules.ostl(loss_fn), rules.ottt(loss_fn)):
        short, long = temp_bytes(rule, 20), temp_bytes(rule, 400)
        assert long < 1.2 * short + 4 * 400 * 3 * 3, (rule.name, short, long)  # at most the [T, B, C] output grows


def test_online_spatial_rules_refuse_what_they_cannot_do_in_one_line():
    xs, labels = data()
    loss_fn, params = make(["cuba"], kappa=0.0)
    with pytest.raises(ValueError, match="ottt: cannot read the layer's leak.*pass decays"):
        rules.ottt(loss_fn)(params, xs, labels)
    assert jnp.all(jnp.isfinite(rules.ottt(loss_fn, decays=[0.8, 0.0])(params, xs, labels)[1]["w0"]))
    with pytest.raises(ValueError, match="ottt: decays needs one value per"):
        rules.ottt(loss_fn, decays=[0.8])(params, xs, labels)
    with pytest.raises(ValueError, match=r"ottt: decays must lie in \[0, 1\]"):
        rules.ottt(loss_fn, decays=[0.8, 1.5])
    with pytest.raises(ValueError, match="ostl: an online rule needs the loss of a stepped network"):
        rules.ostl(lambda p, x, y: (0.0, None))(params, xs, labels)


def test_every_online_rule_trains_a_readout_over_the_last_steps():
    """``per_step_loss(..., last=k)``: the loss of the last k steps only. Each rule meets its reference on it:
    jax.grad where the rule is exact, offline DFA for online DFA, OSTL for e-prop (one recurrent layer)."""
    xs, labels = data()
    loss_fn, params = make(["alif"], kappa=0.0, recurrent=(0,), last=3)
    _, ys = loss_fn(params, xs, labels)
    by_hand = jnp.mean(jax.vmap(loss_t, in_axes=(0, None))(ys[-3:], labels))
    assert jnp.allclose(loss_fn(params, xs, labels)[0], by_hand, rtol=1e-6)
    assert jnp.allclose(loss_fn.running_loss(params, xs, labels), by_hand, rtol=1e-6)
    true = exact(loss_fn, params, xs, labels)
    for rule in (rules.rtrl(loss_fn), rules.tbptt(loss_fn, 8)):
        (loss, _), grads = rule(params, xs, labels)
        assert jnp.allclose(loss, by_hand, rtol=1e-5) and close(grads, true, rtol=1e-4, atol=1e-6), rule.name
    (_, _), tbptt_grads = rules.tbptt(loss_fn, 3)(params, xs, labels)  # windows 3 + 3 + 2: the loss in the last two
    assert not close(tbptt_grads, true, rtol=1e-2, atol=1e-4)
    eprop = rules.eprop(loss_fn)
    _, expected, _ = eprop(params, xs, labels, state=eprop.init(params))
    assert close(rules.ostl(loss_fn)(params, xs, labels)[1], expected, rtol=1e-4, atol=1e-6)
    for kind, rule in (("cuba", rules.ostl), ("lif-detached", rules.ottt)):
        loss_fn, params = make([kind], kappa=0.0, last=1)
        assert close(rule(loss_fn)(params, xs, labels)[1], exact(loss_fn, params, xs, labels), rtol=1e-4, atol=1e-6)
    loss_fn, params = make(["lif", "alif"], kappa=0.0, last=4)
    online, offline = rules.online_dfa(loss_fn), rules.dfa(loss_fn)
    state = online.init(params, xs, labels, key=jax.random.key(2))
    assert close(online(params, xs, labels, state=state)[1], offline(params, xs, labels, state=state)[1], rtol=2e-4)
    with pytest.raises(ValueError, match="per_step_loss: last must be None or an int >= 1"):
        rules.per_step_loss(loss_fn.network, loss_t, last=0)
