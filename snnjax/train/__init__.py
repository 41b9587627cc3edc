"""Training runs: :func:`fit` a :class:`Config` (what the ``snnjax train`` command does).

Examples:
  >>> import tempfile
  >>> from snnjax.train import Config, fit
  >>> result = fit(Config(dataset="randman", epochs=1, hidden=(16,), steps=20, batch_size=8, out=tempfile.mkdtemp(),
  ...                     data_options={"num_classes": 2, "samples_per_class": 10}, progress=False, plots=False,
  ...                     checkpoints=False), log=lambda line: None)
  >>> len(result.history), 0.0 <= result.test_accuracy <= 1.0
  (1, True)
"""

from snnjax.train.config import DEFAULTS, MODELS, RULES, Config, resolve
from snnjax.train.loop import Result, TrainingDiverged, fit, make_eval_step, make_train_step
from snnjax.train.models import MLP, ConvSNN, build_model, build_rule, classifier_loss, local_loss, stepped_loss

__all__ = [
    "Config",
    "ConvSNN",
    "DEFAULTS",
    "MLP",
    "MODELS",
    "RULES",
    "Result",
    "TrainingDiverged",
    "build_model",
    "build_rule",
    "classifier_loss",
    "local_loss",
    "stepped_loss",
    "fit",
    "make_eval_step",
    "make_train_step",
    "resolve",
]
