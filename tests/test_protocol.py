"""One protocol for every rule: each built from the loss alone, on five plain NNX models.

The models are ordinary NNX modules, not ``snnjax.nn.Sequential``: an MLP, a convolutional SNN
(2-D and 1-D convolutions, average and max pooling, flattening), a recurrent SNN (an ALIF layer
with recurrent weights), a network of the parallel neurons (sliding PSN, reset-free LIF) and a
network of a neuron written here, following the ``Neuron``
protocol, with a trainable parameter of its own. Every rule is checked against an independent
computation: ``jax.grad`` (FA with B = W, DFA with B = the Jacobian), statistics (FG-W, FG-A
unbiased), and hand-written versions of what FA, DFA and FG-A do to a convolution and to
recurrent weights.
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import snnjax
import snnjax.nn as snn
from snnjax import rules
from snnjax.rules.graph import Handler, evaluate, trace

T, B = 6, 4
sg = jax.lax.stop_gradient
LABELS = jnp.arange(B) % 3


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.l1, self.l2, self.l3 = (
            nnx.Linear(6, 8, rngs=rngs),
            nnx.Linear(8, 8, rngs=rngs),
            nnx.Linear(8, 3, rngs=rngs),
        )

    def __call__(self, x):
        return self.l3(jax.nn.relu(self.l2(jax.nn.relu(self.l1(x)))))


class ConvSNN(nnx.Module):
    """[T, B, 8, 8, 1] -> conv 3x3 -> LIF -> avg pool -> conv 1-D along rows -> LIF -> max pool -> linear -> readout."""

    def __init__(self, rngs):
        self.conv2d = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.lif1 = snn.LIF(4, beta=0.8, threshold=0.5)
        self.conv1d = nnx.Conv(4, 5, (3,), rngs=rngs)
        self.lif2 = snn.LIF(5, beta=0.8, threshold=0.5)
        self.fc = nnx.Linear(40, 3, rngs=rngs)
        self.readout = snn.LeakyIntegrator(3, kappa=0.8)

    def __call__(self, xs):
        t, b = xs.shape[:2]
        _, s = self.lif1.run(self.conv2d(xs) * 2.0)  # [T, B, 8, 8, 4]
        s = nnx.avg_pool(s.reshape(t * b, 8, 8, 4), (2, 2), (2, 2)).reshape(t, b, 4, 4, 4)
        _, s = self.lif2.run(self.conv1d(s) * 2.0)  # each of the 4 rows a 1-D signal: [T, B, 4, 4, 5]
        s = nnx.max_pool(s.reshape(t * b * 4, 4, 5), (2,), (2,)).reshape(t, b, 40)
        return self.readout.run(self.fc(s))[1]


class RecurrentSNN(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(6, 8, rngs=rngs)
        self.alif = snn.ALIF(8, alpha=0.8, rho=0.9, adaptation=0.2, recurrent=True, trainable_decay=True, rngs=rngs)
        self.l2 = nnx.Linear(8, 3, rngs=rngs)
        self.readout = snn.LeakyIntegrator(3, kappa=0.8)

    def __call__(self, xs):
        _, z = self.alif.run(self.l1(xs) * 2.0)
        return self.readout.run(self.l2(z))[1]


class ResonatorState(NamedTuple):
    v: jax.Array
    w: jax.Array


def resonator(omega, decay=0.85, threshold=0.8) -> snnjax.Neuron:
    """A user's own neuron: a damped oscillator that spikes and resets, omega per neuron."""

    def init(shape, dtype=jnp.float32):
        return ResonatorState(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))

    def step(state, x):
        o = jnp.reshape(omega, (1,) * (x.ndim - 1) + (-1,))
        v = decay * (state.v - o * state.w) + x
        w = decay * (state.w + o * state.v)
        z = snnjax.spike(v - threshold)
        return ResonatorState(v - z * threshold, w), z

    return snnjax.Neuron(init, step)


class UserSNN(nnx.Module):
    """A neuron of the user's own with a trainable parameter, and a trainable readout decay (after the
    last weight product: every rule must train it, none may leave it at zero)."""

    def __init__(self, rngs):
        self.l1, self.l2 = nnx.Linear(6, 8, rngs=rngs), nnx.Linear(8, 3, rngs=rngs)
        self.omega = nnx.Param(jnp.linspace(0.1, 0.5, 8))
        self.kappa = nnx.Param(jnp.full((3,), 1.5))  # sigmoid(1.5) = 0.82

    def __call__(self, xs):
        _, z = snnjax.run(resonator(self.omega[...]), self.l1(xs) * 2.0)
        return snnjax.run(snnjax.leaky_integrator(jax.nn.sigmoid(self.kappa[...])), self.l2(z))[1]


class ParallelSNN(nnx.Module):
    """The parallel neurons: a sliding PSN (trainable filter and threshold), then a reset-free LIF
    (trainable decay), each run over the whole sequence at once."""

    def __init__(self, rngs):
        self.l1, self.l2, self.l3 = (
            nnx.Linear(6, 8, rngs=rngs),
            nnx.Linear(8, 8, rngs=rngs),
            nnx.Linear(8, 3, rngs=rngs),
        )
        self.psn = snn.SlidingPSN(8, k=3, threshold=0.5)
        self.plif = snn.ParallelLIF(8, beta=0.7, threshold=0.8, trainable_decay=True)
        self.readout = snn.LeakyIntegrator(3, kappa=0.8)

    def __call__(self, xs):
        _, z = self.psn.run(self.l1(xs) * 2.0)
        _, z = self.plif.run(self.l2(z) * 2.0)
        return self.readout.run(self.l3(z))[1]


def _loss(module: nnx.Module, spiking: bool):
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def loss_fn(params, x, labels):
        out = nnx.merge(graphdef, params, rest)(x)
        logits = out.max(axis=0) if spiking else out
        return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(labels.shape[0]), labels]), logits

    return loss_fn, params


def _inputs(shape, seed):
    return (jax.random.uniform(jax.random.key(seed), shape) < 0.5).astype(jnp.float32)


MODELS = {
    "mlp": (MLP, False, lambda: jax.random.normal(jax.random.key(10), (B, 6))),
    "conv": (ConvSNN, True, lambda: _inputs((T, B, 8, 8, 1), 11)),
    "recurrent": (RecurrentSNN, True, lambda: _inputs((T, B, 6), 12)),
    "user": (UserSNN, True, lambda: _inputs((T, B, 6), 13)),
    "parallel": (ParallelSNN, True, lambda: _inputs((T, B, 6), 14)),
}
RULES = {
    "bptt": rules.bptt,
    "fg-w": rules.forward_gradient,
    "fg-a": rules.activity_forward_gradient,
    "fa": rules.fa,
    "dfa": rules.dfa,
    "fdfa": rules.fdfa,
}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request):
    """Each model built once: ``(name, loss_fn, params, x)``."""
    cls, spiking, inputs = MODELS[request.param]
    loss_fn, params = _loss(cls(nnx.Rngs(0)), spiking)
    return request.param, loss_fn, params, inputs()


def _grad(loss_fn, params, x):
    return jax.grad(lambda p: loss_fn(p, x, LABELS)[0])(params)


def _leaves(tree):
    return [np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(tree)]


@pytest.mark.parametrize("name", list(RULES))
def test_every_rule_on_every_model(model, name):
    """Grads shaped like params, forward values unchanged, every parameter learns (no silent zero)."""
    _, loss_fn, params, x = model
    rule = RULES[name](loss_fn)
    state = rule.init(params, x, LABELS, key=jax.random.key(1))
    (loss, aux), grads, _ = jax.jit(rule.apply)(state, params, x, LABELS, key=jax.random.key(2))
    ref_loss, ref_aux = loss_fn(params, x, LABELS)
    chex.assert_trees_all_equal_shapes_and_dtypes(grads, params)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(aux), np.asarray(ref_aux), rtol=1e-6, atol=1e-6)
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), path
        assert np.any(g != 0), f"{name}: {jax.tree_util.keystr(path)} got a zero gradient"


class _Weights(Handler):
    """Collects the weight operand of every weight product."""

    def touches(self, site):
        return True

    def product(self, site, x, w, extra):
        return site.apply(x, w), w


def _weights(loss_fn, params, x) -> dict:
    """The traced graph and each site's weight (collected at every step of a loop: the first one)."""
    graph = trace(loss_fn, params, (x, LABELS))
    collected = evaluate(graph, params, (x, LABELS), _Weights())[1]
    return graph, {s.index: collected[s.index][(0,) * len(s.loops)] for s in graph.sites}


def test_fa_with_the_forward_weights_is_backpropagation(model):
    _, loss_fn, params, x = model
    rule = rules.fa(loss_fn)
    state = rule.init(params, x, LABELS, key=jax.random.key(0))
    graph, weights = _weights(loss_fn, params, x)
    touched = [s for s in graph.sites if s.trainable_input]
    assert len(state.matrices) == len(touched) >= 1
    exact = rule(params, x, LABELS, state=state._replace(matrices=tuple(weights[s.index] for s in touched)))[1]
    for got, want in zip(_leaves(exact), _leaves(_grad(loss_fn, params, x))):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["dfa", "fdfa"])
def test_dfa_with_the_true_jacobian_is_backpropagation_for_one_hidden_layer(model, name):
    model_name, loss_fn, params, x = model
    if model_name not in ("recurrent", "user"):
        pytest.skip("more than one hidden layer: DFA is not backpropagation there")
    rule = RULES[name](loss_fn)
    state = rule.init(params, x, LABELS, key=jax.random.key(0))
    w_out = params["l2"]["kernel"][...]  # do_t / dh_t = W_out^T at every step
    assert [m.shape for m in state.matrices] == [w_out.shape]
    if name == "fdfa":  # rate 1 replaces B by this call's estimate: use DFA's gradient with B = W_out instead
        rule = rules.dfa(loss_fn)
    exact = rule(params, x, LABELS, state=state._replace(matrices=(w_out,)), key=jax.random.key(1))[1]
    for got, want in zip(_leaves(exact), _leaves(_grad(loss_fn, params, x))):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)


def _bias_ratio(estimates: list[np.ndarray], true: np.ndarray) -> float:
    """``|mean - g| / sqrt(tr Sigma / M)``: about 1 for an unbiased estimator (a chi with many degrees of freedom)."""
    e = np.stack(estimates)
    noise = np.sqrt(e.var(axis=0, ddof=1).sum() / len(e))
    return float(np.linalg.norm(e.mean(axis=0) - true) / noise)


@pytest.mark.parametrize(
    "which, name",
    [("conv", "fg-w"), ("conv", "fg-a"), ("recurrent", "fg-w"), ("recurrent", "fg-a"), ("recurrent", "fg-a current")],
)
def test_forward_gradients_are_unbiased(which, name):
    """Over M = 2000 draws the mean estimate's distance to jax.grad, in units of its own noise, is
    about 1 for an unbiased estimator (a chi over 160-230 parameters: standard deviation about 0.05,
    so the bound 1.5 is about 10 of them away). The test's power: the same estimates made twice
    too large (a bias as large as the gradient) are refused."""
    cls, spiking, inputs = MODELS[which]
    loss_fn, params = _loss(cls(nnx.Rngs(0)), spiking)
    x = inputs()
    true = np.concatenate([g.ravel() for g in _leaves(_grad(loss_fn, params, x))])
    if name == "fg-a current":  # the recurrent layer's whole input current perturbed
        rule = rules.activity_forward_gradient(loss_fn, recurrent="current")
    else:
        rule = RULES[name](loss_fn)
    draws = jax.jit(jax.vmap(lambda k: rule(params, x, LABELS, key=k)[1]))
    estimates = []
    for i in range(4):
        batch = draws(jax.random.split(jax.random.key(100 + i), 500))
        leaves = [np.asarray(leaf, np.float64).reshape(500, -1) for leaf in jax.tree.leaves(batch)]
        estimates.extend(np.concatenate(leaves, axis=1))
    ratio = _bias_ratio(estimates, true)
    assert ratio < 1.5, ratio
    assert _bias_ratio([2.0 * e for e in estimates], true) > 1.5  # the test has power


# --- What FA, DFA and FG-A do to a convolution and to recurrent weights, written by hand -----------


def _ce(v, labels):
    logits = v.max(axis=0)
    return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(labels.shape[0]), labels])


def _fa(product, x, w, b):
    """FA's product by its definition: the value x*W, the input's cotangent through B."""
    return product(sg(x), w) + (product(x, sg(b)) - sg(product(x, b)))


def _matmul(x, w):
    return x @ w


def _conv2d(x, k):
    return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv1d(x, k):
    return jax.lax.conv_general_dilated(x, k, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))


def _conv_by_hand(p, xs, labels, conv1d=_conv1d, fc=_matmul, cut=None):
    """ConvSNN written out: ``conv1d`` and ``fc`` compute those two products; ``cut(name, h)`` sees the
    input of each (``"h1"``: the pooled first feature map, ``"h2"``: the flattened second) and the
    output product ``"o"``, and returns what the network goes on with."""
    cut = cut or (lambda name, h: h)
    lif = snnjax.lif(0.8, threshold=0.5)
    o1 = _conv2d(xs.reshape(T * B, 8, 8, 1), p["conv2d"]["kernel"]) + p["conv2d"]["bias"].reshape(1, 1, 1, -1)
    s1 = snnjax.run(lif, o1.reshape(T, B, 8, 8, 4) * 2.0)[1]
    h1 = cut("h1", s1.reshape(T, B, 4, 2, 4, 2, 4).mean(axis=(3, 5)))  # 2x2 average pooling: [T, B, 4, 4, 4]
    o2 = conv1d(h1.reshape(T * B * 4, 4, 4), p["conv1d"]["kernel"]) + p["conv1d"]["bias"].reshape(1, 1, -1)
    s2 = snnjax.run(lif, o2.reshape(T, B, 4, 4, 5) * 2.0)[1]
    # max pooling along the rows, as the model does it (where spikes tie, its derivative picks one of them)
    h2 = cut("h2", nnx.max_pool(s2.reshape(T * B * 4, 4, 5), (2,), (2,)).reshape(T, B, 40))
    o3 = cut("o", fc(h2, p["fc"]["kernel"]))
    return _ce(snnjax.run(snnjax.leaky_integrator(0.8), o3 + p["fc"]["bias"].reshape(1, 1, -1))[1], labels)


def _recurrent_by_hand(p, xs, labels, recurrent=_matmul, out=_matmul, pre=None):
    """RecurrentSNN written out with ALIF's own cell; ``recurrent`` and ``out`` compute those two
    products; ``pre(name, z)`` sees the hidden spikes ``"h"`` and the output product ``"o"``."""
    pre = pre or (lambda name, z: z)
    cell = snnjax.alif(
        snnjax.sigmoid_decay(p["alif"]["alpha"]["value"]),
        snnjax.sigmoid_decay(p["alif"]["rho"]["value"]),
        adaptation=0.2,
    )
    w_rec = p["alif"]["recurrent"]["kernel"]

    def step(state, current):
        return cell.step(state, current + recurrent(state.z, w_rec))

    i1 = (xs @ p["l1"]["kernel"] + p["l1"]["bias"].reshape(1, 1, -1)) * 2.0
    _, z = jax.lax.scan(step, cell.init(i1.shape[1:]), i1)
    o = pre("o", out(pre("h", z), p["l2"]["kernel"]))
    return _ce(snnjax.run(snnjax.leaky_integrator(0.8), o + p["l2"]["bias"].reshape(1, 1, -1))[1], labels)


def _pure(tree):
    return nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else tree


def _assert_trees_close(got, want, rtol=2e-5):
    got, want = _pure(got), _pure(want)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want)):
        scale = float(np.max(np.abs(np.asarray(b)))) + 1e-12
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=rtol, atol=1e-5 * scale, err_msg=jax.tree_util.keystr(path)
        )


def _matrices(state, seed):
    return tuple(jax.random.normal(jax.random.key(seed + i), m.shape) * 0.3 for i, m in enumerate(state.matrices))


def _setup(which):
    cls, spiking, inputs = MODELS[which]
    loss_fn, params = _loss(cls(nnx.Rngs(0)), spiking)
    return loss_fn, params, nnx.to_pure_dict(params), inputs()


def test_fa_sends_a_convolutions_error_through_a_fixed_random_kernel():
    loss_fn, params, p, xs = _setup("conv")
    rule = rules.fa(loss_fn)
    state = rule.init(params, xs, LABELS, key=jax.random.key(0))
    b_conv, b_fc = _matrices(state, 20)
    assert (b_conv.shape, b_fc.shape) == ((3, 4, 5), (40, 3))  # the 1-D kernel and the linear layer's
    grads = rule(params, xs, LABELS, state=state._replace(matrices=(b_conv, b_fc)))[1]
    by_hand = jax.grad(
        lambda p: _conv_by_hand(
            p, xs, LABELS, conv1d=lambda x, k: _fa(_conv1d, x, k, b_conv), fc=lambda x, w: _fa(_matmul, x, w, b_fc)
        )
    )(p)
    _assert_trees_close(grads, by_hand)


def test_fa_sends_the_recurrent_error_to_the_previous_step_through_a_fixed_random_matrix():
    loss_fn, params, p, xs = _setup("recurrent")
    rule = rules.fa(loss_fn)
    state = rule.init(params, xs, LABELS, key=jax.random.key(0))
    b_rec, b_out = _matrices(state, 30)
    assert (b_rec.shape, b_out.shape) == ((8, 8), (8, 3))
    grads = rule(params, xs, LABELS, state=state._replace(matrices=(b_rec, b_out)))[1]
    by_hand = jax.grad(
        lambda p: _recurrent_by_hand(
            p, xs, LABELS, recurrent=lambda z, w: _fa(_matmul, z, w, b_rec), out=lambda h, w: _fa(_matmul, h, w, b_out)
        )
    )(p)
    _assert_trees_close(grads, by_hand)


def _dfa_by_hand(model, p, xs, matrices, names):
    """DFA written out: the error at the output product, projected by each B onto the hidden outputs
    (whole feature maps, per example and step), then each layer's own local derivative."""
    model(p, xs, LABELS, cut=_record)
    error = jax.grad(lambda o: model(p, xs, LABELS, cut=lambda name, h: o if name == "o" else h))(_RECORDED["o"])
    signals = {n: (error.reshape(T * B, 3) @ m.T).reshape(_RECORDED[n].shape) for n, m in zip(names, matrices)}

    def local(p):
        inner = []

        def cut(name, h):
            if name in signals:
                inner.append(jnp.vdot(sg(signals[name]), h))
                return sg(h)
            return h

        return model(p, xs, LABELS, cut=cut) + sum(inner)

    return jax.grad(local)(p)


_RECORDED: dict = {}


def _record(name, h):
    _RECORDED[name] = h
    return h


def test_dfa_projects_the_output_error_onto_each_hidden_feature_map():
    loss_fn, params, p, xs = _setup("conv")
    rule = rules.dfa(loss_fn)
    state = rule.init(params, xs, LABELS, key=jax.random.key(0))
    matrices = _matrices(state, 40)
    assert [m.shape for m in matrices] == [(64, 3), (40, 3)]  # 4 rows x 4 columns x 4 channels; 40 features
    grads = rule(params, xs, LABELS, state=state._replace(matrices=matrices))[1]

    def model(p, xs, labels, cut):
        return _conv_by_hand(p, xs, labels, cut=cut)

    model(p, xs, LABELS, cut=_record)
    _assert_trees_close(
        grads, _dfa_by_hand(lambda p, xs, labels, cut: model(p, xs, labels, cut), p, xs, matrices, ("h1", "h2"))
    )


def test_dfa_reaches_recurrent_weights_through_the_layers_own_dynamics():
    loss_fn, params, p, xs = _setup("recurrent")
    rule = rules.dfa(loss_fn)
    state = rule.init(params, xs, LABELS, key=jax.random.key(0))
    matrices = _matrices(state, 50)
    grads = rule(params, xs, LABELS, state=state._replace(matrices=matrices))[1]

    def model(p, xs, labels, cut):
        return _recurrent_by_hand(p, xs, labels, pre=cut)

    model(p, xs, LABELS, cut=_record)
    expected = _dfa_by_hand(model, p, xs, matrices, ("h",))
    assert float(np.abs(np.asarray(expected["alif"]["recurrent"]["kernel"])).max()) > 0
    _assert_trees_close(grads, expected)


@pytest.mark.parametrize("recurrent", ["dynamics", "current"])
def test_fg_a_on_recurrent_weights_by_hand(recurrent):
    """FG-A by hand with the rule's noise, per example b drawn from fold_in(fold_in(split(key, 1)[0], b), i),
    i the product's place in the traced loss (0: the input layer, 1: the recurrent product inside the
    scan, 2: the output layer). ``"dynamics"``: the input layer's pre-activation x_t W_1 + b_1 is
    perturbed (i = 0) and the recurrent weights learn through the layer's dynamics from the output's
    perturbation; ``"current"``: the recurrent layer's whole input current 2 (x_t W_1 + b_1) + z_{t-1} W_rec
    is perturbed once at every step (i = 1), so W_1, b_1 and W_rec learn through it."""
    loss_fn, params, p, xs = _setup("recurrent")
    key = jax.random.key(7)
    grads = jax.jit(lambda p: rules.activity_forward_gradient(loss_fn, recurrent=recurrent)(p, xs, LABELS, key=key)[1])(
        params
    )
    k0 = jax.random.split(key, 1)[0]
    first = 0 if recurrent == "dynamics" else 1  # where the hidden layer is perturbed

    def per_example(p, x, label, b, signals=None):
        """One example's loss with noise added to the perturbed pre-activations, or (``signals``)
        the local objective: each of them cut, its estimate's inner product added."""
        kb = jax.random.fold_in(k0, b)
        u = [jax.random.normal(jax.random.fold_in(kb, i), s) for i, s in ((first, (T, 1, 8)), (2, (T, 1, 3)))]
        inner = []

        def at(i, z, eps):
            if signals is None:
                return z + eps
            inner.append(jnp.vdot(sg(signals[i]), z))
            return sg(z)

        def loss(eps):
            cell = snnjax.alif(
                snnjax.sigmoid_decay(p["alif"]["alpha"]["value"]),
                snnjax.sigmoid_decay(p["alif"]["rho"]["value"]),
                adaptation=0.2,
            )
            z1 = x @ p["l1"]["kernel"] + p["l1"]["bias"].reshape(1, 1, -1)
            if recurrent == "dynamics":
                z1 = at(0, z1, eps[0])

            def step(state, inputs):
                current, e = inputs
                pre = current + state.z @ p["alif"]["recurrent"]["kernel"]  # the whole input current
                if recurrent == "dynamics":
                    return cell.step(state, pre), pre
                if signals is None:
                    return cell.step(state, pre + e), pre
                return cell.step(state, sg(pre)), pre

            _, (z, pres) = jax.lax.scan(lambda s, i: _pair(step(s, i)), cell.init((1, 8)), (z1 * 2.0, eps[0]))
            if recurrent == "current" and signals is not None:
                inner.append(jnp.vdot(sg(signals[0]), pres))
            o = at(1, z @ p["l2"]["kernel"] + p["l2"]["bias"].reshape(1, 1, -1), eps[1])
            return _ce(snnjax.run(snnjax.leaky_integrator(0.8), o)[1], label)

        if signals is None:
            _, d = jax.jvp(loss, ([jnp.zeros_like(e) for e in u],), (u,))
            return [d * e for e in u]
        return loss([jnp.zeros_like(e) for e in u]) + sum(inner)

    examples = (xs[:, :, None].swapaxes(0, 1), LABELS[:, None], jnp.arange(B))  # [B, T, 1, 6]
    signals = jax.vmap(lambda x, y, b: per_example(p, x, y, b))(*examples)
    expected = jax.grad(
        lambda p: jnp.sum(jax.vmap(lambda x, y, b, s: per_example(p, x, y, b, s))(*examples, signals)) / B
    )(p)
    assert float(np.abs(np.asarray(expected["alif"]["recurrent"]["kernel"])).max()) > 0
    _assert_trees_close(grads, expected, rtol=1e-4)


def _pair(out):
    (state, z), pre = out
    return state, (z, pre)


def test_fg_a_perturbs_a_convolutions_pre_activation_per_example_and_position():
    """FG-A by hand with the rule's noise on the convolutional network: each layer's pre-activation
    (product and bias, per example, time step, position and channel) perturbed, per example b, by
    noise from fold_in(fold_in(split(key, 1)[0], b), i), i = 0, 1, 2 for the 2-D convolution, the 1-D
    convolution and the linear layer."""
    loss_fn, params, p, xs = _setup("conv")
    key = jax.random.key(9)
    grads = jax.jit(lambda p: rules.activity_forward_gradient(loss_fn)(p, xs, LABELS, key=key)[1])(params)
    k0 = jax.random.split(key, 1)[0]
    shapes = [(T, 1, 8, 8, 4), (T * 4, 4, 5), (T, 1, 3)]  # each pre-activation as the model holds it, one example
    lif = snnjax.lif(0.8, threshold=0.5)

    def per_example(p, x, label, b, signals=None):
        kb = jax.random.fold_in(k0, b)
        u = [jax.random.normal(jax.random.fold_in(kb, i), s) for i, s in enumerate(shapes)]
        inner = []

        def at(i, z, eps):
            if signals is None:
                return z + eps[i]
            inner.append(jnp.vdot(sg(signals[i]), z))
            return sg(z)

        def loss(eps):
            o1 = _conv2d(x.reshape(T, 8, 8, 1), p["conv2d"]["kernel"]) + p["conv2d"]["bias"].reshape(1, 1, 1, -1)
            s1 = snnjax.run(lif, at(0, o1.reshape(T, 1, 8, 8, 4), eps) * 2.0)[1]
            h1 = nnx.avg_pool(s1.reshape(T, 8, 8, 4), (2, 2), (2, 2))
            o2 = _conv1d(h1.reshape(T * 4, 4, 4), p["conv1d"]["kernel"]) + p["conv1d"]["bias"].reshape(1, 1, -1)
            s2 = snnjax.run(lif, at(1, o2, eps).reshape(T, 1, 4, 4, 5) * 2.0)[1]
            h2 = nnx.max_pool(s2.reshape(T * 4, 4, 5), (2,), (2,)).reshape(T, 1, 40)
            o3 = at(2, h2 @ p["fc"]["kernel"] + p["fc"]["bias"].reshape(1, 1, -1), eps)
            return _ce(snnjax.run(snnjax.leaky_integrator(0.8), o3)[1], label)

        if signals is None:
            _, d = jax.jvp(loss, ([jnp.zeros_like(e) for e in u],), (u,))
            return [d * e for e in u]
        return loss([jnp.zeros_like(e) for e in u]) + sum(inner)

    examples = (xs[:, :, None].swapaxes(0, 1), LABELS[:, None], jnp.arange(B))  # [B, T, 1, 8, 8, 1]
    signals = jax.vmap(lambda x, y, b: per_example(p, x, y, b))(*examples)
    expected = jax.grad(
        lambda p: jnp.sum(jax.vmap(lambda x, y, b, s: per_example(p, x, y, b, s))(*examples, signals)) / B
    )(p)
    _assert_trees_close(grads, expected, rtol=1e-4)
