r"""Flax NNX modules over the pure neurons: parameters in modules, dynamics in :mod:`snnjax`.

Each module holds its parameters (decays, optional recurrent weights) and builds the pure
:class:`snnjax.Neuron` from them on every call, so it has no dynamics of its own. Its options
are the pure factory's, passed as keywords and described once, there: ``snn.LIF(64, beta=0.9,
threshold=0.5)`` builds :func:`snnjax.lif` ``(beta, threshold=0.5)`` (Norse's modules take
their functional parameters the same way). It is an NNX recurrent cell, ``cell(carry, x_t) ->
(carry, out_t)`` with ``initialize_carry``, so ``nnx.RNN(cell, time_major=True)`` runs it;
:meth:`run` scans a whole ``[T, B, N]`` sequence directly, which is what
:class:`snnjax.nn.Sequential` uses.

Trainable decays are stored as unconstrained raw parameters and mapped into range by a
parameterisation (:mod:`snnjax.decay`): ``"sigmoid"`` gives :math:`\beta = \sigma(r)`,
``"softplus"`` gives :math:`\tau = \operatorname{softplus}(r)`, :math:`\beta = e^{-1/\tau}`
(time in steps). Fixed decays are stored as non-trainable ``nnx.Variable`` s.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from snnjax import surrogates
from snnjax.checks import DECAY_HINT, check_unit_interval
from snnjax.neurons import decay
from snnjax.neurons.alif import alif
from snnjax.neurons.bptt import run_bptt
from snnjax.neurons.cuba import cuba_lif
from snnjax.neurons.lif import lif
from snnjax.neurons.neuron import Neuron, Spiking, run
from snnjax.neurons.parallel import run_parallel
from snnjax.neurons.readout import leaky_integrator

__all__ = ["Decay", "NeuronCell", "LIF", "IAF", "CubaLIF", "ALIF", "LeakyIntegrator"]

PARAMETRIZATIONS = ("sigmoid", "softplus")


class Decay(nnx.Module):
    r"""A per-neuron decay factor :math:`\beta \in (0, 1)`, fixed or trainable.

    Args:
      value: the initial :math:`\beta`, scalar or ``[features]``.
      features: number of neurons ``N``.
      trainable: store a raw ``nnx.Param``; else a fixed ``nnx.Variable`` whose gradient is
        exactly zero, so an optimiser over ``nnx.split(model)`` leaves it unchanged unless it
        adds weight decay (split with ``nnx.Param`` to keep it out of the optimiser).
      parametrization: ``"sigmoid"`` or ``"softplus"`` (see the module docstring).

    Calling the module returns :math:`\beta` of shape ``[features]``.

    Examples:
      >>> from snnjax.nn import Decay
      >>> d = Decay(0.9, 3, trainable=True)
      >>> tuple(round(float(b), 4) for b in d())
      (0.9, 0.9, 0.9)
    """

    def __init__(self, value: ArrayLike, features: int, *, trainable: bool = False, parametrization: str = "sigmoid"):
        check_unit_interval(value, "decay", DECAY_HINT)
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"parametrization must be one of {', '.join(map(repr, PARAMETRIZATIONS))}, got {parametrization!r}."
            )
        beta = jnp.broadcast_to(jnp.asarray(value, jnp.float32), (features,))
        self.parametrization = parametrization
        self.trainable = trainable
        if not trainable:
            self.value = nnx.Variable(beta)
        elif parametrization == "sigmoid":
            self.value = nnx.Param(decay.sigmoid_decay_inverse(beta))
        else:
            self.value = nnx.Param(decay.softplus_decay_inverse(beta))

    def __call__(self) -> jax.Array:
        raw = self.value[...]
        if not self.trainable:
            return jax.lax.stop_gradient(raw)  # fixed: zero gradient even if all state is differentiated
        if self.parametrization == "sigmoid":
            return decay.sigmoid_decay(raw)
        return decay.softplus_decay(raw)


class NeuronCell(nnx.RNNCellBase):
    """Base of the neuron modules: an NNX recurrent cell over a pure :class:`snnjax.Neuron`.

    A subclass names its pure factory (``factory``) and which of the factory's arguments are
    decays (``decays``, with their initial values): those become :class:`Decay` modules, fixed
    or trainable; every other keyword is passed to the factory as it is. Features are the last
    axis (``num_feature_axes = 1``).

    Args:
      features: number of neurons ``N``.
      trainable_decay: learn the decays, one per neuron.
      decay_parametrization: ``"sigmoid"`` or ``"softplus"`` (module docstring).
      recurrent: add trainable recurrent weights ``[N, N]`` (needs ``rngs``; neurons whose
        factory takes ``recurrent``).
      unroll: scan unroll for :meth:`run`.
      remat: for :meth:`run`, recompute each step's elementwise work in the backward pass
        (:func:`snnjax.run`'s ``remat``, on by default; its docstring says when it is slower).
      run_bptt: :meth:`run` through :func:`snnjax.run_bptt` instead of :func:`snnjax.run`: the
        same values and gradients, with the recurrent weights' gradient formed as one product
        after the backward loop, which is faster for recurrent layers. Reverse mode only:
        ``jax.jvp`` through :meth:`run` then raises, and the learning rules that change a layer
        (FA, FG-A) cannot see inside it, so leave it off for them. ``remat`` is then unused.
        Stepping the cell (``nnx.RNN``) is not affected.
      rngs: ``nnx.Rngs`` for the recurrent weights.
      **options: the decays' initial values (scalar or ``[N]``) and the factory's other keywords.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import snnjax.nn as snn
      >>> rnn = nnx.RNN(snn.LIF(4))  # every neuron layer is an nnx RNN cell
      >>> rnn(jnp.ones((2, 6, 4)) * 0.6).shape  # batch-major [B, T, N] for nnx.RNN
      (2, 6, 4)
    """

    factory: Callable[..., Neuron]
    decays: dict[str, float] = {}
    fixed: dict[str, float] = {}
    parallel: bool = False  # run() uses snnjax.run_parallel (the neurons of snnjax.neurons.parallel)

    def __init__(
        self,
        features: int,
        *,
        trainable_decay: bool = False,
        decay_parametrization: str = "sigmoid",
        recurrent: bool = False,
        unroll: int | bool = 1,
        remat: bool = True,
        run_bptt: bool = False,
        rngs: nnx.Rngs | None = None,
        **options: Any,
    ):
        name = type(self).__name__
        factory = type(self).factory
        parameters = inspect.signature(factory).parameters
        accepted = [p for p, v in parameters.items() if v.kind is not inspect.Parameter.VAR_KEYWORD]
        if any(v.kind is inspect.Parameter.VAR_KEYWORD for v in parameters.values()):  # the Spiking options
            accepted += list(Spiking._fields)
        for option, value in self.fixed.items():
            if option in options:
                raise ValueError(f"{name}: {option} is fixed at {value}; use another layer to set it.")
        unknown = sorted(set(options) - set(accepted) - set(self.decays))
        if unknown or "recurrent" in options:
            known = [p for p in accepted if p != "recurrent"]
            raise ValueError(
                f"{name}: unknown option {(unknown or ['recurrent'])[0]!r}; the options are {', '.join(known)}."
            )
        for flag, value in (("remat", remat), ("run_bptt", run_bptt), ("trainable_decay", trainable_decay)):
            if not isinstance(value, bool):
                raise TypeError(f"{name}: {flag} must be True or False, got {value!r}.")
        if type(self).parallel and (run_bptt or not remat):
            raise ValueError(
                f"{name}: runs in parallel over time (snnjax.run_parallel); run_bptt and remat do not apply."
            )
        if trainable_decay and not self.decays:
            raise ValueError(f"{name}: has no decays to train; trainable_decay does not apply.")
        self.features, self.unroll, self.remat, self.run_bptt = features, unroll, remat, run_bptt
        for decay_name, initial in self.decays.items():
            value = options.pop(decay_name, initial)
            setattr(
                self,
                decay_name,
                Decay(value, features, trainable=trainable_decay, parametrization=decay_parametrization),
            )
        if "surrogate" in options:
            options["surrogate"] = surrogates.resolve(options["surrogate"])
        self.options = tuple(sorted(options.items()))  # static and hashable: part of the graph definition
        if recurrent and "recurrent" not in accepted:
            raise ValueError(f"{name}: has no recurrent weights.")
        if recurrent and rngs is None:
            raise ValueError(f"{name}: recurrent=True needs rngs=nnx.Rngs(...) to initialise the recurrent weights.")
        self.recurrent = nnx.Linear(features, features, use_bias=False, rngs=rngs) if recurrent else None
        self.neuron()  # validate the options now

    def neuron(self) -> Neuron:
        """The pure neuron built from the current parameters."""
        kwargs = dict(self.options, **self.fixed)
        kwargs.update({name: getattr(self, name)() for name in self.decays})
        if self.recurrent is not None:
            kwargs["recurrent"] = self.recurrent.kernel[...]
        return type(self).factory(**kwargs)

    def _check_features(self, shape: tuple[int, ...], what: str) -> None:
        if len(shape) < 1 or shape[-1] != self.features:
            raise ValueError(
                f"{type(self).__name__}: {what} has shape {shape}; its last axis must be features={self.features}."
            )

    def initialize_carry(self, input_shape: tuple[int, ...], rngs: Any = None, carry_init: Any = None) -> Any:
        """The resting state for inputs of shape ``[B, features]`` (``rngs`` and ``carry_init`` are unused)."""
        del rngs
        if carry_init is not None:
            raise ValueError(
                "neuron cells start from their resting state; pass initial_carry to nnx.RNN instead of carry_init."
            )
        self._check_features(tuple(input_shape), "input_shape")
        return self.neuron().init(tuple(input_shape), jnp.float32)

    def __call__(self, carry: Any, x: jax.Array) -> tuple[Any, jax.Array]:  # type: ignore[override]
        """One step: ``(carry, x_t [B, features]) -> (carry, out_t [B, features])``."""
        self._check_features(tuple(jnp.shape(x)), "x")
        return self.neuron().step(carry, x)

    def run(self, xs: jax.Array, carry: Any = None) -> tuple[Any, jax.Array]:
        """Scan a whole sequence ``xs`` ``[T, B, features]``; returns ``(final_carry, outs [T, B, features])``.

        Runs :func:`snnjax.run` (with the layer's ``unroll`` and ``remat``), or
        :func:`snnjax.run_bptt` when the layer was built with ``run_bptt=True``, or
        :func:`snnjax.run_parallel` for the parallel layers (:mod:`snnjax.nn.parallel`).
        """
        self._check_features(tuple(jnp.shape(xs)), "xs")
        if type(self).parallel:
            return run_parallel(self.neuron(), xs, carry)
        if self.run_bptt:
            return run_bptt(self.neuron(), xs, carry, unroll=self.unroll)
        return run(self.neuron(), xs, carry, unroll=self.unroll, remat=self.remat)

    @property
    def num_feature_axes(self) -> int:
        return 1


class LIF(NeuronCell):
    r"""Leaky integrate-and-fire layer: :func:`snnjax.lif`, whose keywords it takes.

    ``beta`` (default 0.9) is a :class:`Decay`; the other options (``threshold``, ``reset``,
    ``detach_reset``, ``surrogate``, ``method``) are :func:`snnjax.lif`'s; the module's own
    arguments are :class:`NeuronCell`'s.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import snnjax.nn as snn
      >>> layer = snn.LIF(4, beta=0.8, recurrent=True, rngs=nnx.Rngs(0))
      >>> carry, z = layer.run(jnp.ones((10, 2, 4)))
      >>> z.shape
      (10, 2, 4)
    """

    factory = staticmethod(lif)
    decays = {"beta": 0.9}


class IAF(NeuronCell):
    """Integrate-and-fire layer: :func:`snnjax.iaf`, :func:`snnjax.lif` with ``beta = 1`` (no leak).

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> _, spikes = snn.IAF(1).run(jnp.full((4, 1, 1), 0.5))
      >>> spikes[:, 0, 0].tolist()  # integrates to 1, fires, resets
      [0.0, 0.0, 1.0, 0.0]
    """

    factory = staticmethod(lif)
    fixed = {"beta": 1.0}


class CubaLIF(NeuronCell):
    r"""Current-based LIF layer: :func:`snnjax.cuba_lif`, whose keywords it takes.

    ``alpha`` (synaptic, default 0.8) and ``beta`` (membrane, default 0.9) are :class:`Decay` s.

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> _, spikes = snn.CubaLIF(3, alpha=0.8, beta=0.9).run(jnp.full((10, 2, 3), 0.3))
      >>> spikes.shape
      (10, 2, 3)
    """

    factory = staticmethod(cuba_lif)
    decays = {"alpha": 0.8, "beta": 0.9}


class ALIF(NeuronCell):
    r"""Adaptive LIF layer: :func:`snnjax.alif` (both forms), whose keywords it takes.

    ``alpha`` (membrane, default 0.95) and ``rho`` (adaptation, default 0.99) are
    :class:`Decay` s; draw the FGI benchmark's ``sigmoid(N(3, 0.1))`` yourself and pass it.

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> _, spikes = snn.ALIF(4, alpha=0.9, rho=0.95).run(jnp.full((20, 2, 4), 0.4))
      >>> spikes.shape, float(spikes[:, 0, 0].sum())
      ((20, 2, 4), 2.0)
    """

    factory = staticmethod(alif)
    decays = {"alpha": 0.95, "rho": 0.99}


class LeakyIntegrator(NeuronCell):
    r"""Leaky-integrator readout layer: :func:`snnjax.leaky_integrator`; outputs the membrane.

    ``kappa`` (default 0.9) is a :class:`Decay`; ``scale_input`` is the factory's.

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> _, v = snn.LeakyIntegrator(1, kappa=0.5).run(jnp.ones((3, 1, 1)))
      >>> v[:, 0, 0].tolist()
      [1.0, 1.5, 1.75]
    """

    factory = staticmethod(leaky_integrator)
    decays = {"kappa": 0.9}
