r"""Feedback alignment (FA), direct feedback alignment (DFA) and forward DFA (FDFA), offline.

Each rule is built from ``loss_fn`` alone and finds the layers in the traced loss
(:mod:`snnjax.rules.graph`): the **weight products** :math:`o_l = x_l \star W_l` (dense,
convolutional, recurrent), the **hidden outputs** :math:`h_l` (the input :math:`x` of every
product that reads another layer's output, as that product reads it: after pooling and
flattening) and the **output** :math:`o` (the one product whose result reaches the loss
through no other product: the output layer's pre-activation).

- **FA** (Lillicrap et al. 2016): every product sends the error back through a fixed random
  :math:`B_l` of :math:`W_l`'s shape instead of :math:`W_l`: the product is computed as
  :math:`\operatorname{sg}(x) \star W + x \star B - \operatorname{sg}(x \star B)`, whose value is
  :math:`x \star W`. A convolution's :math:`B` is a fixed random kernel, a recurrent product's
  sends the error to the previous step through its own :math:`B`. :math:`B_l = W_l` is backpropagation.
- **DFA** (Nøkland 2016): the error at the output layer's pre-activation,
  :math:`e = \partial L/\partial o`, reaches every hidden output directly,
  :math:`\delta h_l = e B_l^\top` with a fixed random :math:`B_l: [F_l, C]`, and flows from there
  through the layer's own local derivative (a spiking layer's surrogate, its own dynamics over
  time and its recurrent weights) to its weights; nothing from the layers above reaches it. As in
  Nøkland (2016) and Launay et al. (2020), :math:`B_l` maps the error to the whole feature map
  (:math:`F_l` = all features at one position: channels times height times width after a
  convolutional layer), at every position that the output has (each example and time step:
  the error of step :math:`t` reaches the hidden outputs of step :math:`t`). For a spiking
  network with a leaky-integrator readout, :math:`e` at the readout's input already carries
  the readout's own dynamics over time. With one hidden layer and :math:`B` the true Jacobian
  :math:`\partial o / \partial h` (:math:`W_\text{out}`), DFA is backpropagation.
- **FDFA** (Bacho & Chu 2022): DFA whose :math:`B_l` estimates that Jacobian. Every hidden
  output is perturbed by :math:`u_l \sim \mathcal N(0, I)`; one ``jax.jvp`` gives
  :math:`o' = \sum_l J_l u_l`, and since :math:`\mathbb E[u_l^\top o'] = J_l^\top`,

  .. math:: B_l \leftarrow B_l - \eta\,\big(B_l - \operatorname{mean}_{\text{positions}}(u_l^\top o')\big),
     \qquad B_l^{(0)} = 0,

  then the DFA gradient with the updated :math:`B_l`.

Biases and neuron parameters train through the same paths (their gradient is exact given the
error that reaches their layer), and everything after the output product (the readout's
decay, say) gets the exact gradient. FA, DFA and FDFA keep their matrices as the rule's
state, one per touched product in the order of the traced loss (``rule.init(params, *args,
key=key)``). A rule raises a ``ValueError`` naming the layer where it cannot act: DFA and
FDFA need exactly one output product and at least one hidden layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from snnjax.rules import forward_mode
from snnjax.rules.graph import Graph, Handler, Site, evaluate, trace
from snnjax.rules.protocol import Rule, total

__all__ = ["FeedbackState", "dfa", "fa", "fdfa", "fdfa_update"]

_sg = jax.lax.stop_gradient


class FeedbackState(NamedTuple):
    """The feedback matrices of FA, DFA or FDFA.

    Attributes:
      matrices: FA: one per weight product whose input is learned, of the weight's shape;
        DFA and FDFA: one ``[F_l, C]`` per hidden output.
      step: number of calls so far, int32.
    """

    matrices: tuple[jax.Array, ...]
    step: jax.Array


class _FA(Handler):
    name = "FA"

    def __init__(self, matrices: dict[int, jax.Array]):
        self.matrices = matrices

    def touches(self, site: Site) -> bool:
        return site.index in self.matrices

    def product(self, site, x, w, extra):
        xb = site.apply(x, _sg(self.matrices[site.index]).astype(w.dtype))
        return site.apply(_sg(x), w) + (xb - _sg(xb)), None  # the value x*W; x's cotangent goes through B


class _Perturb(Handler):
    """Adds ``extra`` to the output (``where="out"``) or the input (``"x"``) of the given sites;
    collects the output of ``collect``."""

    def __init__(self, name: str, sites: set[int], where: str, collect: int | None = None):
        self.name, self.sites, self.where, self.collect = name, sites, where, collect

    def touches(self, site: Site) -> bool:
        return site.index in self.sites or site.index == self.collect

    def product(self, site, x, w, extra):
        if site.index in self.sites and self.where == "x":
            x = x + extra
        out = site.apply(x, w)
        if site.index in self.sites and self.where == "out":
            out = out + extra
        return out, (out if site.index == self.collect else None)


class _Cut(Handler):
    """Stops the gradient at the input of the given sites and collects that input."""

    def __init__(self, name: str, sites: set[int]):
        self.name, self.sites = name, sites

    def touches(self, site: Site) -> bool:
        return site.index in self.sites

    def product(self, site, x, w, extra):
        return site.apply(_sg(x), w), x


def _stacked(site: Site, of: str) -> tuple[int, ...]:
    return tuple(site.loops) + tuple(site.x.shape if of == "x" else site.out.shape)


def _features(site: Site, of: str) -> int:
    positions, features = site.layout(of)
    shape = site.x.shape if of == "x" else site.out.shape
    return math.prod(shape[a] for a in features)


def _positions(site: Site, of: str) -> int:
    return math.prod(_stacked(site, of)) // _features(site, of)


def _fan_in(site: Site) -> int:
    if site.primitive.name == "conv_general_dilated":
        return math.prod(site.w.shape) // site.w.shape[site.params["dimension_numbers"].rhs_spec[0]]
    (lc, rc), _ = site.params["dimension_numbers"]
    return math.prod(site.w.shape[a] for a in (lc if site.weight == 0 else rc))


def _hidden_features(site: Site, rows: int) -> int:
    """Features per output position of a hidden output: a convolution that folds some of the
    feature map into its batch axis (``nnx.Conv`` over ``[..., L, C]``) has more positions than
    the output; they are folded back, row-major, into the features."""
    return math.prod(_stacked(site, "x")) // rows


def _fa_sites(graph: Graph) -> list[Site]:
    return [s for s in graph.sites if s.trainable_input]


def _dfa_sites(graph: Graph, rule: str) -> tuple[list[Site], Site]:
    """The hidden outputs (inputs of non-recurrent products that read another layer) and the output product."""
    graph.require_sites(rule)
    outputs = [s for s in graph.sites if s.output]
    if len(outputs) != 1:
        names = "; ".join(s.name for s in outputs) or "none"
        raise ValueError(
            f"{rule}: needs exactly one network output (a weight product whose result reaches the loss through no "
            f"other weight product); found {len(outputs)}: {names}."
        )
    out = outputs[0]
    hidden = [s for s in graph.sites if s.hidden and not s.recurrent]
    if not hidden:
        raise ValueError(f"{rule}: the network has no hidden layer (no weight product reads another layer's output).")
    positions = _positions(out, "out")
    for s in hidden:
        if _positions(s, "x") % positions:
            raise ValueError(
                f"{rule}: the hidden layer read by {s.name} has {_positions(s, 'x')} positions (examples times steps) "
                f"but the output {out.name} has {positions}; the error of each position must reach the same position."
            )
    return hidden, out


def _dfa_shapes(hidden: list[Site], out: Site) -> list[tuple[int, int]]:
    classes, rows = _features(out, "out"), _positions(out, "out")
    return [(_hidden_features(s, rows), classes) for s in hidden]


def _check_state(state: FeedbackState, shapes: list[tuple[int, ...]], rule: str) -> None:
    got = [tuple(m.shape) for m in state.matrices]
    if got != [tuple(s) for s in shapes]:
        raise ValueError(
            f"{rule}: the state's matrices have shapes {got}, the model needs {shapes}; call rule.init again."
        )


def _fixed_init(kind: str, loss_fn: Callable, scale: float, rule: str) -> Callable:
    def init(params, *args, key=None):
        if key is None:
            raise ValueError(f"{rule}: init needs key= to draw the fixed feedback matrices.")
        graph = trace(loss_fn, params, args, rule)
        if kind == "fa":
            graph.require_sites(rule)
            sites = _fa_sites(graph)
            shapes = [(tuple(s.w.shape), math.sqrt(_fan_in(s)), s.w.dtype) for s in sites]
        else:
            hidden, out = _dfa_sites(graph, rule)
            classes, rows = _features(out, "out"), _positions(out, "out")
            shapes = [((_hidden_features(s, rows), classes), math.sqrt(classes), s.x.dtype) for s in hidden]
        keys = jax.random.split(key, max(len(shapes), 1))
        matrices = tuple(scale * jax.random.normal(k, s, d) / n for k, (s, n, d) in zip(keys, shapes))
        return FeedbackState(matrices, jnp.zeros((), jnp.int32))

    return init


def fa(loss_fn: Callable[..., tuple[Any, Any]], *, scale: float = 1.0) -> Rule:
    r"""Feedback alignment: every weight product sends the error back through a fixed random matrix.

    Args:
      loss_fn: ``(params, *args) -> (loss, aux)`` (module docstring).
      scale: the matrices' standard deviation relative to :math:`1/\sqrt{N_{in}}`
        (:math:`N_{in}` the weight's fan-in): :math:`B_l \sim \mathcal N(0, \text{scale}^2 / N_{in})`.

    Returns:
      A stateful :class:`~snnjax.rules.Rule`; ``rule.init(params, *args, key=key)`` draws the
      matrices (one per product whose input depends on the parameters), and ``state.matrices``
      may be replaced by any of the same shapes (the weights themselves give backpropagation).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> def loss_fn(p, x, y):
      ...     out = jnp.tanh(x @ p[0]) @ p[1]
      ...     return jnp.mean(jnp.sum((out - y) ** 2, axis=-1)), out
      >>> p = (jnp.ones((3, 4)) / 3, jnp.ones((4, 2)) / 4)
      >>> x, y = jnp.ones((5, 3)), jnp.zeros((5, 2))
      >>> rule = rules.fa(loss_fn)
      >>> state = rule.init(p, x, y, key=jax.random.key(0))
      >>> [b.shape for b in state.matrices]  # the second product's input is the hidden layer
      [(4, 2)]
      >>> exact = rule(p, x, y, state=state._replace(matrices=(p[1],)))[1]
      >>> bool(jnp.allclose(exact[0], jax.grad(lambda p: loss_fn(p, x, y)[0])(p)[0]))
      True
    """
    if not callable(loss_fn):
        raise ValueError("fa: loss_fn must be a callable (params, *args) -> (loss, aux).")

    def apply(state, params, *args, key=None):
        del key  # deterministic given the state
        graph = trace(loss_fn, params, args, "fa")
        graph.require_sites("fa")
        sites = _fa_sites(graph)
        _check_state(state, [s.w.shape for s in sites], "fa")
        handler = _FA({s.index: m for s, m in zip(sites, state.matrices)})

        def objective(p):
            loss, aux = evaluate(graph, p, args, handler)[0]
            return total(loss), aux

        loss_aux, grads = jax.value_and_grad(objective, has_aux=True)(params)
        return loss_aux, grads, FeedbackState(state.matrices, state.step + 1)

    return Rule(init=_fixed_init("fa", loss_fn, scale, "fa"), apply=apply, stateful=True, name="FA", loss_fn=loss_fn)


def _dfa_grads(graph: Graph, hidden: list[Site], out: Site, matrices, params, args, rule: str):
    """``((loss, aux), grads)``: the output error, then every hidden output's projected error."""
    zeros = jnp.zeros(_stacked(out, "out"), out.out.dtype)

    def perturbed(eps):
        loss, aux = evaluate(graph, params, args, _Perturb(rule, {out.index}, "out"), {out.index: eps})[0]
        return total(loss), aux

    loss_aux, error = jax.value_and_grad(perturbed, has_aux=True)(zeros)
    error = out.to_matrix(error, "out")  # [P, C]
    signals = {
        s.index: _sg(s.from_matrix((error @ b.T.astype(error.dtype)).reshape(_positions(s, "x"), -1), "x"))
        for s, b in zip(hidden, matrices)
    }

    def objective(p):
        (loss, _), inputs = evaluate(graph, p, args, _Cut(rule, set(signals)))
        return total(loss) + sum(jnp.vdot(signals[i], inputs[i]) for i in signals)

    return loss_aux, jax.grad(objective)(params)


def dfa(loss_fn: Callable[..., tuple[Any, Any]], *, scale: float = 1.0) -> Rule:
    r"""Direct feedback alignment: the output error reaches each hidden output through a fixed ``B_l``.

    Args:
      loss_fn: ``(params, *args) -> (loss, aux)`` (module docstring).
      scale: the matrices' standard deviation relative to :math:`1/\sqrt{C}`:
        :math:`B_l \sim \mathcal N(0, \text{scale}^2 / C)`, ``[F_l, C]``.

    Returns:
      A stateful :class:`~snnjax.rules.Rule`; ``rule.init(params, *args, key=key)`` draws the
      matrices, and ``state.matrices`` may be replaced by any of the same shapes.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> def mlp(p, x, labels):  # two hidden layers, three classes
      ...     logits = jax.nn.relu(jax.nn.relu(x @ p["w1"]) @ p["w2"]) @ p["w3"]
      ...     return jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(4), labels]), logits
      >>> p = {"w1": jnp.full((5, 6), 0.2), "w2": jnp.full((6, 4), 0.2), "w3": jnp.full((4, 3), 0.2)}
      >>> rule = rules.dfa(mlp)
      >>> state = rule.init(p, jnp.ones((4, 5)), jnp.array([0, 1, 2, 0]), key=jax.random.key(0))
      >>> [b.shape for b in state.matrices]  # one B per hidden output, [features, classes]
      [(6, 3), (4, 3)]
    """
    if not callable(loss_fn):
        raise ValueError("dfa: loss_fn must be a callable (params, *args) -> (loss, aux).")

    def apply(state, params, *args, key=None):
        del key  # deterministic given the state
        graph = trace(loss_fn, params, args, "dfa")
        hidden, out = _dfa_sites(graph, "dfa")
        _check_state(state, _dfa_shapes(hidden, out), "dfa")
        loss_aux, grads = _dfa_grads(graph, hidden, out, state.matrices, params, args, "dfa")
        return loss_aux, grads, FeedbackState(state.matrices, state.step + 1)

    return Rule(init=_fixed_init("dfa", loss_fn, scale, "dfa"), apply=apply, stateful=True, name="DFA", loss_fn=loss_fn)


def draw_steps(key: jax.Array, shape: tuple[int, ...], dtype: Any, distribution: str) -> jax.Array:
    """Noise of ``shape`` drawn slice by slice along the leading axis: slice ``t`` from ``fold_in(key, t)``.

    A time-major ``[T, B, ...]`` perturbation is then the same whether it is drawn whole
    (offline) or one step at a time (online).
    """
    if len(shape) == 0:
        return forward_mode.draw(key, shape, dtype, distribution)
    steps = jnp.arange(shape[0])
    return jax.vmap(lambda t: forward_mode.draw(jax.random.fold_in(key, t), shape[1:], dtype, distribution))(steps)


def fdfa(loss_fn: Callable[..., tuple[Any, Any]], *, rate: float = 0.01, distribution: str = "gaussian") -> Rule:
    r"""Forward DFA: DFA with each ``B_l`` a running forward-mode estimate of the Jacobian.

    Args:
      loss_fn: ``(params, *args) -> (loss, aux)`` (module docstring).
      rate: :math:`\eta`, the update rate of the estimates (momentum :math:`1 - \eta`).
      distribution: ``"gaussian"`` or ``"rademacher"`` perturbations (both have identity covariance).

    Returns:
      A stateful :class:`~snnjax.rules.Rule` that needs ``key``; each call updates the estimates
      (returned in the state) and then takes the DFA gradient with them. The noise of hidden
      output ``l`` (``[*steps, ...]``, the shape the product reads, stacked over its loops) is
      drawn by :func:`draw_steps` from ``jax.random.fold_in(key, l)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> def loss_fn(p, x):
      ...     out = (x @ p[0]) @ p[1]
      ...     return jnp.mean(jnp.sum(out ** 2, axis=-1)), out
      >>> p, x = (jnp.ones((3, 4)), jnp.full((4, 2), 0.5)), jnp.ones((1024, 3))
      >>> rule = rules.fdfa(loss_fn, rate=1.0)  # rate 1: B is this batch's estimate
      >>> state = rule.init(p, x)
      >>> _, _, state = rule(p, x, key=jax.random.key(0), state=state)
      >>> bool(jnp.allclose(state.matrices[0], p[1], atol=0.15))  # the Jacobian dout/dh is W2 (noise sd 0.03)
      True
    """
    if not callable(loss_fn):
        raise ValueError("fdfa: loss_fn must be a callable (params, *args) -> (loss, aux).")
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"fdfa: rate must lie in (0, 1], got {rate}.")
    forward_mode.check_options(1, distribution, "fdfa")

    def init(params, *args, key=None):
        hidden, out = _dfa_sites(trace(loss_fn, params, args, "fdfa"), "fdfa")
        shapes = _dfa_shapes(hidden, out)
        return FeedbackState(
            tuple(jnp.zeros(shape, s.x.dtype) for s, shape in zip(hidden, shapes)), jnp.zeros((), jnp.int32)
        )

    def apply(state, params, *args, key=None):
        key = forward_mode.require_key(key, "fdfa")
        graph = trace(loss_fn, params, args, "fdfa")
        hidden, out = _dfa_sites(graph, "fdfa")
        _check_state(state, _dfa_shapes(hidden, out), "fdfa")
        noise = {
            s.index: draw_steps(jax.random.fold_in(key, l), _stacked(s, "x"), s.x.dtype, distribution)
            for l, s in enumerate(hidden)
        }
        handler = _Perturb("fdfa", set(noise), "x", collect=out.index)

        def output(eps):
            return evaluate(graph, params, args, handler, eps)[1][out.index]

        zeros = {i: jnp.zeros_like(u) for i, u in noise.items()}
        _, d_out = forward_mode.jvp(output, (zeros,), (noise,))
        d_out = out.to_matrix(d_out, "out")  # [P, C]
        rows = d_out.shape[0]
        matrices = tuple(
            fdfa_update(b, s.to_matrix(noise[s.index], "x").reshape(rows, -1).T @ d_out / rows, rate)
            for s, b in zip(hidden, state.matrices)
        )
        loss_aux, grads = _dfa_grads(graph, hidden, out, matrices, params, args, "fdfa")
        return loss_aux, grads, FeedbackState(matrices, state.step + 1)

    return Rule(init=init, apply=apply, stateful=True, name="FDFA", loss_fn=loss_fn)


def fdfa_update(matrix: jax.Array, estimate: jax.Array, rate: float) -> jax.Array:
    r"""FDFA's step towards a new estimate of the output Jacobian, in the matrix's own dtype:
    :math:`B \leftarrow B - \eta\,(B - \hat J)`, ``[N, C]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.rules.feedback import fdfa_update
      >>> fdfa_update(jnp.zeros((1, 2)), jnp.array([[2.0, 4.0]]), 0.5).tolist()
      [[1.0, 2.0]]
    """
    return (matrix - rate * (matrix - estimate)).astype(matrix.dtype)
