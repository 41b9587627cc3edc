"""snnjax: JAX-native learning rules for spiking neural networks.

The public surface, flat. Submodules: :mod:`snnjax.surrogates`, :mod:`snnjax.ste`,
:mod:`snnjax.encoders`, :mod:`snnjax.losses`, :mod:`snnjax.nn` (Flax NNX modules),
:mod:`snnjax.rules` (learning rules) and :mod:`snnjax.datasets` (loaded lazily).
"""

import sys as _sys

from snnjax import encoders, losses, neurons, ste, surrogates
from snnjax.host import tune_host_allocator
from snnjax.identities import bypass, inject, straight_through
from snnjax.local_losses import group_local_loss
from snnjax.neurons import decay, spike_time
from snnjax.neurons.alif import ALIFState, alif
from snnjax.neurons.bptt import run_bptt
from snnjax.neurons.chain import Dense, chain, dense
from snnjax.neurons.cuba import CubaLIFState, cuba_lif
from snnjax.neurons.decay import decay_from_tau, sigmoid_decay, softplus_decay, tau_from_decay
from snnjax.neurons.lif import LIFState, iaf, lif
from snnjax.neurons.neuron import Neuron, Recurrence, Spiking, run
from snnjax.neurons.parallel import PSNState, parallel_lif, run_parallel, sliding_psn
from snnjax.neurons.readout import LeakyIntegratorState, leaky_integrator
from snnjax.rules.compare import Comparison, compare_gradients
from snnjax.spikes import DEFAULT_SURROGATE, FORWARD_MODE_METHODS, METHODS, heaviside, spike

# The modules' old import paths (snnjax.lif, snnjax.compare, ...) keep working.
for _old, _new in {
    "neuron": "neurons.neuron",
    "lif": "neurons.lif",
    "alif": "neurons.alif",
    "cuba": "neurons.cuba",
    "readout": "neurons.readout",
    "decay": "neurons.decay",
    "chain": "neurons.chain",
    "bptt": "neurons.bptt",
    "spike_time": "neurons.spike_time",
    "compare": "rules.compare",
}.items():
    _sys.modules[f"snnjax.{_old}"] = _sys.modules[f"snnjax.{_new}"]

__version__ = "0.1.0"

__all__ = [
    "ALIFState",
    "Comparison",
    "CubaLIFState",
    "Dense",
    "DEFAULT_SURROGATE",
    "FORWARD_MODE_METHODS",
    "LIFState",
    "PSNState",
    "LeakyIntegratorState",
    "METHODS",
    "Neuron",
    "Recurrence",
    "Spiking",
    "alif",
    "bypass",
    "chain",
    "compare_gradients",
    "cuba_lif",
    "decay",
    "decay_from_tau",
    "dense",
    "encoders",
    "group_local_loss",
    "heaviside",
    "iaf",
    "inject",
    "leaky_integrator",
    "lif",
    "losses",
    "neurons",
    "parallel_lif",
    "run",
    "run_bptt",
    "run_parallel",
    "sigmoid_decay",
    "sliding_psn",
    "softplus_decay",
    "spike",
    "spike_time",
    "ste",
    "straight_through",
    "surrogates",
    "tau_from_decay",
    "tune_host_allocator",
]


def __getattr__(name: str):
    # Heavier optional parts load on first use: `snnjax.nn` pulls in Flax, `snnjax.datasets`
    # its readers.
    if name in ("nn", "datasets"):
        import importlib

        module = importlib.import_module(f"snnjax.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'snnjax' has no attribute {name!r}")
