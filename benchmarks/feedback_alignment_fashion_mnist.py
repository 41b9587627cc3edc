"""BP, FA, DFA and FDFA on Fashion-MNIST: test accuracy, feedback angles, cosine with BP.

    python benchmarks/feedback_alignment_fashion_mnist.py                 # MLP and LIF, 3 epochs
    python benchmarks/feedback_alignment_fashion_mnist.py --models mlp --epochs 1 --train-size 5000

Both networks are 784-400-400-10 (`snnjax train`'s `mlp`, ReLU, and `snn`, LIF layers with a
leaky-integrator readout, rate-coded input over `--steps` steps, max-over-time cross-entropy),
trained by `snnjax.train.fit` with Adam at each learning rate of `--lrs`. Reported:
- test accuracy after the last epoch, per rule and learning rate;
- every `--every` steps, the angle between each feedback matrix and what it stands in for:
  DFA's and FDFA's `B_l` against the Jacobian of the output layer's pre-activation (the last
  weight product's output, where the rules take the error: the logits of the MLP, the
  readout's input current of the LIF network) with respect to hidden output `l` (mean over a
  batch, and for the LIF network over time steps of the same-step Jacobian, computed exactly
  with `jax.jacrev`), FA's `B_l` against the forward weights `W_l` it replaces (one per layer
  above the first);
- after training, the cosine between each rule's gradient and BP's, per layer and their mean
  over the layers, on one training batch (`snnjax.compare_gradients`).
The angles are plotted next to the JSON result (`results/feedback_alignment_fashion_mnist-<platform>.png`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import snnjax  # noqa: E402
from snnjax.datasets import encoding, load, prepare  # noqa: E402
from snnjax.nn import NeuronCell  # noqa: E402
from snnjax.train import Config, build_model, build_rule, classifier_loss, fit  # noqa: E402

RULES = ("bptt", "fa", "dfa", "fdfa")


def angle(a: jax.Array, b: jax.Array) -> float:
    cos = jnp.sum(a * b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-30)
    return float(jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0))))


def output_of_hidden(graphdef: nnx.GraphDef, rest: nnx.State, spiking: bool):
    """``(params, x, eps) -> o``: the output layer's pre-activation (the MLP's logits, the LIF
    network's readout input ``[T, B, C]``), with ``eps[l]`` added to hidden output ``l``."""

    def run(params, x, eps):
        layers = nnx.merge(graphdef, params, rest).layers
        linears = [layer for layer in layers if isinstance(layer, nnx.Linear)]
        neurons = [layer for layer in layers if isinstance(layer, NeuronCell)]
        h = x
        for i, linear in enumerate(linears[:-1]):
            h = (neurons[i].run(linear(h))[1] if spiking else jax.nn.relu(linear(h))) + eps[i]
        return linears[-1](h)

    return run


def jacobians(output, params, x, hidden_shapes, spiking: bool) -> list[jax.Array]:
    """Mean same-step Jacobian of the output layer's pre-activation with respect to each hidden
    output, as ``[N_l, C]``."""

    def outputs(eps):
        y = output(params, x, [e[:, None, :] if spiking else e[None, :] for e in eps])
        return y.mean(axis=-2)  # over the batch: [T, C] or [C]

    zeros = [jnp.zeros((*shape[:-2], shape[-1])) for shape in hidden_shapes]
    jac = jax.jacrev(outputs)(zeros)  # per layer [T, C, T, N] or [C, N]
    if spiking:
        jac = [jnp.mean(jnp.stack([j[t, :, t, :] for t in range(j.shape[0])]), axis=0) for j in jac]
    return [j.T for j in jac]


def run(model: str, rule_name: str, lr: float, args, data_x, data_y) -> dict:
    spiking = model != "mlp"
    config = Config(
        dataset="fashion_mnist",
        model=model,
        rule=rule_name,
        hidden=(400, 400),
        epochs=args.epochs,
        lr=lr,
        steps=args.steps,
        encoding="rate" if spiking else "none",
        batch_size=128,
        train_size=args.train_size,
        data_dir=args.data_dir,
        out=tempfile.mkdtemp(),
        progress=False,
        plots=False,
        checkpoints=False,
        seed=args.seed,
    )
    graphdef, _, rest = nnx.split(build_model(model, 784, 10, (400, 400), args.seed), nnx.Param, ...)
    output = output_of_hidden(graphdef, rest, spiking)
    encode = encoding(config.encoding, args.steps)
    x = prepare(data_x, "image", encode, jax.random.key(1))
    labels = jnp.asarray(data_y)
    hidden_shapes = [(*x.shape[:-1], 400)] * 2
    jac_fn = jax.jit(
        lambda p: jacobians(output, p, x[..., :32, :], [(*s[:-2], 32, s[-1]) for s in hidden_shapes], spiking)
    )
    angles: list[dict] = []
    last: dict = {}

    def measure(step: int, state: dict) -> None:
        last["state"] = state
        if rule_name == "bptt" or (step % args.every and step != 1):
            return
        matrices = state["rule_state"].matrices
        if rule_name == "fa":
            kernels = [state["params"]["layers"][i]["kernel"][...] for i in sorted(state["params"]["layers"])]
            angles.append({"step": step, "angles": [angle(b, w) for b, w in zip(matrices, kernels[1:])]})
        else:
            angles.append({"step": step, "angles": [angle(b, j) for b, j in zip(matrices, jac_fn(state["params"]))]})

    result = fit(config, on_step=measure, log=lambda line: print(f"  [{model} {rule_name} lr={lr:g}] {line}"))
    state = last["state"]
    rule = build_rule(rule_name, classifier_loss(graphdef, rest, spiking))
    comparison = snnjax.compare_gradients(
        rule, state["params"], x, labels, key=jax.random.key(3), draws=2, state=state["rule_state"]
    )
    # Each weight matrix, and the last row: the mean over the layers.
    cosines = {
        name: float(c)
        for i, (name, c) in enumerate(zip(comparison.names, comparison.cosine))
        if "kernel" in name or i == len(comparison.names) - 1
    }
    return {
        "test_accuracy": result.test_accuracy,
        "history": result.history,
        "angles": angles,
        "cosine_with_bp": cosines,
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(results)
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        measured = [(key, run_) for key, run_ in results[model].items() if run_["angles"]]
        for color, (key, run_) in enumerate(measured):
            steps = [a["step"] for a in run_["angles"]]
            for layer, values in enumerate(zip(*(a["angles"] for a in run_["angles"]))):
                ax.plot(
                    steps,
                    values,
                    color=f"C{color}",
                    ls=("-", "--", ":")[layer % 3],
                    marker=".",
                    label=f"{key} B{layer + 1}",
                )
        ax.set(title=f"{model}: angle of B_l to its target", xlabel="step", ylabel="degrees", ylim=(0, 100))
        ax.axhline(90, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "snn"], choices=["mlp", "snn"])
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3])
    parser.add_argument("--steps", type=int, default=10, help="time steps of the LIF network's rate code")
    parser.add_argument("--every", type=int, default=100, help="measure the angles every N steps")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    train = load("fashion_mnist", "train", directory=args.data_dir)
    data_x, data_y = train.inputs[:128], train.labels[:128]
    results: dict = {}
    for model in args.models:
        results[model] = {}
        for rule_name in args.rules:
            for lr in args.lrs:
                results[model][f"{rule_name} lr={lr:g}"] = run(model, rule_name, lr, args, data_x, data_y)
    print(f"\n{'model':6s} {'rule':18s} {'test acc':>9s}  final angles (deg)     cosine with BP (layer mean)")
    for model, runs in results.items():
        for key, r in runs.items():
            final = ", ".join(f"{a:.0f}" for a in r["angles"][-1]["angles"]) if r["angles"] else "-"
            mean_cosine = list(r["cosine_with_bp"].values())[-1]
            print(f"{model:6s} {key:18s} {100 * r['test_accuracy']:8.2f}%  {final:22s} {mean_cosine:.3f}")
    payload = {"epochs": args.epochs, "steps": args.steps, "train_size": args.train_size, "results": results}
    if not args.no_write:
        path = common.write_result("feedback_alignment_fashion_mnist", payload)
        plot(results, path.with_suffix(".png"))
        print("wrote", path, "and", path.with_suffix(".png"))
    return payload


if __name__ == "__main__":
    main()
