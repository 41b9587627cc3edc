r"""NNX layers over the parallel neurons: :class:`ParallelLIF` and :class:`SlidingPSN`.

Both are :class:`~snnjax.nn.NeuronCell` s: stepped by ``nnx.RNN`` (the sequential form) and
run over a whole sequence by :meth:`~snnjax.nn.NeuronCell.run`, which for these layers is
:func:`snnjax.run_parallel`, so :class:`snnjax.nn.Sequential` uses the parallel form.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from snnjax.neurons.neuron import Neuron
from snnjax.neurons.parallel import parallel_lif, psn_weights, sliding_psn
from snnjax.nn.neurons import NeuronCell

__all__ = ["ParallelLIF", "SlidingPSN"]


class ParallelLIF(NeuronCell):
    r"""Reset-free LIF layer with a parallel form: :func:`snnjax.parallel_lif`, whose keywords it takes.

    ``beta`` (default 0.9) is a :class:`~snnjax.nn.Decay`, fixed or trainable; ``threshold``,
    ``surrogate`` and ``method`` are the factory's. The layer has no reset and no recurrent weights.

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> _, z = snn.ParallelLIF(3, beta=0.5).run(jnp.full((4, 2, 3), 0.6))
      >>> z[:, 0, 0].tolist()
      [0.0, 0.0, 1.0, 1.0]
    """

    factory = staticmethod(parallel_lif)
    decays = {"beta": 0.9}
    parallel = True


class SlidingPSN(NeuronCell):
    r"""Sliding parallel spiking neuron layer (Fang et al. 2023): :func:`snnjax.sliding_psn`.

    Args:
      features: number of neurons ``N``.
      k: the filter's length; the filter starts at :func:`snnjax.neurons.parallel.psn_weights`
        (``[k]``, shared by all neurons, as in the paper).
      threshold: the initial threshold (a scalar shared by the layer, as the paper's bias).
      trainable: learn the filter and the threshold (``nnx.Param``), as the paper does; else
        both are fixed ``nnx.Variable`` s.
      **options: ``surrogate`` and ``method``, and :class:`~snnjax.nn.NeuronCell`'s ``unroll``
        (for stepping) and ``rngs`` (unused).

    Examples:
      >>> import jax.numpy as jnp
      >>> import snnjax.nn as snn
      >>> layer = snn.SlidingPSN(3, k=2)
      >>> layer.weights[...].tolist(), float(layer.threshold[...])
      ([0.5, 1.0], 1.0)
      >>> _, z = layer.run(jnp.full((3, 2, 3), 0.7))  # h = 0.7, 1.05, 1.05
      >>> z[:, 0, 0].tolist()
      [0.0, 1.0, 1.0]
    """

    factory = staticmethod(sliding_psn)
    parallel = True

    def __init__(self, features: int, k: int = 4, *, threshold: float = 1.0, trainable: bool = True, **options: Any):
        if not isinstance(trainable, bool):
            raise TypeError(f"SlidingPSN: trainable must be True or False, got {trainable!r}.")
        if "weights" in options:
            raise ValueError("SlidingPSN: the filter is the layer's parameter; set its length with k.")
        kind = nnx.Param if trainable else nnx.Variable
        self.weights = kind(psn_weights(k))
        self.threshold = kind(jnp.asarray(threshold, jnp.float32))
        super().__init__(features, **options)

    def neuron(self) -> Neuron:
        """The pure :func:`snnjax.sliding_psn` built from the current filter and threshold."""
        return sliding_psn(self.weights[...], threshold=self.threshold[...], **dict(self.options))
