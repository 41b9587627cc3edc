r"""Feedback alignment (FA), direct feedback alignment (DFA) and forward DFA (FDFA), offline.

**Routed models.** These rules change how the error travels backwards, so they need the layer
boundaries. They are built from a *routed model* ``model(params, *args, route) -> (losses, aux)``
(per-example ``losses [B]``) that computes every weight product as ``route.linear(x, w)``
(``x @ w``, ``w`` of shape ``[N_in, N_out]``), passes every hidden layer's output through
``h = route.hidden(h)`` and the network output through ``y = route.output(y)``; each returns
its input unchanged in the forward pass. :class:`snnjax.nn.Sequential` and
:class:`snnjax.train.MLP` do this when called with ``route=``. Time-major models pass whole
sequences (``h: [T, B, N_l]``, ``y: [T, B, C]``).

The rules are written with stop-gradient identities, so one ``jax.grad`` computes each:

- **FA** (Lillicrap et al. 2016): ``linear`` returns
  :math:`\operatorname{sg}(x) W + x B_l - \operatorname{sg}(x B_l)`, whose value is
  :math:`xW` and whose backward pass sends :math:`\delta B_l^\top` to :math:`x` where
  backpropagation sends :math:`\delta W^\top`. :math:`B_l` has :math:`W`'s shape, fixed random;
  :math:`B_l = W_l` is backpropagation.
- **DFA** (Nøkland 2016): ``hidden`` cuts each hidden output from the layers above
  (:math:`\operatorname{sg}(h_l)`) and ``output`` returns
  :math:`y + \sum_l (h_l B_l - \operatorname{sg}(h_l B_l))`, so the error :math:`e = \partial L/\partial y`
  reaches every hidden output as :math:`e B_l^\top` (:math:`B_l: [N_l, C]`) in one step, then
  flows through the layer's own local derivative (a spiking layer's surrogate, through its own
  dynamics over time) to its weights. Over time the error of step :math:`t` reaches the hidden
  outputs of step :math:`t` (the *offline* mode).
- **FDFA** (Bacho & Chu 2022): DFA whose :math:`B_l` estimates the output-to-layer Jacobian.
  Perturb each hidden output by :math:`u_l \sim \mathcal N(0, I)`; one ``jax.jvp`` gives
  :math:`y' = \sum_l J_l u_l`, and since :math:`\mathbb E[u_l^\top y'] = J_l^\top`,

  .. math:: B_l \leftarrow B_l - \eta\,\big(B_l - \operatorname{mean}_{t,b}(u_l^\top y')\big),
     \qquad B_l^{(0)} = 0,

  then the DFA gradient with the updated :math:`B_l`. With :math:`B_l = J_l^\top`, DFA is
  backpropagation for one hidden layer.

FA and DFA keep their fixed matrices as the rule's state, FDFA its estimates; all three are
stateful rules (``rule.init(params)``, ``state=``). The matrices' shapes come from one abstract
trace of the model on ``example_args`` (arrays or ``jax.ShapeDtypeStruct``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from snnjax.rules import forward_mode
from snnjax.rules.protocol import Rule

__all__ = ["FeedbackState", "Route", "as_routed_loss", "dfa", "fa", "fdfa"]

_sg = jax.lax.stop_gradient
RoutedModel = Callable[..., tuple[jax.Array, Any]]


class Route:
    """The identity route of a plain forward pass; the rules' routes subclass it.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.rules import Route
      >>> route = Route()
      >>> y = route.output(route.linear(route.hidden(jnp.ones((2, 3))), jnp.ones((3, 1))))
      >>> y[:, 0], len(route.hiddens)
      (Array([3., 3.], dtype=float32), 1)
    """

    def __init__(self) -> None:
        self.linears: list[jax.Array] = []
        self.hiddens: list[jax.Array] = []
        self.outputs: list[jax.Array] = []

    def linear(self, x: jax.Array, w: jax.Array) -> jax.Array:
        """``x @ w``; ``x: [..., N_in]``, ``w: [N_in, N_out]``."""
        self.linears.append(w)
        return self._linear(len(self.linears) - 1, x, w)

    def hidden(self, h: jax.Array) -> jax.Array:
        """A hidden layer's output ``[..., N_l]``, as the next layer sees it."""
        self.hiddens.append(h)
        return self._hidden(len(self.hiddens) - 1, h)

    def output(self, y: jax.Array) -> jax.Array:
        """The network output ``[..., C]``."""
        if self.outputs:
            raise ValueError("a routed model must call route.output(y) exactly once.")
        self.outputs.append(y)
        return self._output(y)

    def _linear(self, i: int, x: jax.Array, w: jax.Array) -> jax.Array:
        return x @ w

    def _hidden(self, i: int, h: jax.Array) -> jax.Array:
        return h

    def _output(self, y: jax.Array) -> jax.Array:
        return y


class _FA(Route):
    def __init__(self, matrices):
        super().__init__()
        self.matrices = matrices

    def _linear(self, i, x, w):
        b = self.matrices[i]
        return _sg(x) @ w + (x @ _sg(b) - _sg(x @ b))  # value x @ w; x's cotangent uses B


class _DFA(Route):
    def __init__(self, matrices):
        super().__init__()
        self.matrices = matrices

    def _hidden(self, i, h):
        return _sg(h)  # the layers above do not send their error down

    def _output(self, y):
        for h, b in zip(self.hiddens, self.matrices):
            projected = h @ _sg(b)
            y = y + (projected - _sg(projected))  # exactly 0 forward; e B^T backward to h
        return y


class _Perturb(Route):
    def __init__(self, noise):
        super().__init__()
        self.noise = noise

    def _hidden(self, i, h):
        return h + self.noise[i]


class FeedbackState(NamedTuple):
    """The feedback matrices of FA, DFA or FDFA.

    Attributes:
      matrices: FA: one ``[N_in, N_out]`` per ``route.linear``; DFA and FDFA: one ``[N_l, C]``
        per hidden layer.
      step: number of updates so far (FDFA), int32.
    """

    matrices: tuple[jax.Array, ...]
    step: jax.Array


def as_routed_loss(model: RoutedModel) -> Callable[..., tuple[jax.Array, Any]]:
    """The ``loss_fn(params, *args) -> (batch-mean loss, aux)`` of a routed model, for other rules.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import rules
      >>> model = lambda w, x, route: (jnp.sum(route.output(route.linear(x, w)), axis=-1), None)
      >>> float(rules.as_routed_loss(model)(jnp.ones((2, 1)), jnp.ones((3, 2)))[0])
      2.0
    """

    def loss_fn(params, *args):
        losses, aux = model(params, *args, route=Route())
        return jnp.mean(losses), aux

    return loss_fn


def _trace(model: RoutedModel, params: Any, args: tuple) -> Route:
    route = Route()
    losses, _ = jax.eval_shape(lambda p, a: model(p, *a, route=route), params, args)
    if len(losses.shape) != 1:
        raise ValueError(f"a routed model must return per-example losses [B], got shape {losses.shape}.")
    if len(route.outputs) != 1:
        raise ValueError("a routed model must pass its output through route.output(y) once.")
    return route


def _shapes(route: Route, kind: str, name: str) -> list[tuple[int, int]]:
    if kind == "fa":
        if not route.linears:
            raise ValueError(f"{name}: the model never called route.linear(x, w).")
        return [tuple(w.shape) for w in route.linears]
    if not route.hiddens:
        raise ValueError(f"{name}: the model never called route.hidden(h); it needs at least one hidden layer.")
    classes = route.outputs[0].shape[-1]
    return [(h.shape[-1], classes) for h in route.hiddens]


def _routed_grad(model: RoutedModel, route_cls, matrices, params, args):
    def objective(p):
        losses, aux = model(p, *args, route=route_cls(matrices))
        return jnp.mean(losses), aux

    return jax.value_and_grad(objective, has_aux=True)(params)


def _fixed(model: RoutedModel, example_args: tuple, key: jax.Array, scale: float, kind: str, name: str) -> Rule:
    if not callable(model):
        raise ValueError(f"{name}: model must be a callable (params, *args, route) -> (losses, aux).")
    route_cls = _FA if kind == "fa" else _DFA

    def init(params):
        shapes = _shapes(_trace(model, params, tuple(example_args)), kind, name)
        keys = jax.random.split(key, len(shapes))
        # FA: like the forward weights, variance 1/N_in; DFA: variance 1/C.
        matrices = tuple(
            scale * jax.random.normal(k, s) / jnp.sqrt(s[0] if kind == "fa" else s[1]) for k, s in zip(keys, shapes)
        )
        return FeedbackState(matrices, jnp.zeros((), jnp.int32))

    def apply(state, params, *args, key=None):
        del key  # deterministic given the state
        loss_aux, grads = _routed_grad(model, route_cls, state.matrices, params, args)
        return loss_aux, grads, state

    return Rule(init=init, apply=apply, stateful=True, name=name, loss_fn=as_routed_loss(model))


def fa(model: RoutedModel, example_args: tuple, *, key: jax.Array, scale: float = 1.0) -> Rule:
    r"""Feedback alignment: every ``route.linear`` sends the error back through a fixed random matrix.

    Args:
      model: a routed model (module docstring).
      example_args: arguments after ``params`` (or their ``jax.ShapeDtypeStruct``), for the shapes.
      key: draws the matrices, :math:`B_l \sim \mathcal N(0, \text{scale}^2 / N_{in})`.
      scale: their standard deviation relative to :math:`1/\sqrt{N_{in}}`.

    Returns:
      A stateful :class:`~snnjax.rules.Rule`; ``state.matrices`` may be replaced by any
      matrices of the same shapes (``B_l = W_l`` gives backpropagation).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> def model(p, x, y, route):
      ...     out = route.output(route.linear(jnp.tanh(route.linear(x, p[0])), p[1]))
      ...     return jnp.sum((out - y) ** 2, axis=-1), None
      >>> p = (jnp.ones((3, 4)) / 3, jnp.ones((4, 2)) / 4)
      >>> x, y = jnp.ones((5, 3)), jnp.zeros((5, 2))
      >>> rule = rules.fa(model, (x, y), key=jax.random.key(0))
      >>> state = rule.init(p)
      >>> exact = rule.apply(state._replace(matrices=p), p, x, y)[1]
      >>> bool(jnp.allclose(exact[0], jax.grad(lambda p: rules.as_routed_loss(model)(p, x, y)[0])(p)[0]))
      True
    """
    return _fixed(model, example_args, key, scale, "fa", "FA")


def dfa(model: RoutedModel, example_args: tuple, *, key: jax.Array, scale: float = 1.0) -> Rule:
    r"""Direct feedback alignment: the output error reaches each hidden layer through a fixed ``B_l``.

    Args:
      model: a routed model (module docstring).
      example_args: arguments after ``params`` (or their ``jax.ShapeDtypeStruct``), for the shapes.
      key: draws :math:`B_l \sim \mathcal N(0, \text{scale}^2 / C)`, ``[N_l, C]``.
      scale: their standard deviation relative to :math:`1/\sqrt{C}`.

    Returns:
      A stateful :class:`~snnjax.rules.Rule`; ``state.matrices`` may be replaced.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> def model(p, x, y, route):
      ...     h = route.hidden(jnp.tanh(route.linear(x, p[0])))
      ...     return jnp.sum((route.output(route.linear(h, p[1])) - y) ** 2, axis=-1), None
      >>> p, x, y = (jnp.ones((3, 4)) / 3, jnp.ones((4, 2)) / 4), jnp.ones((5, 3)), jnp.zeros((5, 2))
      >>> rule = rules.dfa(model, (x, y), key=jax.random.key(0))
      >>> state = rule.init(p)
      >>> tuple(b.shape for b in state.matrices)
      ((4, 2),)
      >>> (loss, _), grads, state = rule(p, x, y, state=state)
      >>> grads[0].shape, grads[1].shape
      ((3, 4), (4, 2))
    """
    return _fixed(model, example_args, key, scale, "dfa", "DFA")


def fdfa(model: RoutedModel, example_args: tuple, *, rate: float = 0.01, distribution: str = "gaussian") -> Rule:
    r"""Forward DFA: DFA with each ``B_l`` a running forward-mode estimate of the Jacobian.

    Args:
      model: a routed model (module docstring).
      example_args: arguments after ``params`` (or their ``jax.ShapeDtypeStruct``), for the shapes.
      rate: :math:`\eta`, the update rate of the estimates (momentum :math:`1 - \eta`).
      distribution: ``"gaussian"`` or ``"rademacher"`` perturbations (both have identity covariance).

    Returns:
      A stateful :class:`~snnjax.rules.Rule` that needs ``key``; each call updates the estimates
      (returned in the state) and then takes the DFA gradient with them. The hidden outputs'
      noise of layer ``l`` is drawn from ``jax.random.fold_in(key, l)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> def model(p, x, route):
      ...     h = route.hidden(route.linear(x, p[0]))
      ...     return jnp.sum(route.output(route.linear(h, p[1])) ** 2, axis=-1), None
      >>> p, x = (jnp.ones((3, 4)), jnp.full((4, 2), 0.5)), jnp.ones((64, 3))
      >>> rule = rules.fdfa(model, (x,), rate=1.0)  # rate 1: B is this batch's estimate
      >>> _, _, state = rule(p, x, key=jax.random.key(0), state=rule.init(p))
      >>> bool(jnp.allclose(state.matrices[0], p[1], atol=0.3))  # the Jacobian dy/dh is W2
      True
    """
    if not callable(model):
        raise ValueError("fdfa: model must be a callable (params, *args, route) -> (losses, aux).")
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"fdfa: rate must lie in (0, 1], got {rate}.")
    forward_mode.check_options(1, distribution, "fdfa")

    def init(params):
        shapes = _shapes(_trace(model, params, tuple(example_args)), "dfa", "fdfa")
        return FeedbackState(tuple(jnp.zeros(s) for s in shapes), jnp.zeros((), jnp.int32))

    def apply(state, params, *args, key=None):
        key = forward_mode.require_key(key, "fdfa")
        hiddens = _trace(model, params, args).hiddens
        noise = [
            forward_mode.draw(jax.random.fold_in(key, i), h.shape, h.dtype, distribution) for i, h in enumerate(hiddens)
        ]

        def output(eps):
            route = _Perturb(eps)
            model(params, *args, route=route)
            return route.outputs[0]

        _, dy = forward_mode.jvp(output, ([jnp.zeros(h.shape, h.dtype) for h in hiddens],), (noise,))
        matrices = tuple(
            b - rate * (b - jnp.einsum("...n,...c->nc", u, dy) / (u.size // u.shape[-1]))
            for b, u in zip(state.matrices, noise)
        )
        loss_aux, grads = _routed_grad(model, _DFA, matrices, params, args)
        return loss_aux, grads, FeedbackState(matrices, state.step + 1)

    return Rule(init=init, apply=apply, stateful=True, name="FDFA", loss_fn=as_routed_loss(model))
