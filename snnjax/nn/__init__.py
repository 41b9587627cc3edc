"""Flax NNX modules: neuron layers over the pure neurons, and a time-aware container."""

from snnjax.nn.neurons import ALIF, IAF, LIF, CubaLIF, Decay, LeakyIntegrator, NeuronCell
from snnjax.nn.sequential import Sequential

__all__ = ["ALIF", "IAF", "LIF", "CubaLIF", "Decay", "LeakyIntegrator", "NeuronCell", "Sequential"]
