"""The training loop: a jit-compiled, rule-agnostic step, evaluation, metrics, checkpoints, plots.

:func:`fit` runs a :class:`~snnjax.train.Config` end to end and writes into its ``out`` folder:
``config.json``, ``metrics.jsonl`` (one JSON object per epoch), ``checkpoints/<epoch>/`` (orbax)
and ``curves.png``, ``raster.png``, ``rates.png``. Every random draw is derived from the seed,
the epoch and the step, so a run resumed from a checkpoint retraces the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from snnjax import sharding
from snnjax.datasets import batch_indices, encoding, load, prepare
from snnjax.datasets.load import DATASET_KINDS
from snnjax.rules.protocol import Rule
from snnjax.train.config import DEFAULTS, LOCAL_RULES, MIXERS, STEPPED_RULES, Config, resolve
from snnjax.train.models import (
    build_model,
    build_rule,
    classifier_loss,
    count_correct,
    local_loss,
    logits_and_layers,
    per_step_cross_entropy,
    read_out,
    stepped_loss,
)
from snnjax.train.spike_time import SpikeTimeClassifier, spike_count_losses, spike_time_inputs, spike_time_rule

__all__ = ["Result", "TrainingDiverged", "fit", "make_eval_step", "make_train_step"]

# Fields that may change when a run is resumed; any other difference is an error.
_RESUMABLE = (
    "epochs",
    "resume",
    "overwrite",
    "checkpoints",
    "plots",
    "progress",
    "out",
    "devices",
    "shard_params_above",
)


# Reached only with data that passed the loaders' checks (labels in range, inputs finite) and
# parameters that are finite (a restored checkpoint is checked), so the step size is what is left.
_LR_HINT = "the data passed its checks (labels in range, inputs finite), so the step is too large: lower --lr"


def _drift(history: list[dict], lr: float) -> str | None:
    """A warning when the last two or more epochs' training loss lies above the first epoch's."""
    first = history[0]["train_loss"]
    above = 0
    for h in reversed(history[1:]):
        if not h["train_loss"] > first:
            break
        above += 1
    if above < 2:
        return None
    return (
        f"the training loss ({history[-1]['train_loss']:.4f}) has been above its first-epoch value ({first:.4f}) for "
        f"{above} epochs: the run drifts instead of learning; lower --lr (now {lr})."
    )


class TrainingDiverged(RuntimeError):
    """The loss stopped being finite; the last good checkpoint is left as it was."""


class Result(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      history: one dict of metrics per epoch (as in ``metrics.jsonl``).
      params: the trained parameters (an ``nnx.State`` of ``nnx.Param``).
      test_accuracy: the last epoch's test accuracy.
      num_classes: the data set's number of classes.
      out: the run's folder.
      files: the plots written.
    """

    history: list[dict]
    params: Any
    test_accuracy: float
    num_classes: int
    out: Path
    files: list[Path]


def make_train_step(
    rule: Rule,
    optimizer: optax.GradientTransformation,
    prepare_fn: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    mesh: Mesh | None = None,
    shard_params_above: int | None = None,
    readout: str = "max",
):
    """``(params, opt_state, rule_state, inputs, labels, key) -> (params, opt_state, rule_state, loss, correct)``.

    A rule whose ``aux`` is a readout over time ``[T, B, C]`` (a stepped loss's) is classified
    with :func:`snnjax.train.models.read_out` and ``readout``.

    jit-compiled with the parameters and both states donated; ``prepare_fn(inputs, key)``
    turns a raw batch into the network's input inside the compiled step.

    With a ``mesh`` (:func:`snnjax.sharding.mesh`) the step is data-parallel: the raw batch
    ``[B, ...]`` is split along its first axis over the mesh, the states are replicated, or
    split for leaves of at least ``shard_params_above`` elements (:func:`snnjax.sharding.state_shardings`),
    and XLA inserts the collectives. Place the states and batches with :func:`snnjax.sharding.put_state`
    and :func:`snnjax.sharding.put_batch` (the same ``shard_params_above``) to avoid a copy per call.
    The rule is unchanged and the result equals the single-device one up to float32 rounding.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> from snnjax.train import build_model, build_rule, classifier_loss, make_train_step, make_eval_step
      >>> graphdef, params, rest = nnx.split(build_model("mlp", 4, 3, (8,), seed=0), nnx.Param, ...)
      >>> to_input = lambda x, key: x / 255.0  # the raw batch -> the network's input
      >>> rule, optimizer = build_rule("bptt", classifier_loss(graphdef, rest, False)), optax.adam(1e-2)
      >>> step = make_train_step(rule, optimizer, to_input)
      >>> x, y = jnp.full((2, 4), 128.0), jnp.array([0, 2])
      >>> states = (params, optimizer.init(params), rule.init(params))
      >>> params, opt_state, rule_state, loss, correct = step(*states, x, y, jax.random.key(0))
      >>> loss.shape, int(correct) <= 2
      ((), True)
    """

    def step(params, opt_state, rule_state, inputs, labels, key):
        if mesh is not None:
            params, opt_state, rule_state = _constrain(mesh, shard_params_above, params, opt_state, rule_state)
            inputs, labels = sharding.constrain_batch((inputs, labels), mesh)
        encode_key, rule_key = jax.random.split(key)
        (loss, logits), grads, rule_state = rule.apply(
            rule_state, params, prepare_fn(inputs, encode_key), labels, key=rule_key
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if logits.ndim == 3:  # a stepped loss's readout [T, B, C]
            logits = read_out(logits, readout)
        if mesh is not None:
            params, opt_state, rule_state = _constrain(mesh, shard_params_above, params, opt_state, rule_state)
        return params, opt_state, rule_state, loss, count_correct(logits, labels)

    return jax.jit(step, donate_argnums=(0, 1, 2))


def _constrain(mesh: Mesh, shard_params_above: int | None, *states):
    return tuple(sharding.constrain_state(state, mesh, min_size=shard_params_above) for state in states)


def make_eval_step(
    run: Callable,
    prepare_fn: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    mesh: Mesh | None = None,
    readout: str = "per-step",
    loss: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
):
    """``(params, inputs, labels, key) -> (summed loss, correct)``, jit-compiled.

    The loss is the cross-entropy of the logits, or ``loss(logits, labels) -> [B]`` where given
    (the exact-time network's spike-count loss, :func:`snnjax.train.spike_time.spike_count_losses`).

    With a ``mesh``, a batch that the device count divides is split over it. A ``run`` that
    returns a readout over time ``[T, B, C]`` (``logits_and_layers(..., readout="per-step")``)
    is scored as it trains: the cross-entropy at every step, averaged over time, and classified
    with :func:`snnjax.train.models.read_out` and ``readout``.

    Examples:
      >>> import jax, jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> from snnjax.train import build_model, make_eval_step
      >>> from snnjax.train.models import logits_and_layers
      >>> graphdef, params, rest = nnx.split(build_model("mlp", 4, 3, (8,), seed=0), nnx.Param, ...)
      >>> to_input = lambda x, key: x / 255.0  # the raw batch -> the network's input
      >>> evaluate = make_eval_step(logits_and_layers(graphdef, rest, False), to_input)
      >>> loss_sum, correct = evaluate(params, jnp.full((5, 4), 128.0), jnp.zeros(5, jnp.int32), jax.random.key(0))
      >>> loss_sum.shape, 0 <= int(correct) <= 5
      ((), True)
    """

    def evaluate(params, inputs, labels, key):
        if mesh is not None:
            inputs, labels = sharding.constrain_batch((inputs, labels), mesh)
        logits, _ = run(params, prepare_fn(inputs, key))
        if loss is not None:
            return jnp.sum(loss(logits, labels)), count_correct(logits, labels)
        if logits.ndim == 3:  # a loss at every step
            return jnp.sum(per_step_cross_entropy(logits, labels)), count_correct(read_out(logits, readout), labels)
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels)), count_correct(logits, labels)

    return jax.jit(evaluate)


def _read_config(saved: Path) -> dict:
    try:
        before = json.loads(saved.read_text())
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else error.args[0]
        raise ValueError(
            f"--resume: {saved} cannot be read ({reason}); restore it, or start a new run (--overwrite, or another "
            "--out)."
        ) from None
    if not isinstance(before, dict):
        raise ValueError(f"--resume: {saved} holds no run configuration (a JSON object); restore it.")
    return before


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


# What a run leaves in its folder; a folder holding any of these (or checkpoints) holds a run.
_RUN_FILES = ("metrics.jsonl", "curves.png", "raster.png", "rates.png")


def _prepare_out(c: Config, lead: bool, log: Callable[[str], None]) -> Path:
    out = Path(c.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{jax.process_index()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"cannot write to the output folder {out} ({error.strerror}); pass --out with a writable folder."
        ) from None
    saved = out / "config.json"
    folder = out / "checkpoints"
    held = [name for name in _RUN_FILES if (out / name).is_file() and (out / name).stat().st_size]
    held += ["checkpoints/"] if folder.is_dir() and any(folder.iterdir()) else []
    if c.resume:
        if not saved.is_file():
            what = f"it holds {', '.join(held)} but no config.json" if held else "it holds no run (no config.json)"
            raise ValueError(
                f"--resume: nothing to continue in {out}: {what}. Start a new run without --resume (with --overwrite "
                "if the folder holds files)."
            )
        before = _read_config(saved)
        now = json.loads(json.dumps(dataclasses.asdict(c)))
        # a field the saved run predates (a newer option) takes its value now
        changed = sorted(k for k in now if k not in _RESUMABLE and before.get(k, now[k]) != now[k])
        if changed:
            raise ValueError(
                f"--resume: {', '.join(changed)} differ from the run in {out}; keep them or start a new run with "
                "another --out."
            )
    elif held and not c.overwrite:
        raise ValueError(
            f"{out} already holds a run ({', '.join(held)}); pass --resume to continue it, --overwrite to replace it, "
            "or --out for a new run."
        )
    elif held and lead:
        for name in held:
            shutil.rmtree(folder) if name == "checkpoints/" else (out / name).unlink()
        log(f"note: --overwrite: removed the run that was in {out} ({', '.join(held)}).")
    return out


def _resume(checkpoints, state: dict, out: Path, epochs: int, log: Callable[[str], None]) -> tuple[int, dict, list]:
    """The epoch to continue after, the state and the history of the run in ``out``."""
    found = checkpoints.restore_latest(state)  # raises when checkpoints exist but none loads
    if found is None:
        metrics = out / "metrics.jsonl"
        finished = len(metrics.read_text().splitlines()) if metrics.is_file() else 0
        if finished:
            raise ValueError(
                f"--resume: the run in {out} finished {finished} epochs but left no checkpoint to continue from "
                "(was it run with --no-checkpoints?); start a new run with --overwrite, or another --out."
            )
        log(f"note: --resume: {out} has no checkpoint yet (the run stopped in its first epoch); starting at epoch 1.")
        return 0, state, []
    for problem in found.problems:
        log(f"note: {problem}.")
    if found.epoch > epochs:
        raise ValueError(
            f"--resume: the run in {out} has trained {found.epoch} epochs already; --epochs {epochs} asks for fewer. "
            f"Pass --epochs N with N > {found.epoch} to train on."
        )
    if found.epoch == epochs:
        log(f"note: --resume: the run in {out} has finished its {epochs} epochs; nothing to train (raise --epochs).")
    else:
        log(f"resuming {out} after epoch {found.epoch}")
    return found.epoch, found.state, found.record["history"]


def _load(c: Config, split: str):
    options = dict(c.data_options)
    seed = options.pop("seed", 0)  # Randman's task stays the same across run seeds
    if DATASET_KINDS.get(c.dataset) in ("spikes", "frames"):
        # the exact-time network's steps are its grid's; binned sets keep their own T (Randman's rasters follow it)
        own = c.model == "spike-time" and c.dataset != "randman"
        options.setdefault("steps", DEFAULTS[c.dataset]["steps"] if own else c.steps)
    data = load(c.dataset, split, directory=c.data_dir, seed=seed, **options)
    if data.kind == "static" and c.encoding in ("rate", "latency", "ttfs") and data.inputs.size:
        low, high = float(data.inputs.min()), float(data.inputs.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"encoding (--encoding {c.encoding}) reads {data.name}'s values as probabilities in [0, 1]; its "
                f"{split} split spans [{low:g}, {high:g}]: scale it, or use --encoding current."
            )
    size = c.train_size if split == "train" else c.test_size
    if size is not None:
        data = data._replace(inputs=data.inputs[:size], labels=data.labels[:size])
    return data


class _Placement(NamedTuple):
    """Where a run's arrays go: ``state`` and ``batch`` place them, ``label`` says so in the log."""

    state: Callable[[Any], Any]
    batch: Callable[[np.ndarray], Any]
    label: str


def _placement(mesh: Mesh | None, shard_params_above: int | None, log: Callable[[str], None]) -> _Placement:
    if mesh is None:
        return _Placement(lambda tree: tree, lambda array: array, "")
    count = mesh.devices.size
    platform = mesh.devices.flat[0].platform
    if platform == "cpu" and count > 1:
        log(
            f"note: {count} CPU devices share this machine's cores; this checks a multi-device set-up, it does not "
            "train faster."
        )
    split = f", parameters of >= {shard_params_above} elements split" if shard_params_above else ""
    return _Placement(
        lambda tree: sharding.put_state(tree, mesh, min_size=shard_params_above),
        lambda array: sharding.put_batch(array, mesh),
        f" on {count} {platform} devices (batch split{split})",
    )


def _evaluate(evaluate, params, data, batch_size: int, key: jax.Array, put=lambda array: array) -> tuple[float, float]:
    loss, correct = 0.0, 0
    for i, idx in enumerate(batch_indices(len(data.labels), batch_size, shuffle=False, drop_remainder=False)):
        batch_loss, batch_correct = evaluate(
            params, put(data.inputs[idx]), put(data.labels[idx]), jax.random.fold_in(key, i)
        )
        loss, correct = loss + float(batch_loss), correct + int(batch_correct)
    return loss / len(data.labels), correct / len(data.labels)


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.3f}  {task.fields[speed]:.0f} ex/s"),
        disable=not enabled,
        transient=True,
    )


def fit(
    config: Config, *, on_step: Callable[[int, dict], None] | None = None, log: Callable[[str], None] = print
) -> Result:
    """Train and evaluate as ``config`` says, writing metrics, checkpoints and plots.

    Args:
      config: the run; ``None`` fields take the data set's defaults.
      on_step: called as ``on_step(step, state)`` after every step, with the global step number
        and the train state ``{"params", "opt_state", "rule_state"}`` (to stop early, or to
        measure the rule as it trains).
      log: where the per-epoch lines go.

    Returns:
      A :class:`Result`.

    Raises:
      ValueError: bad settings, one line each. FileNotFoundError: missing data.
      TrainingDiverged: the loss became NaN or infinite; no checkpoint is written after it.

    Examples:
      >>> import tempfile
      >>> from snnjax.train import Config, fit
      >>> config = Config(dataset="randman", epochs=2, hidden=(16,), steps=20, batch_size=8, out=tempfile.mkdtemp(),
      ...                 data_options={"num_classes": 2, "samples_per_class": 10}, progress=False, plots=False)
      >>> result = fit(config, log=lambda line: None)
      >>> saved = sorted(p.name for p in (result.out / "checkpoints").iterdir())
      >>> tuple(h["epoch"] for h in result.history), tuple(saved)
      ((1, 2), ('1', '2'))
    """
    c = resolve(config)
    mesh = None if c.devices is None else sharding.mesh(c.devices)  # fails early if there are too few
    lead = jax.process_index() == 0  # on several hosts, process 0 logs and writes the files; all train
    if not lead:
        log = lambda line: None  # noqa: E731
    out = _prepare_out(c, lead, log)
    train, test = _load(c, "train"), _load(c, "test")
    if c.batch_size > len(train.labels):
        raise ValueError(
            f"batch_size {c.batch_size} is larger than the {len(train.labels)} training examples; lower --batch-size."
        )
    spiking = c.model in ("snn", "rsnn", "conv")  # read out over time: logits by --readout
    if train.kind == "frames":  # [N, T, H, W, C]: each step an image of C channels
        image = tuple(train.inputs.shape[2:5])
        inputs = int(np.prod(image))
    else:
        inputs = int(np.prod(train.inputs.shape[1:])) if train.kind == "image" else train.inputs.shape[-1]
        image = (*train.inputs.shape[1:3], train.inputs.shape[3] if train.inputs.ndim > 3 else 1)
    if c.model == "spike-time":
        model = SpikeTimeClassifier((inputs, *c.hidden, train.num_classes), seed=c.seed, steps=c.steps)
        prepare_fn = lambda x, key: spike_time_inputs(x, train.kind)  # noqa: E731
    else:
        model = build_model(
            c.model, inputs, train.num_classes, c.hidden, c.seed, image=image, run_bptt=c.rule == "bptt",
            groups=c.groups, patches=c.patches, steps=c.steps, neuron=c.neuron,
        )  # fmt: skip
        encode = encoding(c.encoding, c.steps)
        flatten = c.model not in ("conv", *MIXERS)
        prepare_fn = lambda x, key: prepare(x, train.kind, encode, key, flatten=flatten)  # noqa: E731
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    root = jax.random.key(c.seed)
    example_args = (
        jax.eval_shape(prepare_fn, train.inputs[: c.batch_size], root),
        jax.ShapeDtypeStruct((c.batch_size,), jnp.int32),
    )
    feedback_key = jax.random.fold_in(root, 2**31 - 1)  # FA's and DFA's fixed matrices
    if c.rule in STEPPED_RULES:
        loss_fn = stepped_loss(model, c.readout)
    elif c.rule in LOCAL_RULES:
        loss_fn = local_loss(graphdef, rest)
    else:
        loss_fn = classifier_loss(graphdef, rest, spiking, c.readout or "max")
    guess = local_loss(graphdef, rest) if c.rule == "fg-guess-lg" else None
    if c.model == "spike-time":
        rule = spike_time_rule(c.rule, model)
    else:
        rule = build_rule(c.rule, loss_fn, c.window, c.directions, exact_output=c.model in MIXERS, guess_loss_fn=guess)
    optimizer = optax.adam(c.lr)
    rule_state = rule.init(params, *example_args, key=feedback_key)
    state = {"params": params, "opt_state": optimizer.init(params), "rule_state": rule_state}
    place = _placement(mesh, c.shard_params_above, log)
    step = make_train_step(
        rule, optimizer, prepare_fn, mesh=mesh, shard_params_above=c.shard_params_above, readout=c.readout or "max"
    )
    run = logits_and_layers(graphdef, rest, spiking, c.readout or "max")
    scores = spike_count_losses if c.model == "spike-time" else None  # what the rule trains, not a cross-entropy
    evaluate = make_eval_step(run, prepare_fn, mesh=mesh, readout=c.readout or "max", loss=scores)

    history: list[dict] = []
    start_epoch = 0
    checkpoints = None
    if c.checkpoints or c.resume:
        from snnjax.train.checkpoint import Checkpoints

        checkpoints = Checkpoints(out / "checkpoints")
    if c.resume and checkpoints is not None:
        start_epoch, state, history = _resume(checkpoints, state, out, c.epochs, log)
    state = place.state(state)
    if lead:  # only now, with the run to continue found (or a new one begun), is the folder written
        _write_atomically(out / "config.json", json.dumps(dataclasses.asdict(c), indent=1))
        _write_atomically(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))

    compile_start = time.perf_counter()
    example = place.batch(train.inputs[: c.batch_size]), place.batch(train.labels[: c.batch_size]), root
    step = step.lower(state["params"], state["opt_state"], state["rule_state"], *example).compile()
    sizes = "-".join(map(str, (inputs, *c.hidden, train.num_classes)))
    log(
        f"{c.dataset}: {len(train.labels)} train / {len(test.labels)} test examples, model {c.model} {sizes}, "
        f"rule {c.rule}{place.label}; step compiled in {time.perf_counter() - compile_start:.1f} s"
    )
    devices = c.devices or 1
    eval_batch = -(-max(c.batch_size, 256) // devices) * devices  # a multiple of the device count
    with _progress(c.progress and lead) as progress:
        for epoch in range(start_epoch + 1, c.epochs + 1):
            state, (train_loss, train_acc, seconds, seen) = _train_epoch(
                step, state, train, c, epoch, root, progress, on_step, place.batch
            )
            test_loss, test_acc = _evaluate(
                evaluate, state["params"], test, eval_batch, jax.random.fold_in(root, 0), place.batch
            )  # epochs count from 1
            history.append(
                dict(
                    epoch=epoch,
                    train_loss=train_loss,
                    train_accuracy=train_acc,
                    test_loss=test_loss,
                    test_accuracy=test_acc,
                    seconds=seconds,
                    examples_per_second=seen / seconds,
                )
            )
            log(
                f"epoch {epoch:3d}/{c.epochs}  loss {train_loss:.4f}  train acc {train_acc:.3f}  "
                f"test acc {test_acc:.3f}  ({seconds:.1f} s, {seen / seconds:.0f} ex/s)"
            )
            drift = _drift(history, c.lr)
            if drift:
                history[-1]["warning"] = drift
                log(f"warning: {drift}")
            if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state["params"])):
                raise TrainingDiverged(
                    f"the parameters became NaN or infinite in epoch {epoch}; {_LR_HINT} (now {c.lr}); no checkpoint "
                    "was written for it."
                )
            if checkpoints is not None and c.checkpoints:
                checkpoints.save(epoch, state, {"history": history})
            if lead:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(history[-1]) + "\n")
    if checkpoints is not None:
        checkpoints.close()
    files = (
        _plots(c, out, history, run, state["params"], test, prepare_fn, spiking, lead) if c.plots and history else []
    )
    return Result(
        history,
        state["params"],
        history[-1]["test_accuracy"] if history else float("nan"),
        train.num_classes,
        out,
        files,
    )


def _train_epoch(
    step, state: dict, train, c: Config, epoch: int, root: jax.Array, progress, on_step, put
) -> tuple[dict, tuple[float, float, float, int]]:
    """One pass over the training set: the new state and (mean loss, accuracy, seconds, examples)."""
    steps_per_epoch = len(train.labels) // c.batch_size
    sync_every = max(1, steps_per_epoch // 20)  # pull the running sums to the host this often
    task = progress.add_task("train", total=steps_per_epoch, epoch=f"{epoch}/{c.epochs}", loss=0.0, acc=0.0, speed=0.0)
    epoch_key = jax.random.fold_in(root, epoch)
    loss_sum, correct_sum, seen, start = 0.0, 0, 0, time.perf_counter()
    pending = []  # the steps' (loss, correct), read on the host only every sync_every steps
    for i, idx in enumerate(batch_indices(len(train.labels), c.batch_size, seed=c.seed, epoch=epoch)):
        *carry, loss, correct = step(
            state["params"],
            state["opt_state"],
            state["rule_state"],
            put(train.inputs[idx]),
            put(train.labels[idx]),
            jax.random.fold_in(epoch_key, i),
        )
        state = dict(zip(("params", "opt_state", "rule_state"), carry))
        pending.append((loss, correct, len(idx)))
        if on_step is not None:
            on_step((epoch - 1) * steps_per_epoch + i + 1, state)
        if (i + 1) % sync_every == 0 or i + 1 == steps_per_epoch:
            loss_sum += sum(float(loss) * n for loss, _, n in pending)
            correct_sum += sum(int(correct) for _, correct, _ in pending)
            seen += sum(n for _, _, n in pending)
            pending = []
            mean_loss = loss_sum / seen
            if not math.isfinite(mean_loss):
                last = (
                    f"checkpoint {epoch - 1} in {Path(c.out) / 'checkpoints'} is the last good one"
                    if c.checkpoints and epoch > 1
                    else "no checkpoint was written"
                )
                raise TrainingDiverged(
                    f"the loss became {mean_loss} in epoch {epoch}, step {i + 1}; {_LR_HINT} (now {c.lr}); {last}."
                )
            progress.update(
                task,
                completed=i + 1,
                loss=mean_loss,
                acc=correct_sum / seen,
                speed=seen / (time.perf_counter() - start),
            )
    progress.remove_task(task)
    return state, (loss_sum / seen, correct_sum / seen, time.perf_counter() - start, seen)


def _plots(c: Config, out: Path, history, run, params, test, prepare_fn, spiking: bool, lead: bool) -> list[Path]:
    from snnjax.train.plots import write_plots

    if jax.process_count() > 1:  # every process takes part in gathering the weights; process 0 plots on its own
        from jax.experimental import multihost_utils

        params = multihost_utils.process_allgather(params, tiled=True)
    if not lead:
        return []
    params = jax.device_put(params, jax.local_devices()[0])
    if not spiking:
        return write_plots(out, history, None, None)
    count = min(64, len(test.labels))
    x = prepare_fn(test.inputs[:count], jax.random.key(c.seed))
    _, layers = jax.jit(run)(params, x)
    flat = [np.asarray(s).reshape(*s.shape[:2], -1) for s in layers]  # feature maps as [T, B, N]
    sample = np.asarray(x[:, 0]).reshape(x.shape[0], -1)
    return write_plots(out, history, sample, flat, int(test.labels[0]))
