r"""The neuron protocol: a pair of pure functions, and :func:`run` to scan one over time.

A neuron is built by a small factory (:func:`snnjax.lif`, :func:`snnjax.alif`, ...) whose
arguments, the parameters, live in its closure, the way optax builds its transformations:

- ``init(shape, dtype) -> state``: the resting state for inputs of ``shape`` ``[B, ...]``, a
  ``NamedTuple`` of arrays of that shape.
- ``step(state, x_t) -> (state, out_t)``: one time step, in :func:`jax.lax.scan` order, so
  ``lax.scan(neuron.step, state, xs)`` runs a whole time-major sequence ``[T, B, ...]``.

Parameters may be traced values (trainable time constants, recurrent weights): build the
neuron inside the loss function from the current parameters and differentiate as usual.
Steps compute in the dtype of their input; array parameters are cast to it explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike

from snnjax import surrogates
from snnjax.checks import DECAY_HINT, check_finite, check_unit_interval
from snnjax.spikes import DEFAULT_SURROGATE, check_method

__all__ = ["Neuron", "Recurrence", "Spiking", "run"]

State = Any

RESETS = ("subtract", "zero")


class Recurrence(NamedTuple):
    r"""How a recurrent neuron's step is built: ``step(s, x) = cell(s, x + s.z @ weights)``.

    :func:`snnjax.run_bptt` uses it to compute the gradient of ``weights`` outside the time loop.

    Attributes:
      cell: ``(state, current_t) -> (state, out_t)``, the step without its recurrent input.
      weights: :math:`W_\text{rec}` ``[N, N]``; the state has a field ``z``, the last spikes.
    """

    cell: Callable[[State, jax.Array], tuple[State, jax.Array]]
    weights: jax.Array


class Neuron(NamedTuple):
    """A neuron model as two pure functions (see the module docstring).

    Attributes:
      init: ``(shape, dtype=float32) -> state``, the resting state for inputs ``[B, ...]``.
      step: ``(state, x_t) -> (state, out_t)`` with ``x_t`` and ``out_t`` of shape ``[B, ...]``.
      recurrence: for a neuron with recurrent weights, how ``step`` adds them
        (:class:`Recurrence`); ``None`` otherwise, or when the step does not say.
      layers: for a :func:`snnjax.chain`, its layers in order (neurons and per-step
        functions); ``()`` for a single neuron.
      parallel: for a neuron whose steps do not feed back (no reset), ``(state, xs [T, B, ...])
        -> (final_state, ys [T, B, ...])`` computing the whole sequence at once, which
        :func:`snnjax.run_parallel` calls (:mod:`snnjax.neurons.parallel`); ``None`` otherwise.
    """

    init: Callable[..., State]
    step: Callable[[State, jax.Array], tuple[State, jax.Array]]
    recurrence: Recurrence | None = None
    layers: tuple = ()
    parallel: Callable[[State, jax.Array], tuple[State, jax.Array]] | None = None


def run(
    neuron: Neuron,
    xs: ArrayLike,
    state: State | None = None,
    *,
    unroll: int | bool = 1,
    remat: bool = True,
) -> tuple[State, jax.Array]:
    r"""Run ``neuron`` over a time-major input sequence with :func:`jax.lax.scan`.

    .. math::

        (s_t, y_t) = \text{step}(s_{t-1}, x_t), \qquad t = 1, \dots, T

    Args:
      neuron: the model, e.g. ``snnjax.lif(beta=0.9)``.
      xs: inputs (already projected by the synapses), ``[T, B, ...]``, floating point.
      state: the initial state, each array ``[B, ...]``; resting state if ``None``.
      unroll: how many steps :func:`jax.lax.scan` unrolls (an int >= 1, or ``True`` for all).
      remat: recompute each step's elementwise work in the backward pass instead of storing it
        (``jax.checkpoint`` of the step, matrix products still saved): reverse mode then keeps
        only the state and the products per step. Values and gradients are unchanged; forward
        mode and plain evaluation are not affected. On by default, because it is faster for the
        usual layers with trainable decays and for recurrent ones; pass ``False`` (store every
        intermediate, as a plain :func:`jax.lax.scan` does) for current-based LIF and fixed-decay
        LIF layers, where it is slower (``docs/benchmarks.md`` has the measurements). For
        recurrent layers :func:`snnjax.run_bptt` is faster still.

    Returns:
      ``(final_state, ys)`` with ``ys`` of shape ``[T, B, ...]``.

    Raises:
      ValueError: if ``xs`` is not at least ``[T, B]``, ``T`` is 0, ``xs`` is not floating
        point, or a state array does not have shape ``xs.shape[1:]``.

    Examples:
      >>> import jax.numpy as jnp, snnjax
      >>> final, spikes = snnjax.run(snnjax.lif(beta=0.5), jnp.full((4, 1, 1), 0.6))
      >>> spikes[:, 0, 0]  # v = 0.6, 0.9, 1.05 -> spike and reset to 0.05, 0.625
      Array([0., 0., 1., 0.], dtype=float32)
    """
    xs, state = check_run_inputs(neuron, xs, state, unroll, "run")
    if not isinstance(remat, bool):
        raise ValueError(f"run: remat must be True or False, got {remat!r}.")
    step = (
        jax.checkpoint(neuron.step, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
        if remat
        else neuron.step
    )
    return jax.lax.scan(step, state, xs, unroll=unroll)


def check_run_inputs(
    neuron: Neuron, xs: ArrayLike, state: State | None, unroll: int | bool, where: str
) -> tuple[jax.Array, State]:
    """Check a time-major input, an unroll and a state (or make the resting one); return them."""
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        raise ValueError(f"{where}: xs must be time-major [T, B, ...] (at least 2 axes), got shape {xs.shape}.")
    if xs.shape[0] == 0:
        raise ValueError(f"{where}: xs has no time steps (T = 0).")
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise ValueError(f"{where}: xs must be floating point, got dtype {xs.dtype}.")
    if not (unroll is True or (isinstance(unroll, int) and not isinstance(unroll, bool) and unroll >= 1)):
        raise ValueError(f"{where}: unroll must be an int >= 1 or True, got {unroll!r}.")
    if state is None:
        return xs, neuron.init(xs.shape[1:], xs.dtype)
    check_state(state, xs.shape[1:], where, jax.eval_shape(lambda: neuron.init(xs.shape[1:], xs.dtype)))
    return xs, state


def with_recurrence(init: Callable[..., State], cell: Callable, recurrent: ArrayLike | None) -> Neuron:
    """The :class:`Neuron` whose step is ``cell(s, x + s.z @ recurrent)``, or ``cell`` without weights."""
    if recurrent is None:
        return Neuron(init, cell)

    def step(state: State, x: jax.Array) -> tuple[State, jax.Array]:
        return cell(state, x + recurrent_input(state.z, recurrent))

    return Neuron(init, step, Recurrence(cell, jnp.asarray(recurrent)))


def check_state(state: State, shape: Sequence[int], where: str, resting: State | None = None) -> None:
    """Raise ``ValueError`` unless ``state`` has the structure of ``resting`` (the neuron's ``init``,
    when given) and every array in it has the shape it has there, or else ``shape`` (``[B, ...]``)."""
    if resting is not None and jax.tree.structure(resting) != jax.tree.structure(state):
        raise ValueError(
            f"{where}: state must have the structure of the neuron's resting state (its init), "
            f"{_describe(resting)}; got {_describe(state)}."
        )
    fields = state._asdict() if hasattr(state, "_asdict") else {str(i): s for i, s in enumerate(jax.tree.leaves(state))}
    expected = (
        [tuple(r.shape) for r in jax.tree.leaves(resting)] if resting is not None else [tuple(shape)] * len(fields)
    )
    for (name, leaf), want in zip(fields.items(), expected):
        if tuple(jnp.shape(leaf)) != want:
            what = (
                f"the input at one time step has shape {tuple(shape)} ([B, ...] of xs[T, B, ...])"
                if want == tuple(shape)
                else f"the neuron's resting state there has shape {want}"
            )
            raise ValueError(f"{where}: state.{name} has shape {tuple(jnp.shape(leaf))} but {what}; they must match.")


class Spiking(NamedTuple):
    r"""How a spiking neuron fires and resets: the keywords every spiking neuron factory takes.

    :func:`snnjax.lif`, :func:`snnjax.iaf`, :func:`snnjax.cuba_lif` and :func:`snnjax.alif` take
    these as keyword arguments besides their own parameters (decays, thresholds), and so do the NNX
    layers over them.

    Attributes:
      reset: ``"subtract"`` (soft reset, keeps the overshoot) or ``"zero"``.
      detach_reset: stop the gradient through the spike in the reset term (Zenke & Vogels 2021).
      recurrent: recurrent weights :math:`W_\text{rec}` ``[N, N]`` (``z @ W``), or ``None``.
      surrogate: the spike's surrogate derivative (a :class:`snnjax.surrogates.Surrogate` or its name).
      method: how the surrogate is attached, one of :data:`snnjax.METHODS`.

    Examples:
      >>> import snnjax
      >>> snnjax.Spiking(reset="zero").method
      'inject'
    """

    reset: str = "subtract"
    detach_reset: bool = False
    recurrent: ArrayLike | None = None
    surrogate: surrogates.SurrogateLike = DEFAULT_SURROGATE
    method: str = "inject"


def spiking(
    options: dict[str, Any], where: str, *, decays: dict[str, ArrayLike], finite: dict[str, ArrayLike]
) -> Spiking:
    """A factory's :class:`Spiking` keywords, checked when the neuron is built, its surrogate resolved.

    Decays must lie in ``[0, 1]`` and thresholds be finite (where they are concrete), the reset
    one of :data:`RESETS`, the method and surrogate known (checked as strings, no spike is evaluated).
    """
    unknown = sorted(set(options) - set(Spiking._fields))
    if unknown:
        known = ", ".join([*decays, *finite, *Spiking._fields])
        raise ValueError(f"{where}: unknown option {unknown[0]!r}; the options are {known}.")
    o = Spiking(**options)
    for name, value in decays.items():
        check_unit_interval(value, name, DECAY_HINT)
    for name, value in finite.items():
        check_finite(value, name)
    check_reset(o.reset)
    resolved = surrogates.resolve(o.surrogate)
    check_method(o.method, resolved)
    return o._replace(surrogate=resolved)


def resting(cls: type) -> Callable[..., Any]:
    """The ``init`` of a neuron whose state ``cls`` is all zeros at rest: ``init(shape, dtype=float32)``."""

    def init(shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> Any:
        return zeros_state(cls, shape, dtype)

    return init


def zeros_state(cls: type, shape: Sequence[int], dtype: DTypeLike) -> Any:
    """A ``NamedTuple`` state of class ``cls`` with every field zero, ``shape`` ``[B, ...]``."""
    if len(shape) < 1:
        raise ValueError(f"init: shape must be [B, ...] (at least the batch axis), got {tuple(shape)}.")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"init: dtype must be floating point, got {dtype}.")
    return cls(*(jnp.zeros(shape, dtype) for _ in cls._fields))


def per_neuron(p: ArrayLike, like: jax.Array, name: str) -> jax.Array:
    """Cast a parameter to ``like``'s dtype and shape it to broadcast against ``like`` ``[B, ...]``.

    A parameter is a scalar or has the trailing (per-neuron) shape of ``like``; leading axes
    are added explicitly, so the step never relies on implicit rank promotion.
    """
    p = jnp.asarray(p)
    if p.ndim > like.ndim or tuple(p.shape) != tuple(like.shape[like.ndim - p.ndim :]):
        raise ValueError(
            f"{name} has shape {p.shape}; it must be a scalar or per neuron, matching the trailing axes "
            f"of the state {like.shape} ([B, ...])."
        )
    return p.astype(like.dtype).reshape((1,) * (like.ndim - p.ndim) + p.shape)


def check_reset(reset: str) -> str:
    """Check the reset mode is one of ``"subtract"`` or ``"zero"``."""
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {', '.join(map(repr, RESETS))}, got {reset!r}.")
    return reset


def recurrent_input(z: jax.Array, weights: jax.Array | None, name: str = "recurrent") -> jax.Array | None:
    """``z @ weights`` for recurrent weights ``[N, N]`` and spikes ``z`` ``[B, N]``, checked."""
    if weights is None:
        return None
    w = jnp.asarray(weights)
    n = z.shape[-1]
    if w.shape != (n, n):
        raise ValueError(f"{name} weights must have shape [N, N] = {(n, n)} for {n} neurons, got {w.shape}.")
    return z @ w.astype(z.dtype)


def apply_reset(v: jax.Array, z: jax.Array, amount: jax.Array, reset: str, detach: bool) -> jax.Array:
    r"""Reset after a spike: subtract ``amount`` (soft reset) or set to zero.

    ``v - z * amount`` or ``v * (1 - z)``; with ``detach`` the spike in the reset carries no
    gradient (Zenke & Vogels 2021 found this helps).
    """
    if detach:
        z = jax.lax.stop_gradient(z)
    if reset == "subtract":
        return v - z * amount
    return v * (1.0 - z)


def _describe(state: Any) -> str:
    """``LIFState(v, z)``, ``tuple of 2``, ``str``: a state's structure in a few words."""
    if hasattr(state, "_fields"):
        return f"{type(state).__name__}({', '.join(state._fields)})"
    if isinstance(state, (tuple, list, dict)):
        return f"{type(state).__name__} of {len(state)}"
    return type(state).__name__
