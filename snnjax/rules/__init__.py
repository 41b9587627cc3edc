"""Learning rules, each a drop-in for ``jax.value_and_grad`` (see :mod:`snnjax.rules.protocol`)."""

from snnjax.rules.activity import activity_forward_gradient, as_loss, identity_tap
from snnjax.rules.bptt import bptt
from snnjax.rules.forward_gradient import forward_gradient
from snnjax.rules.forward_mode import directions
from snnjax.rules.protocol import EmptyState, Rule

__all__ = ["EmptyState", "Rule", "activity_forward_gradient", "as_loss", "bptt", "directions", "forward_gradient", "identity_tap"]
