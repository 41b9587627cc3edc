r"""The loss of a stepped network: what the online rules are built from.

An online rule runs the whole network forward in time in one ``lax.scan`` and learns as it
goes, so it needs the network as a pure step, not as a function of whole sequences. Its loss
is built from two pure pieces, and is itself an ordinary ``loss_fn`` (so ``jax.grad``,
:func:`snnjax.rules.bptt` and :func:`snnjax.compare_gradients` take it as is):

- ``network(params) -> snnjax.Neuron``: a :func:`snnjax.chain` of dense synapses
  (:func:`snnjax.dense`) and neuron layers, built from the parameters
  (:func:`snnjax.nn.network` makes one from an NNX model);
- ``loss_t(y_t, labels) -> [B]``: one time step's per-example loss of the last layer's output.

.. math:: L = \frac1k \sum_{t > T - k} \operatorname{mean}_b\, \ell(y_{t,b}, \text{label}_b)

over the last ``k = last`` steps, a readout over a window as in e-prop's tasks (``last=1``:
the last step only); by default every step, ``k = T``.

The online rules read the chain's layers: ``(Dense, neuron)`` pairs, at least two. They train
the dense layers' kernels and biases, whatever parameters those are computed from (the
gradient is carried back to ``params`` by ``jax.vjp`` of ``network``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from snnjax.neurons.chain import Dense
from snnjax.neurons.neuron import Neuron, run
from snnjax.rules import forward_mode
from snnjax.rules.graph import trace

__all__ = [
    "Run",
    "SteppedLoss",
    "dense_layers",
    "depends_on_params",
    "cell_of",
    "eligibility_step",
    "local_jacobians",
    "per_step_loss",
    "read_fields",
    "start",
    "to_params",
]


class SteppedLoss(NamedTuple):
    """A ``loss_fn(params, xs, labels) -> (loss, ys)`` that also says how the network steps.

    Attributes:
      network: ``params -> snnjax.Neuron``, a chain of dense synapses and neuron layers.
      loss_t: ``(y_t [B, C], labels) -> [B]``, one step's per-example loss.
      last: the loss covers the last ``last`` steps; ``None``: every step.
    """

    network: Callable[[Any], Neuron]
    loss_t: Callable[[jax.Array, jax.Array], jax.Array]
    last: int | None = None

    def weight(self, t: jax.Array, steps: int, dtype: Any = jnp.float32) -> jax.Array:
        """Step ``t``'s weight in the loss (``t`` an index or an array of them): :math:`1/k` on the
        last :math:`k` of ``steps`` steps, else 0. Online rules take it at each step from the step's
        index, so nothing of length T is kept."""
        if self.last is not None and self.last < 1:
            raise ValueError(f"SteppedLoss: last must be None or >= 1 (the readout's window), got {self.last}.")
        k = steps if self.last is None else min(self.last, steps)
        return jnp.where(t >= steps - k, 1.0 / k, 0.0).astype(dtype)

    def __call__(self, params: Any, xs: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(loss, ys)`` for inputs ``xs`` ``[T, B, N_in]``: the network run as a whole, ``ys`` ``[T, B, C]``."""
        _, ys = run(self.network(params), xs)
        per_step = jnp.mean(jax.vmap(self.loss_t, in_axes=(0, None))(ys, labels), axis=1)  # [T]
        return jnp.sum(self.weight(jnp.arange(ys.shape[0]), ys.shape[0], per_step.dtype) * per_step), ys

    def running_loss(self, params: Any, xs: jax.Array, labels: jax.Array) -> jax.Array:
        """The same loss, summed in the scan's carry as the network runs: no ``[T, ...]`` array is
        kept, which forward-mode rules (:func:`snnjax.rules.rtrl`) need for memory flat in ``T``."""
        net = self.network(params)

        xs = jnp.asarray(xs)

        def step(carry, x):
            state, total, t = carry
            state, y = net.step(state, x)
            w = self.weight(t, xs.shape[0], xs.dtype)
            return (state, total + w * jnp.mean(self.loss_t(y, labels)), t + 1), None

        carry = (net.init(xs.shape[1:], xs.dtype), jnp.zeros((), xs.dtype), jnp.zeros((), jnp.int32))
        (_, total, _), _ = jax.lax.scan(step, carry, xs)
        return total


def per_step_loss(
    network: Callable[[Any], Neuron], loss_t: Callable[[jax.Array, jax.Array], jax.Array], *, last: int | None = None
) -> SteppedLoss:
    r"""The loss :math:`\frac1k \sum_{t > T-k} \operatorname{mean}_b \ell(y_t)` of a stepped network (module docstring).

    Args:
      network: ``params -> snnjax.Neuron``, e.g. ``lambda p: snnjax.chain(snnjax.dense(p["w1"]),
        snnjax.lif(0.9), snnjax.dense(p["w2"]), snnjax.leaky_integrator(0.9))``.
      loss_t: ``(y_t [B, C], labels) -> [B]``, e.g. ``optax.softmax_cross_entropy_with_integer_labels``.
      last: the readout's window: the loss covers the last ``last`` steps (``1``: the last step);
        ``None``: every step. A sequence shorter than the window is covered whole.

    Returns:
      A :class:`SteppedLoss`, usable as ``loss_fn`` by every rule, online or not.

    Examples:
      >>> import jax.numpy as jnp, optax, snnjax
      >>> from snnjax import rules
      >>> loss_fn = rules.per_step_loss(
      ...     lambda w: snnjax.chain(snnjax.dense(w), snnjax.leaky_integrator(0.5)),
      ...     optax.softmax_cross_entropy_with_integer_labels)
      >>> loss, ys = loss_fn(jnp.zeros((2, 3)), jnp.ones((4, 1, 2)), jnp.array([0]))
      >>> round(float(loss), 4), ys.shape  # log 3 for all-zero outputs
      (1.0986, (4, 1, 3))
    """
    if not callable(network) or not callable(loss_t):
        raise ValueError(
            "per_step_loss: network (params -> snnjax.Neuron) and loss_t ((y_t, labels) -> [B]) must be callables."
        )
    if last is not None and (not isinstance(last, numbers.Integral) or isinstance(last, bool) or last < 1):
        raise ValueError(f"per_step_loss: last must be None or an int >= 1 (the readout's window), got {last!r}.")
    return SteppedLoss(network, loss_t, None if last is None else int(last))


def dense_layers(loss_fn: Any, params: Any, rule: str, recurrent: bool = False) -> list[tuple[Dense, Neuron]]:
    """The ``(Dense, neuron)`` pairs of ``loss_fn.network(params)``, checked for an online rule.

    With ``recurrent``, neuron layers may have recurrent weights (:class:`snnjax.Recurrence`),
    which the rule trains as well; their cell without the recurrent input must not depend on
    the parameters.

    Raises:
      ValueError: naming the layer, for a loss that is not a :class:`SteppedLoss`, a network
        that is not a chain of at least two ``(Dense, neuron)`` pairs, a recurrent neuron layer
        (unless ``recurrent``), or a neuron layer whose dynamics depend on the parameters (the
        online rules train the dense layers only).
    """
    if not isinstance(loss_fn, SteppedLoss):
        raise ValueError(
            f"{rule}: an online rule needs the loss of a stepped network, snnjax.rules.per_step_loss(network, loss_t) "
            f"(snnjax.nn.network(model) makes the network of an NNX model); got {type(loss_fn).__name__}."
        )
    net = loss_fn.network(params)
    layers = tuple(getattr(net, "layers", ()))
    pairs = list(zip(layers[0::2], layers[1::2]))
    if len(layers) < 4 or len(layers) % 2 or not all(isinstance(d, Dense) and isinstance(n, Neuron) for d, n in pairs):
        kinds = [type(layer).__name__ for layer in layers] or [type(net).__name__]
        raise ValueError(
            f"{rule}: the network must be a snnjax.chain of (snnjax.dense, neuron) pairs, at least two; got layers "
            f"{kinds}."
        )
    for l, (d, neuron) in enumerate(pairs):
        if neuron.recurrence is not None and not recurrent:
            raise ValueError(
                f"{rule}: neuron layer {l} (after dense layer {l}) is recurrent, which {rule} does not support; "
                "train recurrent layers online with rules.eprop, rules.rtrl or rules.tbptt."
            )
        cell = recurrent and neuron.recurrence is not None
        if depends_on_params(loss_fn, params, 2 * l + 1, d.kernel.shape[1], d.kernel.dtype, rule, cell):
            raise ValueError(
                f"{rule}: neuron layer {l} (after dense layer {l}) depends on the parameters (a trainable decay or "
                "threshold); online rules here train the dense layers only: make it fixed, or train offline."
            )
    return pairs


def cell_of(neuron: Neuron) -> tuple[Callable, jax.Array | None]:
    """A neuron layer's step without its recurrent input, and its recurrent weights (``None`` for a
    feed-forward layer, whose step is its own)."""
    if neuron.recurrence is None:
        return neuron.step, None
    return neuron.recurrence.cell, neuron.recurrence.weights


def depends_on_params(
    loss_fn: SteppedLoss, params: Any, index: int, size: int, dtype: Any, rule: str, cell: bool = False
) -> bool:
    """Whether layer ``index`` of ``loss_fn.network(params)`` (a neuron of ``size`` units) steps
    differently with other parameters: a trainable decay or threshold; with ``cell``, the step
    without its recurrent input (whose weights are the rule's to train)."""

    def summed(p, s, x):
        neuron = loss_fn.network(p).layers[index]
        step = cell_of(neuron)[0] if cell else neuron.step
        return sum(jnp.sum(v) for v in jax.tree.leaves(step(s, x))), None

    neuron = loss_fn.network(params).layers[index]
    graph = trace(summed, params, (neuron.init((1, size), dtype), jnp.zeros((1, size), dtype)), rule)
    return any(graph.param_losses)


class Run(NamedTuple):
    """What an online rule's call works with: the network's layers and the input's sizes."""

    pairs: list[tuple[Dense, Neuron]]
    sizes: list[tuple[int, int]]  # (N_in, N) of each dense layer
    steps: int
    batch: int
    dtype: Any


def start(loss_fn: Any, params: Any, xs: jax.Array, rule: str, recurrent: bool = False) -> Run:
    """The checked layers of ``loss_fn.network(params)`` (:func:`dense_layers`) and the sizes of ``xs``."""
    pairs = dense_layers(loss_fn, params, rule, recurrent)
    return Run(pairs, [tuple(d.kernel.shape) for d, _ in pairs], xs.shape[0], xs.shape[1], xs.dtype)


def to_params(loss_fn: SteppedLoss, params: Any, grads: list[tuple[jax.Array, ...]]) -> Any:
    """The gradient with respect to ``params`` from one ``(kernel, bias)`` per dense layer, by ``jax.vjp``;
    ``(kernel, bias, recurrent)`` for a layer whose neurons have recurrent weights."""

    def weights(p):
        layers = loss_fn.network(p).layers
        return [
            (d.kernel, d.bias, None if n.recurrence is None else n.recurrence.weights)
            for d, n in zip(layers[0::2], layers[1::2])
        ]

    found, pullback = jax.vjp(weights, params)
    cotangent = [
        tuple(None if w is None else g for w, g in zip(ws, (*gs, None, None)[:3])) for gs, ws in zip(grads, found)
    ]
    return pullback(cotangent)[0]


def read_fields(step: Callable, state: Any, current: jax.Array) -> list[int]:
    """The state arrays that ``step`` reads; the others (a LIF's stored spike) need no trace."""
    closed = jax.make_jaxpr(step)(state, current)
    jaxpr = closed.jaxpr
    variables = [v for eqn in jaxpr.eqns for v in eqn.invars] + list(jaxpr.outvars)
    used = {id(v) for v in variables if type(v).__name__ != "Literal"}
    return [m for m, var in enumerate(jaxpr.invars[: len(state)]) if id(var) in used]


def local_jacobians(step: Callable, state: Any, current: jax.Array, fields: list[int]):
    """Per-neuron derivatives of ``(state', out)`` with respect to the state arrays ``fields`` and the current.

    Returns ``(new_state, out, d_state, d_current)``: ``d_state[i]`` is the tangent of
    ``(state', out)`` along state array ``fields[i]`` (ones), ``d_current`` along the current.
    Neurons are independent (no recurrence), so a tangent of ones gives every neuron's own derivative.
    """
    zeros = [jnp.zeros_like(f) for f in state]
    (new_state, out), d_current = forward_mode.jvp(lambda i: step(state, i), (current,), (jnp.ones_like(current),))
    d_state = []
    for m in fields:
        tangent = type(state)(*[jnp.ones_like(f) if n == m else z for n, (f, z) in enumerate(zip(state, zeros))])
        d_state.append(forward_mode.jvp(lambda s: step(s, current), (state,), (tangent,))[1])
    return new_state, out, d_state, d_current


def eligibility_step(
    pre: jax.Array, d_state: list, d_current: Any, traces: list[jax.Array], delta: jax.Array, read: list[int]
) -> tuple[jax.Array, list[jax.Array]]:
    r"""One step of a layer's per-synapse eligibility traces, and the gradient they give with ``delta``.

    For weights with presynaptic input ``pre`` ``[B, P]`` into neurons whose per-neuron
    Jacobians are ``d_state``, ``d_current`` (:func:`local_jacobians`), and traces
    :math:`\varepsilon_{t-1}[m] = \partial s_{t-1}[m] / \partial W` ``[B, P, N]`` (one per state
    array the step reads):

    .. math::

        g = \sum_b \delta \cdot \frac{\partial o_t}{\partial W}
          = \sum_b \sum_m \delta\, \frac{\partial o_t}{\partial s[m]}\, \varepsilon_{t-1}[m]
            + \text{pre}^\top \Big(\delta\, \frac{\partial o_t}{\partial I}\Big), \qquad
        \varepsilon_t[n] = \sum_m \frac{\partial s_t[n]}{\partial s[m]}\, \varepsilon_{t-1}[m]
            + \frac{\partial s_t[n]}{\partial I}\, \text{pre}.

    Args:
      pre: the weights' presynaptic input ``[B, P]`` (ones ``[B, 1]`` for a bias).
      d_state, d_current: :func:`local_jacobians`' tangents.
      traces: ``[B, P, N]`` per read state array, in the order of ``read``.
      delta: :math:`\partial \ell_t / \partial o_t` ``[B, N]``.
      read: the state arrays the step reads (:func:`read_fields`).

    Returns:
      ``(g [P, N], new traces)``.
    """
    k = len(traces)
    g = pre.T @ (delta * d_current[1])
    for m in range(k):
        g = g + jnp.einsum("bj,bij->ij", delta * d_state[m][1], traces[m])
    new = [
        sum((d_state[m][0][n][:, None, :] * traces[m] for m in range(k)), d_current[0][n][:, None, :] * pre[:, :, None])
        for n in read
    ]
    return g, new
