"""The training loop and the `snnjax` command: determinism, resume, NaN, bad input, the demo."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_runs import QUIET, TINY, altered_rules, run, same_params, without_times

from snnjax import cli
from snnjax.rules.protocol import EmptyState
from snnjax.train import Config, TrainingDiverged, fit, loop
from snnjax.train.checkpoint import Checkpoints


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return run(tmp_path_factory.mktemp("runs"), "whole")


def test_same_seed_same_numbers_and_outputs_written(uninterrupted, tmp_path):
    again = run(tmp_path, "again")
    assert without_times(again.history) == without_times(uninterrupted.history)
    assert same_params(again.params, uninterrupted.params)
    lines = [json.loads(line) for line in (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in lines] == [1, 2, 3] and set(lines[0]) >= {
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "examples_per_second",
    }
    assert Checkpoints(tmp_path / "again" / "checkpoints").epochs() == [2, 3]  # keeps the last two
    other_seed = run(tmp_path, "seed1", seed=1)
    assert not same_params(other_seed.params, uninterrupted.params)


def test_resume_after_an_interruption_gives_the_uninterrupted_result(uninterrupted, tmp_path):
    def interrupt(step, state):
        if step == 6:  # in epoch 2 (4 steps per epoch): its partial work is lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(Config(**{**TINY, "epochs": 3, "out": str(tmp_path / "run")}), on_step=interrupt, **QUIET)
    assert Checkpoints(tmp_path / "run" / "checkpoints").epochs() == [1]
    with pytest.raises(ValueError, match=r"already holds a run \(metrics.jsonl, checkpoints/\); pass --resume"):
        fit(Config(**{**TINY, "epochs": 3, "out": str(tmp_path / "run")}), **QUIET)
    resumed = fit(Config(**{**TINY, "epochs": 3, "out": str(tmp_path / "run"), "resume": True}), **QUIET)
    assert same_params(resumed.params, uninterrupted.params)
    assert without_times(resumed.history) == without_times(uninterrupted.history)
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3
    with pytest.raises(ValueError, match="hidden differ from the run"):
        fit(Config(**{**TINY, "hidden": (9,), "epochs": 4, "out": str(tmp_path / "run"), "resume": True}), **QUIET)


def test_a_damaged_or_unfinished_checkpoint_never_stops_a_resume(uninterrupted, tmp_path):
    import shutil

    run(tmp_path, "run", epochs=2)
    folder = tmp_path / "run" / "checkpoints"
    # A save killed midway leaves orbax's temporary folder; a damaged newest one lacks its state.
    shutil.copytree(folder / "2", folder / "3.orbax-checkpoint-tmp-1234")
    shutil.rmtree(folder / "2" / "state")
    lines = []
    resumed = fit(Config(**{**TINY, "epochs": 3, "out": str(tmp_path / "run"), "resume": True}), log=lines.append)
    assert any("checkpoint 2 is damaged" in line for line in lines) and any("after epoch 1" in line for line in lines)
    assert same_params(resumed.params, uninterrupted.params)


def _diverging(after_steps, what="loss"):
    """Rules whose loss (or gradient) turns NaN after ``after_steps`` steps."""

    def alter(loss, grads, step):
        broken = step >= after_steps
        if what == "loss":
            return jnp.where(broken, jnp.nan, loss), grads
        return loss, jax.tree.map(lambda g: jnp.where(broken, jnp.nan, g), grads)

    return altered_rules(alter)


def test_nan_loss_stops_without_touching_the_last_good_checkpoint(tmp_path, monkeypatch):
    good = run(tmp_path, "good", epochs=1)
    monkeypatch.setattr(loop, "build_rule", _diverging(after_steps=4))
    with pytest.raises(
        TrainingDiverged,
        match=r"loss became nan in epoch 2.*data passed its checks.*lower --lr.*checkpoint 1 .* is the last good one",
    ):
        run(tmp_path, "bad")
    checkpoints = Checkpoints(tmp_path / "bad" / "checkpoints")
    assert checkpoints.epochs() == [1]
    like = {
        "params": good.params,
        "opt_state": optax.adam(1e-3).init(good.params),
        "rule_state": (EmptyState(), jnp.zeros((), jnp.int32)),
    }
    state, record = checkpoints.restore(1, like)  # intact: the same parameters as a clean one-epoch run
    assert same_params(state["params"], good.params) and len(record["history"]) == 1


def test_nan_parameters_after_the_last_step_of_an_epoch_are_not_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "build_rule", _diverging(after_steps=3, what="grads"))  # the epoch's fourth and last step
    with pytest.raises(TrainingDiverged, match="parameters became NaN or infinite in epoch 1"):
        run(tmp_path, "bad")
    assert Checkpoints(tmp_path / "bad" / "checkpoints").epochs() == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--hidden", "0"], "each hidden size must be a positive integer, got 0"),
        (["train", "--batch-size", "100000"], "batch_size 100000 is larger than the 8000 training examples"),
        (["train", "--model", "mlp"], "model 'mlp' takes inputs without a time axis"),
        (["train", "--dataset", "imagenet"], "unknown dataset 'imagenet'; choose one of randman"),
        (["train", "--dataset", "mine.npz"], "mine.npz: no such .npz file"),
        (["train", "--lr", "-1"], "lr must be a number in (0, 10)"),
        (["train", "--dataset", "fashion_mnist", "--encoding", "none"], "pick --encoding rate, latency or current"),
        (["train", "--dataset", "kmnist", "--data-dir", "/nonexistent"], "kmnist: no train-images-idx3-ubyte"),
    ],
)
def test_bad_input_is_one_line_saying_what_to_change(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SNNJAX_DATA", str(tmp_path))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1, err


def test_unknown_names_and_unwritable_output(capsys, tmp_path):
    for argv in (["train", "--rule", "hebb"], ["train", "--model", "transformer"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert "invalid choice" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        cli.main(
            [
                "train",
                "--out",
                str(tmp_path / "file" / "run"),
                "--train-size",
                "16",
                "--data-option",
                "samples_per_class=4",
            ]
        )
    assert "cannot write to the output folder" in capsys.readouterr().err


def test_demo_runs_end_to_end_and_writes_plots(small_demo, tmp_path, capsys):
    code = cli.main(small_demo)
    out = capsys.readouterr().out
    assert code == 0 and "test accuracy" in out and "(chance 0.100)" in out
    assert {p.name for p in (tmp_path / "demo").iterdir()} >= {
        "metrics.jsonl",
        "config.json",
        "curves.png",
        "raster.png",
        "rates.png",
    }


def test_train_learns_an_image_set_from_idx_files_with_every_rule(tmp_path):
    from test_datasets import write_idx

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 160).astype(np.uint8)
    images = np.zeros((160, 28, 28), np.uint8)
    images[labels == 1, :14] = 255  # class 1 lights the top half
    images[labels == 0, 14:] = 255
    for split in ("train", "t10k"):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", labels)
    common = dict(
        dataset="mnist",
        data_dir=str(tmp_path),
        hidden=(16,),
        batch_size=16,
        epochs=2,
        progress=False,
        plots=False,
        checkpoints=False,
    )
    runs = (
        ("mlp", "bptt", None),
        ("snn", "bptt", "rate"),
        ("snn", "fg-a", "latency"),
        ("mlp", "fg-w", None),
        ("mlp", "fa", None),
        ("snn", "dfa", "rate"),
        ("mlp", "fdfa", None),
        ("mixer", "lg-fg-a", None),
        ("spiking-mixer", "lg-bp", None),
        ("mixer", "fg-guess-lg", None),
    )
    for model, rule, encoding in runs:
        result = fit(
            Config(
                **common,
                model=model,
                rule=rule,
                encoding=encoding,
                steps=6,
                lr=1e-2,
                groups=4 if "mixer" in model else 16,
                out=str(tmp_path / f"{model}-{rule}"),
            ),
            **QUIET,
        )
        assert result.test_accuracy > 0.9, (model, rule, result.history)


def test_command_line_entry_points_explain_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "snnjax", "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in (
        "--dataset",
        "--model",
        "--rule",
        "--epochs",
        "--hidden",
        "--encoding",
        "--resume",
        "--data-dir",
        "--seed",
        "defaults per dataset",
    ):
        assert option in out
    assert (
        "demo"
        in subprocess.run([sys.executable, "-m", "snnjax", "--help"], capture_output=True, text=True, check=True).stdout
    )


def test_recurrent_model_runs_bptt_through_run_bptt_with_the_same_gradients(tmp_path, monkeypatch):
    from flax import nnx

    from snnjax.train import build_model

    xs = jax.random.uniform(jax.random.key(0), (10, 3, 5))

    def grads(run_bptt):
        model = build_model("rsnn", 5, 3, (8, 8), seed=0, run_bptt=run_bptt)
        assert [getattr(layer, "run_bptt", None) for layer in model.layers][1::2] == [
            run_bptt,
            run_bptt,
            False,
        ]  # not the readout
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        return jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(xs) ** 2))(params)

    fast, plain = grads(True), grads(False)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), fast, plain)
    assert not build_model("snn", 5, 3, (8,), seed=0, run_bptt=True).layers[1].run_bptt  # feed-forward keeps run
    seen = []
    monkeypatch.setattr(loop, "build_model", lambda *a, **k: seen.append(k) or build_model(*a, **k))
    for rule in ("bptt", "fg-a"):  # forward gradients need snnjax.run's forward mode
        run(tmp_path, rule, model="rsnn", rule=rule, epochs=1, checkpoints=False)
    assert [k["run_bptt"] for k in seen] == [True, False]


def test_online_rules_train_the_recurrent_network_from_the_command(tmp_path, capsys):
    """e-prop (both feedbacks), truncated BPTT, RTRL, OSTL and OTTT on the recurrent network, online DFA, FDFA
    and FG-A on the feed-forward one, through `snnjax train`, on a loss at every step."""
    common = [
        "train",
        "--model",
        "rsnn",
        "--hidden",
        "16",
        "--steps",
        "50",
        "--epochs",
        "6",
        "--lr",
        "0.01",
        "--batch-size",
        "16",
        "--no-progress",
        "--no-plots",
        "--no-checkpoints",
        "--data-option",
        "num_classes=2",
        "--data-option",
        "units=20",
        "--data-option",
        "samples_per_class=100",
    ]
    feed_forward = ["--model", "snn"]  # the online DFA and FG-A rules take feed-forward layers only
    runs = [(rule, []) for rule in ("eprop", "eprop-random", "eprop-learned", "tbptt", "rtrl", "ostl", "ottt")]
    runs += [(rule, feed_forward) for rule in ("online-dfa", "online-fdfa", "online-fg-a")]
    for rule, extra in runs:
        assert cli.main([*common, *extra, "--rule", rule, "--window", "5", "--out", str(tmp_path / rule)]) == 0
        history = [json.loads(line) for line in (tmp_path / rule / "metrics.jsonl").read_text().splitlines()]
        if rule == "online-fg-a":  # one noisy direction per step does not train it in 6 epochs: it runs, finitely
            assert len(history) == 6 and all(np.isfinite(h["train_loss"]) for h in history), history
            continue
        drop = 0.05 if extra else 0.1  # the feed-forward network's error reaches its first layer more slowly
        assert history[-1]["train_loss"] < history[0]["train_loss"] - drop, (rule, history)
        assert max(h["test_accuracy"] for h in history) >= 0.75, (rule, history)  # chance is 0.5
    for argv, message in (
        (["--rule", "eprop", "--model", "conv", "--dataset", "mnist"], "rule 'eprop' trains a network step by step"),
        (["--rule", "tbptt", "--model", "mlp", "--dataset", "mnist"], "rule 'tbptt' trains a network step by step"),
        (["--rule", "tbptt", "--window", "0"], "window must be a positive integer, got 0"),
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["train", *argv, "--out", str(tmp_path / "refused"), "--no-progress"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and err.count("\n") == 1, err


def test_float_arrays_in_npz_files_train_through_the_command(tmp_path, capsys):
    """Static vectors [N, L] (a current for T steps) and sequences [N, T, C], from .npz files named by path or by
    --data-dir; runs are labelled with the file's name; what does not fit is one line naming the file."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 8)).astype(np.float32)
    y = (x[:, :4].mean(1) > 0).astype(np.int64)  # learnable: the sign of the first features' mean
    np.savez(tmp_path / "static.npz", x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    seq = rng.normal(scale=0.3, size=(240, 12, 3)).astype(np.float32)
    ys = rng.integers(0, 3, 240)
    seq[np.arange(240), 3:9, ys] += 1.0  # class c: a bump on channel c
    np.savez(
        tmp_path / "seq.npz", x_train=seq[:200], y_train=ys[:200], x_test=seq[200:], y_test=ys[200:], num_classes=3
    )
    common = "train --epochs 3 --hidden 16 --lr 0.01 --batch-size 16 --no-progress --no-plots --no-checkpoints".split()
    for argv, chance in (
        (["--dataset", str(tmp_path / "static.npz"), "--steps", "5"], 0.5),
        (["--dataset", "seq", "--data-dir", str(tmp_path), "--rule", "eprop"], 1 / 3),
    ):
        out = tmp_path / "runs" / argv[1].split("/")[-1]
        assert cli.main([*common, *argv, "--out", str(out)]) == 0
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert max(h["test_accuracy"] for h in history) > chance + 0.2, history
    from snnjax.train import Config, resolve

    assert resolve(Config(dataset="seq", data_dir=str(tmp_path))).out == "runs/seq-rsnn-bptt"
    np.savez(tmp_path / "wide.npz", x_train=x * 3, y_train=y, x_test=x, y_test=y)
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=y, x_test=x, y_test=y + 1, num_classes=2)
    for argv, message in (
        (["--dataset", "seq", "--data-dir", str(tmp_path), "--steps", "20"], "seq's sequences have their own T = 12"),
        (["--dataset", str(tmp_path / "wide.npz"), "--encoding", "rate"], "reads wide's values as probabilities"),
        (
            ["--dataset", str(tmp_path / "bad.npz")],
            "bad.npz: x_test, y_test: labels must be integers in [0, 2), found 2",
        ),
        (["--dataset", str(tmp_path / "seq.npz"), "--encoding", "rate"], "seq is over time already: drop it"),
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["train", *argv, "--out", str(tmp_path / "refused"), "--no-progress"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and err.count("\n") == 1, err


def test_the_readout_over_time_is_chosen_from_the_command(tmp_path, capsys):
    """--readout: max (the offline default), mean, last, per-step (the online default); online rules take a loss
    summed over steps only; non-spiking models have no readout over time. --neuron alif: adaptive hidden layers."""
    from snnjax.train import Config, resolve

    assert resolve(Config()).readout == "max" and resolve(Config(rule="ottt")).readout == "per-step"
    assert resolve(Config(rule="online-dfa")).model == "snn"  # on Randman in its defaults: feed-forward
    assert resolve(Config(dataset="mnist", model="mlp", encoding="none")).readout is None
    from flax import nnx

    from snnjax.train import build_model, classifier_loss, stepped_loss

    model = build_model("snn", 3, 2, (4,), seed=0)
    assert stepped_loss(model, "last").last == 1 and stepped_loss(model).last is None
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    xs, y = jax.random.normal(jax.random.key(0), (6, 2, 3)) * 3, jnp.array([0, 1])
    out = model(xs)
    ce = optax.softmax_cross_entropy_with_integer_labels
    expected = {
        "max": ce(out.max(0), y).mean(),
        "mean": ce(out.mean(0), y).mean(),
        "last": ce(out[-1], y).mean(),
        "per-step": jax.vmap(ce, in_axes=(0, None))(out, y).mean(),
    }
    for readout, value in expected.items():
        assert jnp.allclose(classifier_loss(graphdef, rest, True, readout)(params, xs, y)[0], value, rtol=1e-6)
    assert len({round(float(v), 5) for v in expected.values()}) == 4  # four different losses
    common = ["train", "--hidden", "16", "--steps", "30", "--epochs", "4", "--lr", "0.01", "--batch-size", "16"]
    common += ["--no-progress", "--no-plots", "--no-checkpoints", "--data-option", "num_classes=2"]
    common += ["--data-option", "units=20", "--data-option", "samples_per_class=100"]
    for rule, readout, neuron in (("bptt", "mean", "alif"), ("bptt", "per-step", "lif"), ("ottt", "last", "alif")):
        out = tmp_path / f"{rule}-{readout}"
        argv = ["--rule", rule, "--readout", readout, "--neuron", neuron, "--out", str(out)]
        assert cli.main([*common, *argv]) == 0
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert history[-1]["train_loss"] < history[0]["train_loss"], (rule, readout, history)
    for argv, message in (
        (["--rule", "eprop", "--readout", "max"], "rule 'eprop' learns online from a loss summed over steps"),
        (["--dataset", "mnist", "--model", "mlp", "--readout", "mean"], "model 'mlp' has none"),
        (["--dataset", "mnist", "--model", "conv", "--neuron", "alif"], "is for the models snn and rsnn, not 'conv'"),
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["train", *argv, "--out", str(tmp_path / "refused"), "--no-progress"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and err.count("\n") == 1, err
