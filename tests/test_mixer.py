"""Ren et al.'s local losses and LocalMixer: the group-wise loss against the head's cross-entropy,
each group's noise reaching its own loss only, the mixer against a hand-written forward pass,
and activity perturbation with group-wise losses unbiased against local backprop."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import snnjax
from snnjax import rules
from snnjax.nn import LocalMixer
from snnjax.rules.graph import Handler, evaluate, trace

B, K = 3, 4
X = jax.random.normal(jax.random.key(0), (B, 8, 8))
Y = jnp.array([0, 1, 3])


def _head_ce(features, w, b, aggregate, groups):
    pooled = features.mean(axis=tuple(range(1, features.ndim - 1)))  # [B, C]
    if aggregate:
        return optax.softmax_cross_entropy_with_integer_labels(pooled @ w + b[None], Y).mean()
    split = pooled.reshape(B, groups, -1)
    logits = jnp.einsum("bgc,gck->bgk", split, w) + b[None]
    return optax.softmax_cross_entropy_with_integer_labels(logits, Y[:, None]).sum(axis=1).mean()


@pytest.mark.parametrize("patches", [True, False])
@pytest.mark.parametrize("aggregate", [True, False])
def test_group_local_loss_sums_to_the_heads_cross_entropy_and_each_element_reaches_its_own_features(patches, aggregate):
    groups, c = 4, 2
    k = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(k[0], (B, 5, groups * c))  # 5 tokens
    w = jax.random.normal(k[1], (groups * c, K) if aggregate else (groups, c, K))
    b = jax.random.normal(k[2], (K,) if aggregate else (groups, K))

    def local(x, w, b):
        return snnjax.group_local_loss(x, w, b, Y, groups=groups, patches=patches, aggregate=aggregate)

    assert local(x, w, b).shape == ((5, groups) if patches else (groups,))
    np.testing.assert_allclose(float(local(x, w, b).sum()), float(_head_ce(x, w, b, aggregate, groups)), rtol=1e-6)
    summed = jax.grad(lambda *a: local(*a).sum(), argnums=(0, 1, 2))(x, w, b)
    for got, want in zip(summed, jax.grad(lambda *a: _head_ce(*a, aggregate, groups), argnums=(0, 1, 2))(x, w, b)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-7)
    # d loss[p, g] / d x[:, p', g'] vanishes unless g' == g (and p' == p with patches)
    jac = np.asarray(jax.jacrev(local)(x, w, b)).reshape(local(x, w, b).shape + (B, 5, groups, c))
    for g in range(groups):
        of_g = jac[:, g] if patches else jac[g]  # [(P,) B, P, G, c]: loss group g against every feature
        assert np.abs(np.delete(of_g, g, axis=-2)).max() == 0.0
        assert np.abs(of_g[..., g, :]).max() > 0.0
        for p in range(5 if patches else 0):
            assert np.abs(np.delete(of_g[p], p, axis=1)).max() == 0.0


def test_group_local_loss_refuses_shapes_that_do_not_fit():
    x = jnp.ones((B, 5, 8))
    with pytest.raises(ValueError, match="C divisible by groups=3"):
        snnjax.group_local_loss(x, jnp.ones((8, K)), jnp.ones(K), Y, groups=3)
    with pytest.raises(ValueError, match=r"kernel must be \[4, 2, 4\] and bias \[4, 4\]"):
        snnjax.group_local_loss(x, jnp.ones((8, K)), jnp.ones(K), Y, groups=4, aggregate=False)
    with pytest.raises(ValueError, match="labels must be"):
        snnjax.group_local_loss(x, jnp.ones((8, K)), jnp.ones(K), Y.astype(float), groups=4)
    with pytest.raises(ValueError, match="groups=4 must divide the last axis"):
        rules.grouped(jnp.ones((2, 6)), groups=4)


# --- LocalMixer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(patches=3), "patches=3 must divide the image's height and width, 8x8"),
        (dict(channels=16, groups=5), "groups must be an int >= 1 dividing channels=16, got 5"),
        (dict(channels=8, groups=4), "leave 2 channel(s) a group"),  # a per-group norm of 2 is +-1: constant
        (dict(channels=4, groups=4), "leave 1 channel(s) a group"),
        (dict(blocks=0), "blocks must be an int >= 1, got 0"),
        (dict(spiking=True, num_steps=0), "num_steps must be an int >= 1, got 0"),
    ],
)
def test_local_mixer_refuses_bad_arguments_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LocalMixer((8, 8, 1), K, rngs=nnx.Rngs(0), **{"channels": 16, "groups": 4, **kwargs})


def _mixer(spiking=False, aggregate=True):
    return LocalMixer(
        (8, 8, 1), K, patches=2, channels=16, blocks=2, groups=4, aggregate=aggregate, spiking=spiking,
        num_steps=3, beta=0.8, threshold=0.5, rngs=nnx.Rngs(0),
    )  # fmt: skip


def _norm(z, groups):
    g = z.reshape(z.shape[:-1] + (groups, -1))
    g = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5)
    return g.reshape(z.shape)


def _lif(currents, beta=0.8, threshold=0.5):
    v, out = np.zeros(currents.shape[1:]), []
    for c in currents:
        v = beta * v + c
        z = (v > threshold).astype(np.float64)
        v = v - z * threshold
        out.append(z)
    return np.stack(out)


def _by_hand(net, images, spiking):
    """The mixer written again in numpy from its parameters (module docstring of snnjax.nn.mixer)."""
    x = np.asarray(images, np.float64).reshape(B, 2, 4, 2, 4).transpose(0, 1, 3, 2, 4).reshape(B, 4, 16)
    act = (lambda z: _lif(z)) if spiking else (lambda z: np.maximum(z, 0.0))
    if spiking:
        x = np.broadcast_to(x, (3, *x.shape))
    val = lambda p: np.asarray(p[...], np.float64)  # noqa: E731
    for i, blk in enumerate(net.blocks):
        h = x
        if i > 0:
            h = act(_norm(np.einsum("...pc,pq->...qc", h, val(blk.token)), 1))
        h = act(_norm(h @ val(blk.dense) + val(blk.dense_bias), 1))  # a layer norm over all channels
        z = np.einsum("...gc,gcd->...gd", h.reshape(h.shape[:-1] + (4, 4)), val(blk.group)) + val(blk.group_bias)
        z = _norm(z.reshape(h.shape), 4)
        x = act(z if i == 0 else z + x)
    rates = x.mean(axis=0) if spiking else x
    return _norm(rates.mean(axis=-2), 1) @ val(net.out.kernel) + val(net.out.bias)


@pytest.mark.parametrize("spiking", [False, True])
def test_local_mixer_matches_a_hand_written_forward_pass(spiking):
    net = _mixer(spiking)
    logits = net(X)
    np.testing.assert_allclose(np.asarray(logits), _by_hand(net, X, spiking), rtol=1e-4, atol=1e-4)
    (local_0, local_1, final), same = net.losses(X, Y)
    np.testing.assert_array_equal(np.asarray(same), np.asarray(logits))
    assert local_0.shape == local_1.shape == (4, 4) and final.shape == ()
    if spiking:  # the spikes are exactly 0 or 1 and some fire
        rates = net(X, local=True)[1][0]
        assert 0.0 < float(rates.mean()) < 1.0


def _loss_fn(net):
    graphdef, params = nnx.split(net, nnx.Param)

    def loss_fn(p, images, labels):
        return nnx.merge(graphdef, p).losses(images, labels)

    return loss_fn, params


class _Noise(Handler):
    """Adds the given tangent to one site's pre-activation."""

    def __init__(self, index):
        self.index = index

    def watches(self, site):
        return {"pre": site.pre_activation} if site.index == self.index else {}

    def value(self, site, tag, value, extra):
        return value + extra, None


@pytest.mark.parametrize("spiking", [False, True])
def test_a_groups_noise_reaches_its_own_groups_and_tokens_loss_only(spiking):
    net = _mixer(spiking)
    loss_fn, params = _loss_fn(net)
    args = (X[:1], Y[:1])
    graph = trace(loss_fn, params, args)
    marked = [s for s in graph.sites if s.groups is not None]
    # block 0: dense, group; block 1: token, dense, group; each local loss's feature path
    assert [s.groups for s in marked] == [4, 4, 1, 4, 4, 4, 4]
    for site in marked:
        shape = site.pre_activation.struct.shape  # [(T,) 1, P, C]
        block, tokens, width = site.losses[0], shape[-2], shape[-1] // site.groups
        pairs = [(p, g) for p in range(tokens) for g in range(site.groups)]
        noise = jax.random.normal(jax.random.key(site.index), shape)
        tangents = jnp.stack(
            [
                jnp.zeros(shape).at[..., p, g * width : (g + 1) * width].set(noise[..., p, g * width : (g + 1) * width])
                for p, g in pairs
            ]
        )

        def run(eps, site=site, block=block):
            return evaluate(graph, params, args, _Noise(site.index), {("pre", site.index): eps})[0][0][block]

        d = jax.vmap(lambda t, run=run, shape=shape: jax.jvp(run, (jnp.zeros(shape),), (t,))[1])(
            tangents
        )  # [pairs, P, G]
        counted = 0
        for (p, g), reached in zip(pairs, np.abs(np.asarray(d)) > 0):
            counted += bool(reached[p].any())  # zero where its ReLUs are all off
            reached[p, slice(None) if site.groups == 1 else g] = False
            assert not reached.any(), (site.name, p, g, np.asarray(d))
        assert counted >= len(pairs) // 2, (site.name, counted)  # the noise counts


# Coherent data for the statistical tests: one class for all, so the examples' gradients agree.
X16 = jax.random.normal(jax.random.key(1), (16, 8, 8)) + 0.5 * jnp.sin(jnp.arange(64.0)).reshape(1, 8, 8)
Y16 = jnp.zeros(16, int)


def _chi2(estimates, true):
    """Mean over the coordinates of ((mean estimate - true) / its standard error)^2: about 1 when
    unbiased (its spread wider than a chi-square's, the coordinates being correlated), larger with
    a bias. A coordinate estimated without noise must equal the truth."""
    e = np.stack(estimates)
    se = np.sqrt(e.var(axis=0, ddof=1) / len(e))
    live = se > 0
    np.testing.assert_allclose(e.mean(axis=0)[~live], true[~live], atol=1e-6)
    return float(np.mean(((e.mean(axis=0) - true)[live] / se[live]) ** 2))


def _along_truth(estimates, true, sizes):
    """Per leaf, the z-score of the mean estimate's component along the leaf's true gradient
    against that gradient's norm: within a few units when unbiased."""
    e, z, start = np.stack(estimates), [], 0
    for size in sizes:
        t = true[start : start + size]
        s = e[:, start : start + size] @ (t / np.linalg.norm(t))
        z.append((s.mean() - np.linalg.norm(t)) / (s.std(ddof=1) / np.sqrt(len(s))))
        start += size
    return np.array(z)


def _draws(rule, params, n=6):
    draws = jax.jit(jax.vmap(lambda k: rule(params, X16, Y16, key=k)[1]))
    out = []
    for i in range(n):
        batch = draws(jax.random.split(jax.random.key(10 + i), 500))
        out.extend(np.concatenate([np.asarray(a, np.float64).reshape(500, -1) for a in jax.tree.leaves(batch)], axis=1))
    return out


def test_group_wise_activity_perturbation_is_unbiased_for_local_backprop_with_less_variance():
    """Over 3000 draws the mean LG-FG-A estimate agrees with LG-BP's gradient: each block layer's
    component along its true gradient within 4 standard errors, every coordinate within its own
    (a chi-square per degree of freedom near 1); the blocks' estimates doubled are refused by both.
    Weighing each group by its own loss's derivative has far less variance than weighing every
    unit by the block's summed derivative (``groupwise=False``, whose unbiasedness
    ``tests/test_forward_gradients.py`` checks on smaller models: here it is too noisy to test)."""
    loss_fn, params = _loss_fn(_mixer())
    true = np.concatenate(
        [np.asarray(a, np.float64).ravel() for a in jax.tree.leaves(rules.bptt(loss_fn)(params, X16, Y16)[1])]
    )
    sizes = [a.size for a in jax.tree.leaves(params["blocks"])]  # the leaves' order: the blocks first
    blocks = sum(sizes)
    grouped = _draws(rules.activity_forward_gradient(loss_fn), params)
    exact = _draws(rules.activity_forward_gradient(loss_fn, exact_output=True), params)  # as the command runs it
    for estimates in (grouped, exact):
        doubled = [2.0 * e[:blocks] for e in estimates]
        assert _chi2(estimates, true) < 1.6
        assert np.abs(_along_truth(estimates, true, sizes)).max() < 4
        assert _chi2(doubled, true[:blocks]) > 1.6  # the tests have power, on the blocks' layers alone
        assert np.abs(_along_truth(doubled, true, sizes)).max() > 8
    summed = _draws(rules.activity_forward_gradient(loss_fn, groupwise=False), params, 2)
    variance = [np.stack(e).var(axis=0)[:blocks].sum() for e in (grouped, summed)]
    assert variance[0] < 0.2 * variance[1], variance


def test_exact_output_trains_the_heads_and_the_classifier_on_their_exact_local_gradient():
    loss_fn, params = _loss_fn(_mixer())
    lg_bp = rules.bptt(loss_fn)(params, X, Y)[1]
    lg_fg_a = rules.activity_forward_gradient(loss_fn, exact_output=True)(params, X, Y, key=jax.random.key(0))[1]
    for got, want in zip(
        jax.tree.leaves((lg_fg_a["heads"], lg_fg_a["head_biases"], lg_fg_a["out"])),
        jax.tree.leaves((lg_bp["heads"], lg_bp["head_biases"], lg_bp["out"])),
    ):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-7)
    block = np.asarray(lg_fg_a["blocks"][0]["dense"][...])  # the blocks' layers: still estimates
    assert not np.allclose(block, np.asarray(lg_bp["blocks"][0]["dense"][...]), rtol=0.1)


def _global(net):
    graphdef, params = nnx.split(net, nnx.Param)

    def loss_fn(p, images, labels):
        logits = nnx.merge(graphdef, p)(images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

    return loss_fn, params


@pytest.mark.parametrize("spiking", [False, True])
def test_every_rule_trains_the_mixer_from_its_loss(spiking):
    net = _mixer(spiking)
    global_loss, params = _global(net)
    local_loss, _ = _loss_fn(net)
    built = {  # the spiking mixer: a rule of each kind (its compilation is the test's cost)
        "BP": rules.bptt(global_loss),
        "LG-BP": rules.bptt(local_loss),
        "FG-W": rules.forward_gradient(global_loss),
        "LG-FG-W": rules.forward_gradient(local_loss),
        "FG-A": rules.activity_forward_gradient(global_loss),
        "LG-FG-A": rules.activity_forward_gradient(local_loss, exact_output=True),
        "FA": rules.fa(global_loss),
        "DFA": rules.dfa(global_loss),
        "FG-guess-LG": rules.guessed_forward_gradient(global_loss, rules.bptt(local_loss), per_leaf=True),
        "FG-guess-DFA": rules.guessed_forward_gradient(global_loss, rules.dfa(global_loss)),
    }
    if spiking:
        built = {name: built[name] for name in ("LG-BP", "FG-W", "LG-FG-A", "DFA")}
    for name, rule in built.items():
        state = rule.init(params, X, Y, key=jax.random.key(0))
        (_, logits), grads, _ = rule.apply(state, params, X, Y, key=jax.random.key(1))
        leaves = jax.tree.leaves(grads)
        assert jax.tree.structure(grads) == jax.tree.structure(params) and logits.shape == (B, K), name
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves), name
        assert float(jnp.abs(grads["blocks"][0]["dense"][...]).max()) > 0, name  # the first layer learns
        if "FG-A" in name:  # every perturbed layer gets an estimate (the token mix reads its noise transposed)
            assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads["blocks"])), name
