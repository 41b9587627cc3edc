r"""The settings Bacho & Chu's released SFDFA code uses for each data set, as named presets.

Read from the scripts ``experiments/<DATASET>/train_fc.py`` (SFDFA) and ``train_fc_dfa.py``
(DFA) of ``Florian-BACHO/SFDFA`` (commit ``a5be0bc``). Every set uses weights :math:`U(-1, 1)`,
Adam without a schedule, batch 50, count targets 15 / 3, a feedback rate of
:math:`10^{-4}` (plain gradient descent, :math:`B` from zero) and time-to-first-spike inputs
over the first 100 ms (images). What a preset does not apply by itself:

- SHD: the preset describes the released settings but cannot be trained as it is here:
  :func:`snnjax.spike_time.simulate` takes one spike per input neuron (SHD has up to 91 per
  channel) and one ``max_spikes`` for every layer (the released output buffer is 15); the
  output layer's weights start at :math:`U(-0.9, 1.1)`, and the inputs are the released code's
  own spike-time files, whose conversion is not released;
- EMNIST (balanced, 47 classes): the feedback rate becomes :math:`2.7 \times 10^{-3}` from
  epoch 10 on;
- every set: the released code trains with ``hidden_error="rate"`` (:func:`snnjax.rules.sfdfa`).
"""

from __future__ import annotations

from typing import NamedTuple

from snnjax.neurons.spike_time import SpikeTimeNet

__all__ = ["SFDFA_PRESETS", "SFDFAPreset", "sfdfa_preset"]


class SFDFAPreset(NamedTuple):
    """One data set's settings in the released SFDFA code.

    Attributes:
      net: the network (sizes, ``tau_s``, thresholds ``theta``, window); ``dt`` is snnjax's grid
        step (the released code is event-driven).
      regularizer: :math:`\\lambda` of the firing-rate regulariser for SFDFA.
      rate_target: its target mean spike count per hidden neuron and example, for SFDFA.
      dfa_regularizer: :math:`\\lambda` for DFA.
      dfa_rate_target: the target for DFA.
      learning_rate: Adam's.
      batch: the training batch size.
      epochs: the training epochs.
      feedback_rate: :math:`\\eta_B`.
    """

    net: SpikeTimeNet
    regularizer: float
    rate_target: float
    dfa_regularizer: float
    dfa_rate_target: float
    learning_rate: float = 3e-3
    batch: int = 50
    epochs: int = 30
    feedback_rate: float = 1e-4

    def rule_options(self, feedback: str = "sfdfa") -> dict[str, float]:
        """``regularizer`` and ``rate_target`` for :func:`snnjax.rules.sfdfa` with this ``feedback``."""
        if feedback not in ("sfdfa", "dfa"):
            raise ValueError(f"SFDFAPreset.rule_options: feedback must be 'sfdfa' or 'dfa', got {feedback!r}.")
        if feedback == "dfa":
            return {"regularizer": self.dfa_regularizer, "rate_target": self.dfa_rate_target}
        return {"regularizer": self.regularizer, "rate_target": self.rate_target, "feedback_rate": self.feedback_rate}


SFDFA_PRESETS: dict[str, SFDFAPreset] = {
    "mnist": SFDFAPreset(SpikeTimeNet((784, 800, 10), theta=(0.2, 0.7)), 0.1, 0.2, 1.0, 0.4),
    "fashion_mnist": SFDFAPreset(SpikeTimeNet((784, 400, 400, 10)), 0.3, 0.4, 1.0, 0.4, epochs=50),
    "emnist": SFDFAPreset(SpikeTimeNet((784, 800, 47), theta=(0.2, 0.7)), 0.3, 0.2, 4.0, 0.2),
    "shd": SFDFAPreset(
        SpikeTimeNet((700, 128, 20), tau_s=0.1, theta=(1.0, 1.2), window=1.0),
        0.03,
        2.0,
        0.1,
        2.0,
        learning_rate=1e-3,
        epochs=150,
    ),
}


def sfdfa_preset(name: str) -> SFDFAPreset:
    """The released code's settings for data set ``name`` (``mnist``, ``fashion_mnist``, ``emnist``, ``shd``).

    Examples:
      >>> from snnjax.rules import sfdfa_preset
      >>> preset = sfdfa_preset("mnist")
      >>> preset.net.sizes, preset.rule_options("dfa")
      ((784, 800, 10), {'regularizer': 1.0, 'rate_target': 0.4})
    """
    if name not in SFDFA_PRESETS:
        raise ValueError(f"sfdfa_preset: unknown data set {name!r}; the presets are {', '.join(SFDFA_PRESETS)}.")
    return SFDFA_PRESETS[name]
