r"""Neurons that run a whole sequence in parallel over time: a reset-free LIF and the sliding PSN.

A neuron with a reset feeds each step's spike back into its membrane, so its time steps must
run one after another (:func:`snnjax.run`). Without the reset the membrane is a *linear*
function of the inputs, and the spike a pointwise function of the membrane; the whole sequence
``[T, B, ...]`` can then be computed at once. :func:`run_parallel` does that; each neuron here
also has the ordinary sequential ``step``, so it works wherever a :class:`snnjax.Neuron` does
(stepped online rules, ``nnx.RNN``), and both forms give the same spikes.

**Reset-free LIF** (:func:`parallel_lif`; snnTorch's ``LeakyParallel`` is close to it, but clips
the membrane at zero with a ReLU, adds biases and steps a ``torch.nn.RNN``):

.. math::

    v_t = \beta\, v_{t-1} + x_t, \qquad z_t = H(v_t - \vartheta),

a first-order linear recurrence, computed by :func:`jax.lax.associative_scan` with the operator
:math:`(a_1, b_1) \circ (a_2, b_2) = (a_1 a_2,\ a_2 b_1 + b_2)` on the pairs
:math:`(\beta, x_t)`: :math:`O(\log T)` sequential depth instead of :math:`T`.

**Sliding parallel spiking neuron** (:func:`sliding_psn`; Fang et al., "Parallel spiking
neurons with high efficiency and ability to learn long-term dependencies", NeurIPS 2023):

.. math::

    h_t = \sum_{i=0}^{k-1} w_i\, x_{t-k+1+i}, \qquad z_t = H(h_t - \vartheta),

a learnable causal filter of length :math:`k` over the inputs (inputs before the sequence are
those in the state's window, zero at rest). It is computed as :math:`k` shifted multiply-adds,
in the same order as the step, so both forms agree bit for bit.

**What they give up.** Neither neuron resets: a neuron driven above threshold keeps firing
(the reset-free LIF's membrane does not drop after a spike), so spike counts and codes differ
from the LIF of :func:`snnjax.lif`; Fang et al. let the learned filter and threshold make up for
it. Recurrent weights would feed spikes back and are not offered. Reverse mode through
:func:`run_parallel` stores the whole sequence's scan tree, :math:`O(T)` memory as BPTT does.
``docs/howto/speed.md`` says when the parallel form is the faster choice.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from snnjax import surrogates
from snnjax.neurons.lif import LIFState
from snnjax.neurons.neuron import Neuron, check_run_inputs, per_neuron, resting, spiking, zeros_state
from snnjax.spikes import DEFAULT_SURROGATE, spike

__all__ = ["PSNState", "parallel_lif", "psn_weights", "run_parallel", "sliding_psn"]


class PSNState(NamedTuple):
    """State of a sliding PSN: its last ``k - 1`` inputs, oldest first, ``[B, ..., k - 1]``."""

    window: jax.Array


def run_parallel(neuron: Neuron, xs: ArrayLike, state: Any = None) -> tuple[Any, jax.Array]:
    r"""Run a parallel neuron over a whole time-major sequence at once.

    The same ``(final_state, ys)`` as :func:`snnjax.run` (to float32 rounding: the parallel
    reset-free LIF sums in another order), computed without a loop over time.

    Args:
      neuron: a neuron with a parallel form (:func:`parallel_lif`, :func:`sliding_psn`).
      xs: inputs ``[T, B, ...]``, floating point.
      state: the initial state; resting if ``None``.

    Returns:
      ``(final_state, ys)``, ``ys`` of shape ``[T, B, ...]``.

    Raises:
      ValueError: for a neuron without a parallel form, or inputs :func:`snnjax.run` refuses.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> neuron = snnjax.parallel_lif(beta=0.5)
      >>> _, z = snnjax.run_parallel(neuron, jnp.full((4, 1, 1), 0.6))
      >>> z[:, 0, 0]  # v = 0.6, 0.9, 1.05, 1.125: no reset, so it keeps firing
      Array([0., 0., 1., 1.], dtype=float32)
    """
    if neuron.parallel is None:
        raise ValueError(
            "run_parallel: this neuron has no parallel form (its step feeds back, e.g. a reset); "
            "use snnjax.run, or snnjax.parallel_lif / snnjax.sliding_psn."
        )
    xs, state = check_run_inputs(neuron, xs, state, 1, "run_parallel")
    return neuron.parallel(state, xs)


def parallel_lif(
    beta: ArrayLike = 0.9,
    *,
    threshold: ArrayLike = 1.0,
    surrogate: surrogates.SurrogateLike = DEFAULT_SURROGATE,
    method: str = "inject",
) -> Neuron:
    r"""A reset-free LIF population with a parallel form (module docstring).

    Args:
      beta: membrane decay :math:`\beta \in [0, 1]`, scalar or per neuron ``[N]``; may be traced.
      threshold: :math:`\vartheta`, scalar or per neuron.
      surrogate: the spike's surrogate derivative.
      method: how the surrogate is attached (:data:`snnjax.METHODS`).

    Returns:
      A :class:`snnjax.Neuron` with state :class:`snnjax.LIFState` (``z``: the last spikes,
      kept for inspection; the dynamics do not use it) and a ``parallel`` form for
      :func:`run_parallel`.

    Raises:
      ValueError: for ``beta`` outside ``[0, 1]``, a non-finite threshold, an unknown surrogate
        or method.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> neuron = snnjax.parallel_lif(beta=0.5)
      >>> xs = jnp.full((4, 1, 1), 0.6)
      >>> bool(jnp.all(snnjax.run(neuron, xs)[1] == snnjax.run_parallel(neuron, xs)[1]))
      True
    """
    options = {"surrogate": surrogate, "method": method}
    resolved = spiking(options, "parallel_lif", decays={"beta": beta}, finite={"threshold": threshold}).surrogate

    def fire(v: jax.Array) -> jax.Array:
        return spike(v - per_neuron(threshold, v, "threshold"), resolved, method)

    def step(state: LIFState, x: jax.Array) -> tuple[LIFState, jax.Array]:
        v = per_neuron(beta, state.v, "beta") * state.v + x
        z = fire(v)
        return LIFState(v, z), z

    def parallel(state: LIFState, xs: jax.Array) -> tuple[LIFState, jax.Array]:
        b = per_neuron(beta, state.v, "beta")
        decay = jnp.broadcast_to(b[None], xs.shape)
        drive = xs.at[0].add(b * state.v)  # v_0 enters through the first step

        def combine(first, second):
            (a1, b1), (a2, b2) = first, second
            return a1 * a2, a2 * b1 + b2

        _, v = jax.lax.associative_scan(combine, (decay, drive), axis=0)
        z = fire(v)
        return LIFState(v[-1], z[-1]), z

    return Neuron(resting(LIFState), step, parallel=parallel)


def psn_weights(k: int, dtype: Any = jnp.float32) -> jax.Array:
    r"""The sliding PSN's initial filter, Fang et al.'s exponential one: :math:`w_i = 2^{-(k-1-i)}`, ``[k]``.

    The newest input has weight 1, each older one half the next: a LIF with :math:`\beta = 1/2`,
    truncated to :math:`k` steps and without reset.

    Examples:
      >>> from snnjax.neurons.parallel import psn_weights
      >>> psn_weights(3).tolist()
      [0.25, 0.5, 1.0]
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"psn_weights: k must be an int >= 1, got {k!r}.")
    return (2.0 ** -jnp.arange(k - 1, -1, -1)).astype(dtype)


def sliding_psn(
    weights: ArrayLike,
    *,
    threshold: ArrayLike = 1.0,
    surrogate: surrogates.SurrogateLike = DEFAULT_SURROGATE,
    method: str = "inject",
) -> Neuron:
    r"""A sliding parallel spiking neuron population (Fang et al. 2023; module docstring).

    Args:
      weights: the filter :math:`w` ``[k]``, oldest input first (:func:`psn_weights` is the
        paper's initialisation); shared by all neurons, and may be traced (trainable).
      threshold: :math:`\vartheta`, scalar or per neuron; may be traced (the paper learns it).
      surrogate: the spike's surrogate derivative.
      method: how the surrogate is attached (:data:`snnjax.METHODS`).

    Returns:
      A :class:`snnjax.Neuron` with state :class:`PSNState` and a ``parallel`` form.

    Raises:
      ValueError: for weights that are not one non-empty axis, a non-finite threshold, an
        unknown surrogate or method.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> from snnjax.neurons.parallel import psn_weights
      >>> neuron = snnjax.sliding_psn(psn_weights(2))  # h_t = x_t + x_{t-1} / 2
      >>> _, z = snnjax.run_parallel(neuron, jnp.array([0.8, 0.7, 0.0, 0.9]).reshape(4, 1, 1))
      >>> z[:, 0, 0]  # h = 0.8, 1.1, 0.35, 0.9
      Array([0., 1., 0., 0.], dtype=float32)
    """
    w = jnp.asarray(weights)
    if w.ndim != 1 or w.shape[0] < 1 or not jnp.issubdtype(w.dtype, jnp.floating):
        raise ValueError(f"sliding_psn: weights must be a float array [k] with k >= 1, got {w.dtype}{list(w.shape)}.")
    k = w.shape[0]
    options = {"surrogate": surrogate, "method": method}
    resolved = spiking(options, "sliding_psn", decays={}, finite={"threshold": threshold}).surrogate

    def init(shape: Any, dtype: Any = jnp.float32) -> PSNState:
        at_rest = zeros_state(PSNState, shape, dtype).window  # checks the shape and dtype
        return PSNState(jnp.zeros((*at_rest.shape, k - 1), dtype))

    def filtered(taps: list[jax.Array]) -> jax.Array:
        """:math:`\\sum_i w_i\\, \\text{taps}_i`, added oldest first (the same order in both forms)."""
        wc = w.astype(taps[0].dtype)
        h = wc[0] * taps[0]
        for i in range(1, k):
            h = h + wc[i] * taps[i]
        return h

    def fire(h: jax.Array) -> jax.Array:
        return spike(h - per_neuron(threshold, h, "threshold"), resolved, method)

    def step(state: PSNState, x: jax.Array) -> tuple[PSNState, jax.Array]:
        taps = [state.window[..., i] for i in range(k - 1)] + [x]
        z = fire(filtered(taps))
        return PSNState(jnp.stack(taps[1:], axis=-1) if k > 1 else state.window), z

    def parallel(state: PSNState, xs: jax.Array) -> tuple[PSNState, jax.Array]:
        steps = xs.shape[0]
        history = jnp.concatenate([jnp.moveaxis(state.window, -1, 0), xs])  # [k - 1 + T, B, ...]
        taps = [history[i : i + steps] for i in range(k)]
        z = fire(filtered(taps))
        return PSNState(jnp.moveaxis(history[steps:], 0, -1)), z

    return Neuron(init, step, parallel=parallel)
