"""Learning rules, each a drop-in for ``jax.value_and_grad`` (see :mod:`snnjax.rules.protocol`)."""

from snnjax.rules.bptt import bptt
from snnjax.rules.protocol import EmptyState, Rule

__all__ = ["EmptyState", "Rule", "bptt"]
