"""Learning rules, each a drop-in for ``jax.value_and_grad`` (see :mod:`snnjax.rules.protocol`)."""

from snnjax.rules.activity import activity_forward_gradient, as_loss, identity_tap
from snnjax.rules.bptt import bptt
from snnjax.rules.feedback import FeedbackState, Route, as_routed_loss, dfa, fa, fdfa
from snnjax.rules.forward_gradient import forward_gradient
from snnjax.rules.forward_mode import directions
from snnjax.rules.online import online_dfa, per_step_loss
from snnjax.rules.online_forward import online_activity_forward_gradient
from snnjax.rules.protocol import EmptyState, Rule
from snnjax.rules.sfdfa import SFDFAAux, sfdfa, spike_time_bp
from snnjax.rules.shared_seed import shared_seed_forward_gradient

__all__ = [
    "EmptyState",
    "FeedbackState",
    "Route",
    "Rule",
    "SFDFAAux",
    "activity_forward_gradient",
    "as_loss",
    "as_routed_loss",
    "bptt",
    "dfa",
    "directions",
    "fa",
    "fdfa",
    "forward_gradient",
    "identity_tap",
    "online_activity_forward_gradient",
    "online_dfa",
    "per_step_loss",
    "sfdfa",
    "shared_seed_forward_gradient",
    "spike_time_bp",
]
