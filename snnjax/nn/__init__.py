"""Flax NNX modules: neuron layers over the pure neurons, a time-aware container, and the stepped network."""

from snnjax.nn.network import network
from snnjax.nn.neurons import ALIF, IAF, LIF, CubaLIF, Decay, LeakyIntegrator, NeuronCell
from snnjax.nn.sequential import Sequential

__all__ = ["ALIF", "IAF", "LIF", "CubaLIF", "Decay", "LeakyIntegrator", "NeuronCell", "Sequential", "network"]
