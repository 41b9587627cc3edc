"""Test error of BP, FG-W, FG-A, LG-FG-A and LG-BP on Fashion-MNIST, beside Ren et al.'s table.

    python benchmarks/forward_gradient_fashion_mnist.py                       # MLP and LIF net
    python benchmarks/forward_gradient_fashion_mnist.py --models mlp --epochs 1 --train-size 5000

Fashion-MNIST comes from local IDX files (Debian's `dataset-fashion-mnist`, or `$SNNJAX_DATA`).
Two models, each a plain loss function that every rule is built from (FG-A finds and perturbs
every layer's pre-activation by itself):
- `mlp`: 784-256-256-10, ReLU (like Ren et al.'s small MLP without the mixer blocks);
- `lif`: 784-256-256-10 spiking, two LIF layers and a leaky-integrator readout, T = 8 steps of
  the image as a constant input current, cross-entropy on the time-averaged readout.
For the local-loss rules (LG-*) the network is cut after the first hidden layer by
`snnjax.rules.block`, the first block gets its own linear head, and the loss is the pair of the
two blocks' losses. Every rule trains with Adam for the same number of epochs; its learning rate
is picked from a small grid by the error on the last 10 % of the training set, then the test
error is reported. Ren et al.'s published MNIST column (S/1/1 test error) is printed beside ours
for the pattern: FG-W far worse, FG-A and LG-FG-A close to BP.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import snnjax  # noqa: E402
from snnjax import rules  # noqa: E402
from snnjax.datasets import load_idx  # noqa: E402

REN_MNIST_S11 = {"BP": 2.66, "FG-W": 9.25, "FG-A": 3.24, "LG-FG-A": 3.24}
STEPS = 8


def init_params(key: jax.Array) -> dict:
    sizes = [(784, 256), (256, 256), (256, 10), (256, 10)]
    names = ["l1", "l2", "out", "head1"]
    keys = jax.random.split(key, len(sizes))
    return {
        n: {"w": jax.random.normal(k, s) * (2 / s[0]) ** 0.5, "b": jnp.zeros(s[1])}
        for n, k, s in zip(names, keys, sizes)
    }


def dense(p: dict, x: jax.Array) -> jax.Array:
    return x @ p["w"] + p["b"].reshape((1,) * (x.ndim - 1) + (-1,))


def make_loss(kind: str, local: bool):
    """``loss_fn(params, images, labels) -> (loss, logits)``, the batch-mean cross-entropy; with
    ``local`` the network is cut into two blocks and the loss is their pair of local losses."""
    lif1, lif2, readout = snnjax.lif(0.9, threshold=1.0), snnjax.lif(0.9, threshold=1.0), snnjax.leaky_integrator(0.8)

    def cross_entropy(logits, labels):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    def loss_fn(params, images, labels):
        x = images if kind == "mlp" else jnp.broadcast_to(images, (STEPS, *images.shape))
        z1 = dense(params["l1"], x)
        h1 = jax.nn.relu(z1) if kind == "mlp" else snnjax.run(lif1, z1)[1]
        losses = []
        if local:
            head = dense(params["head1"], h1)
            losses.append(cross_entropy(head if kind == "mlp" else head.mean(axis=0), labels))
            h1 = rules.block(h1)
        z2 = dense(params["l2"], h1)
        h2 = jax.nn.relu(z2) if kind == "mlp" else snnjax.run(lif2, z2)[1]
        out = dense(params["out"], h2)
        logits = out if kind == "mlp" else snnjax.run(readout, out)[1].mean(axis=0)
        losses.append(cross_entropy(logits, labels))
        return (tuple(losses) if local else losses[0]), logits

    return loss_fn


def make_rule(name: str, kind: str):
    if name == "BP":
        return rules.bptt(make_loss(kind, False))
    if name == "FG-W":
        return rules.forward_gradient(make_loss(kind, False))
    if name == "FG-A":
        return rules.activity_forward_gradient(make_loss(kind, False))
    if name == "LG-FG-A":
        return rules.activity_forward_gradient(make_loss(kind, True))
    if name == "LG-BP":
        return rules.bptt(make_loss(kind, True))
    raise ValueError(name)


def train(rule, kind: str, lr: float, data: dict, epochs: int, batch: int, seed: int) -> tuple[dict, float]:
    optimizer = optax.adam(lr)
    params = init_params(jax.random.key(seed))
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, x, y, key):
        _, grads = rule(params, x, y, key=key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    rng = np.random.default_rng(seed)
    key = jax.random.key(seed + 1)
    start = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(data["train_y"]))
        for i in range(0, len(order) - batch + 1, batch):
            key, sub = jax.random.split(key)
            idx = order[i : i + batch]
            params, opt_state = step(params, opt_state, data["train_x"][idx], data["train_y"][idx], sub)
    jax.block_until_ready(params)
    return params, time.perf_counter() - start


@functools.cache
def predictor(kind: str):
    """The jit-compiled class prediction of a model kind, built once."""
    loss_fn = make_loss(kind, False)
    return jax.jit(lambda p, x, y: jnp.argmax(loss_fn(p, x, y)[1], axis=-1))


def error(kind: str, params: dict, x: np.ndarray, y: np.ndarray) -> float:
    predict = predictor(kind)
    wrong = sum(
        int(jnp.sum(predict(params, x[i : i + 1000], y[i : i + 1000]) != y[i : i + 1000]))
        for i in range(0, len(y), 1000)
    )
    return 100.0 * wrong / len(y)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "lif"], choices=["mlp", "lif"])
    parser.add_argument("--rules", nargs="+", default=["BP", "FG-W", "FG-A", "LG-FG-A", "LG-BP"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 1e-3])
    parser.add_argument("--train-size", type=int, default=60000, help="use the first N training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--directory", default=None, help="folder of the IDX files")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    train_set, test_set = (
        load_idx("fashion_mnist", "train", args.directory),
        load_idx("fashion_mnist", "test", args.directory),
    )
    x = (train_set.images[: args.train_size].reshape(-1, 784) / 255.0).astype(np.float32)
    y = train_set.labels[: args.train_size]
    split = int(0.9 * len(y))
    data = {"train_x": x[:split], "train_y": y[:split]}
    test_x, test_y = (test_set.images.reshape(-1, 784) / 255.0).astype(np.float32), test_set.labels
    env = common.environment()
    print(
        f"device {env['device']}, jax {env['jax']}; {split} training images, {args.epochs} epochs, "
        f"Adam, lr grid {args.lrs}"
    )
    results: dict = {}
    for kind in args.models:
        results[kind] = {}
        for name in args.rules:
            rule = make_rule(name, kind)
            best = None
            for lr in args.lrs:
                params, seconds = train(rule, kind, lr, data, args.epochs, args.batch, args.seed)
                val = error(kind, params, x[split:], y[split:])
                if best is None or val < best["val_error"]:
                    best = {"lr": lr, "val_error": val, "params": params, "train_seconds": seconds}
            best["test_error"] = error(kind, best.pop("params"), test_x, test_y)
            results[kind][name] = best
            ren = REN_MNIST_S11.get(name)
            print(
                f"{kind:4s} {name:8s} lr {best['lr']:.0e}  val {best['val_error']:6.2f}  "
                f"test {best['test_error']:6.2f} %"
                f"   ({best['train_seconds']:.0f} s)   Ren et al. MNIST S/1/1: {'-' if ren is None else f'{ren:.2f} %'}"
            )
    payload = {"config": vars(args), "results": results, "ren_et_al_mnist_s11_test_error": REN_MNIST_S11}
    if not args.no_write:
        print(f"wrote {common.write_result('forward_gradient_fashion_mnist', payload)}")
    return payload


if __name__ == "__main__":
    main()
