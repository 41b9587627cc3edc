"""snnjax: JAX-native learning rules for spiking neural networks.

The public surface, flat. Submodules: :mod:`snnjax.surrogates`, :mod:`snnjax.ste`,
:mod:`snnjax.encoders`, :mod:`snnjax.losses`, :mod:`snnjax.nn` (Flax NNX modules),
:mod:`snnjax.rules` (learning rules) and :mod:`snnjax.datasets` (loaded lazily).
"""

from snnjax import decay, encoders, losses, ste, surrogates
from snnjax.alif import ALIFState, alif
from snnjax.bptt import run_bptt
from snnjax.chain import chain
from snnjax.compare import Comparison, compare_gradients
from snnjax.cuba import CubaLIFState, cuba_lif
from snnjax.decay import decay_from_tau, sigmoid_decay, softplus_decay, tau_from_decay
from snnjax.host import tune_host_allocator
from snnjax.identities import bypass, inject, straight_through
from snnjax.lif import LIFState, iaf, lif
from snnjax.neuron import Neuron, Recurrence, run
from snnjax.readout import LeakyIntegratorState, leaky_integrator
from snnjax.spikes import DEFAULT_SURROGATE, FORWARD_MODE_METHODS, METHODS, heaviside, spike

__version__ = "0.1.0"

__all__ = [
    "ALIFState",
    "Comparison",
    "CubaLIFState",
    "DEFAULT_SURROGATE",
    "FORWARD_MODE_METHODS",
    "LIFState",
    "LeakyIntegratorState",
    "METHODS",
    "Neuron",
    "Recurrence",
    "alif",
    "bypass",
    "chain",
    "compare_gradients",
    "cuba_lif",
    "decay",
    "decay_from_tau",
    "encoders",
    "heaviside",
    "iaf",
    "inject",
    "leaky_integrator",
    "lif",
    "losses",
    "run",
    "run_bptt",
    "sigmoid_decay",
    "softplus_decay",
    "spike",
    "ste",
    "straight_through",
    "surrogates",
    "tau_from_decay",
    "tune_host_allocator",
]


def __getattr__(name: str):
    # Heavier optional parts load on first use: `snnjax.nn` pulls in Flax, `snnjax.rules`
    # and `snnjax.datasets` only what they need.
    if name in ("nn", "rules", "datasets"):
        import importlib

        module = importlib.import_module(f"snnjax.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'snnjax' has no attribute {name!r}")
