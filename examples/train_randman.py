"""A training loop written out by hand: a spiking network trained on Randman (no download).

    python examples/train_randman.py            # about a minute on a laptop CPU
    python examples/train_randman.py --epochs 2 --samples-per-class 100   # a quick look
    python examples/train_randman.py --rule fg-a --lr 5e-4   # forward gradient, no backward pass through time

A 100-128-10 network: a linear synapse, a recurrent LIF layer, a linear readout into leaky
integrators, max-over-time cross-entropy, Adam, surrogate-gradient BPTT through the whole scan,
or with ``--rule`` a forward gradient by weight (fg-w) or activity (fg-a) perturbation. Every
rule is built from the same plain loss function; FG-A finds the pre-activations to perturb in
it by itself (the linear layers' outputs; the recurrent weights learn through the LIF layer's
own dynamics), evaluating the loss one example at a time.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import snnjax
import snnjax.nn as snn
from snnjax.datasets import randman

RULES = {
    "bptt": snnjax.rules.bptt,
    "fg-w": snnjax.rules.forward_gradient,
    "fg-a": snnjax.rules.activity_forward_gradient,
}


def build(inputs: int, hidden: int, classes: int, seed: int) -> snn.Sequential:
    rngs = nnx.Rngs(seed)
    return snn.Sequential(
        nnx.Linear(inputs, hidden, rngs=rngs),
        snn.LIF(hidden, beta=0.95, recurrent=True, surrogate=snnjax.surrogates.fast_sigmoid(slope=10.0), rngs=rngs),
        nnx.Linear(hidden, classes, rngs=rngs),
        snn.LeakyIntegrator(classes, kappa=0.95),
    )


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--samples-per-class", type=int, default=500)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rule", choices=sorted(RULES), default="bptt", help="learning rule (default: bptt)")
    args = parser.parse_args(argv)

    data = randman(num_classes=args.classes, samples_per_class=args.samples_per_class, seed=args.seed)
    spikes = np.transpose(data.spikes, (1, 0, 2))  # time-major [T, N, units]
    split = int(0.8 * len(data.labels))
    train = (spikes[:, :split], data.labels[:split])
    test = (spikes[:, split:], data.labels[split:])

    model = build(spikes.shape[-1], args.hidden, args.classes, args.seed)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # train Params only
    optimizer = optax.adam(args.lr)
    opt_state = optimizer.init(params)

    def loss_fn(params, xs, labels):
        """The batch-mean cross-entropy of the readout's maximum over time, and the logits [B, classes]."""
        logits = nnx.merge(graphdef, params, rest)(xs).max(axis=0)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

    rule = RULES[args.rule](loss_fn)

    @jax.jit
    def train_step(params, opt_state, xs, labels, key):
        (loss, logits), grads = rule(params, xs, labels, key=key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, snnjax.losses.accuracy(logits, labels)

    @jax.jit
    def evaluate(params, xs, labels):
        return snnjax.losses.accuracy(loss_fn(params, xs, labels)[1], labels)

    rng = np.random.default_rng(args.seed)
    key = jax.random.key(args.seed)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(train[1].shape[0])
        losses, accs = [], []
        for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
            idx = order[i : i + args.batch_size]
            key, sub = jax.random.split(key)
            params, opt_state, loss, acc = train_step(
                params, opt_state, jnp.asarray(train[0][:, idx]), jnp.asarray(train[1][idx]), sub
            )
            losses.append(float(loss))
            accs.append(float(acc))
        if epoch == 1 or epoch % 5 == 0 or epoch == args.epochs:
            print(
                f"epoch {epoch:3d}  loss {np.mean(losses):.3f}  train acc {np.mean(accs):.3f}  "
                f"({time.perf_counter() - start:.1f} s)"
            )
    test_acc = float(evaluate(params, jnp.asarray(test[0]), jnp.asarray(test[1])))
    print(f"test accuracy {test_acc:.3f} (chance {1 / args.classes:.3f})")
    return test_acc


if __name__ == "__main__":
    main()
