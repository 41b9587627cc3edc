"""The exact-time network in the command (`--model spike-time`): SFDFA, DFA and BP through spike times."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from snnjax import cli, losses, rules
from snnjax.datasets import load
from snnjax.neurons.spike_time import raster_times, simulate, ttfs
from snnjax.rules.sfdfa import count_targets
from snnjax.train import Config, fit, resolve
from snnjax.train.spike_time import SpikeTimeClassifier, spike_count_losses, spike_time_inputs, spike_time_rule


def test_defaults_and_input_coding():
    c = resolve(Config(rule="sfdfa"))
    assert (c.model, c.encoding, c.steps, c.lr, c.readout) == ("spike-time", "none", 200, 1e-2, None)
    c = resolve(Config(dataset="fashion_mnist", rule="sfdfa"))
    assert (c.model, c.encoding, c.lr) == ("spike-time", "ttfs", 3e-3)
    assert resolve(Config(rule="dfa", model="spike-time")).out == "runs/randman-spike-time-dfa"
    # a raster's first spike per channel, laid on the first 100 ms; images by time to first spike
    raster = np.zeros((2, 5, 3), np.float32)
    raster[0, 2, 0] = raster[0, 4, 0] = raster[1, 0, 1] = 1.0
    expected = [[0.04, np.inf, np.inf], [np.inf, 0.0, np.inf]]
    np.testing.assert_allclose(spike_time_inputs(raster, "spikes"), expected, rtol=1e-6)
    images = np.array([[[0, 255], [51, 102]]], np.uint8)
    np.testing.assert_array_equal(spike_time_inputs(images, "image"), ttfs(images, 0.1))
    np.testing.assert_allclose(spike_time_inputs(images.reshape(1, 4) / 255.0, "static"), ttfs(images, 0.1), atol=1e-7)
    with pytest.raises(ValueError, match=r"raster_times: spikes must be rasters \[B, T, N\]"):
        raster_times(np.zeros((3, 4)))


def test_the_rule_on_the_modules_parameters_is_the_rule_on_its_weights():
    """The command's adapter changes nothing: gradients and loss equal the library rules' on the weight tuple,
    and BP's equal jax.grad of the spike-time surrogate written out here."""
    model = SpikeTimeClassifier((6, 5, 3), seed=1, steps=40)
    _, params, _ = nnx.split(model, nnx.Param, ...)
    weights = tuple(jax.tree.leaves(params))
    assert [w.shape for w in weights] == [(6, 5), (5, 3)]
    assert float(jnp.max(jnp.abs(weights[0]))) > 1.0  # fewer than 400 inputs: U(-s, s), s = sqrt(400 / 6)
    times = jax.random.uniform(jax.random.key(2), (4, 6), maxval=0.1)
    labels = jnp.array([0, 1, 2, 1])
    counts = simulate(model.net, weights, times).counts[-1]
    np.testing.assert_array_equal(model(times), counts)
    loss = rules.spike_count_loss(model.net)
    for name, inner in (("sfdfa", rules.sfdfa(loss)), ("dfa", rules.sfdfa(loss, feedback="dfa", regularizer=1.0))):
        rule = spike_time_rule(name, model)
        key = jax.random.key(3)
        (value, out), grads, state = rule(params, times, labels, key=key, state=rule.init(params, key=key))
        (want, aux), want_grads, want_state = inner(weights, times, labels, key=key, state=inner.init(weights, key=key))
        np.testing.assert_array_equal(out, aux.counts[-1])
        assert float(value) == float(want) == pytest.approx(float(losses.spike_count_mse(counts[None], labels)))
        for g, w in zip(jax.tree.leaves(grads), want_grads):
            np.testing.assert_array_equal(g, w)
        jax.tree.map(np.testing.assert_array_equal, state, want_state)

    def surrogate(ws):  # backpropagation through spike times, as spike_time_bp's docstring writes it
        run = simulate(model.net, ws, times)
        n = [jax.lax.stop_gradient(c) for c in run.counts]
        delta = count_targets(labels, 3) - n[-1]
        rate = 0.3 * (0.4 - jnp.mean(n[0], axis=0, keepdims=True))
        return jnp.mean(jnp.sum(delta * run.time_sums[-1], 1)) + jnp.mean(jnp.sum(rate * run.time_sums[0], 1))

    (_, _), grads = spike_time_rule("bptt", model)(params, times, labels)
    for g, w in zip(jax.tree.leaves(grads), jax.grad(surrogate)(weights)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spike_count_losses(counts, labels).mean(), losses.spike_count_mse(counts[None], labels))
    with pytest.raises(ValueError, match="does not train the exact-time network"):
        spike_time_rule("fa", model)


def test_sfdfa_dfa_and_bp_run_the_exact_time_network_from_the_command(tmp_path, capsys):
    """Each rule runs end to end and reports the spike-count loss; SFDFA's learned feedback resumes with the
    weights. (How well they learn is measured on Randman in its defaults: benchmarks/train_runs.py, whose results
    docs/benchmarks.md gives; a network this small and short does not learn reliably.)"""
    options = "--hidden 16 --steps 40 --batch-size 16 --seed 1 --no-progress --no-plots".split()
    options += ["--data-option", "num_classes=2", "--data-option", "units=20", "--data-option", "samples_per_class=40"]
    for rule in ("sfdfa", "dfa", "bptt"):
        out = tmp_path / rule
        assert (
            cli.main(["train", *options, "--epochs", "2", "--model", "spike-time", "--rule", rule, "--out", str(out)])
            == 0
        )
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert len(history) == 2 and all(np.isfinite(h["train_loss"]) and np.isfinite(h["test_loss"]) for h in history)
    # the test loss is the spike-count loss of the trained weights, computed here by hand
    config = Config(
        dataset="randman", rule="sfdfa", hidden=(16,), steps=40, batch_size=16, seed=1, epochs=3, progress=False,
        plots=False, out=str(tmp_path / "sfdfa"), resume=True,
        data_options={"num_classes": 2, "units": 20, "samples_per_class": 40},
    )  # fmt: skip
    result = fit(config, log=lambda line: None)  # the feedback matrices are checkpointed with the weights
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    test = load("randman", "test", steps=40, num_classes=2, units=20, samples_per_class=40)
    times = raster_times(test.inputs, 0.1)
    model = SpikeTimeClassifier((20, 16, 2), seed=1, steps=40)
    counts = simulate(model.net, tuple(jax.tree.leaves(result.params)), times).counts[-1]
    np.testing.assert_allclose(
        result.history[-1]["test_loss"], losses.spike_count_mse(counts[None], test.labels), rtol=1e-5
    )
    hits = np.mean(np.argmax(np.asarray(counts), axis=1) == test.labels)
    assert result.history[-1]["test_accuracy"] == pytest.approx(hits)
    capsys.readouterr()
    seq = np.zeros((20, 4, 3), np.float32)
    np.savez(tmp_path / "seq.npz", x_train=seq, y_train=np.zeros(20, int), x_test=seq, y_test=np.zeros(20, int))
    for argv, message in (
        (["--rule", "sfdfa", "--model", "rsnn"], "rule 'sfdfa' trains the exact-time network: use --model spike-time"),
        (["--model", "spike-time", "--rule", "fa"], "trains with sfdfa, dfa, bptt, not 'fa'"),
        (["--rule", "sfdfa", "--dataset", "mnist", "--encoding", "rate"], "codes mnist by time to first spike"),
        (["--dataset", "mnist", "--encoding", "ttfs"], "is the exact-time network's: use --model spike-time"),
        (["--rule", "sfdfa", "--dataset", str(tmp_path / "seq.npz")], "seq holds float sequences"),
        (["--rule", "sfdfa", "--readout", "max"], "model 'spike-time' has none"),
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["train", *argv, "--out", str(tmp_path / "refused"), "--no-progress"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and err.count("\n") == 1, err
