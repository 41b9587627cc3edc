"""Data parallelism on 8 simulated CPU devices: same results as one device, for every kind of rule."""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from tiny_runs import DATA_ARGV

import snnjax
import snnjax.nn as snn
from snnjax import cli, rules, sharding
from snnjax.train import Config, build_model, build_rule, classifier_loss, fit, make_train_step

DEVICES = 8
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def mesh():
    assert len(jax.devices()) >= DEVICES, "tests/conftest.py asks for 8 CPU devices; XLA_FLAGS must not override it"
    return sharding.mesh(DEVICES)


def _close(a, b, rtol=1e-5, atol=1e-6):
    return all(jax.tree.leaves(jax.tree.map(lambda u, v: bool(jnp.allclose(u, v, rtol=rtol, atol=atol)), a, b)))


def test_mesh_placement_and_errors(mesh):
    x = sharding.put_batch(np.arange(16.0).reshape(8, 2), mesh)
    assert x.sharding.spec == jax.sharding.PartitionSpec("batch") and len(x.addressable_shards) == DEVICES
    assert x.addressable_shards[3].data.tolist() == [[6.0, 7.0]]
    assert sharding.put_batch(np.arange(12.0), mesh).sharding.is_fully_replicated  # 8 does not divide 12
    state = {"w": jnp.zeros((10, 16)), "odd": jnp.zeros((9, 7)), "b": jnp.zeros(16), "count": jnp.zeros((), jnp.int32)}
    specs = {k: s.spec for k, s in sharding.state_shardings(state, mesh, min_size=50).items()}
    assert specs == {
        "w": jax.sharding.PartitionSpec(None, "batch"),
        "odd": jax.sharding.PartitionSpec(),
        "b": jax.sharding.PartitionSpec(),
        "count": jax.sharding.PartitionSpec(),
    }
    assert all(s.spec == jax.sharding.PartitionSpec() for s in sharding.state_shardings(state, mesh).values())
    with pytest.raises(
        ValueError, match="asked for 64 devices but JAX sees 8 .*xla_force_host_platform_device_count=64"
    ):
        sharding.mesh(64)
    with pytest.raises(ValueError, match="positive integer"):
        sharding.mesh(0)


def _spiking_problem(batch=16, steps=12, inputs=10, classes=3):
    x = (jax.random.uniform(KEY, (batch, steps, inputs)) < 0.3).astype(jnp.float32)
    return np.asarray(x), np.arange(batch, dtype=np.int32) % classes


def _train(rule_name, mesh, shard_params_above=None, steps=3):
    """Three training steps of a 10-16-16-3 LIF network; with a mesh, data-parallel."""
    net = build_model("snn", 10, 3, (16, 16), seed=0)
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    x, y = _spiking_problem()
    prepare = lambda raw, key: jnp.swapaxes(raw, 0, 1)  # noqa: E731  [B, T, N] -> [T, B, N]
    rule = build_rule(rule_name, classifier_loss(graphdef, rest, True))
    optimizer = optax.adam(1e-2)
    state = (params, optimizer.init(params), rule.init(params, prepare(x, None), y, key=KEY))
    step = make_train_step(rule, optimizer, prepare, mesh=mesh, shard_params_above=shard_params_above)
    if mesh is not None:
        state = sharding.put_state(state, mesh, min_size=shard_params_above)
        x, y = sharding.put_batch(x, mesh), sharding.put_batch(y, mesh)
    compiled = step.lower(*state, x, y, KEY).compile()
    losses = []
    for i in range(steps):
        *state, loss, _ = compiled(*state, x, y, jax.random.fold_in(KEY, i))
        losses.append(loss)
    return state, jnp.stack(losses), sharding.collective_bytes(compiled)


@pytest.mark.parametrize("rule_name", ["bptt", "fg-w", "fg-a", "fdfa"])
def test_data_parallel_training_equals_one_device(rule_name, mesh):
    single, single_losses, single_bytes = _train(rule_name, None)
    parallel, losses, collective = _train(rule_name, mesh)
    assert single_bytes["total"] == 0 and collective["total"] > 0  # the step really runs split
    assert _close(losses, single_losses) and _close(parallel, single)
    leaf = jax.tree.leaves(parallel[0])[0]
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == DEVICES


def test_large_parameters_can_be_split_over_the_devices(mesh):
    single, single_losses, _ = _train("bptt", None)
    split, losses, collective = _train("bptt", mesh, shard_params_above=100)
    kernel = split[0]["layers"][0]["kernel"][...]  # 10 x 16 = 160 elements: split along its 16 columns
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "batch") and kernel.addressable_shards[
        0
    ].data.shape == (10, 2)
    adam_moment = split[1][0].mu["layers"][0]["kernel"][...]
    assert adam_moment.sharding.spec == kernel.sharding.spec
    assert "all-gather" in collective or "reduce-scatter" in collective
    assert _close(losses, single_losses) and _close(split, single)


def test_online_rule_on_devices_equals_one_device(mesh):
    rngs = nnx.Rngs(0)
    surrogate = snnjax.surrogates.fast_sigmoid(slope=5.0)
    net = snn.Sequential(
        nnx.Linear(4, 6, rngs=rngs),
        snn.LIF(6, beta=0.8, surrogate=surrogate),
        nnx.Linear(6, 3, rngs=rngs),
        snn.LeakyIntegrator(3, kappa=0.9),
    )
    loss_t = optax.softmax_cross_entropy_with_integer_labels
    rule = rules.online_dfa(rules.per_step_loss(snn.network(net), loss_t), feedback="fdfa", rate=0.5)
    params = nnx.state(net, nnx.Param)
    xs = (jax.random.uniform(KEY, (15, 16, 4)) < 0.5).astype(jnp.float32) * 2.0  # [T, B, N]
    labels = jnp.arange(16) % 3

    def apply(state, params, xs, labels, key, split):
        if split:
            xs = jax.lax.with_sharding_constraint(
                xs, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "batch"))
            )
            labels = sharding.constrain_batch(labels, mesh)
        return rule.apply(state, params, xs, labels, key=key)

    state = rule.init(params, xs, labels)
    one = jax.jit(apply, static_argnums=5)(state, params, xs, labels, KEY, False)
    lowered = jax.jit(apply, static_argnums=5).lower(state, params, xs, labels, KEY, True)
    assert sharding.collective_bytes(lowered.compile())["total"] > 0
    many = lowered.compile()(state, params, xs, labels, KEY)
    assert _close(many, one)


@pytest.mark.parametrize("num_directions", [1, 16])
def test_shared_seed_forward_gradient_exchanges_k_numbers(num_directions, mesh):
    k1, k2 = jax.random.split(KEY)
    params = {
        "w1": 0.2 * jax.random.normal(k1, (20, 64)),
        "w2": 0.2 * jax.random.normal(k2, (64, 5)),
        "steps": jnp.zeros((), jnp.int32),
    }

    def loss_fn(p, x, y):
        logits = jnp.tanh(x @ p["w1"]) @ p["w2"]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y)), logits

    x, y = jax.random.normal(KEY, (32, 20)), jnp.arange(32) % 5
    reference = rules.forward_gradient(loss_fn, num_directions)
    (loss, logits), grads = jax.jit(lambda p, x, y, k: reference(p, x, y, key=k))(params, x, y, KEY)
    xs, ys = sharding.put_batch(np.asarray(x), mesh), sharding.put_batch(np.asarray(y), mesh)
    sent = {}
    for exchange in ("derivatives", "gradients"):
        rule = rules.shared_seed_forward_gradient(loss_fn, mesh, num_directions, exchange=exchange)
        step = jax.jit(lambda p, x, y, k, rule=rule: rule(p, x, y, key=k))
        (loss_n, logits_n), grads_n = step(params, xs, ys, KEY)
        assert _close(loss_n, loss) and _close(logits_n, logits) and _close(grads_n, grads, rtol=1e-5, atol=1e-7)
        assert grads_n["steps"].dtype == jnp.int32 and int(grads_n["steps"]) == 0
        sent[exchange] = sharding.collective_bytes(step.lower(params, xs, ys, KEY).compile())["total"]
    gradient_bytes = 4 * (20 * 64 + 64 * 5)
    assert sent["derivatives"] == 4 * (num_directions + 1)  # K derivatives and the loss
    assert sent["gradients"] >= gradient_bytes


def test_shared_seed_forward_gradient_of_a_spiking_network(mesh):
    graphdef, params, rest = nnx.split(build_model("snn", 10, 3, (16,), seed=0), nnx.Param, ...)
    loss_fn = classifier_loss(graphdef, rest, True)
    x, y = _spiking_problem()
    xs = jnp.swapaxes(x, 0, 1)  # [T, B, N]
    reference = rules.forward_gradient(loss_fn, 4)
    (loss, logits), grads = jax.jit(lambda p, k: reference(p, xs, y, key=k))(params, KEY)
    rule = rules.shared_seed_forward_gradient(loss_fn, mesh, 4, batch_axes=(1, 0))
    (loss_n, logits_n), grads_n = jax.jit(lambda p, k: rule(p, xs, y, key=k))(params, KEY)
    assert _close(loss_n, loss) and _close(logits_n, logits) and _close(grads_n, grads, rtol=1e-4, atol=1e-6)
    assert float(jnp.abs(jax.tree.leaves(grads)[0]).max()) > 0


def test_shared_seed_forward_gradient_bad_input(mesh):
    with pytest.raises(ValueError, match="exchange must be one of"):
        rules.shared_seed_forward_gradient(lambda p: (p, None), mesh, exchange="all")
    rule = rules.shared_seed_forward_gradient(
        lambda p, x: (jnp.mean(x) * p, None), mesh, batch_axes=(0, 0), aux_batch_axis=None
    )
    with pytest.raises(ValueError, match="batch_axes names 2 arguments, the call passes 1"):
        rule(jnp.ones(()), jnp.ones(8), key=KEY)
    with pytest.raises(ValueError, match="key="):
        rule(jnp.ones(()), jnp.ones(8))


TINY = dict(
    dataset="randman",
    hidden=(8,),
    steps=10,
    batch_size=16,
    epochs=1,
    progress=False,
    plots=False,
    checkpoints=False,
    data_options={"num_classes": 2, "units": 5, "samples_per_class": 20},
)


def test_fit_on_devices_gives_the_single_device_history(tmp_path):
    lines = []
    one = fit(Config(**TINY, out=str(tmp_path / "one")), log=lambda line: None)
    many = fit(Config(**TINY, out=str(tmp_path / "many"), devices=DEVICES), log=lines.append)
    assert "on 8 cpu devices (batch split)" in "\n".join(lines) and "does not train faster" in lines[0]
    for a, b in zip(one.history, many.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5) and a["test_accuracy"] == pytest.approx(
            b["test_accuracy"], abs=1e-9
        )
    assert _close(one.params, many.params)


def test_device_settings_are_checked(tmp_path, capsys):
    with pytest.raises(ValueError, match="batch_size 12 must be a multiple of devices 8"):
        fit(Config(**{**TINY, "batch_size": 12}, devices=DEVICES, out=str(tmp_path)))
    with pytest.raises(ValueError, match="pass devices too"):
        fit(Config(**TINY, shard_params_above=10, out=str(tmp_path)))
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["train", "--devices", "16", "--batch-size", "16", "--out", str(tmp_path / "x"), "--no-progress"])
    assert exit_status.value.code == 2
    assert "asked for 16 devices but JAX sees 8" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one_device(tmp_path):
    """Two processes (hosts, as far as JAX can tell) of 4 CPU devices each, joined by jax.distributed."""
    options = [
        "--hidden",
        "8",
        "--steps",
        "10",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--no-progress",
        "--out",
        str(tmp_path / "two"),
        *DATA_ARGV,
    ]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # the command gives each process 8 / 2 devices
    port = _free_port()
    hosts = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "snnjax",
                "train",
                *options,
                "--devices",
                "8",
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [host.communicate(timeout=300)[0] for host in hosts]
    assert [host.returncode for host in hosts] == [0, 0], outputs
    assert "on 8 cpu devices" in outputs[0] and "test accuracy" in outputs[0] and "test accuracy" not in outputs[1]
    two = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in two] == [1, 2] and sorted(
        p.name for p in (tmp_path / "two" / "checkpoints").iterdir()
    ) == ["1", "2"]
    one = fit(
        Config(**{**TINY, "batch_size": 16, "epochs": 2}, out=str(tmp_path / "one")), log=lambda line: None
    ).history
    for a, b in zip(one, two):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5) and a["test_loss"] == pytest.approx(
            b["test_loss"], rel=1e-5
        )
