"""Flax NNX modules: neuron layers over the pure neurons, a time-aware container, the stepped network, LocalMixer."""

from snnjax.nn.mixer import LocalMixer
from snnjax.nn.network import network
from snnjax.nn.neurons import ALIF, IAF, LIF, CubaLIF, Decay, LeakyIntegrator, NeuronCell
from snnjax.nn.parallel import ParallelLIF, SlidingPSN
from snnjax.nn.sequential import Sequential
from snnjax.nn.shape import AvgPool2d, Flatten

__all__ = [
    "ALIF",
    "AvgPool2d",
    "IAF",
    "LIF",
    "CubaLIF",
    "Decay",
    "Flatten",
    "LeakyIntegrator",
    "LocalMixer",
    "NeuronCell",
    "ParallelLIF",
    "Sequential",
    "SlidingPSN",
    "network",
]
