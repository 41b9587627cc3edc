"""A convolutional SNN trained on Fashion-MNIST by every rule, through `snnjax train --model conv`.

    python benchmarks/conv_fashion_mnist.py                       # every rule, 3 epochs, the full data set
    python benchmarks/conv_fashion_mnist.py --rules bptt dfa --epochs 1 --train-size 2000 --test-size 500

Each run is `snnjax train --dataset fashion_mnist --model conv --rule RULE` with the command's
defaults: two blocks of 3x3 convolution, LIF neurons and 2x2 average pooling (16 and 32
channels), a linear layer into a leaky-integrator readout, T = 8 steps of rate-coded images,
Adam 1e-3, batch 128. Every rule is built from the same loss (`snnjax.train.classifier_loss`).
The JSON result holds, per rule, every epoch's test accuracy and seconds, with the device and
versions; a plot of test accuracy against epoch is written beside it. Fashion-MNIST comes from
local IDX files (Debian's `dataset-fashion-mnist`, or `--data-dir`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

from snnjax.train import Config, fit, resolve  # noqa: E402

RULES = ("bptt", "fa", "dfa", "fdfa", "fg-a")


def plot(runs: dict, path: Path) -> None:
    """Test accuracy against epoch, one line per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for i, (rule, run) in enumerate(runs.items()):
        epochs = [h["epoch"] for h in run["history"]]
        ax.plot(epochs, [100 * h["test_accuracy"] for h in run["history"]], marker="os^vD"[i % 5], label=rule)
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Conv SNN on Fashion-MNIST")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--test-size", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    runs = {}
    for rule in args.rules:
        config = Config(
            dataset="fashion_mnist",
            model="conv",
            rule=rule,
            epochs=args.epochs,
            train_size=args.train_size,
            test_size=args.test_size,
            data_dir=args.data_dir,
            progress=False,
            plots=False,
            checkpoints=False,
            out=tempfile.mkdtemp(),
        )
        result = fit(config, log=lambda line, rule=rule: print(f"{rule:5s} {line}"))
        runs[rule] = {"history": result.history, "test_accuracy": result.test_accuracy}
    c = resolve(Config(dataset="fashion_mnist", model="conv"))
    settings = {k: getattr(c, k) for k in ("hidden", "steps", "encoding", "lr", "batch_size")}
    print(f"\nconv SNN, Fashion-MNIST, {args.epochs} epochs, {settings}")
    print(f"{'rule':6s} {'test accuracy':>14s} {'s / epoch':>10s}")
    for rule, run in runs.items():
        seconds = sum(h["seconds"] for h in run["history"]) / len(run["history"])
        run["seconds_per_epoch"] = seconds
        print(f"{rule:6s} {100 * run['test_accuracy']:13.2f}% {seconds:10.1f}")
    payload = {"config": vars(args), "settings": settings, "runs": runs}
    if not args.no_write:
        path = common.write_result("conv_fashion_mnist", payload)
        plot(runs, path.with_suffix(".png"))
        print(f"wrote {path} and its plot")
    return payload


if __name__ == "__main__":
    main()
