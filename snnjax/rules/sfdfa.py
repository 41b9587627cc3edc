r"""SFDFA: spiking forward direct feedback alignment, online (Bacho & Chu, arXiv 2403.08804).

On the exact-time current-based LIF network of :mod:`snnjax.spike_time`, everything is computed
inside the one forward scan of :func:`snnjax.spike_time.simulate`, with memory independent of
the number of time steps.

**Local gradients from eligibility traces.** :func:`~snnjax.spike_time.simulate` carries, per
example and synapse, :math:`E_{ij} = \sum_k \partial t_k/\partial w_{ij}` through each neuron's
own spikes (its module docstring has the equations), with the critical-point fix
:math:`F_k = \tau / I(t_k)` by default or the exact :math:`\tau / (I(t_k) - \vartheta)`.

**Spike grades.** Every hidden neuron draws :math:`v_i \sim N(0, 1)` per example; the times it
emits are shifted by :math:`v_i` as the next layer sees them. The directional derivative of
each spike time along that shift is ``jax.jvp`` of the same simulation (with the same
:math:`F_k`: :math:`\dot t_k = F_k (\dot a / X_k^2 - \dot b / X_k)`), and :math:`D_c` is the
sum of output neuron :math:`c`'s grades. The feedback matrices follow
:math:`B_{ic} \leftarrow B_{ic} - \eta_B (B_{ic} - \operatorname{mean}_b D_c v_i)` over the
examples where neuron :math:`i` fired, from zero, so :math:`B` tracks the output-to-hidden
Jacobian. With ``feedback="dfa"`` :math:`B` is fixed, :math:`U(-1, 1)`, and no grades are computed.

**The loss.** The rule is built from the loss it trains, :func:`spike_count_loss` of the
network, as every rule is; :func:`spike_time_bp` takes the same loss.

**Updates.** Spike-count loss :math:`\frac12 \sum_c (n_c - n^*_c)^2`, :math:`\delta_c = n^*_c - n_c`;
output :math:`g_{jc} = \operatorname{mean}_b \delta_c E_{cj}`; hidden error
:math:`e_i = \sum_c B_{ic} \delta_c + \lambda (\bar n^* - \operatorname{mean}_b n_i)` (the
firing-rate regulariser is added; the released code overwrites :math:`B\delta` with it, which
``hidden_error="rate"`` reproduces),
:math:`g_{ji} = \operatorname{mean}_b e_i E_{ij}`. The returned ``grads`` are descent directions
for optax (Adam in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from snnjax import losses
from snnjax.neurons.spike_time import Diagnostics, SpikeTimeNet, simulate
from snnjax.rules.feedback import FeedbackState
from snnjax.rules.protocol import Rule, stateless

__all__ = ["SFDFAAux", "SpikeCountLoss", "count_targets", "perturbations", "sfdfa", "spike_count_loss", "spike_time_bp"]


class SFDFAAux(NamedTuple):
    """The ``aux`` of :func:`spike_count_loss`, :func:`sfdfa` and :func:`spike_time_bp`.

    Attributes:
      counts: spike counts ``[B, N_l]`` per non-input layer; the last is the prediction's input.
      diagnostics: the grid's :class:`~snnjax.spike_time.Diagnostics`.
      grades: per layer, the sum of each neuron's spike grades ``[B, N_l]``: exact ones without
        its own shift :math:`v_i`, or the released code's (with :math:`v_i` on the first spike);
        zeros for DFA, BP and the loss itself.
    """

    counts: tuple[jax.Array, ...]
    diagnostics: Diagnostics
    grades: tuple[jax.Array, ...]


def count_targets(labels: jax.Array, classes: int, target_true: float = 15.0, target_false: float = 3.0) -> jax.Array:
    """Target spike counts ``[B, C]``: ``target_true`` for the label, ``target_false`` elsewhere.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.rules.sfdfa import count_targets
      >>> tuple(int(v) for v in count_targets(jnp.array([1]), 3)[0])
      (3, 15, 3)
    """
    return jnp.where(jax.nn.one_hot(labels, classes, dtype=bool), target_true, target_false).astype(jnp.float32)


class SpikeCountLoss(NamedTuple):
    """The spike-count loss of an exact-time network: ``loss_fn(params, times, labels) -> (loss, aux)``.

    Attributes:
      net: the :class:`~snnjax.spike_time.SpikeTimeNet`.
      target_true: target count of the true class's output neuron.
      target_false: target count of the others.
    """

    net: SpikeTimeNet
    target_true: float = 15.0
    target_false: float = 3.0

    def __call__(self, params: Sequence[jax.Array], times: jax.Array, labels: jax.Array) -> tuple[jax.Array, SFDFAAux]:
        r"""``(loss, aux)``: :math:`\operatorname{mean}_b \frac12 \sum_c (n_c - n^*_c)^2` and an :class:`SFDFAAux`."""
        _check(self.net, params, times, labels, "spike_count_loss")
        run = simulate(self.net, params, times)
        loss = losses.spike_count_mse(run.counts[-1][None], labels, self.target_true, self.target_false)
        return loss, SFDFAAux(run.counts, run.diagnostics, tuple(jnp.zeros_like(c) for c in run.counts))

    def targets(self, labels: jax.Array) -> jax.Array:
        """The target counts ``[B, C]``."""
        return count_targets(labels, self.net.sizes[-1], self.target_true, self.target_false)


def spike_count_loss(net: SpikeTimeNet, target_true: float = 15.0, target_false: float = 3.0) -> SpikeCountLoss:
    r"""The loss :func:`sfdfa` and :func:`spike_time_bp` train, :math:`\frac12 \sum_c (n_c - n^*_c)^2` per example.

    Args:
      net: the exact-time network (:class:`~snnjax.spike_time.SpikeTimeNet`), checked here.
      target_true: target output count for the true class (15 in the reference).
      target_false: for the other classes (3).

    Returns:
      A :class:`SpikeCountLoss`, a ``loss_fn(params, times, labels) -> (loss, SFDFAAux)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax.rules import spike_count_loss
      >>> from snnjax.spike_time import SpikeTimeNet, init_weights, ttfs
      >>> net = SpikeTimeNet((16, 8, 3), theta=(0.2, 0.7), dt=2e-3)
      >>> times = ttfs(jnp.full((2, 16), 200, jnp.uint8))
      >>> loss, aux = spike_count_loss(net)(init_weights(jax.random.key(0), net), times, jnp.array([0, 1]))
      >>> loss.shape, aux.counts[-1].shape
      ((), (2, 3))
    """
    if not isinstance(net, SpikeTimeNet):
        raise ValueError(f"spike_count_loss: net must be a snnjax.spike_time.SpikeTimeNet, got {type(net).__name__}.")
    net.check()
    return SpikeCountLoss(net, target_true, target_false)


def perturbations(key: jax.Array, net: SpikeTimeNet, batch: int) -> tuple[jax.Array, ...]:
    r"""The hidden neurons' shifts :math:`v \sim N(0, 1)`, ``[B, N_l]`` per hidden layer, as :func:`sfdfa` draws them.

    Examples:
      >>> import jax
      >>> from snnjax.rules.sfdfa import perturbations
      >>> from snnjax.spike_time import SpikeTimeNet
      >>> tuple(v.shape for v in perturbations(jax.random.key(0), SpikeTimeNet((4, 3, 5, 2), theta=(0.2, 0.2, 0.7)), 6))
      ((6, 3), (6, 5))
    """
    keys = jax.random.split(key, len(net.sizes) - 2)
    return tuple(jax.random.normal(k, (batch, n), jnp.float32) for k, n in zip(keys, net.sizes[1:-1]))


def _per_hidden(regularizer: float | Sequence[float], net: SpikeTimeNet, name: str) -> tuple[float, ...]:
    r"""The regulariser's :math:`\lambda` for each hidden layer, from one value or one per layer."""
    hidden = len(net.sizes) - 2
    lambdas = tuple(regularizer for _ in range(hidden)) if isinstance(regularizer, (int, float)) else tuple(regularizer)
    if len(lambdas) != hidden:
        raise ValueError(f"{name}: regularizer needs one value or {hidden}, got {regularizer}.")
    return lambdas


def _rate_signals(lambdas: Sequence[float], rate_target: float, counts: Sequence[jax.Array]) -> list[jax.Array]:
    r"""The firing-rate regulariser's error per hidden neuron, ``[1, N_l]``.

    :math:`\lambda (\bar n^* - \operatorname{mean}_b n_i)`.
    """
    return [lam * (rate_target - jnp.mean(n_l, axis=0, keepdims=True)) for lam, n_l in zip(lambdas, counts)]


def _feedback_update(
    matrices: Sequence[jax.Array],
    shifts: Sequence[jax.Array],
    counts: Sequence[jax.Array],
    output_grades: jax.Array,
    rate: float,
) -> tuple[jax.Array, ...]:
    r"""SFDFA's feedback step, :math:`B_{ic} \leftarrow B_{ic} - \eta_B (B_{ic} - \operatorname{mean}_b D_c v_i)`.

    The mean is over the examples where hidden neuron :math:`i` fired; :math:`B` stays where it never did.
    """
    new = []
    for m, v, n_l in zip(matrices, shifts, counts):
        active = (n_l > 0).astype(jnp.float32)
        estimate = jnp.einsum("bi,bc->ic", active * v, output_grades)
        seen = jnp.sum(active, axis=0)[:, None]
        new.append(m - rate * (seen * m - estimate) / jnp.maximum(seen, 1.0))
    return tuple(new)


def _check(net: SpikeTimeNet, params: Sequence[jax.Array], times: jax.Array, labels: jax.Array, name: str) -> None:
    shapes = tuple((n_in, n_out) for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:]))
    if tuple(tuple(jnp.shape(w)) for w in params) != shapes:
        raise ValueError(
            f"{name}: params must be weight matrices of shapes {shapes}, "
            f"got {tuple(tuple(jnp.shape(w)) for w in params)}."
        )
    if times.ndim != 2 or times.shape[1] != net.sizes[0] or labels.shape != times.shape[:1]:
        raise ValueError(
            f"{name}: need times [B, {net.sizes[0]}] and labels [B], got {times.shape} and {labels.shape}."
        )


def _loss_of(loss_fn: Any, name: str) -> SpikeCountLoss:
    if not isinstance(loss_fn, SpikeCountLoss):
        hint = " (wrap the network: snnjax.rules.spike_count_loss(net))" if isinstance(loss_fn, SpikeTimeNet) else ""
        raise ValueError(
            f"{name}: needs the spike-count loss of an exact-time network{hint}, got {type(loss_fn).__name__}."
        )
    return loss_fn


GRADES = ("exact", "released")
ORDERS = ("errors_first", "feedback_first")
HIDDEN_ERRORS = ("feedback", "rate")


def sfdfa(
    loss_fn: SpikeCountLoss,
    *,
    feedback: str = "sfdfa",
    fix: bool = True,
    feedback_rate: float = 1e-4,
    regularizer: float | Sequence[float] = 0.3,
    rate_target: float = 0.4,
    chunk: int = 128,
    grades: str = "exact",
    order: str = "errors_first",
    hidden_error: str = "feedback",
) -> Rule:
    r"""SFDFA (or DFA) on an exact-time spiking network, online (module docstring).

    The defaults of the regulariser are the reference code's for Fashion-MNIST only; other data
    sets use other values (:func:`snnjax.rules.sfdfa_preset` has the reference's settings per
    data set). ``grades``, ``order`` and ``hidden_error`` choose between the paper's rule (the
    defaults) and what the released code computes.

    Args:
      loss_fn: :func:`spike_count_loss` of the network (at least one hidden layer).
      feedback: ``"sfdfa"`` (feedback learned from spike grades, from zero) or ``"dfa"``
        (fixed :math:`U(-1, 1)` matrices drawn from ``init``'s key).
      fix: the critical-point fix, :math:`\tau / I` instead of :math:`\tau / (I - \vartheta)`,
        for the local gradients and the grades.
      feedback_rate: :math:`\eta_B` (SFDFA).
      regularizer: :math:`\lambda`, one value or one per hidden layer (the reference on
        Fashion-MNIST: 0.3 for SFDFA, 1.0 for DFA; other data sets: :func:`sfdfa_preset`).
      rate_target: target mean spike count per hidden neuron and example.
      chunk: spiking neurons whose eligibility rows are updated per inner iteration (any value
        is exact; it sets speed).
      grades: ``"exact"``: the directional derivatives of the spike times along shifts
        :math:`v_i` of every spike (``jax.jvp``); ``"released"``: the released kernel's
        :math:`g = \sum w\, g_{pre} + [k = 0]\, v` (:mod:`snnjax.spike_time`), a different
        scale for :math:`B` against the regulariser.
      order: ``"errors_first"``: the errors use :math:`B` before this step's update;
        ``"feedback_first"``: :math:`B` is updated first, as the released training loop does.
      hidden_error: ``"feedback"``: :math:`e_i = \sum_c B_{ic}\delta_c + \lambda(\bar n^* -
        \operatorname{mean}_b n_i)`, the paper's rule; ``"rate"``: the regulariser alone, as the
        released ``LIFLayer`` computes it (it overwrites :math:`B\delta`, so :math:`B` is learned
        but never reaches the weights, for SFDFA and DFA alike).

    Returns:
      A stateful :class:`~snnjax.rules.Rule` with a :class:`~snnjax.rules.FeedbackState`
      (one ``[N_l, C]`` matrix per hidden layer): ``state = rule.init(params, key=key)``, then
      ``(loss, aux), grads, state = rule(params, times, labels, key=key, state=state)`` with
      ``params`` the tuple of weight matrices, ``times`` the input spike times ``[B, N_in]``,
      ``aux`` an :class:`SFDFAAux`.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from snnjax.rules import sfdfa, spike_count_loss
      >>> from snnjax.spike_time import SpikeTimeNet, init_weights, ttfs
      >>> net = SpikeTimeNet((16, 8, 3), theta=(0.2, 0.7), dt=2e-3)
      >>> params = init_weights(jax.random.key(0), net, scale=2.0)
      >>> rule = sfdfa(spike_count_loss(net))
      >>> images = jax.random.randint(jax.random.key(1), (4, 16), 0, 256).astype(jnp.uint8)
      >>> state = rule.init(params)
      >>> labels = jnp.array([0, 1, 2, 0])
      >>> (loss, aux), grads, state = rule(params, ttfs(images), labels, key=jax.random.key(2), state=state)
      >>> tuple(g.shape for g in grads), state.matrices[0].shape
      (((16, 8), (8, 3)), (8, 3))
    """
    loss_fn = _loss_of(loss_fn, "sfdfa")
    net = loss_fn.net
    if feedback not in ("sfdfa", "dfa"):
        raise ValueError(f"sfdfa: feedback must be 'sfdfa' or 'dfa', got {feedback!r}.")
    if len(net.sizes) < 3:
        raise ValueError("sfdfa: the network needs at least one hidden layer.")
    if chunk < 1:
        raise ValueError(f"sfdfa: chunk must be >= 1, got {chunk}.")
    choices = (("grades", grades, GRADES), ("order", order, ORDERS), ("hidden_error", hidden_error, HIDDEN_ERRORS))
    for option, value, allowed in choices:
        if value not in allowed:
            raise ValueError(f"sfdfa: {option} must be one of {', '.join(map(repr, allowed))}, got {value!r}.")
    hidden = len(net.sizes) - 2
    lambdas = _per_hidden(regularizer, net, "sfdfa")
    classes = net.sizes[-1]
    grades_on = feedback == "sfdfa"

    def init(params, *args, key=None):
        shapes = [(n, classes) for n in net.sizes[1:-1]]
        if grades_on:
            return FeedbackState(tuple(jnp.zeros(s, jnp.float32) for s in shapes), jnp.zeros((), jnp.int32))
        if key is None:
            raise ValueError("sfdfa: feedback='dfa' needs init(..., key=key) to draw its fixed matrices.")
        keys = jax.random.split(key, hidden)
        return FeedbackState(
            tuple(jax.random.uniform(k, s, jnp.float32, -1.0, 1.0) for k, s in zip(keys, shapes)),
            jnp.zeros((), jnp.int32),
        )

    def apply(state, params, times, labels, key=None):
        _check(net, params, times, labels, "sfdfa")
        batch = times.shape[0]

        def run(shifts, seeds=None):
            out = simulate(net, params, times, shifts, fix=fix, eligibility=True, chunk=chunk, released_grades=seeds)
            return out.time_sums, out

        if not grades_on:
            shifts, out = None, run(None)[1]
            grade_sums = tuple(jnp.zeros_like(c) for c in out.counts)
        elif key is None:
            raise ValueError("sfdfa: feedback='sfdfa' needs key= for the hidden perturbations.")
        elif grades == "exact":
            shifts = perturbations(key, net, batch)
            _, grade_sums, out = jax.jvp(run, (tuple(jnp.zeros_like(v) for v in shifts),), (shifts,), has_aux=True)
        else:
            shifts = perturbations(key, net, batch)
            out = run(None, shifts)[1]
            grade_sums = out.grades
        counts = out.counts
        delta = loss_fn.targets(labels) - counts[-1]
        loss = losses.spike_count_mse(counts[-1][None], labels, loss_fn.target_true, loss_fn.target_false)
        matrices = state.matrices
        updated = _feedback_update(matrices, shifts, counts, grade_sums[-1], feedback_rate) if grades_on else matrices
        used = updated if order == "feedback_first" else matrices
        rates = _rate_signals(lambdas, rate_target, counts)
        if hidden_error == "rate":
            errors = [jnp.broadcast_to(r, (batch, r.shape[1])) for r in rates] + [delta]
        else:
            errors = [delta @ m.T + r for m, r in zip(used, rates)] + [delta]
        grads = tuple(jnp.einsum("bi,bij->ji", e, elig) / batch for e, elig in zip(errors, out.eligibility))
        aux = SFDFAAux(counts, out.diagnostics, tuple(grade_sums))
        return (loss, aux), grads, FeedbackState(updated, state.step + 1)

    return Rule(init=init, apply=apply, stateful=True, name=feedback.upper(), loss_fn=loss_fn)


def spike_time_bp(
    loss_fn: SpikeCountLoss,
    *,
    regularizer: float | Sequence[float] = 0.3,
    rate_target: float = 0.4,
) -> Rule:
    r"""Backpropagation through the exact spike times of :func:`~snnjax.spike_time.simulate` (``jax.grad``).

    The same learning signal as :func:`sfdfa`, differentiated through the whole network:
    ``grads`` is the gradient of :math:`\operatorname{mean}_b \big[\sum_c \delta_c \sum_z t_c^z +
    \sum_l \sum_i r_{l,i} \sum_z t_{l,i}^z\big]` with :math:`\delta = n^* - n` and the
    regulariser's :math:`r_{l,i} = \lambda (\bar n^* - \operatorname{mean}_b n_{l,i})` held
    constant (no critical-point fix: the exact derivatives). Memory grows with the number of steps.

    Args:
      loss_fn: :func:`spike_count_loss` of the network.
      regularizer: as for :func:`sfdfa`.
      rate_target: as for :func:`sfdfa`.

    Returns:
      A stateless :class:`~snnjax.rules.Rule`: ``(loss, aux), grads = rule(params, times, labels)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax.rules import spike_count_loss, spike_time_bp
      >>> from snnjax.spike_time import SpikeTimeNet, init_weights, ttfs
      >>> net = SpikeTimeNet((16, 8, 3), theta=(0.2, 0.7), dt=2e-3)
      >>> params = init_weights(jax.random.key(0), net, scale=2.0)
      >>> images = jax.random.randint(jax.random.key(1), (4, 16), 0, 256).astype(jnp.uint8)
      >>> (loss, aux), grads = spike_time_bp(spike_count_loss(net))(params, ttfs(images), jnp.array([0, 1, 2, 0]))
      >>> tuple(g.shape for g in grads)
      ((16, 8), (8, 3))
    """
    loss_fn = _loss_of(loss_fn, "spike_time_bp")
    net = loss_fn.net
    lambdas = _per_hidden(regularizer, net, "spike_time_bp")

    def surrogate(params, times, labels):
        run = simulate(net, params, times)
        counts = tuple(jax.lax.stop_gradient(c) for c in run.counts)
        delta = loss_fn.targets(labels) - counts[-1]
        signal = jnp.mean(jnp.sum(delta * run.time_sums[-1], axis=1))
        for r, t_l in zip(_rate_signals(lambdas, rate_target, counts), run.time_sums):
            signal = signal + jnp.mean(jnp.sum(r * t_l, axis=1))
        loss = losses.spike_count_mse(counts[-1][None], labels, loss_fn.target_true, loss_fn.target_false)
        return signal, (loss, SFDFAAux(counts, run.diagnostics, tuple(jnp.zeros_like(c) for c in counts)))

    grad = jax.grad(surrogate, has_aux=True)

    def apply(state, params, times, labels, key=None):
        del key
        _check(net, params, times, labels, "spike_time_bp")
        grads, (loss, aux) = grad(params, times, labels)
        return (loss, aux), grads, state

    return stateless(apply, "BP (spike times)", loss_fn)
