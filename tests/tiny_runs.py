"""The tiny Randman run the training tests share, a way to alter a rule's output, and comparisons."""

import jax
import jax.numpy as jnp

from snnjax.rules.protocol import Rule
from snnjax.train import Config, fit, loop

# 32 training examples in batches of 8: 4 steps an epoch.
TINY = dict(
    dataset="randman",
    hidden=(8,),
    steps=10,
    batch_size=8,
    progress=False,
    plots=False,
    data_options={"num_classes": 2, "units": 5, "samples_per_class": 20},
)
# TINY's data options on the command line, and the run's other options, less --hidden and --epochs.
DATA_ARGV = [arg for key, value in TINY["data_options"].items() for arg in ("--data-option", f"{key}={value}")]
TINY_ARGV = ["--steps", "10", "--batch-size", "8", "--no-progress", "--no-plots", *DATA_ARGV]
QUIET = dict(log=lambda line: None)


def run(tmp_path, name, **overrides):
    """Train ``TINY`` for 3 epochs (or as ``overrides`` say) into ``tmp_path / name``."""
    return fit(Config(**{**TINY, "epochs": 3, "out": str(tmp_path / name), **overrides}), **QUIET)


def same_params(a, b):
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b)))


def without_times(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "examples_per_second")} for h in history]


def altered_rules(alter):
    """A ``loop.build_rule`` whose rules pass ``(loss, grads, step)`` through ``alter``, the step
    (0, 1, ...) counted in the rule's state; monkeypatch it in to make a run diverge or drift."""
    real = loop.build_rule

    def build_rule(name, *models_and_options, **options):
        inner = real(name, *models_and_options, **options)

        def apply(state, params, *args, key):
            (loss, aux), grads, inner_state = inner.apply(state[0], params, *args, key=key)
            loss, grads = alter(loss, grads, state[1])
            return (loss, aux), grads, (inner_state, state[1] + 1)

        def init(p, *args, key=None):
            return inner.init(p, *args, key=key), jnp.zeros((), jnp.int32)

        return Rule(init, apply, True, "altered")

    return build_rule
