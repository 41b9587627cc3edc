r"""SFDFA: spiking forward direct feedback alignment, online (Bacho & Chu, arXiv 2403.08804).

On the exact-time current-based LIF network of :mod:`snnjax.spike_time`, everything is computed
inside the one forward scan, with memory independent of the number of time steps.

**Local gradients from eligibility traces.** At a spike :math:`t_k` of neuron :math:`i`,
:math:`u_i(t_k) = \vartheta` gives, with :math:`X_k = e^{t_k/\tau}` and :math:`I(t_k) = a_i/X_k^2`,

.. math::

    \frac{\partial t_k}{\partial w_{ij}} = F_k \Big(\frac{\varepsilon^s_j}{X_k^2}
        - \frac{\varepsilon^m_{ij}}{X_k}\Big), \qquad
    F_k = \frac{\tau}{I(t_k) - \vartheta}\ \text{(exact)} \quad\text{or}\quad
    \frac{\tau}{I(t_k)}\ \text{(critical-point fix, the default)},

where :math:`\varepsilon^s_j = \sum_z e^{t_j^z/\tau_s}` and :math:`\varepsilon^m_{ij} = \sum_z
e^{t_j^z/\tau} - \frac{\vartheta}{\tau} R_{ij}` are the synapse's traces (growing-exponential
form of REFERENCE's decaying :math:`\epsilon_s, \epsilon_m`) and :math:`R_{ij} = \sum_{k' < k}
X_{k'}\, \partial t_{k'}/\partial w_{ij}` is the reset correction (the dependence of later spikes
on earlier ones through the reset). The traces :math:`E_{ij} = \sum_k \partial t_k/\partial
w_{ij}` and :math:`R_{ij}` are carried per example and synapse, ``[B, N, N_in]``, and change only
where a neuron spikes: each step gathers the rows of the neurons that fired, updates them and
scatters them back (``chunk`` rows at a time), so a step costs :math:`O(\text{spikes} \cdot N_{in})`.

**Spike grades.** Every hidden neuron draws :math:`v_i \sim N(0, 1)` per example; the times it
emits are shifted by :math:`v_i` as the next layer sees them. The directional derivative of
each spike time along that shift is carried forward in the same scan (the tangents of the
traces, :math:`\dot t_k = F_k (\dot a / X_k^2 - \dot b / X_k)`), and :math:`D_c` is the sum of
output neuron :math:`c`'s grades. The feedback matrices follow
:math:`B_{ic} \leftarrow B_{ic} - \eta_B (B_{ic} - \operatorname{mean}_b D_c v_i)` over the
examples where neuron :math:`i` fired, from zero, so :math:`B` tracks the output-to-hidden
Jacobian. With ``feedback="dfa"`` :math:`B` is fixed, :math:`U(-1, 1)`, and no grades are computed.

**Updates.** Spike-count loss :math:`\frac12 \sum_c (n_c - n^*_c)^2`, :math:`\delta_c = n^*_c - n_c`;
output :math:`g_{jc} = \operatorname{mean}_b \delta_c E_{cj}`; hidden error
:math:`e_i = \sum_c B_{ic} \delta_c + \lambda (\bar n^* - \operatorname{mean}_b n_i)` (the
firing-rate regulariser is added, not substituted as the released code does in one place),
:math:`g_{ji} = \operatorname{mean}_b e_i E_{ij}`. The returned ``grads`` are descent directions
for optax (Adam in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from snnjax import losses
from snnjax.rules.feedback import FeedbackState
from snnjax.rules.protocol import EmptyState, Rule
from snnjax.spike_time import Diagnostics, SpikeTimeNet, crossing, deliver, input_step, simulate

__all__ = ["SFDFAAux", "count_targets", "perturbations", "sfdfa", "spike_time_bp"]


class SFDFAAux(NamedTuple):
    """The ``aux`` of :func:`sfdfa` and :func:`spike_time_bp`.

    Attributes:
      counts: spike counts ``[B, N_l]`` per non-input layer; the last is the prediction's input.
      diagnostics: the grid's :class:`~snnjax.spike_time.Diagnostics`.
      grades: per layer, the sum of each neuron's spike grades ``[B, N_l]`` (without its own
        shift :math:`v_i`); zeros for DFA and BP.
    """

    counts: tuple[jax.Array, ...]
    diagnostics: Diagnostics
    grades: tuple[jax.Array, ...]


class _Layer(NamedTuple):
    pre_s: jax.Array  # [B, N_in]
    pre_m: jax.Array  # [B, N_in]
    reset: jax.Array  # [B, N]
    count: jax.Array  # [B, N]
    d_pre_s: jax.Array  # tangents along the shifts, [B, N_in]
    d_pre_m: jax.Array
    d_reset: jax.Array  # [B, N]
    grades: jax.Array  # [B, N]
    elig: jax.Array  # E, [B * N, N_in]
    rtrace: jax.Array  # R, [B * N, N_in]


def count_targets(labels: jax.Array, classes: int, target_true: float = 15.0, target_false: float = 3.0) -> jax.Array:
    """Target spike counts ``[B, C]``: ``target_true`` for the label, ``target_false`` elsewhere.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.rules.sfdfa import count_targets
      >>> tuple(int(v) for v in count_targets(jnp.array([1]), 3)[0])
      (3, 15, 3)
    """
    return jnp.where(jax.nn.one_hot(labels, classes, dtype=bool), target_true, target_false).astype(jnp.float32)


def perturbations(key: jax.Array, net: SpikeTimeNet, batch: int) -> tuple[jax.Array, ...]:
    """The hidden neurons' shifts :math:`v \\sim N(0, 1)`, ``[B, N_l]`` per hidden layer, as :func:`sfdfa` draws them.

    Examples:
      >>> import jax
      >>> from snnjax.rules.sfdfa import perturbations
      >>> from snnjax.spike_time import SpikeTimeNet
      >>> tuple(v.shape for v in perturbations(jax.random.key(0), SpikeTimeNet((4, 3, 5, 2), theta=(0.2, 0.2, 0.7)), 6))
      ((6, 3), (6, 5))
    """
    keys = jax.random.split(key, len(net.sizes) - 2)
    return tuple(jax.random.normal(k, (batch, n), jnp.float32) for k, n in zip(keys, net.sizes[1:-1]))


def _first(mask: jax.Array, k: int) -> jax.Array:
    """Indices of the first ``k`` true entries of the flat ``mask``, ascending, ``mask.size`` past the last.

    ``jnp.nonzero(mask, size=k)``, by a binary search in the running count: several times faster on CPU.
    """
    running = jnp.cumsum(mask, dtype=jnp.int32)
    return jnp.searchsorted(running, jnp.arange(1, k + 1, dtype=jnp.int32), side="left", method="scan_unrolled").astype(
        jnp.int32
    )


def _eligibility(
    layer: _Layer, rows: jax.Array, factor: jax.Array, x: jax.Array, kappa: float, chunk: int
) -> tuple[jax.Array, jax.Array]:
    """Add :math:`\\partial t_k / \\partial w` to ``E`` and :math:`X_k \\partial t_k / \\partial w` to ``R`` for the rows that spiked."""
    batch, n_post = rows.shape
    total = batch * n_post
    factor, x = factor.reshape(-1), x.reshape(-1)

    def body(carry):
        elig, rtrace, left = carry
        idx = _first(left, chunk)
        valid = idx < total
        safe = jnp.where(valid, idx, 0)
        b = safe // n_post
        f = jnp.where(valid, factor[safe], 0.0)[:, None]
        xk = x[safe][:, None]
        dt_dw = f * (layer.pre_s[b] / (xk * xk) - (layer.pre_m[b] - kappa * rtrace[safe]) / xk)
        elig = elig.at[idx].add(dt_dw, mode="drop", unique_indices=True)
        rtrace = rtrace.at[idx].add(xk * dt_dw, mode="drop", unique_indices=True)
        return elig, rtrace, left & (jnp.arange(total, dtype=jnp.int32) > idx[-1])

    elig, rtrace, _ = jax.lax.while_loop(lambda c: jnp.any(c[2]), body, (layer.elig, layer.rtrace, rows.reshape(-1)))
    return elig, rtrace


def _per_hidden(regularizer: float | Sequence[float], net: SpikeTimeNet, name: str) -> tuple[float, ...]:
    """The regulariser's :math:`\\lambda` for each hidden layer, from one value or one per layer."""
    hidden = len(net.sizes) - 2
    lambdas = tuple(regularizer for _ in range(hidden)) if isinstance(regularizer, (int, float)) else tuple(regularizer)
    if len(lambdas) != hidden:
        raise ValueError(f"{name}: regularizer needs one value or {hidden}, got {regularizer}.")
    return lambdas


def _rate_signals(lambdas: Sequence[float], rate_target: float, counts: Sequence[jax.Array]) -> list[jax.Array]:
    """The firing-rate regulariser's error per hidden neuron, :math:`\\lambda (\\bar n^* - \\operatorname{mean}_b n_i)`, ``[1, N_l]``."""
    return [lam * (rate_target - jnp.mean(n_l, axis=0, keepdims=True)) for lam, n_l in zip(lambdas, counts)]


def _check(net: SpikeTimeNet, params: Sequence[jax.Array], times: jax.Array, labels: jax.Array, name: str) -> None:
    net.check()
    shapes = tuple((n_in, n_out) for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:]))
    if tuple(tuple(w.shape) for w in params) != shapes:
        raise ValueError(
            f"{name}: params must be weight matrices of shapes {shapes}, got {tuple(tuple(w.shape) for w in params)}."
        )
    if times.ndim != 2 or times.shape[1] != net.sizes[0] or labels.shape != times.shape[:1]:
        raise ValueError(
            f"{name}: need times [B, {net.sizes[0]}] and labels [B], got {times.shape} and {labels.shape}."
        )


def sfdfa(
    net: SpikeTimeNet,
    *,
    feedback: str = "sfdfa",
    key: jax.Array | None = None,
    fix: bool = True,
    feedback_rate: float = 1e-4,
    regularizer: float | Sequence[float] = 0.3,
    rate_target: float = 0.4,
    target_true: float = 15.0,
    target_false: float = 3.0,
    chunk: int = 128,
) -> Rule:
    r"""SFDFA (or DFA) on an exact-time spiking network, online (module docstring).

    Args:
      net: the :class:`~snnjax.spike_time.SpikeTimeNet`, at least one hidden layer.
      feedback: ``"sfdfa"`` (feedback learned from spike grades, from zero) or ``"dfa"``
        (fixed :math:`U(-1, 1)` matrices drawn from ``key``).
      key: DFA's matrices; unused by SFDFA, whose calls take ``key=`` for the perturbations.
      fix: the critical-point fix, :math:`\tau / I` instead of :math:`\tau / (I - \vartheta)`,
        for the local gradients and the grades.
      feedback_rate: :math:`\eta_B` (SFDFA).
      regularizer: :math:`\lambda`, one value or one per hidden layer (the reference: 0.3 for
        SFDFA, 1.0 for DFA).
      rate_target: target mean spike count per hidden neuron and example.
      target_true, target_false: target output counts.
      chunk: spiking neurons whose eligibility rows are updated per inner iteration (any value
        is exact; it sets speed).

    Returns:
      A stateful :class:`~snnjax.rules.Rule` with a :class:`~snnjax.rules.FeedbackState`
      (one ``[N_l, C]`` matrix per hidden layer): ``(loss, aux), grads, state = rule(params,
      times, labels, key=key, state=state)`` with ``params`` the tuple of weight matrices,
      ``times`` the input spike times ``[B, N_in]``, ``aux`` an :class:`SFDFAAux`.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from snnjax.rules import sfdfa
      >>> from snnjax.spike_time import SpikeTimeNet, init_weights, ttfs
      >>> net = SpikeTimeNet((16, 8, 3), theta=(0.2, 0.7), dt=2e-3)
      >>> params = init_weights(jax.random.key(0), net, scale=2.0)
      >>> rule = sfdfa(net)
      >>> images = jax.random.randint(jax.random.key(1), (4, 16), 0, 256).astype(jnp.uint8)
      >>> (loss, aux), grads, state = rule(params, ttfs(images), jnp.array([0, 1, 2, 0]), key=jax.random.key(2), state=rule.init(params))
      >>> tuple(g.shape for g in grads), state.matrices[0].shape
      (((16, 8), (8, 3)), (8, 3))
    """
    net.check()
    if feedback not in ("sfdfa", "dfa"):
        raise ValueError(f"sfdfa: feedback must be 'sfdfa' or 'dfa', got {feedback!r}.")
    if feedback == "dfa" and key is None:
        raise ValueError("sfdfa: feedback='dfa' needs key= to draw its fixed matrices.")
    if len(net.sizes) < 3:
        raise ValueError("sfdfa: the network needs at least one hidden layer.")
    if chunk < 1:
        raise ValueError(f"sfdfa: chunk must be >= 1, got {chunk}.")
    hidden = len(net.sizes) - 2
    lambdas = _per_hidden(regularizer, net, "sfdfa")
    classes = net.sizes[-1]
    grades_on = feedback == "sfdfa"

    def init(params):
        shapes = [(n, classes) for n in net.sizes[1:-1]]
        if grades_on:
            return FeedbackState(tuple(jnp.zeros(s, jnp.float32) for s in shapes), jnp.zeros((), jnp.int32))
        keys = jax.random.split(key, hidden)
        return FeedbackState(
            tuple(jax.random.uniform(k, s, jnp.float32, -1.0, 1.0) for k, s in zip(keys, shapes)),
            jnp.zeros((), jnp.int32),
        )

    def step_layer(l, w, st, t_in, mask, grade_in, shift, n):
        """One grid step of layer ``l``: the spike, its grade, the traces; returns the emitted spikes too."""
        threshold, tau = net.thresholds[l], net.tau
        s_in, m_in = deliver(t_in, mask, net.tau_s), deliver(t_in, mask, tau)
        pre_s, pre_m = st.pre_s + s_in, st.pre_m + m_in
        d_pre_s, d_pre_m = st.d_pre_s, st.d_pre_m
        if grades_on and l > 0:
            d_pre_s, d_pre_m = d_pre_s + s_in * grade_in / net.tau_s, d_pre_m + m_in * grade_in / tau
            a, b, da, db = jnp.split(jnp.concatenate([pre_s, pre_m, d_pre_s, d_pre_m]) @ w, 4)
            db = db - threshold * st.d_reset
        else:
            a, b = jnp.split(jnp.concatenate([pre_s, pre_m]) @ w, 2)
            da = db = jnp.zeros_like(a)
        b = b - threshold * st.reset
        c = crossing(net, l, a, b, st.count, n)
        current = a / (c.x * c.x)
        factor = jnp.where(c.exact, tau / jnp.where(c.exact, current if fix else current - threshold, 1.0), 0.0)
        t_dot = factor * (da / (c.x * c.x) - db / c.x)
        layer = st._replace(pre_s=pre_s, pre_m=pre_m)
        elig, rtrace = _eligibility(layer, c.exact, factor, c.x, threshold / tau, chunk)
        new = _Layer(
            pre_s,
            pre_m,
            st.reset + jnp.where(c.spiked, c.x, 0.0),
            st.count + c.spiked,
            d_pre_s,
            d_pre_m,
            st.d_reset + c.x * t_dot / tau,
            st.grades + t_dot,
            elig,
            rtrace,
        )
        t = tau * jnp.log(c.x)
        emitted = (jnp.where(c.spiked, t, 0.0), c.spiked, jnp.where(c.spiked, t_dot + shift, 0.0))
        diag = jnp.stack([jnp.sum(f, dtype=jnp.float32) for f in (c.violation, c.forced, c.capped)])
        return new, emitted, diag

    def apply(state, params, times, labels, key=None):
        _check(net, params, times, labels, "sfdfa")
        batch = times.shape[0]
        if grades_on:
            if key is None:
                raise ValueError("sfdfa: feedback='sfdfa' needs key= for the hidden perturbations.")
            shifts = perturbations(key, net, batch)
        else:
            shifts = tuple(jnp.zeros((batch, n), jnp.float32) for n in net.sizes[1:-1])
        in_step = input_step(net, times)

        def zeros(*shape):
            return jnp.zeros(shape, jnp.float32)

        layers0 = [
            _Layer(
                zeros(batch, n_in),
                zeros(batch, n_in),
                zeros(batch, n),
                zeros(batch, n),
                zeros(batch, n_in),
                zeros(batch, n_in),
                zeros(batch, n),
                zeros(batch, n),
                zeros(batch * n, n_in),
                zeros(batch * n, n_in),
            )
            for n_in, n in zip(net.sizes[:-1], net.sizes[1:])
        ]
        emitted0 = [(zeros(batch, n), jnp.zeros((batch, n), bool), zeros(batch, n)) for n in net.sizes[1:-1]]

        def body(carry, n):
            layers, emitted, diag = carry
            incoming = [(times, in_step == n - 1, zeros(batch, net.sizes[0])), *emitted]
            out_layers, out_emitted = [], []
            for l, (w, st) in enumerate(zip(params, layers)):
                st, spikes, d = step_layer(l, w, st, *incoming[l], shifts[l] if l < hidden else 0.0, n)
                out_layers.append(st)
                out_emitted.append(spikes)
                diag = diag.at[l].add(d)
            return (out_layers, out_emitted[:hidden], diag), None

        (layers, _, diag), _ = jax.lax.scan(body, (layers0, emitted0, zeros(len(params), 3)), jnp.arange(net.steps))

        counts = tuple(st.count for st in layers)
        targets = count_targets(labels, classes, target_true, target_false)
        delta = targets - counts[-1]
        loss = losses.spike_count_mse(counts[-1][None], labels, target_true, target_false)
        errors = [delta @ m.T + r for m, r in zip(state.matrices, _rate_signals(lambdas, rate_target, counts))] + [
            delta
        ]
        grads = tuple(
            jnp.einsum("bi,bij->ji", e, st.elig.reshape(batch, n, n_in)) / batch
            for e, st, n_in, n in zip(errors, layers, net.sizes[:-1], net.sizes[1:])
        )
        matrices = state.matrices
        if grades_on:
            d_out = layers[-1].grades
            new = []
            for m, v, n_l in zip(matrices, shifts, counts):
                active = (n_l > 0).astype(jnp.float32)
                estimate = jnp.einsum("bi,bc->ic", active * v, d_out)
                seen = jnp.sum(active, axis=0)[:, None]
                new.append(m - feedback_rate * (seen * m - estimate) / jnp.maximum(seen, 1.0))
            matrices = tuple(new)
        aux = SFDFAAux(counts, Diagnostics(diag[:, 0], diag[:, 1], diag[:, 2]), tuple(st.grades for st in layers))
        return (loss, aux), grads, FeedbackState(matrices, state.step + 1)

    return Rule(init=init, apply=apply, stateful=True, name=feedback.upper())


def spike_time_bp(
    net: SpikeTimeNet,
    *,
    regularizer: float | Sequence[float] = 0.3,
    rate_target: float = 0.4,
    target_true: float = 15.0,
    target_false: float = 3.0,
) -> Rule:
    r"""Backpropagation through the exact spike times of :func:`~snnjax.spike_time.simulate` (``jax.grad``).

    The same learning signal as :func:`sfdfa`, differentiated through the whole network:
    ``grads`` is the gradient of :math:`\operatorname{mean}_b \big[\sum_c \delta_c \sum_z t_c^z +
    \sum_l \sum_i r_{l,i} \sum_z t_{l,i}^z\big]` with :math:`\delta = n^* - n` and the
    regulariser's :math:`r_{l,i} = \lambda (\bar n^* - \operatorname{mean}_b n_{l,i})` held
    constant (no critical-point fix: the exact derivatives). Memory grows with the number of steps.

    Returns:
      A stateless :class:`~snnjax.rules.Rule`: ``(loss, aux), grads = rule(params, times, labels)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax.rules import spike_time_bp
      >>> from snnjax.spike_time import SpikeTimeNet, init_weights, ttfs
      >>> net = SpikeTimeNet((16, 8, 3), theta=(0.2, 0.7), dt=2e-3)
      >>> params = init_weights(jax.random.key(0), net, scale=2.0)
      >>> images = jax.random.randint(jax.random.key(1), (4, 16), 0, 256).astype(jnp.uint8)
      >>> (loss, aux), grads = spike_time_bp(net)(params, ttfs(images), jnp.array([0, 1, 2, 0]))
      >>> tuple(g.shape for g in grads)
      ((16, 8), (8, 3))
    """
    net.check()
    lambdas = _per_hidden(regularizer, net, "spike_time_bp")
    classes = net.sizes[-1]

    def surrogate(params, times, labels):
        run = simulate(net, params, times)
        counts = tuple(jax.lax.stop_gradient(c) for c in run.counts)
        delta = count_targets(labels, classes, target_true, target_false) - counts[-1]
        signal = jnp.mean(jnp.sum(delta * run.time_sums[-1], axis=1))
        for r, t_l in zip(_rate_signals(lambdas, rate_target, counts), run.time_sums):
            signal = signal + jnp.mean(jnp.sum(r * t_l, axis=1))
        loss = losses.spike_count_mse(counts[-1][None], labels, target_true, target_false)
        return signal, (loss, SFDFAAux(counts, run.diagnostics, tuple(jnp.zeros_like(c) for c in counts)))

    grad = jax.grad(surrogate, has_aux=True)

    def apply(state, params, times, labels, key=None):
        del key
        _check(net, params, times, labels, "spike_time_bp")
        grads, (loss, aux) = grad(params, times, labels)
        return (loss, aux), grads, state

    return Rule(init=lambda params: EmptyState(), apply=apply, stateful=False, name="BP (spike times)")
