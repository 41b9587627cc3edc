"""Faults of the training command: a run is never lost, restarted or overwritten silently, and bad
input gets one line naming what to change.

Kills are real SIGKILLs of a child process, one inside an epoch and one while a checkpoint is
being written; damage and corruption are done to the files on disk.
"""

import json
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_datasets import write_idx
from tiny_runs import QUIET, TINY, TINY_ARGV, altered_rules, run, same_params, without_times

import snnjax
from snnjax import cli, rules
from snnjax.datasets import load
from snnjax.train import Config, fit, loop
from snnjax.train.checkpoint import CheckpointMismatch, Checkpoints


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted 3-epoch run every resumed run must equal."""
    return run(tmp_path_factory.mktemp("faults"), "whole")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch run with checkpoints, copied by the tests that alter it."""
    folder = tmp_path_factory.mktemp("finished")
    run(folder, "run", epochs=2)
    return folder / "run"


def _copy(finished, tmp_path):
    return shutil.copytree(finished, tmp_path / "run")


def _files(folder):
    """Every file below ``folder`` with its bytes: what must not change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(capsys, out, *argv, hidden=8, tiny=True):
    """Run ``snnjax train`` (on the tiny run's options), expect exit 2, and return its error lines."""
    options = [*TINY_ARGV, "--hidden", str(hidden)] if tiny else ["--no-progress"]
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", *options, "--out", str(out), *argv])
    assert exit_.value.code == 2
    return capsys.readouterr().err.splitlines()


_KILLED = textwrap.dedent(
    """
    import json, os, signal, sys
    from snnjax.train import Config, fit

    config, where = Config(**json.loads(sys.argv[1])), sys.argv[2]
    kill = lambda *_: os.kill(os.getpid(), signal.SIGKILL)
    if where == "save":  # epoch 2's checkpoint is written in its temporary folder, not yet renamed
        from orbax.checkpoint._src.path import atomicity

        finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def killed_finalize(self):
            if self._final_path.name == "2":
                kill()
            return await finalize(self)

        atomicity.AtomicRenameTemporaryPath.finalize = killed_finalize
    on_step = (lambda step, state: step == 6 and kill()) if where == "epoch" else None  # step 6: in epoch 2
    fit(config, on_step=on_step, log=lambda line: None)
    """
)


@pytest.mark.parametrize("where", ["epoch", "save"])
def test_sigkill_then_resume_equals_the_uninterrupted_run(where, whole, tmp_path):
    out = tmp_path / "run"
    config = {**TINY, "epochs": 3, "out": str(out)}
    child = subprocess.run(
        [sys.executable, "-c", _KILLED, json.dumps(config), where], capture_output=True, text=True, timeout=600
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names[0] == "1" and (len(names) == 1 if where == "epoch" else "tmp" in names[1]), names
    lines = []
    resumed = fit(Config(**config, resume=True), log=lines.append)
    assert any(f"resuming {out} after epoch 1" in line for line in lines), lines
    assert same_params(resumed.params, whole.params)
    assert without_times(resumed.history) == without_times(whole.history)
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_when_no_checkpoint_loads_resume_stops_saying_why_and_moves_nothing(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    for data in (out / "checkpoints").glob("*/state/d/*"):
        data.write_bytes(b"x" * data.stat().st_size)  # every array unreadable
    shutil.rmtree(out / "checkpoints" / "1" / "record")
    before = _files(out)
    lines = _refused(capsys, out, "--epochs", "3", "--resume")
    assert len(lines) == 3, lines
    assert "no checkpoint in" in lines[0] and "nothing was moved or deleted" in lines[0]
    assert "checkpoint 2 is damaged: its arrays do not load" in lines[1]
    assert "checkpoint 1 is damaged: its record does not load" in lines[2]
    assert _files(out) == before


def test_a_corrupted_checkpoint_is_reported_and_the_one_before_resumed(finished, whole, tmp_path):
    out = _copy(finished, tmp_path)
    run(tmp_path, "other", epochs=2, seed=1)  # arrays of the same shapes, other values
    # Checkpoint 2's arrays replaced under its record: files orbax reads without complaint, as
    # after bit rot that still decodes; only the checksum saved with the record can tell.
    shutil.rmtree(out / "checkpoints" / "2" / "state")
    shutil.copytree(tmp_path / "other" / "checkpoints" / "2" / "state", out / "checkpoints" / "2" / "state")
    lines = []
    resumed = fit(Config(**{**TINY, "epochs": 3, "out": str(out), "resume": True}), log=lines.append)
    assert any("checkpoint 2 is corrupted: its arrays do not match the checksum" in line for line in lines), lines
    assert any("after epoch 1" in line for line in lines)
    assert same_params(resumed.params, whole.params)
    assert any(p.name.startswith("damaged-2-") for p in (out / "checkpoints").iterdir())  # kept for a look


def test_restored_arrays_are_checked_finite_and_of_the_model_s_shapes(tmp_path):
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    good = {"w": jnp.ones((2, 3))}
    checkpoints.save(1, good, {"history": []})
    checkpoints.save(2, {"w": jnp.full((2, 3), jnp.nan)}, {"history": []})  # its checksum matches: saved so
    found = checkpoints.restore_latest(good)
    assert found.epoch == 1 and same_params(found.state, good) and found.record == {"history": []}
    assert "checkpoint 2 is corrupted: it holds NaN or infinite values in ['w']" in found.problems[0]
    with pytest.raises(CheckpointMismatch, match=r"\['w'\] is float32\(2, 3\) there but float32\(3, 3\) in this model"):
        checkpoints.restore_latest({"w": jnp.ones((3, 3))})
    assert checkpoints.epochs() == [1]


def test_a_checkpoint_of_another_model_is_a_configuration_error_not_damage(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "hidden": [9]}))  # the settings agree; the arrays do not
    before = _files(out)
    (line,) = _refused(capsys, out, "--epochs", "3", "--resume", hidden=9)
    assert (
        "checkpoint 2" in line and "saved from another model" in line and "float32(8,) there but float32(9,)" in line
    ), line
    assert _files(out) == before


@pytest.mark.parametrize(
    "alter, argv, message",
    [
        ("empty", [], "nothing to continue in"),
        ("no config", [], "it holds metrics.jsonl, checkpoints/ but no config.json"),
        ("blank config", [], "config.json cannot be read (Expecting value"),
        ("no checkpoints", [], "finished 2 epochs but left no checkpoint to continue from"),
        (None, ["--epochs", "1"], "has trained 2 epochs already; --epochs 1 asks for fewer"),
        (None, ["--hidden", "9"], "hidden differ from the run"),
    ],
)
def test_resume_refuses_what_it_cannot_continue(alter, argv, message, finished, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    if alter == "empty":
        shutil.rmtree(out)
        out.mkdir()
    elif alter == "no config":
        (out / "config.json").unlink()
    elif alter == "blank config":
        (out / "config.json").write_text("")
    elif alter == "no checkpoints":
        shutil.rmtree(out / "checkpoints")
    before = _files(out)
    (line,) = _refused(capsys, out, "--epochs", "3", "--resume", *argv)
    assert message in line and str(out) in line, line
    assert _files(out) == before


def test_resume_says_when_there_is_nothing_to_train_or_no_checkpoint_yet(finished, whole, tmp_path):
    lines = []
    fit(Config(**{**TINY, "epochs": 2, "out": str(_copy(finished, tmp_path)), "resume": True}), log=lines.append)
    assert any("has finished its 2 epochs; nothing to train" in line for line in lines), lines

    def interrupt(step, state):
        if step == 2:  # in epoch 1: no checkpoint yet
            raise KeyboardInterrupt

    config = {**TINY, "epochs": 3, "out": str(tmp_path / "early")}
    with pytest.raises(KeyboardInterrupt):
        fit(Config(**config), on_step=interrupt, **QUIET)
    lines = []
    resumed = fit(Config(**config, resume=True), log=lines.append)
    assert any("has no checkpoint yet" in line and "starting at epoch 1" in line for line in lines), lines
    assert same_params(resumed.params, whole.params)


def test_a_run_is_never_overwritten_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    run(tmp_path, "run", epochs=1, checkpoints=False)
    before = _files(out)
    (line,) = _refused(capsys, out, "--epochs", "1", "--no-checkpoints")
    assert "already holds a run (metrics.jsonl); pass --resume to continue it, --overwrite to replace it" in line
    assert _files(out) == before
    lines = []
    fit(Config(**{**TINY, "epochs": 1, "out": str(out), "overwrite": True}), log=lines.append)
    assert any(f"--overwrite: removed the run that was in {out} (metrics.jsonl)" in line for line in lines), lines


def test_a_loss_rising_above_its_first_epoch_for_two_epochs_is_reported(tmp_path, monkeypatch):
    # The loss reported (not the gradient) grows by 1 an epoch, as a drifting run's would.
    monkeypatch.setattr(loop, "build_rule", altered_rules(lambda loss, grads, step: (loss + step // 4, grads)))
    lines = []
    fit(Config(**{**TINY, "epochs": 3, "out": str(tmp_path / "run")}), log=lines.append)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert ["warning" in m for m in metrics] == [False, False, True]
    assert "above its first-epoch value" in metrics[2]["warning"] and "for 2 epochs" in metrics[2]["warning"]
    assert any(line.startswith("warning: the training loss") for line in lines)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seed", "99999999999999999999"], "seed (--seed) must be an integer in [0, 4294967295], got 9999"),
        (["--seed", "-1"], "seed (--seed) must be an integer in [0, 4294967295], got -1"),
        (["--out", ""], "out (--out) must name a folder, got ''"),
        (["--encoding", "rate"], "encoding (--encoding rate) turns images into spikes; randman is over time already"),
        (["--resume", "--no-checkpoints"], "(--resume --no-checkpoints)"),
        (["--resume", "--overwrite"], "(--resume --overwrite) contradict each other"),
        (["--data-option", "foo=1"], "randman: unknown option foo (a data option, --data-option KEY=VALUE)"),
        (["--rule", "lg-fg-a"], "rule 'lg-fg-a' uses the blocks' local losses: use --model mixer"),
        (
            ["--directions", "4"],
            "directions (--directions 4) is for fg-w, fg-a, lg-fg-w, lg-fg-a, online-fg-a, not 'bptt'",
        ),
        (["--groups", "8"], "groups and patches (--groups, --patches) are the mixer's"),
        (["--rule", "fg-guess-lg"], "rule 'fg-guess-lg' uses the blocks' local losses: use --model mixer"),
        (["--model", "mixer"], "model 'mixer' takes images with --encoding none"),
        (["--dataset", "fashion_mnist", "--model", "mixer", "--groups", "7"], "groups (--groups 7) must divide"),
        (["--dataset", "fashion_mnist", "--model", "mixer", "--groups", "128"], "into groups of 3 or more"),
    ],
)
def test_bad_options_get_one_line_naming_the_option(argv, message, tmp_path, capsys):
    (line,) = _refused(capsys, tmp_path / "out", *argv)
    assert message in line, line
    assert not (tmp_path / "out" / "config.json").exists()


def _idx_set(folder, labels=None, gz_junk=False):
    """A 4-image MNIST-named IDX set in ``folder``; ``labels`` replaces the labels."""
    for split in ("train", "t10k"):
        write_idx(folder / f"{split}-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", np.array(labels or [0, 1, 2, 3], np.uint8))
    if gz_junk:
        (folder / "train-images-idx3-ubyte").unlink()
        (folder / "train-images-idx3-ubyte.gz").write_bytes(b"no gzip here")


@pytest.mark.parametrize(
    "files, message",
    [
        (dict(labels=[0, 1, 255, 3]), "train-labels-idx1-ubyte: labels must be integers in [0, 10), found 255"),
        (dict(gz_junk=True), "train-images-idx3-ubyte.gz is not a gzip file"),
    ],
)
def test_bad_data_files_are_named(files, message, tmp_path, capsys):
    _idx_set(tmp_path, **files)
    (line,) = _refused(capsys, tmp_path / "out", "--dataset", "mnist", "--data-dir", str(tmp_path), tiny=False)
    assert message in line, line


def test_loaders_and_library_calls_raise_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="randman: unknown option bogus"):
        load("randman", bogus=1)
    with pytest.raises(ValueError, match="image sets take no data options, got bogus"):
        load("mnist", bogus=1)
    with pytest.raises(ValueError, match=r"run: state must have the structure .* LIFState\(v, z\); got tuple of 1"):
        snnjax.run(snnjax.lif(0.9), jnp.ones((4, 2, 3)), (jnp.zeros((2, 3)),))
    x, key = jnp.ones(3), jax.random.key(0)
    for build, kwargs in ((rules.bptt, {}), (rules.forward_gradient, {"key": key})):
        name = build.__name__
        with pytest.raises(ValueError, match=f"{name}: loss_fn must return a floating-point scalar loss"):
            build(lambda w, x: (w * x, None))(x, x, **kwargs)
        with pytest.raises(ValueError, match=f"{name}: loss_fn must return a pair \\(loss, aux\\)"):
            build(lambda w, x: jnp.sum(w * x))(x, x, **kwargs)
