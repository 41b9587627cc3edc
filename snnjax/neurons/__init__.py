"""Pure neurons: ``(state, x_t) -> (state, out_t)`` steps, scanned over time-major sequences.

Each module is one neuron model or one way to run neurons: the protocol and :func:`run`
(:mod:`~snnjax.neurons.neuron`), LIF and IF (:mod:`~snnjax.neurons.lif`), adaptive LIF
(:mod:`~snnjax.neurons.alif`), current-based LIF (:mod:`~snnjax.neurons.cuba`), the
leaky-integrator readout (:mod:`~snnjax.neurons.readout`), decay parameterisations
(:mod:`~snnjax.neurons.decay`), dense synapses and chains of layers stepped together
(:mod:`~snnjax.neurons.chain`), BPTT with the parameter gradients formed outside the loop
(:mod:`~snnjax.neurons.bptt`) and the exact-time network of SFDFA (:mod:`~snnjax.neurons.spike_time`).
"""

from snnjax.neurons.alif import ALIFState, alif
from snnjax.neurons.bptt import run_bptt
from snnjax.neurons.chain import Dense, chain, dense
from snnjax.neurons.cuba import CubaLIFState, cuba_lif
from snnjax.neurons.decay import decay_from_tau, sigmoid_decay, softplus_decay, tau_from_decay
from snnjax.neurons.lif import LIFState, iaf, lif
from snnjax.neurons.neuron import Neuron, Recurrence, Spiking, run
from snnjax.neurons.readout import LeakyIntegratorState, leaky_integrator

__all__ = [
    "ALIFState",
    "CubaLIFState",
    "Dense",
    "LIFState",
    "LeakyIntegratorState",
    "Neuron",
    "Recurrence",
    "Spiking",
    "alif",
    "chain",
    "cuba_lif",
    "decay_from_tau",
    "dense",
    "iaf",
    "leaky_integrator",
    "lif",
    "run",
    "run_bptt",
    "sigmoid_decay",
    "softplus_decay",
    "tau_from_decay",
]
