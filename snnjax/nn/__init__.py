"""Flax NNX modules: neuron layers over the pure neurons, a time-aware container, the stepped network, LocalMixer."""

from snnjax.nn.mixer import LocalMixer
from snnjax.nn.network import network
from snnjax.nn.neurons import ALIF, IAF, LIF, CubaLIF, Decay, LeakyIntegrator, NeuronCell
from snnjax.nn.parallel import ParallelLIF, SlidingPSN
from snnjax.nn.sequential import Sequential

__all__ = [
    "ALIF",
    "IAF",
    "LIF",
    "CubaLIF",
    "Decay",
    "LeakyIntegrator",
    "LocalMixer",
    "NeuronCell",
    "ParallelLIF",
    "Sequential",
    "SlidingPSN",
    "network",
]
