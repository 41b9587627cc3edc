r"""Current-based LIF with exact spike times, simulated on a time grid (Bacho & Chu's SFDFA neuron).

Each neuron sums double-exponential kernels of its input spikes and resets by subtraction,
:math:`\tau = 2\tau_s`:

.. math::

    u_i(t) = \sum_j w_{ij} \sum_z \big[e^{-(t-t_j^z)/\tau} - e^{-(t-t_j^z)/\tau_s}\big]
             - \vartheta \sum_k e^{-(t-t_i^k)/\tau}, \qquad \vartheta = \theta / \tau,

and spikes when :math:`u_i` crosses :math:`\vartheta` upwards (``theta`` is given in the
reference code's units, whose membrane is scaled by :math:`\tau`). With growing exponentials
:math:`X = e^{t/\tau}`, :math:`X^2 = e^{t/\tau_s}`, the membrane is :math:`u = b/X - a/X^2`,

.. math::

    a_i = \sum_j w_{ij} \sum_z e^{t_j^z/\tau_s}, \qquad
    b_i = \sum_j w_{ij} \sum_z e^{t_j^z/\tau} - \vartheta \sum_k e^{t_i^k/\tau},

so the next spike time is closed form, :math:`X^* = 2a / (b + \sqrt{b^2 - 4 a\vartheta})`, and
:math:`I(t) = a/X^2` is the synaptic current in :math:`\tau\,du/dt = I - u`.

**The grid.** Time runs in steps of ``dt`` over ``window`` with :func:`jax.lax.scan`; memory does
not grow with the number of steps. In each step ``[t_n, t_n + dt)`` a neuron's :math:`a, b` are
fixed, and its spike time is the exact root inside the step. A spike at time :math:`t` in step
:math:`n` reaches the next layer at :math:`t_{n+1}` with its exact kernel value there (the
term :math:`e^{t/\tau_s}` uses the true :math:`t`), so the model differs from the event-driven
one only in that an input arriving inside a step acts from the next grid point on: a delay of
at most ``dt`` per layer. Consequences, all counted in :class:`Diagnostics`:

- at most one spike per neuron per step: a second crossing in the same step (``violations``)
  fires at the start of the next step instead;
- a neuron already above threshold at a step's start (a delivered spike's kernel jumped it
  there, or a deferred second crossing) fires at :math:`t_n` exactly (``forced``); that spike
  time does not depend on the weights, so its derivative is zero;
- at most ``max_spikes`` spikes per neuron (``capped`` counts the crossings dropped).

Input spike times (:func:`ttfs`) are delivered the same way. Growing exponentials keep the
arithmetic a few multiply-adds, at the price of a window of at most ``40 tau_s`` (checked).

**Derivatives of spike times.** At a crossing, :math:`u(t_k) = \vartheta` gives
:math:`\dot t_k = F_k (\dot a / X_k^2 - \dot b / X_k)` with :math:`F_k = \tau / (I(t_k) - \vartheta)`,
which diverges when the membrane grazes the threshold; Bacho & Chu's critical-point fix uses
:math:`F_k = \tau / I(t_k)` (bounded by :math:`\tau / \vartheta`). :func:`simulate` attaches the
chosen :math:`F_k` to every spike time with a stop-gradient identity (``fix``), so ``jax.grad``
(backpropagation through spike times) and ``jax.jvp`` (SFDFA's spike grades) both use it.

**Eligibility traces** (``eligibility=True``): the same loop also carries, per example and
synapse, :math:`E_{ij} = \sum_k \partial t_k / \partial w_{ij}` through each neuron's own
spikes only, the local gradients of :func:`snnjax.rules.sfdfa` (memory independent of the
number of steps):

.. math::

    \frac{\partial t_k}{\partial w_{ij}} = F_k \Big(\frac{\varepsilon^s_j}{X_k^2}
        - \frac{\varepsilon^m_{ij}}{X_k}\Big), \qquad
    \varepsilon^m_{ij} = \sum_z e^{t_j^z/\tau} - \frac{\vartheta}{\tau} R_{ij},

with :math:`\varepsilon^s_j = \sum_z e^{t_j^z/\tau_s}` and the reset correction
:math:`R_{ij} = \sum_{k' < k} X_{k'}\, \partial t_{k'}/\partial w_{ij}` (the dependence of later
spikes on earlier ones through the reset). :math:`E` and :math:`R` change only where a neuron
spikes: each step gathers the rows of the neurons that fired, updates them and scatters them
back (``chunk`` rows at a time), so a step costs :math:`O(\text{spikes} \cdot N_{in})`. That
loop is a ``while_loop``: under :func:`jax.vmap` (over seeds, say) its condition is batched and
every iteration selects the whole traces, which is many times slower; run such copies one after
another instead (``docs/benchmarks.md`` has the measurement).

**The released code's grades** (``released_grades``): the CUDA kernel that Bacho & Chu's
released code loads (``compute_spike_times_std_new.cu``) does not differentiate spike times.
It gives spike :math:`k` of neuron :math:`i` the grade

.. math::

    g_{i,k} = \sum_{j \in P_{i,k}} w_{ij}\, g_j + [k = 0]\, v_i,

with :math:`P_{i,k}` the input spikes since the neuron's previous spike (up to :math:`t_k`),
input spikes' grades zero, and the perturbation :math:`v_i` on the first spike only: no
:math:`F_k`, no kernel factor, and an input spike that arrives after the neuron's last spike is
lost. On the grid, an input spike counts from the step it is delivered in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
    "eligibility_step",
    "Crossing",
    "Diagnostics",
    "LayerState",
    "SpikeTimeNet",
    "SpikeTimeRun",
    "crossing",
    "init_weights",
    "raster_times",
    "simulate",
    "ttfs",
]


class SpikeTimeNet(NamedTuple):
    """A feed-forward network of exact-time current-based LIF layers (module docstring).

    Attributes:
      sizes: ``(N_in, N_1, ..., C)``: inputs, hidden layers, outputs.
      tau_s: synaptic time constant in seconds; the membrane's is ``2 tau_s``.
      theta: threshold of each non-input layer in the reference's units (membrane threshold
        ``theta / (2 tau_s)``).
      window: simulated time in seconds.
      dt: grid step in seconds.
      max_spikes: most spikes per neuron in one window.

    Examples:
      >>> from snnjax.neurons.spike_time import SpikeTimeNet
      >>> net = SpikeTimeNet((784, 400, 400, 10))
      >>> net.steps, round(net.tau, 3), net.thresholds[-1] > net.thresholds[0]
      (200, 0.26, True)
    """

    sizes: tuple[int, ...]
    tau_s: float = 0.130
    theta: tuple[float, ...] = (0.2, 0.2, 0.7)
    window: float = 0.2
    dt: float = 1e-3
    max_spikes: int = 30

    @property
    def tau(self) -> float:
        """Membrane time constant, ``2 tau_s``."""
        return 2.0 * self.tau_s

    @property
    def steps(self) -> int:
        """Number of grid steps, ``round(window / dt)``."""
        return int(round(self.window / self.dt))

    @property
    def thresholds(self) -> tuple[float, ...]:
        r"""Membrane thresholds :math:`\vartheta_l = \theta_l / \tau`."""
        return tuple(th / self.tau for th in self.theta)

    def check(self) -> None:
        """Raise ``ValueError`` for settings the simulation cannot honour."""
        if len(self.sizes) < 2 or any(int(n) < 1 for n in self.sizes):
            raise ValueError(f"SpikeTimeNet: sizes must be two or more positive layer sizes, got {self.sizes}.")
        if len(self.theta) != len(self.sizes) - 1 or any(th <= 0 for th in self.theta):
            raise ValueError(
                f"SpikeTimeNet: theta needs one positive threshold per non-input layer ({len(self.sizes) - 1}), got "
                f"{self.theta}."
            )
        if not (self.tau_s > 0 and self.dt > 0 and self.window >= self.dt):
            raise ValueError(
                f"SpikeTimeNet: need tau_s > 0, dt > 0 and window >= dt, got tau_s={self.tau_s}, dt={self.dt}, "
                f"window={self.window}."
            )
        if self.window > 40 * self.tau_s:
            raise ValueError(
                f"SpikeTimeNet: window {self.window} s exceeds 40 tau_s ({40 * self.tau_s} s); the growing "
                "exponentials would lose float32 precision."
            )
        if self.max_spikes < 1:
            raise ValueError(f"SpikeTimeNet: max_spikes must be >= 1, got {self.max_spikes}.")


class Crossing(NamedTuple):
    r"""What one layer found in one grid step, ``[B, N]`` each.

    Attributes:
      x: :math:`e^{t/\\tau}` of the spike (meaningful where ``spiked``).
      spiked: a spike was emitted in this step.
      exact: the spike is a threshold crossing inside the step (not forced to the step's start).
      forced: the neuron was already above threshold at the step's start.
      violation: a second crossing follows inside the same step (deferred to the next step).
      capped: a crossing dropped because the neuron had ``max_spikes`` spikes already.
    """

    x: jax.Array
    spiked: jax.Array
    exact: jax.Array
    forced: jax.Array
    violation: jax.Array
    capped: jax.Array


class Diagnostics(NamedTuple):
    """Grid artefacts summed over the window, batch and neurons, one entry per layer (float32).

    Attributes:
      violations: second crossings inside one step, deferred to the next.
      forced: spikes emitted at a step's start, zero derivative.
      capped: crossings dropped at ``max_spikes``.
    """

    violations: jax.Array
    forced: jax.Array
    capped: jax.Array


class LayerState(NamedTuple):
    r"""One layer's state in :func:`simulate`.

    Attributes:
      pre_s: :math:`\\sum_z e^{t_j^z/\\tau_s}` over the delivered input spikes, ``[B, N_in]``.
      pre_m: :math:`\\sum_z e^{t_j^z/\\tau}`, ``[B, N_in]``.
      reset: :math:`\\sum_k e^{t_i^k/\\tau}` over the layer's own spikes, ``[B, N]``.
      count: spikes so far, ``[B, N]`` (float32).
      time_sum: sum of the spike times so far, ``[B, N]``.
    """

    pre_s: jax.Array
    pre_m: jax.Array
    reset: jax.Array
    count: jax.Array
    time_sum: jax.Array


class SpikeTimeRun(NamedTuple):
    r"""The result of :func:`simulate`, one entry per non-input layer.

    Attributes:
      counts: spike counts ``[B, N_l]`` (float32).
      time_sums: sums of each neuron's spike times ``[B, N_l]`` (seconds), differentiable.
      diagnostics: a :class:`Diagnostics`.
      eligibility: with ``eligibility=True``, :math:`E = \sum_k \partial t_k / \partial w`
        through each neuron's own spikes, ``[B, N_l, N_{l-1}]`` per layer; else ``None``.
      grades: with ``released_grades``, each neuron's summed grades :math:`\sum_k g_{i,k}` as
        the released code computes them (module docstring), ``[B, N_l]`` per layer; else ``None``.
    """

    counts: tuple[jax.Array, ...]
    time_sums: tuple[jax.Array, ...]
    diagnostics: Diagnostics
    eligibility: tuple[jax.Array, ...] | None = None
    grades: tuple[jax.Array, ...] | None = None


def init_weights(key: jax.Array, net: SpikeTimeNet, scale: float = 1.0) -> tuple[jax.Array, ...]:
    """Weights ``U(-scale, scale)`` as in the reference, one ``[N_{l-1}, N_l]`` matrix per layer.

    Examples:
      >>> import jax
      >>> from snnjax.neurons.spike_time import SpikeTimeNet, init_weights
      >>> ws = init_weights(jax.random.key(0), SpikeTimeNet((4, 3, 2), theta=(0.2, 0.7)))
      >>> tuple(w.shape for w in ws)
      ((4, 3), (3, 2))
    """
    net.check()
    keys = jax.random.split(key, len(net.sizes) - 1)
    return tuple(
        jax.random.uniform(k, (n_in, n_out), jnp.float32, -scale, scale)
        for k, n_in, n_out in zip(keys, net.sizes[:-1], net.sizes[1:])
    )


def ttfs(images: ArrayLike, window: float = 0.1, max_value: float = 255.0) -> jax.Array:
    r"""Time-to-first-spike encoding, :math:`t = T_w (1 - p / p_{max})`; zero pixels are silent (``inf``).

    Args:
      images: ``[B, ...]`` intensities in ``[0, max_value]`` (uint8 images as they are).
      window: :math:`T_w` in seconds.
      max_value: the brightest value, which spikes at 0.

    Returns:
      Spike times ``[B, N]`` (flattened), float32, ``inf`` where silent.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.neurons.spike_time import ttfs
      >>> tuple(round(float(t), 4) for t in ttfs(jnp.array([[255, 51, 0]], jnp.uint8))[0])
      (0.0, 0.08, inf)
    """
    images = jnp.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"ttfs: images must be [B, ...], got shape {images.shape}.")
    p = images.reshape(images.shape[0], -1).astype(jnp.float32)
    t = window * (1.0 - p / max_value)
    return jnp.where(p > 0, t, jnp.inf)


def raster_times(spikes: ArrayLike, window: float = 0.1) -> jax.Array:
    r"""Each channel's first spike in a raster as a spike time, :math:`t = T_w\, k / T`; silent channels ``inf``.

    The exact-time network takes one spike per input neuron: a raster whose channels fire more
    than once (SHD) keeps only each channel's first spike.

    Args:
      spikes: rasters ``[B, T, N]``, sample-major as data sets store them; a step counts as a
        spike where it is non-zero.
      window: :math:`T_w` in seconds, onto which the ``T`` steps are laid.

    Returns:
      Spike times ``[B, N]``, float32, ``inf`` where a channel never fires.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.neurons.spike_time import raster_times
      >>> raster = jnp.zeros((1, 4, 3)).at[0, 1, 0].set(1.0).at[0, 3, 0].set(1.0).at[0, 0, 2].set(1.0)
      >>> tuple(round(float(t), 4) for t in raster_times(raster)[0])  # steps 1 (its first of two), never, 0 of 4
      (0.025, inf, 0.0)
    """
    spikes = jnp.asarray(spikes)
    if spikes.ndim != 3:
        raise ValueError(f"raster_times: spikes must be rasters [B, T, N], got shape {spikes.shape}.")
    fired = spikes != 0
    first = jnp.argmax(fired, axis=1).astype(jnp.float32)
    return jnp.where(jnp.any(fired, axis=1), window * first / spikes.shape[1], jnp.inf)


def _root(a: jax.Array, b: jax.Array, threshold: float) -> tuple[jax.Array, jax.Array]:
    r"""First upward crossing :math:`X^* = 2a/(b + \sqrt{b^2 - 4 a \vartheta})` and whether it exists (NaN-safe)."""
    disc = b * b - 4.0 * a * threshold
    denom = b + jnp.sqrt(jnp.where(disc > 0, disc, 1.0))
    ok = (disc > 0) & (denom > 0) & (a > 0)
    return 2.0 * a / jnp.where(ok, denom, 1.0), ok


def crossing(net: SpikeTimeNet, layer: int, a: jax.Array, b: jax.Array, count: jax.Array, n: jax.Array) -> Crossing:
    r"""The spike of each neuron of ``layer`` in grid step ``n``, from :math:`a, b` (module docstring).

    Args:
      net: the network.
      layer: index of the non-input layer (0 = first hidden), for its threshold.
      a: the membrane's coefficient :math:`a` for this step, ``[B, N]``.
      b: its :math:`b`, the reset included, ``[B, N]``.
      count: spikes so far ``[B, N]``.
      n: the step index (scalar).

    Returns:
      A :class:`Crossing`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.neurons.spike_time import SpikeTimeNet, crossing
      >>> net = SpikeTimeNet((1, 1), theta=(0.2,))
      >>> c = crossing(net, 0, jnp.array([[4.0]]), jnp.array([[5.0]]), jnp.zeros((1, 1)), 0)
      >>> bool(c.spiked[0, 0]), bool(c.exact[0, 0]), bool(c.forced[0, 0])  # u = b - a > threshold at t = 0
      (True, False, True)
    """
    threshold, tau = net.thresholds[layer], net.tau
    x0 = jnp.exp(n * net.dt / tau).astype(a.dtype)
    x1 = jnp.exp((n + 1) * net.dt / tau).astype(a.dtype)
    forced = b / x0 - a / (x0 * x0) >= threshold
    xr, ok = _root(a, b, threshold)
    root = ok & (xr >= x0) & (xr < x1) & ~forced
    room = count < net.max_spikes
    spiked = (forced | root) & room
    x = jnp.where(root & room, xr, x0)
    x2, ok2 = _root(a, b - threshold * x, threshold)
    violation = spiked & ok2 & (x2 < x1)
    return Crossing(x, spiked, root & room, forced & room, violation, (forced | root) & ~room)


def deliver(times: jax.Array, mask: jax.Array, tau: float) -> jax.Array:
    r""":math:`e^{t/\tau}` where ``mask``, else 0 (NaN-safe for the ``inf`` of silent inputs)."""
    return jnp.where(mask, jnp.exp(jnp.where(mask, times, 0.0) / tau), 0.0)


def input_step(net: SpikeTimeNet, times: jax.Array) -> jax.Array:
    """The grid step in which each input spike falls (``steps + 1`` for silent inputs), int32 ``[B, N_in]``."""
    finite = jnp.isfinite(times)
    return jnp.where(finite, jnp.floor(jnp.where(finite, times, 0.0) / net.dt), net.steps + 1).astype(jnp.int32)


def _first(mask: jax.Array, k: int) -> jax.Array:
    """Indices of the first ``k`` true entries of the flat ``mask``, ascending, ``mask.size`` past the last.

    ``jnp.nonzero(mask, size=k)``, by a binary search in the running count: several times faster on CPU.
    """
    running = jnp.cumsum(mask, dtype=jnp.int32)
    return jnp.searchsorted(running, jnp.arange(1, k + 1, dtype=jnp.int32), side="left", method="scan_unrolled").astype(
        jnp.int32
    )


def eligibility_step(
    pre_s: jax.Array,
    pre_m: jax.Array,
    traces: tuple[jax.Array, jax.Array],
    rows: jax.Array,
    factor: jax.Array,
    x: jax.Array,
    kappa: float,
    chunk: int,
) -> tuple[jax.Array, jax.Array]:
    r"""Add each spike's :math:`\partial t_k / \partial w` to ``E`` and :math:`X_k \partial t_k / \partial w` to ``R``.

    Args:
      pre_s: :math:`\varepsilon^s`, ``[B, N_in]``.
      pre_m: :math:`\sum_z e^{t_j^z/\tau}`, ``[B, N_in]``.
      traces: ``(E, R)``, each ``[B * N, N_in]``.
      rows: the neurons whose spike is a crossing in this step, ``[B, N]`` bool.
      factor: :math:`F_k` ``[B, N]``.
      x: :math:`X_k` ``[B, N]``.
      kappa: :math:`\vartheta / \tau`.
      chunk: rows updated per iteration (any value is exact; it sets speed).

    Returns:
      The updated ``(E, R)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.spike_time import eligibility_step
      >>> traces = (jnp.zeros((2, 3)), jnp.zeros((2, 3)))  # one example, two neurons, three inputs
      >>> rows = jnp.array([[True, False]])  # only neuron 0 spiked
      >>> factor, x = jnp.full((1, 2), 0.5), jnp.full((1, 2), 2.0)
      >>> e, r = eligibility_step(jnp.ones((1, 3)), jnp.ones((1, 3)), traces, rows, factor, x, 0.1, 4)
      >>> e.tolist()  # 0.5 (1/4 - 1/2) for neuron 0's three synapses; neuron 1 untouched
      [[-0.125, -0.125, -0.125], [0.0, 0.0, 0.0]]
    """
    elig, rtrace = traces
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
        dt_dw = f * (pre_s[b] / (xk * xk) - (pre_m[b] - kappa * rtrace[safe]) / xk)
        elig = elig.at[idx].add(dt_dw, mode="drop", unique_indices=True)
        rtrace = rtrace.at[idx].add(xk * dt_dw, mode="drop", unique_indices=True)
        return elig, rtrace, left & (jnp.arange(total, dtype=jnp.int32) > idx[-1])

    elig, rtrace, _ = jax.lax.while_loop(lambda c: jnp.any(c[2]), body, (elig, rtrace, rows.reshape(-1)))
    return elig, rtrace


def _timed(a: jax.Array, b: jax.Array, x: jax.Array, factor: jax.Array, tau: float) -> tuple[jax.Array, jax.Array]:
    r"""``(t, X)`` of the spikes, valued :math:`\tau \log X` and :math:`X`, differentiated as
    :math:`\dot t = F (\dot a / X^2 - \dot b / X)`, :math:`\dot X = X \dot t / \tau` (a stop-gradient identity)."""
    x = jax.lax.stop_gradient(x)
    carrier = jax.lax.stop_gradient(factor) * (a / (x * x) - b / x)
    dt = carrier - jax.lax.stop_gradient(carrier)  # exactly 0, derivative F (da/X^2 - db/X)
    return tau * jnp.log(x) + dt, x + x * dt / tau


def simulate(
    net: SpikeTimeNet,
    weights: Sequence[jax.Array],
    times: jax.Array,
    shifts: Sequence[jax.Array] | None = None,
    *,
    fix: bool = False,
    eligibility: bool = False,
    chunk: int = 128,
    released_grades: Sequence[jax.Array] | None = None,
) -> SpikeTimeRun:
    r"""Run the network over its window; differentiable in ``weights`` and ``shifts``.

    ``jax.grad`` of the returned ``time_sums`` is backpropagation through the spike times
    (memory grows with the number of steps); ``jax.jvp`` along ``shifts`` gives the spike grades.

    Args:
      net: the network.
      weights: one ``[N_{l-1}, N_l]`` matrix per layer.
      times: input spike times ``[B, N_in]`` (``inf`` = silent), e.g. from :func:`ttfs`.
      shifts: optional ``[B, N_l]`` per hidden layer, added to every emitted spike time of that
        neuron as the next layer sees it (not to its own reset): the perturbation whose
        directional derivatives are SFDFA's spike grades.
      fix: differentiate spike times with the critical-point fix :math:`F = 	au / I` instead of
        the exact :math:`	au / (I - artheta)` (module docstring).
      eligibility: also carry the eligibility traces (module docstring), with the same ``fix``.
      chunk: spiking neurons whose eligibility rows are updated per inner iteration.
      released_grades: the perturbations :math:`v` ``[B, N_l]`` per hidden layer: also carry
        the grades of the released code (module docstring), returned in ``grades``. They are
        plain values, not derivatives (use ``shifts`` and ``jax.jvp`` for those).

    Returns:
      A :class:`SpikeTimeRun`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax.spike_time import SpikeTimeNet, init_weights, simulate, ttfs
      >>> net = SpikeTimeNet((16, 8, 3), theta=(0.2, 0.7), dt=2e-3)
      >>> images = jax.random.randint(jax.random.key(0), (4, 16), 0, 256).astype(jnp.uint8)
      >>> run = simulate(net, init_weights(jax.random.key(1), net), ttfs(images))
      >>> run.counts[-1].shape, run.counts[-1].dtype
      ((4, 3), dtype('float32'))
    """
    net.check()
    if len(weights) != len(net.sizes) - 1:
        raise ValueError(f"simulate: expected {len(net.sizes) - 1} weight matrices, got {len(weights)}.")
    if chunk < 1:
        raise ValueError(f"simulate: chunk must be >= 1, got {chunk}.")
    batch = times.shape[0]
    hidden = len(net.sizes) - 2
    shifts = [jnp.zeros((batch, n), times.dtype) for n in net.sizes[1:-1]] if shifts is None else list(shifts)
    if len(shifts) != hidden:
        raise ValueError(f"simulate: expected {hidden} shift arrays (one per hidden layer), got {len(shifts)}.")
    graded = released_grades is not None
    if graded and len(released_grades) != hidden:
        raise ValueError(
            f"simulate: expected {hidden} released_grades arrays (one per hidden layer), got {len(released_grades)}."
        )
    seeds = None
    if graded:
        seeds = [jnp.asarray(v, jnp.float32) for v in released_grades]
        for l, (v, n) in enumerate(zip(seeds, net.sizes[1:-1])):
            if v.shape != (batch, n):
                raise ValueError(
                    f"simulate: released_grades[{l}] must have shape [B, N] = {(batch, n)}, got {v.shape}."
                )
        seeds.append(jnp.zeros((batch, net.sizes[-1]), jnp.float32))
    in_step = input_step(net, times)
    pairs = list(zip(net.sizes[:-1], net.sizes[1:]))
    layers0 = [
        LayerState(*(jnp.zeros((batch, n), jnp.float32) for n in (n_in, n_in, n_out, n_out, n_out)))
        for n_in, n_out in pairs
    ]
    emitted0 = [
        (
            jnp.zeros((batch, n), jnp.float32),
            jnp.zeros((batch, n), bool),
            jnp.zeros((batch, n), jnp.float32) if graded else None,
        )
        for n in net.sizes[1:-1]
    ]
    traces0 = [(jnp.zeros((batch * n_out, n_in), jnp.float32),) * 2 for n_in, n_out in pairs] if eligibility else None
    grades0 = [(jnp.zeros((batch, n), jnp.float32),) * 2 for n in net.sizes[1:]] if graded else None

    def body(carry, n):
        layers, emitted, traces, grading, diag = carry
        incoming = [(times, in_step == n - 1, None), *emitted]
        new_layers, new_emitted, new_traces, new_grading = [], [], [], []
        for l, (w, st) in enumerate(zip(weights, layers)):
            threshold, tau = net.thresholds[l], net.tau
            t_in, mask, g_in = incoming[l]
            pre_s, pre_m = st.pre_s + deliver(t_in, mask, net.tau_s), st.pre_m + deliver(t_in, mask, tau)
            a, b = jnp.split(jnp.concatenate([pre_s, pre_m]) @ w, 2)
            dir_b = g_in @ jax.lax.stop_gradient(w) if graded and l > 0 else None  # the delivered spikes' grades
            b = b - threshold * st.reset
            c = crossing(net, l, a, b, st.count, n)
            grade = None
            if graded:
                pending, total = grading[l]
                pending = pending + dir_b if dir_b is not None else pending
                grade = jnp.where(c.spiked, pending + jnp.where(st.count == 0, seeds[l], 0.0), 0.0)
                new_grading.append((jnp.where(c.spiked, 0.0, pending), total + grade))
            current = jax.lax.stop_gradient(a / (c.x * c.x))
            factor = jnp.where(c.exact, tau / jnp.where(c.exact, current if fix else current - threshold, 1.0), 0.0)
            t, x = _timed(a, b, c.x, factor, tau)
            new_layers.append(
                LayerState(
                    pre_s,
                    pre_m,
                    st.reset + jnp.where(c.spiked, x, 0.0),
                    st.count + c.spiked,
                    st.time_sum + jnp.where(c.spiked, t, 0.0),
                )
            )
            if traces is not None:
                sg = jax.lax.stop_gradient
                new_traces.append(
                    eligibility_step(
                        sg(pre_s), sg(pre_m), traces[l], c.exact, sg(factor), sg(c.x), threshold / tau, chunk
                    )
                )
            if l < hidden:  # what the next layer receives at the next step
                new_emitted.append((jnp.where(c.spiked, t + shifts[l], 0.0), c.spiked, grade))  # grade: None ungraded
            diag = diag.at[l].add(jnp.stack([jnp.sum(f, dtype=jnp.float32) for f in (c.violation, c.forced, c.capped)]))
        carry = (new_layers, new_emitted, new_traces if traces is not None else None, new_grading if graded else None)
        return (*carry, diag), None

    carry0 = (layers0, emitted0, traces0, grades0, jnp.zeros((len(weights), 3), jnp.float32))
    (layers, _, traces, grading, diag), _ = jax.lax.scan(body, carry0, jnp.arange(net.steps))
    elig = (
        None if traces is None else tuple(e.reshape(batch, n_out, n_in) for (e, _), (n_in, n_out) in zip(traces, pairs))
    )
    return SpikeTimeRun(
        tuple(st.count for st in layers),
        tuple(st.time_sum for st in layers),
        Diagnostics(diag[:, 0], diag[:, 1], diag[:, 2]),
        elig,
        tuple(total for _, total in grading) if graded else None,
    )
