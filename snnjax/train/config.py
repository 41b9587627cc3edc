"""What a training run is: a :class:`Config`, its per-dataset defaults, and its checks."""

from __future__ import annotations

import dataclasses
from typing import Any

from snnjax.datasets.arrays import array_file, npz_info
from snnjax.datasets.batching import ENCODINGS
from snnjax.datasets.load import DATASET_KINDS, DATASETS

READOUTS = ("max", "mean", "last", "per-step")
NEURONS = ("lif", "alif")

__all__ = [
    "rules_table",
    "Config",
    "data_kind",
    "ARRAY_DEFAULTS",
    "DEFAULTS",
    "GUESSED_RULES",
    "LOCAL_RULES",
    "MIXERS",
    "MODELS",
    "NEURONS",
    "READOUTS",
    "RULES",
    "RULE_HELP",
    "SPIKE_TIME_RULES",
    "STEPPED_RULES",
    "resolve",
]

MODELS = ("mlp", "snn", "rsnn", "conv", "mixer", "spiking-mixer", "spike-time")
# Every rule of the command, with the line `snnjax train --help` and docs/howto/datasets.md show for it.
RULE_HELP = {
    "bptt": "backpropagation through time: the exact gradient",
    "fg-w": "forward gradient, weight-perturbed (`--directions K`)",
    "fg-a": "forward gradient, activity-perturbed (`--directions K`)",
    "fa": "feedback alignment",
    "dfa": "direct feedback alignment",
    "fdfa": "forward DFA: DFA with the output Jacobian estimated by `jax.jvp`",
    "eprop": "online: e-prop with symmetric feedback",
    "eprop-random": "online: e-prop with random feedback",
    "eprop-learned": "online: e-prop with feedback learned by forward mode, FDFA's estimate",
    "tbptt": "online: truncated BPTT, `--window` steps",
    "rtrl": "online: exact real-time recurrent learning (small networks)",
    "online-dfa": "online: DFA with eligibility traces (feed-forward `snn`)",
    "online-fdfa": "online: FDFA with eligibility traces (feed-forward `snn`)",
    "online-fg-a": "online: FG-A with forward-mode tangents (feed-forward `snn`, `--directions K`)",
    "ostl": "online: OSTL, per-layer eligibility traces and a spatially backpropagated signal",
    "ottt": "online: OTTT, presynaptic traces and a spatially backpropagated signal",
    "lg-bp": "mixers: backpropagation within each block's local losses",
    "lg-fg-w": "mixers: weight-perturbed forward gradient of the local losses",
    "lg-fg-a": "mixers: activity-perturbed forward gradient of the local losses (`--groups G`)",
    "fg-guess-lg": "forward gradient along the mixers' local losses' gradient (biased)",
    "fg-guess-dfa": "forward gradient along DFA's direction (biased)",
    "sfdfa": "online: SFDFA on the exact-time network (`--model spike-time`, its default), feedback learned from "
    "spike grades; `dfa` and `bptt` train that network too",
}
RULES = tuple(RULE_HELP)
# Rules that train the network step by step, on a loss at every step (snnjax.rules.per_step_loss).
STEPPED_RULES = (
    "eprop",
    "eprop-random",
    "eprop-learned",
    "tbptt",
    "rtrl",
    "online-dfa",
    "online-fdfa",
    "online-fg-a",
    "ostl",
    "ottt",
)
# Rules on the blocks' local losses (Ren et al.), for the LocalMixer models; fg-guess-lg guesses with them.
LOCAL_RULES = ("lg-bp", "lg-fg-w", "lg-fg-a")
GUESSED_RULES = ("fg-guess-lg", "fg-guess-dfa")
# Online rules whose traces are exact for feed-forward layers only: the default model for them is snn.
FEED_FORWARD_RULES = ("online-dfa", "online-fdfa", "online-fg-a")
FORWARD_RULES = ("fg-w", "fg-a", "lg-fg-w", "lg-fg-a", "online-fg-a")
MIXERS = ("mixer", "spiking-mixer")
# The rules of the exact-time network (model spike-time, snnjax.train.spike_time): dfa and bptt are its own versions.
SPIKE_TIME_RULES = ("sfdfa", "dfa", "bptt")
# The input coding of the exact-time network for images and static vectors (spike rasters: their first spikes).
SPIKE_TIME_ENCODING = "ttfs"

# The convolutional network's own defaults (its channels, fewer steps), where the run does not set them.
CONV_DEFAULTS: dict[str, Any] = dict(hidden=(16, 32), steps=8)
# LocalMixer's: Ren et al.'s M/1/16 (two blocks of 256 channels), the spiking one over 4 steps; its own input coding.
MIXER_DEFAULTS: dict[str, Any] = dict(hidden=(256, 256), steps=4)
# The exact-time network's: 200 grid steps of 1 ms (Randman's rasters as long), Adam 3e-3 as Bacho & Chu on
# images, 1e-2 on spike rasters (Randman learns three times slower at 3e-3).
SPIKE_TIME_DEFAULTS: dict[str, Any] = dict(steps=200, lr=3e-3)
SPIKE_TIME_RASTER_LR = 1e-2
SPIKE_TIME_FRAMES_HIDDEN = (400,)

# Per data set: the network and input coding that train well in a few minutes on a CPU.
DEFAULTS: dict[str, dict[str, Any]] = {
    "randman": dict(model="rsnn", hidden=(128,), steps=100, encoding="none", epochs=10, lr=2e-3, batch_size=128),
    "shd": dict(model="rsnn", hidden=(256,), steps=100, encoding="none", epochs=20, lr=1e-3, batch_size=128),
    "ssc": dict(model="rsnn", hidden=(256,), steps=100, encoding="none", epochs=20, lr=1e-3, batch_size=128),
    # event-camera sets, binned into T frames: a convolutional SNN (hidden: its channels)
    "nmnist": dict(model="conv", hidden=(16, 32), steps=10, encoding="none", epochs=5, lr=1e-3, batch_size=64),
    "dvs_gesture": dict(model="conv", hidden=(16, 32), steps=20, encoding="none", epochs=20, lr=1e-3, batch_size=32),
    "cifar10_dvs": dict(model="conv", hidden=(16, 32), steps=10, encoding="none", epochs=20, lr=1e-3, batch_size=32),
    "mnist": dict(model="snn", hidden=(400, 400), steps=25, encoding="rate", epochs=5, lr=1e-3, batch_size=128),
    "fashion_mnist": dict(model="snn", hidden=(400, 400), steps=25, encoding="rate", epochs=5, lr=1e-3, batch_size=128),
    "kmnist": dict(model="snn", hidden=(400, 400), steps=25, encoding="rate", epochs=5, lr=1e-3, batch_size=128),
    "emnist": dict(model="snn", hidden=(400, 400), steps=25, encoding="rate", epochs=5, lr=1e-3, batch_size=128),
    "cifar10": dict(model="snn", hidden=(1024, 512), steps=25, encoding="rate", epochs=10, lr=5e-4, batch_size=128),
}


# The event sets' spatial down-sampling by default (a data option, --data-option downsample=D): 128 x 128 -> 32 x 32.
EVENT_DOWNSAMPLE = {"dvs_gesture": 4, "cifar10_dvs": 4}

# A .npz data set's defaults, by the kind of its inputs (the built-in sets' are in DEFAULTS).
ARRAY_DEFAULTS: dict[str, dict[str, Any]] = {
    "image": DEFAULTS["mnist"],
    "static": dict(model="snn", hidden=(128,), steps=25, encoding="current", epochs=10, lr=1e-3, batch_size=64),
    "sequence": dict(model="rsnn", hidden=(128,), encoding="none", epochs=10, lr=2e-3, batch_size=64),
    "spikes": dict(model="rsnn", hidden=(128,), encoding="none", epochs=10, lr=2e-3, batch_size=64),
    "frames": dict(model="conv", hidden=(16, 32), encoding="none", epochs=10, lr=1e-3, batch_size=32),
}


def data_kind(dataset: str, data_dir: str | None = None) -> tuple[str, int | None, str]:
    """``(kind, T, label)`` of a run's data set: the kind of its inputs (:data:`snnjax.datasets.KINDS`),
    a ``.npz`` set's own number of steps (``None`` where the run chooses it) and the name runs are
    labelled with, read without loading the arrays.

    Raises:
      ValueError: for a name that is neither a built-in set nor a ``.npz`` file (naming both), or
        a file that is not a ``.npz`` data set (naming it).
      FileNotFoundError: for a missing ``.npz`` file.
    """
    if dataset in DATASETS:
        return DATASET_KINDS[dataset], None, dataset
    path = array_file(dataset, data_dir)
    if path is None:
        raise ValueError(
            f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}, or a .npz data set "
            "(--dataset path/to/file.npz, or --dataset NAME --data-dir DIR for DIR/NAME.npz)."
        )
    kind, shape = npz_info(path)
    return kind, (shape[1] if kind in ("spikes", "sequence", "frames") else None), path.stem


@dataclasses.dataclass(frozen=True)
class Config:
    """A training run; ``None`` fields take the data set's default (``DEFAULTS``).

    Attributes:
      dataset: one of :data:`snnjax.datasets.DATASETS`, or a ``.npz`` data set
        (:func:`snnjax.datasets.load_npz`): ``path/to/file.npz``, or a name with ``data_dir``
        holding ``NAME.npz``; its defaults follow its kind (:data:`ARRAY_DEFAULTS`).
      model: ``mlp`` (ReLU, images or static vectors without time), ``snn`` (feed-forward LIF),
        ``rsnn`` (recurrent LIF) or ``conv`` (convolutional LIF, images only: ``hidden`` are its
        channels, default ``(16, 32)``, and ``steps`` defaults to 8); spiking models read out
        through leaky integrators over time (``readout``).
        ``mixer`` and ``spiking-mixer`` are :class:`snnjax.nn.LocalMixer` (images only, encoding
        ``none``: the spiking one takes the image as a constant current for ``steps`` steps,
        default 4): one block per ``hidden`` entry, all equal (the channels), default ``(256, 256)``.
        ``spike-time`` is Bacho & Chu's exact-time network (:mod:`snnjax.train.spike_time`): one
        input spike per input neuron (encoding ``ttfs`` for images and static vectors, a
        raster's or frames' first spikes), ``steps`` grid steps over 200 ms (default 200; on
        Randman its rasters are as long, other sets keep their own binning), classified by
        output spike counts; it trains with ``sfdfa``, ``dfa`` or ``bptt`` only.
      rule: ``bptt``, ``fg-w`` (weight-perturbed forward gradient), ``fg-a`` (activity-perturbed),
        ``fa`` (feedback alignment), ``dfa`` (direct feedback alignment), ``fdfa`` (forward DFA),
        or, online on a loss at every step (:data:`STEPPED_RULES`, models ``snn`` and ``rsnn``):
        ``eprop`` (symmetric feedback), ``eprop-random`` (random), ``eprop-learned`` (learned; any
        number of hidden layers), ``tbptt`` (truncated BPTT, ``window`` steps), ``rtrl`` (exact real-time recurrent
        learning: the true gradient, online, at a cost that grows with the parameters times the
        state, for small networks), ``online-dfa``, ``online-fdfa`` and ``online-fg-a`` (DFA, FDFA
        and FG-A with eligibility traces, feed-forward ``snn`` only), ``ostl`` and ``ottt`` (per-layer
        eligibility traces or presynaptic traces with a spatially backpropagated signal,
        :mod:`snnjax.rules.spatial`), or, on the mixers' local losses
        (:data:`LOCAL_RULES`): ``lg-bp``, ``lg-fg-w``, ``lg-fg-a``; or the forward gradient along a
        guessed direction (:func:`snnjax.rules.guessed_forward_gradient`, each layer on its own
        guess): ``fg-guess-lg`` (the mixers' local losses' gradient) or ``fg-guess-dfa`` (DFA's).
        On the mixers, ``fg-a`` and ``lg-fg-a`` train the heads and the classifier on their
        exact gradient (``exact_output``), as Ren et al. do. ``sfdfa`` (:func:`snnjax.rules.sfdfa`)
        trains model ``spike-time`` (its default), on which ``dfa`` and ``bptt`` are the
        exact-time network's own (fixed feedback; backpropagation through spike times).
      epochs: passes over the training split.
      batch_size: examples per step.
      lr: Adam's learning rate.
      hidden: hidden layer sizes.
      steps: time steps T (image and static encodings; SHD's bins; Randman's raster length; a
        ``.npz`` set's sequences have their own T, which this must equal if given).
      encoding: for images and static vectors: ``rate``, ``latency``, ``current`` or ``none``
        (``mlp`` and the mixers), or ``ttfs`` (time to first spike, ``spike-time`` only).
      seed: fixes the initial weights, the data order, encoders and the rule's draws.
      out: the run's folder (metrics, checkpoints, plots); default ``runs/<dataset>-<model>-<rule>``
        (a ``.npz`` file's name without ``.npz``).
      data_dir: where the data files are (IDX or HDF5 folder, tfds ``data_dir``).
      train_size, test_size: use only the first N examples of a split (quick runs).
      data_options: passed to the loader (Randman's ``num_classes``, ``samples_per_class``, ...; the
        event sets' ``binary`` and ``downsample``, DVS Gesture's and CIFAR10-DVS's 4 by default).
      resume: continue the run in ``out`` from its last checkpoint that loads and checks out.
      overwrite: replace a run already in ``out`` (its metrics, checkpoints and plots); without
        it (or ``resume``) a folder holding a run is refused.
      checkpoints: write a checkpoint after every epoch.
      plots: write PNG plots at the end (needs matplotlib).
      progress: show a progress bar.
      devices: train data-parallel on this many devices (:mod:`snnjax.sharding`): the batch is
        split over them, which ``batch_size`` must allow; ``None`` runs on the default device.
      shard_params_above: with ``devices``, split parameters (and their Adam moments) of at
        least this many elements over the devices instead of replicating them.
      window: ``tbptt``'s truncation window in steps.
      directions: ``K``, the forward-gradient rules' directions per step (their estimates averaged).
      groups: the mixers' channel groups ``G`` (a divisor of the channels).
      patches: the mixers' patches per image side (``P = patches^2`` tokens).
      readout: how a spiking model's readout over time ``[T, B, C]`` is classified and trained
        (:func:`snnjax.train.models.read_out`): ``max`` (default), ``mean``, ``last`` (the loss on
        the last step) or ``per-step`` (a loss at every step, logits averaged over time). The
        online rules (:data:`STEPPED_RULES`) learn from a loss summed over steps: ``per-step``
        (their default) or ``last``.
      neuron: the hidden neurons of ``snn`` and ``rsnn``: ``lif`` or ``alif`` (adaptive LIF).

    Examples:
      >>> from snnjax.train import Config, resolve
      >>> c = resolve(Config(dataset="fashion_mnist", rule="fdfa"))
      >>> c.model, c.hidden, c.encoding, c.out
      ('snn', (400, 400), 'rate', 'runs/fashion_mnist-snn-fdfa')
    """

    dataset: str = "randman"
    model: str | None = None
    rule: str = "bptt"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    hidden: tuple[int, ...] | None = None
    steps: int | None = None
    encoding: str | None = None
    seed: int = 0
    out: str | None = None
    data_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None
    data_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    resume: bool = False
    overwrite: bool = False
    checkpoints: bool = True
    plots: bool = True
    progress: bool = True
    devices: int | None = None
    shard_params_above: int | None = None
    window: int = 16
    directions: int = 1
    groups: int = 16
    patches: int = 1
    readout: str | None = None
    neuron: str = "lif"


def _check_readout(c: Config) -> None:
    """``readout`` fits the model and rule (the default, ``None``, is filled in by :func:`resolve`)."""
    if c.readout is None:
        return
    if c.readout not in READOUTS:
        raise ValueError(f"unknown readout (--readout {c.readout}); choose one of {', '.join(READOUTS)}.")
    if c.model not in ("snn", "rsnn", "conv"):
        raise ValueError(
            f"readout (--readout {c.readout}) reads a spiking model's output over time; model {c.model!r} has none."
        )
    if c.rule in STEPPED_RULES and c.readout not in ("per-step", "last"):
        raise ValueError(
            f"readout (--readout {c.readout}): rule {c.rule!r} learns online from a loss summed over steps; use "
            "--readout per-step or last."
        )


def _check_spike_time(c: Config, kind: str, label: str) -> None:
    """The exact-time network's rules, data and input coding (``spike-time``)."""
    if c.model != "spike-time":
        if c.rule == "sfdfa":
            raise ValueError("rule 'sfdfa' trains the exact-time network: use --model spike-time (its default).")
        if c.encoding == SPIKE_TIME_ENCODING:
            raise ValueError(
                f"encoding (--encoding {SPIKE_TIME_ENCODING}) is the exact-time network's: use --model spike-time."
            )
        return
    if c.rule not in SPIKE_TIME_RULES:
        raise ValueError(
            f"model 'spike-time' (the exact-time network) trains with {', '.join(SPIKE_TIME_RULES)}, not {c.rule!r}."
        )
    if kind == "sequence":
        raise ValueError(f"model 'spike-time' takes one spike per input neuron; {label} holds float sequences.")
    if kind in ("image", "static") and c.encoding != SPIKE_TIME_ENCODING:
        raise ValueError(
            f"model 'spike-time' codes {label} by time to first spike: use --encoding {SPIKE_TIME_ENCODING}."
        )


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def resolve(config: Config) -> Config:
    """Fill ``None`` fields from the data set's defaults and check every value.

    Raises:
      ValueError: one line naming the bad value and what to use instead.

    Examples:
      >>> from snnjax.train import Config, resolve
      >>> resolve(Config()).epochs
      10
      >>> resolve(Config(hidden=(0,)))
      Traceback (most recent call last):
      ...
      ValueError: each hidden size must be a positive integer, got 0.
    """
    kind, own_steps, label = data_kind(config.dataset, config.data_dir)
    defaults = DEFAULTS.get(config.dataset) or dict(ARRAY_DEFAULTS[kind], steps=own_steps or 25)
    if own_steps is not None and config.steps not in (None, own_steps):
        raise ValueError(
            f"steps (--steps {config.steps}): {label}'s sequences have their own T = {own_steps} steps; drop --steps."
        )
    filled = {
        f.name: defaults[f.name] if getattr(config, f.name) is None and f.name in defaults else getattr(config, f.name)
        for f in dataclasses.fields(config)
    }
    if config.model is None and filled["model"] == "rsnn" and config.rule in FEED_FORWARD_RULES:
        filled["model"] = "snn"  # these online rules take feed-forward layers only
    if filled["model"] == "conv" and kind == "image":
        filled.update({k: v for k, v in CONV_DEFAULTS.items() if getattr(config, k) is None})
    if filled["model"] in MIXERS:
        filled.update({k: v for k, v in MIXER_DEFAULTS.items() if getattr(config, k) is None})
    if config.model is None and config.rule == "sfdfa":
        filled["model"] = "spike-time"
    if filled["model"] == "spike-time":
        filled.update({k: v for k, v in SPIKE_TIME_DEFAULTS.items() if getattr(config, k) is None})
        if config.lr is None and kind in ("spikes", "frames"):
            filled["lr"] = SPIKE_TIME_RASTER_LR
        if config.hidden is None and kind == "frames":  # the set's default hidden sizes are a conv's channels
            filled["hidden"] = SPIKE_TIME_FRAMES_HIDDEN
        if config.encoding is None:
            filled["encoding"] = SPIKE_TIME_ENCODING if kind in ("image", "static") else "none"
    filled["hidden"] = tuple(filled["hidden"])
    if config.dataset in EVENT_DOWNSAMPLE:  # recorded with the run
        filled["data_options"] = {"downsample": EVENT_DOWNSAMPLE[config.dataset], **config.data_options}
    if filled["model"] in ("mlp", *MIXERS) and config.encoding is None:
        filled["encoding"] = "none"
    if filled["readout"] is None and filled["model"] in ("snn", "rsnn", "conv"):
        filled["readout"] = "per-step" if filled["rule"] in STEPPED_RULES else "max"
    if filled["out"] is None:
        filled["out"] = f"runs/{label}-{filled['model']}-{config.rule}"
    c = Config(**filled)
    if not (isinstance(c.seed, int) and not isinstance(c.seed, bool) and 0 <= c.seed < 2**32):
        raise ValueError(f"seed (--seed) must be an integer in [0, {2**32 - 1}], got {c.seed!r}.")
    if not isinstance(c.out, str) or not c.out.strip():
        raise ValueError(f"out (--out) must name a folder, got {c.out!r}.")
    if c.resume and not c.checkpoints:
        raise ValueError(
            "resume with checkpoints off (--resume --no-checkpoints): a resumed run keeps writing checkpoints; drop "
            "--no-checkpoints."
        )
    if c.resume and c.overwrite:
        raise ValueError("resume and overwrite (--resume --overwrite) contradict each other; pass one.")
    if c.model not in MODELS:
        raise ValueError(f"unknown model {c.model!r}; choose one of {', '.join(MODELS)}.")
    if c.rule not in RULES:
        raise ValueError(f"unknown rule {c.rule!r}; choose one of {', '.join(RULES)}.")
    if c.encoding not in (*ENCODINGS, SPIKE_TIME_ENCODING):
        raise ValueError(
            f"unknown encoding {c.encoding!r}; choose one of {', '.join(ENCODINGS)}, {SPIKE_TIME_ENCODING}."
        )
    is_image = kind in ("image", "static")  # no time axis yet: encoded over T steps
    if not is_image and config.encoding not in (None, "none"):
        raise ValueError(
            f"encoding (--encoding {config.encoding}) turns images into spikes; {label} is over time already: drop it."
        )
    if c.model == "mlp" and (not is_image or c.encoding != "none"):
        raise ValueError(
            "model 'mlp' takes inputs without a time axis: use images or static vectors with --encoding none, or a "
            "spiking model."
        )
    if c.rule in STEPPED_RULES and c.model not in ("snn", "rsnn"):
        raise ValueError(
            f"rule {c.rule!r} trains a network step by step (a loss at every step): use --model snn or rsnn."
        )
    _check_readout(c)
    _check_spike_time(c, kind, label)
    if c.neuron not in NEURONS:
        raise ValueError(f"unknown neuron (--neuron {c.neuron}); choose one of {', '.join(NEURONS)}.")
    if c.neuron != "lif" and c.model not in ("snn", "rsnn"):
        raise ValueError(f"neuron (--neuron {c.neuron}) is for the models snn and rsnn, not {c.model!r}.")
    _positive("window", c.window)
    for name in ("directions", "groups", "patches"):
        _positive(name, getattr(c, name))
    if c.rule in (*LOCAL_RULES, "fg-guess-lg") and c.model not in MIXERS:
        raise ValueError(
            f"rule {c.rule!r} uses the blocks' local losses: use --model mixer or spiking-mixer (LocalMixer)."
        )
    if c.directions != 1 and c.rule not in FORWARD_RULES:
        raise ValueError(f"directions (--directions {c.directions}) is for {', '.join(FORWARD_RULES)}, not {c.rule!r}.")
    if c.model in MIXERS:
        if kind != "image" or c.encoding != "none":
            raise ValueError(f"model {c.model!r} takes images with --encoding none (it codes them itself).")
        if len(set(c.hidden)) != 1:
            raise ValueError(
                f"model {c.model!r}: --hidden gives one channel count per block, all equal; got {c.hidden}."
            )
        if c.hidden[0] % c.groups or c.hidden[0] // c.groups < 3:
            raise ValueError(
                f"groups (--groups {c.groups}) must divide the mixer's channels, {c.hidden[0]}, into groups of 3 "
                "or more (a group's normalisation of 1 or 2 channels is constant)."
            )
    elif (c.groups, c.patches) != (16, 1):
        raise ValueError(
            "groups and patches (--groups, --patches) are the mixer's: use --model mixer or spiking-mixer."
        )
    if c.model == "conv" and kind not in ("image", "frames"):
        raise ValueError(f"model 'conv' takes images or event frames; {label} is neither (use snn or rsnn).")
    if c.model not in ("mlp", *MIXERS) and is_image and c.encoding == "none":
        raise ValueError(f"model {c.model!r} runs over time: pick --encoding rate, latency or current for {label}.")
    for name in ("epochs", "batch_size", "steps"):
        _positive(name, getattr(c, name))
    for name in ("train_size", "test_size", "devices", "shard_params_above"):
        if getattr(c, name) is not None:
            _positive(name, getattr(c, name))
    if c.devices is not None and c.batch_size % c.devices:
        raise ValueError(
            f"batch_size {c.batch_size} must be a multiple of devices {c.devices}: each device takes an equal share."
        )
    if c.shard_params_above is not None and c.devices is None:
        raise ValueError("shard_params_above splits parameters over devices: pass devices too (--devices N).")
    if not c.hidden:
        raise ValueError("hidden must list at least one layer size, e.g. --hidden 128.")
    for size in c.hidden:
        _positive("each hidden size", size)
    if not (isinstance(c.lr, (int, float)) and 0 < c.lr < 10):
        raise ValueError(f"lr must be a number in (0, 10), got {c.lr!r}.")
    return c


def rules_table() -> str:
    """The command's rules as a Markdown table (:data:`RULE_HELP`), as ``docs/howto/datasets.md`` shows it.

    Examples:
      >>> from snnjax.train.config import rules_table
      >>> rules_table().splitlines()[2]
      '| `bptt` | backpropagation through time: the exact gradient |'
    """
    rows = [f"| `{name}` | {text} |" for name, text in RULE_HELP.items()]
    return "\n".join(["| `--rule` | what it trains with |", "|---|---|", *rows])
