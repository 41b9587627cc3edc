r"""Flax NNX modules over the pure neurons: parameters in modules, dynamics in :mod:`snnjax`.

Each module holds its parameters (decays, optional recurrent weights) and builds the pure
:class:`snnjax.Neuron` from them on every call, so it has no dynamics of its own. It is an
NNX recurrent cell, ``cell(carry, x_t) -> (carry, out_t)`` with ``initialize_carry``, so
``nnx.RNN(cell, time_major=True)`` runs it; :meth:`run` scans a whole ``[T, B, N]`` sequence
directly, which is what :class:`snnjax.nn.Sequential` uses.

Trainable decays are stored as unconstrained raw parameters and mapped into range by a
parameterisation (:mod:`snnjax.decay`): ``"sigmoid"`` gives :math:`\beta = \sigma(r)`,
``"softplus"`` gives :math:`\tau = \operatorname{softplus}(r)`, :math:`\beta = e^{-1/\tau}`
(time in steps). Fixed decays are stored as non-trainable ``nnx.Variable`` s.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from snnjax import decay as _decay
from snnjax import surrogates as _surrogates
from snnjax.alif import alif
from snnjax.bptt import run_bptt as _run_bptt
from snnjax.checks import DECAY_HINT, check_unit_interval
from snnjax.cuba import cuba_lif
from snnjax.lif import lif
from snnjax.neuron import Neuron
from snnjax.neuron import run as _run
from snnjax.readout import leaky_integrator
from snnjax.spikes import DEFAULT_SURROGATE

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
            self.value = nnx.Param(_decay.sigmoid_decay_inverse(beta))
        else:
            self.value = nnx.Param(_decay.softplus_decay_inverse(beta))

    def __call__(self) -> jax.Array:
        raw = self.value[...]
        if not self.trainable:
            return jax.lax.stop_gradient(raw)  # fixed: zero gradient even if all state is differentiated
        if self.parametrization == "sigmoid":
            return _decay.sigmoid_decay(raw)
        return _decay.softplus_decay(raw)


class NeuronCell(nnx.RNNCellBase):
    """Base of the neuron modules: an NNX recurrent cell over a pure :class:`snnjax.Neuron`.

    Subclasses implement :meth:`neuron`. Features are the last axis (``num_feature_axes = 1``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import snnjax.nn as snn
      >>> rnn = nnx.RNN(snn.LIF(4))  # every neuron layer is an nnx RNN cell
      >>> rnn(jnp.ones((2, 6, 4)) * 0.6).shape  # batch-major [B, T, N] for nnx.RNN
      (2, 6, 4)
    """

    features: int
    unroll: int | bool
    remat: bool = True
    run_bptt: bool = False

    def neuron(self) -> Neuron:
        """The pure neuron built from the current parameters."""
        raise NotImplementedError

    def _recurrent_weights(self) -> jax.Array | None:
        layer = getattr(self, "recurrent", None)
        return None if layer is None else layer.kernel[...]

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
        :func:`snnjax.run_bptt` when the layer was built with ``run_bptt=True``.
        """
        self._check_features(tuple(jnp.shape(xs)), "xs")
        if self.run_bptt:
            return _run_bptt(self.neuron(), xs, carry, unroll=self.unroll)
        return _run(self.neuron(), xs, carry, unroll=self.unroll, remat=self.remat)

    def _set_run_options(self, unroll: int | bool, remat: bool, run_bptt: bool) -> None:
        for name, value in (("remat", remat), ("run_bptt", run_bptt)):
            if not isinstance(value, bool):
                raise TypeError(f"{type(self).__name__}: {name} must be True or False, got {value!r}.")
        self.unroll, self.remat, self.run_bptt = unroll, remat, run_bptt

    @property
    def num_feature_axes(self) -> int:
        return 1


def _recurrent_layer(recurrent: bool, features: int, rngs: nnx.Rngs | None, name: str) -> nnx.Linear | None:
    if not recurrent:
        return None
    if rngs is None:
        raise ValueError(f"{name}: recurrent=True needs rngs=nnx.Rngs(...) to initialise the recurrent weights.")
    return nnx.Linear(features, features, use_bias=False, rngs=rngs)


class LIF(NeuronCell):
    r"""Leaky integrate-and-fire layer (equations in :func:`snnjax.lif`).

    Args:
      features: number of neurons ``N``.
      beta: initial membrane decay, scalar or ``[N]``.
      threshold: as for :func:`snnjax.lif`.
      reset: as for :func:`snnjax.lif`.
      detach_reset: as for :func:`snnjax.lif`.
      surrogate: as for :func:`snnjax.lif`.
      method: as for :func:`snnjax.lif`.
      trainable_decay: learn a per-neuron decay.
      decay_parametrization: ``"sigmoid"`` or ``"softplus"``.
      recurrent: add trainable recurrent weights ``[N, N]`` (needs ``rngs``).
      unroll: scan unroll for :meth:`run`.
      remat: for :meth:`run`, recompute each step's elementwise work in the backward pass
        (:func:`snnjax.run`'s ``remat``, on by default; its docstring gives the measured
        speed-ups and the cases where it is slower).
      run_bptt: :meth:`run` through :func:`snnjax.run_bptt` instead of :func:`snnjax.run`:
        the same values and gradients, with the recurrent weights' gradient formed as one
        product after the backward loop: 1.10-1.37x faster for recurrent layers on CPU, 1-14%
        slower for feed-forward ones (``benchmarks/remat.py``). Reverse mode only:
        ``jax.jvp`` through :meth:`run` then raises, so leave it off for forward-gradient
        rules. ``remat`` is then unused. Stepping the cell (``nnx.RNN``) is not affected.
      rngs: ``nnx.Rngs`` for the recurrent weights.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import snnjax.nn as snn
      >>> layer = snn.LIF(4, beta=0.8, recurrent=True, rngs=nnx.Rngs(0))
      >>> carry, z = layer.run(jnp.ones((10, 2, 4)))
      >>> z.shape
      (10, 2, 4)
    """

    def __init__(
        self,
        features: int,
        *,
        beta: ArrayLike = 0.9,
        threshold: float = 1.0,
        reset: str = "subtract",
        detach_reset: bool = False,
        trainable_decay: bool = False,
        decay_parametrization: str = "sigmoid",
        recurrent: bool = False,
        surrogate: _surrogates.SurrogateLike = DEFAULT_SURROGATE,
        method: str = "inject",
        unroll: int | bool = 1,
        remat: bool = True,
        run_bptt: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        self.features = features
        self.beta = Decay(beta, features, trainable=trainable_decay, parametrization=decay_parametrization)
        self.threshold, self.reset, self.detach_reset = threshold, reset, detach_reset
        self.surrogate, self.method = _surrogates.resolve(surrogate), method
        self._set_run_options(unroll, remat, run_bptt)
        self.recurrent = _recurrent_layer(recurrent, features, rngs, "LIF")
        self.neuron()  # validate the options now

    def neuron(self) -> Neuron:
        return lif(
            self.beta(),
            threshold=self.threshold,
            reset=self.reset,
            detach_reset=self.detach_reset,
            recurrent=self._recurrent_weights(),
            surrogate=self.surrogate,
            method=self.method,
        )


class IAF(LIF):
    """Integrate-and-fire layer: :class:`LIF` with ``beta = 1`` (no leak, nothing to train in it).

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> _, spikes = snn.IAF(1).run(jnp.full((4, 1, 1), 0.5))
      >>> spikes[:, 0, 0].tolist()  # integrates to 1, fires, resets
      [0.0, 0.0, 1.0, 0.0]
    """

    def __init__(self, features: int, **kwargs: Any):
        if "beta" in kwargs or kwargs.get("trainable_decay"):
            raise ValueError("IAF has no leak: beta is 1 and not trainable (use LIF instead).")
        super().__init__(features, beta=1.0, **kwargs)


class CubaLIF(NeuronCell):
    r"""Current-based LIF layer (equations in :func:`snnjax.cuba_lif`).

    Args:
      features: number of neurons ``N``.
      alpha: initial synaptic decay, scalar or ``[N]``.
      beta: initial membrane decay, scalar or ``[N]``.
      trainable_decay: learn both decays per neuron.

    The other keyword arguments are as for :class:`LIF`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> _, spikes = snn.CubaLIF(3, alpha=0.8, beta=0.9).run(jnp.full((10, 2, 3), 0.3))
      >>> spikes.shape
      (10, 2, 3)
    """

    def __init__(
        self,
        features: int,
        *,
        alpha: ArrayLike = 0.8,
        beta: ArrayLike = 0.9,
        threshold: float = 1.0,
        reset: str = "subtract",
        detach_reset: bool = False,
        trainable_decay: bool = False,
        decay_parametrization: str = "sigmoid",
        recurrent: bool = False,
        surrogate: _surrogates.SurrogateLike = DEFAULT_SURROGATE,
        method: str = "inject",
        unroll: int | bool = 1,
        remat: bool = True,
        run_bptt: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        self.features = features
        self.alpha = Decay(alpha, features, trainable=trainable_decay, parametrization=decay_parametrization)
        self.beta = Decay(beta, features, trainable=trainable_decay, parametrization=decay_parametrization)
        self.threshold, self.reset, self.detach_reset = threshold, reset, detach_reset
        self.surrogate, self.method = _surrogates.resolve(surrogate), method
        self._set_run_options(unroll, remat, run_bptt)
        self.recurrent = _recurrent_layer(recurrent, features, rngs, "CubaLIF")
        self.neuron()

    def neuron(self) -> Neuron:
        return cuba_lif(
            self.alpha(),
            self.beta(),
            threshold=self.threshold,
            reset=self.reset,
            detach_reset=self.detach_reset,
            recurrent=self._recurrent_weights(),
            surrogate=self.surrogate,
            method=self.method,
        )


class ALIF(NeuronCell):
    r"""Adaptive LIF layer (equations and the two forms in :func:`snnjax.alif`).

    Args:
      features: number of neurons ``N``.
      alpha: initial membrane decay, scalar or ``[N]`` (draw the FGI benchmark's
        ``sigmoid(N(3, 0.1))`` yourself and pass it).
      rho: initial adaptation decay, scalar or ``[N]``.
      form: as for :func:`snnjax.alif`.
      threshold: as for :func:`snnjax.alif`.
      adaptation: as for :func:`snnjax.alif`.
      trainable_decay: learn both decays per neuron.

    The other keyword arguments are as for :class:`LIF`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> _, spikes = snn.ALIF(4, alpha=0.9, rho=0.95).run(jnp.full((20, 2, 4), 0.4))
      >>> spikes.shape, float(spikes[:, 0, 0].sum())
      ((20, 2, 4), 2.0)
    """

    def __init__(
        self,
        features: int,
        *,
        alpha: ArrayLike = 0.95,
        rho: ArrayLike = 0.99,
        form: str = "bellec",
        threshold: float | None = None,
        adaptation: float | None = None,
        reset: str = "subtract",
        detach_reset: bool = False,
        trainable_decay: bool = False,
        decay_parametrization: str = "sigmoid",
        recurrent: bool = False,
        surrogate: _surrogates.SurrogateLike = DEFAULT_SURROGATE,
        method: str = "inject",
        unroll: int | bool = 1,
        remat: bool = True,
        run_bptt: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        self.features = features
        self.alpha = Decay(alpha, features, trainable=trainable_decay, parametrization=decay_parametrization)
        self.rho = Decay(rho, features, trainable=trainable_decay, parametrization=decay_parametrization)
        self.form, self.threshold, self.adaptation = form, threshold, adaptation
        self.reset, self.detach_reset = reset, detach_reset
        self.surrogate, self.method = _surrogates.resolve(surrogate), method
        self._set_run_options(unroll, remat, run_bptt)
        self.recurrent = _recurrent_layer(recurrent, features, rngs, "ALIF")
        self.neuron()

    def neuron(self) -> Neuron:
        return alif(
            self.alpha(),
            self.rho(),
            form=self.form,
            threshold=self.threshold,
            adaptation=self.adaptation,
            reset=self.reset,
            detach_reset=self.detach_reset,
            recurrent=self._recurrent_weights(),
            surrogate=self.surrogate,
            method=self.method,
        )


class LeakyIntegrator(NeuronCell):
    r"""Leaky-integrator readout layer (equations in :func:`snnjax.leaky_integrator`); outputs the membrane.

    Args:
      features: number of neurons ``N``.
      kappa: initial decay, scalar or ``[N]``.
      scale_input: multiply the input by ``1 - kappa``.
      trainable_decay: as for :class:`LIF`.
      decay_parametrization: as for :class:`LIF`.
      unroll: as for :class:`LIF`.
      remat: as for :class:`LIF`.
      run_bptt: as for :class:`LIF`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> _, v = snn.LeakyIntegrator(1, kappa=0.5).run(jnp.ones((3, 1, 1)))
      >>> v[:, 0, 0].tolist()
      [1.0, 1.5, 1.75]
    """

    def __init__(
        self,
        features: int,
        *,
        kappa: ArrayLike = 0.9,
        scale_input: bool = False,
        trainable_decay: bool = False,
        decay_parametrization: str = "sigmoid",
        unroll: int | bool = 1,
        remat: bool = True,
        run_bptt: bool = False,
    ):
        self.features = features
        self.kappa = Decay(kappa, features, trainable=trainable_decay, parametrization=decay_parametrization)
        self.scale_input = scale_input
        self._set_run_options(unroll, remat, run_bptt)

    def neuron(self) -> Neuron:
        return leaky_integrator(self.kappa(), scale_input=self.scale_input)
