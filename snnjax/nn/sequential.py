r"""A container that chains synapse and neuron layers and runs them over time."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from snnjax.nn.neurons import NeuronCell

__all__ = ["Sequential"]


class Sequential(nnx.Module):
    r"""Chain layers over a time-major sequence ``[T, B, ...]``, layer by layer.

    Neuron layers (:class:`snnjax.nn.LIF`, ...) are scanned over time with their
    :meth:`~snnjax.nn.NeuronCell.run`. Every other layer (``nnx.Linear``, ``nnx.Conv``
    over ``[T*B, ...]``, dropout, a function) is stateless, so it is applied to the whole
    sequence at once, outside the scan: an ``nnx.Linear`` becomes one matrix product over all
    ``T * B`` rows, which is what makes the scan cheap. Feed-forward layers therefore see the
    full output sequence of the layer before; recurrence lives inside the neuron layers.

    Args:
      *layers: NNX modules or callables ``[T, B, ...] -> [T, B, ...]``, applied in order.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> import snnjax.nn as snn
      >>> rngs = nnx.Rngs(0)
      >>> net = snn.Sequential(
      ...     nnx.Linear(3, 8, rngs=rngs), snn.LIF(8), nnx.Linear(8, 2, rngs=rngs), snn.LeakyIntegrator(2))
      >>> v, hidden = net(jnp.ones((5, 4, 3)), record=True)
      >>> v.shape, [h.shape for h in hidden]
      ((5, 4, 2), [(5, 4, 8), (5, 4, 2)])
    """

    def __init__(self, *layers: Any):
        if not layers:
            raise ValueError("Sequential needs at least one layer.")
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise ValueError(f"Sequential: layer {i} ({type(layer).__name__}) is not callable.")
        self.layers = nnx.List(layers)

    def __call__(self, xs: jax.Array, *, record: bool = False) -> jax.Array | tuple[jax.Array, list[jax.Array]]:
        """Run the network.

        Args:
          xs: inputs ``[T, B, ...]``.
          record: also return every neuron layer's output sequence.

        Returns:
          The last layer's output ``[T, B, ...]``, and with ``record`` the list of neuron-layer
          outputs ``[T, B, N_l]`` (spikes, or the membrane for a readout), in order.
        """
        xs = jnp.asarray(xs)
        if xs.ndim < 3:
            raise ValueError(f"Sequential: xs must be time-major [T, B, features], got shape {xs.shape}.")
        recorded = []
        for layer in self.layers:
            if isinstance(layer, NeuronCell):
                _, xs = layer.run(xs)
                recorded.append(xs)
            else:
                xs = layer(xs)
        return (xs, recorded) if record else xs
