"""Learning rules, each a drop-in for ``jax.value_and_grad`` (see :mod:`snnjax.rules.protocol`)."""

from snnjax.rules.block import block, grouped
from snnjax.rules.bptt import bptt
from snnjax.rules.feedback import FeedbackState, dfa, fa, fdfa
from snnjax.rules.forward_gradient import forward_gradient
from snnjax.rules.forward_mode import directions
from snnjax.rules.protocol import EmptyState, Rule

__all__ = [
    "EmptyState",
    "FeedbackState",
    "Rule",
    "block",
    "bptt",
    "dfa",
    "directions",
    "fa",
    "fdfa",
    "forward_gradient",
    "grouped",
]
from snnjax.rules.activity import activity_forward_gradient  # noqa: E402

__all__ += ["activity_forward_gradient"]
from snnjax.rules.online import online_dfa  # noqa: E402
from snnjax.rules.online_forward import online_activity_forward_gradient  # noqa: E402
from snnjax.rules.stepped import SteppedLoss, per_step_loss  # noqa: E402

__all__ += ["SteppedLoss", "online_activity_forward_gradient", "online_dfa", "per_step_loss"]
from snnjax.rules.sfdfa import SFDFAAux, SpikeCountLoss, sfdfa, spike_count_loss, spike_time_bp  # noqa: E402
from snnjax.rules.sfdfa_presets import SFDFA_PRESETS, SFDFAPreset, sfdfa_preset  # noqa: E402
from snnjax.rules.shared_seed import shared_seed_forward_gradient  # noqa: E402

__all__ += [
    "SFDFAAux",
    "SFDFA_PRESETS",
    "SFDFAPreset",
    "SpikeCountLoss",
    "sfdfa",
    "sfdfa_preset",
    "shared_seed_forward_gradient",
    "spike_count_loss",
    "spike_time_bp",
]
from snnjax.rules.rtrl import rtrl  # noqa: E402

__all__ += ["rtrl"]
from snnjax.rules.tbptt import tbptt  # noqa: E402

__all__ += ["tbptt"]
from snnjax.rules.eprop import eprop  # noqa: E402

__all__ += ["eprop"]
from snnjax.rules.guessed import guessed_forward_gradient  # noqa: E402

__all__ += ["guessed_forward_gradient"]
from snnjax.rules.spatial import ostl, ottt  # noqa: E402

__all__ += ["ostl", "ottt"]
