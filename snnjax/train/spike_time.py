r"""The exact-time network in the training command (``--model spike-time``): SFDFA, DFA and BP through spike times.

Bacho & Chu's SFDFA trains a network of current-based LIF neurons whose spike times are exact
(:mod:`snnjax.spike_time`), with one input spike per input neuron and a spike-count loss. The
command builds it as an NNX module, :class:`SpikeTimeClassifier`, whose parameters are its
weight matrices, and trains it with:

- ``sfdfa``: :func:`snnjax.rules.sfdfa`, feedback learned from spike grades (the paper's rule);
- ``dfa``: the same rule with fixed :math:`U(-1, 1)` feedback (``feedback="dfa"``);
- ``bptt``: :func:`snnjax.rules.spike_time_bp`, backpropagation through the exact spike times.

The regulariser and feedback settings are the released code's for Fashion-MNIST
(:func:`snnjax.rules.sfdfa_preset`). Inputs become spike times in the first
:data:`INPUT_WINDOW` seconds of the 200 ms window: images and static vectors by
time-to-first-spike (:func:`snnjax.spike_time.ttfs`, zero is silent), spike rasters by each
channel's first spike (:func:`snnjax.spike_time.raster_times`). A run classifies by the output
spike counts (ties: the lowest class) and reports the spike-count loss,
:math:`\frac12 \sum_c (n_c - n^*_c)^2` with targets 15 and 3, for training and test alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax import rules
from snnjax.neurons.spike_time import SpikeTimeNet, init_weights, raster_times, simulate, ttfs
from snnjax.rules.protocol import Rule
from snnjax.rules.sfdfa import count_targets
from snnjax.train.config import SPIKE_TIME_RULES

__all__ = ["INPUT_WINDOW", "SpikeTimeClassifier", "spike_count_losses", "spike_time_inputs", "spike_time_rule"]

INPUT_WINDOW = 0.1  # seconds: the inputs spike in the first half of the window, as in Bacho & Chu
_PRESET = rules.sfdfa_preset("fashion_mnist")


class SpikeTimeClassifier(nnx.Module):
    r"""An exact-time spiking network ``times [B, N_in] -> output spike counts [B, C]``.

    Current-based LIF layers with exact spike times (:class:`snnjax.spike_time.SpikeTimeNet`):
    :math:`\tau_s` = 130 ms, thresholds 0.2 (hidden) and 0.7 (output) in the reference's units,
    a 200 ms window on ``steps`` grid steps, as Bacho & Chu's released code. Its weights
    :math:`U(-1, 1)` suit inputs the size of an MNIST image; a layer with fewer inputs,
    :math:`N_{l-1} < 400`, would hardly fire, so its weights are
    :math:`U(-s_l, s_l)` with :math:`s_l = \max(1, \sqrt{400 / N_{l-1}})` (2 for Randman's 100 inputs).

    A neuron that never fires gets no gradient from any of the rules (the gradient flows
    through spike times), so a network whose outputs start silent does not learn: its loss
    stays at the silent value (153 for ten classes); another seed, or more hidden neurons,
    starts it firing.

    Args:
      sizes: ``(N_in, N_1, ..., C)``.
      seed: for the weights.
      steps: grid steps over the 200 ms window (``dt = 0.2 / steps``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.train.spike_time import SpikeTimeClassifier
      >>> net = SpikeTimeClassifier((4, 8, 3), seed=0, steps=50)
      >>> counts, layers = net(jnp.zeros((2, 4)), record=True)  # every input spikes at t = 0
      >>> counts.shape, [c.shape for c in layers]
      ((2, 3), [(2, 8), (2, 3)])
    """

    def __init__(self, sizes: tuple[int, ...], *, seed: int, steps: int = 200):
        if len(sizes) < 3:
            raise ValueError(f"SpikeTimeClassifier: needs at least one hidden layer, got sizes {tuple(sizes)}.")
        theta = (0.2,) * (len(sizes) - 2) + (0.7,)
        self.net = SpikeTimeNet(tuple(int(n) for n in sizes), theta=theta, window=0.2, dt=0.2 / steps)
        self.net.check()
        unit = init_weights(jax.random.key(seed), self.net)  # U(-1, 1)
        self.weights = nnx.List([nnx.Param(w * max(1.0, math.sqrt(400 / w.shape[0]))) for w in unit])

    def __call__(self, times: jax.Array, *, record: bool = False):
        """Output spike counts ``[B, C]`` (float32); with ``record`` also every layer's counts ``[B, N_l]``."""
        run = simulate(self.net, tuple(w[...] for w in self.weights), times)
        counts = run.counts[-1]
        return (counts, list(run.counts)) if record else counts


def spike_time_inputs(inputs: jax.Array, kind: str) -> jax.Array:
    """A raw batch as input spike times ``[B, N]`` over the first :data:`INPUT_WINDOW` seconds, traceable.

    Args:
      inputs: images ``[B, H, W(, C)]`` uint8, static vectors ``[B, L]`` in ``[0, 1]``, spike
        rasters ``[B, T, N]`` or event frames ``[B, T, H, W, C]`` (each pixel and polarity an input).
      kind: ``"image"``, ``"static"``, ``"spikes"`` or ``"frames"`` (:data:`snnjax.datasets.KINDS`).

    Examples:
      >>> import numpy as np
      >>> from snnjax.train.spike_time import spike_time_inputs
      >>> [round(float(t), 3) for t in spike_time_inputs(np.array([[255, 51, 0]], np.uint8), "image")[0]]
      [0.0, 0.08, inf]
    """
    if kind == "image":
        return ttfs(inputs, INPUT_WINDOW, 255.0)
    if kind == "static":
        return ttfs(inputs, INPUT_WINDOW, 1.0)
    if kind == "spikes":
        return raster_times(inputs, INPUT_WINDOW)
    if kind == "frames":  # [B, T, H, W, C]: each pixel and polarity a channel
        return raster_times(jnp.reshape(inputs, (*inputs.shape[:2], -1)), INPUT_WINDOW)
    raise ValueError(
        f"the exact-time network (model 'spike-time') takes images, static vectors or spike rasters, not {kind!r} data."
    )


def spike_time_rule(name: str, model: SpikeTimeClassifier) -> Rule:
    """The rule ``name`` (:data:`SPIKE_TIME_RULES`) for ``model``, on its parameters as ``nnx.split`` gives them.

    The rule's ``aux`` is the output spike counts ``[B, C]``, which the training step
    classifies; its ``loss_fn`` is the spike-count loss of those parameters.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from snnjax.train.spike_time import SpikeTimeClassifier, spike_time_rule
      >>> model = SpikeTimeClassifier((4, 8, 3), seed=0, steps=50)
      >>> _, params, _ = nnx.split(model, nnx.Param, ...)
      >>> rule = spike_time_rule("sfdfa", model)
      >>> times, labels = jnp.zeros((2, 4)), jnp.array([0, 2])
      >>> (loss, counts), grads, state = rule(params, times, labels, key=jax.random.key(0), state=rule.init(params))
      >>> counts.shape, jax.tree.structure(grads) == jax.tree.structure(params)
      ((2, 3), True)
    """
    loss = rules.spike_count_loss(model.net)
    builders: dict[str, Callable[[], Rule]] = {
        "sfdfa": lambda: rules.sfdfa(loss, **_PRESET.rule_options("sfdfa")),
        "dfa": lambda: rules.sfdfa(loss, feedback="dfa", **_PRESET.rule_options("dfa")),
        "bptt": lambda: rules.spike_time_bp(loss, regularizer=_PRESET.regularizer, rate_target=_PRESET.rate_target),
    }
    if name not in builders:
        raise ValueError(
            f"rule {name!r} does not train the exact-time network (model 'spike-time'); choose one of "
            f"{', '.join(SPIKE_TIME_RULES)}."
        )
    inner = builders[name]()

    def weights(params) -> tuple[jax.Array, ...]:
        return tuple(jax.tree.leaves(params))  # the layers in order: nnx orders a List's entries by index

    def loss_fn(params, times, labels):
        value, aux = loss(weights(params), times, labels)
        return value, aux.counts[-1]

    def init(params, *args, key=None):
        return inner.init(weights(params), key=key)

    def apply(state, params, times, labels, key=None):
        (value, aux), grads, state = inner.apply(state, weights(params), times, labels, key=key)
        return (value, aux.counts[-1]), jax.tree.unflatten(jax.tree.structure(params), grads), state

    return Rule(init=init, apply=apply, stateful=inner.stateful, name=inner.name, loss_fn=loss_fn)


def spike_count_losses(counts: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Per-example spike-count loss ``[B]``, :math:`\frac12 \sum_c (n_c - n^*_c)^2`, the targets
    :func:`snnjax.rules.spike_count_loss`'s (15 and 3), which the rules train.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.train.spike_time import spike_count_losses
      >>> spike_count_losses(jnp.array([[15.0, 3.0], [0.0, 0.0]]), jnp.array([0, 1])).tolist()
      [0.0, 117.0]
    """
    defaults = rules.SpikeCountLoss._field_defaults
    targets = count_targets(labels, counts.shape[-1], defaults["target_true"], defaults["target_false"])
    return 0.5 * jnp.sum((counts - targets) ** 2, axis=-1)
