"""Full training runs through `snnjax.train.fit`, with their per-epoch metrics kept as a result.

    python benchmarks/train_runs.py                                   # Fashion-MNIST, BPTT, rate and latency
    python benchmarks/train_runs.py --dataset randman --encodings none   # the demo's run
    # the exact-time network on Randman: SFDFA, DFA and BP through spike times
    python benchmarks/train_runs.py --dataset randman --encodings none --model spike-time --rule sfdfa

Each run is a `snnjax train` with the data set's defaults (Fashion-MNIST: 784-400-400-10 LIF,
T = 25, Adam 1e-3, batch 128, 5 epochs) and the encoding given; the JSON result holds every
epoch's loss, accuracy, seconds and examples per second, with the device and versions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

from snnjax.train import Config, fit, resolve  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--rule", default="bptt")
    parser.add_argument("--model", help="default: the data set's and rule's")
    parser.add_argument("--encodings", nargs="+", default=["rate", "latency"])
    parser.add_argument("--epochs", type=int, help="default: the data set's")
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    runs = {}
    for encoding in args.encodings:
        config = Config(
            dataset=args.dataset,
            rule=args.rule,
            model=args.model,
            encoding=encoding,
            epochs=args.epochs,
            train_size=args.train_size,
            data_dir=args.data_dir,
            progress=False,
            plots=False,
            checkpoints=False,
            out=tempfile.mkdtemp(),
        )
        result = fit(config)
        c = resolve(config)
        runs[encoding] = {
            "model": f"{c.model} {'-'.join(map(str, c.hidden))}",
            "steps": c.steps,
            "lr": c.lr,
            "batch_size": c.batch_size,
            "history": result.history,
            "test_accuracy": result.test_accuracy,
        }
        seconds = [h["seconds"] for h in result.history]
        print(
            f"{args.dataset} {args.rule} {encoding}: test accuracy {result.test_accuracy:.4f} after {len(seconds)} "
            f"epochs, median {sorted(seconds)[len(seconds) // 2]:.1f} s per epoch"
        )
    payload = {"dataset": args.dataset, "rule": args.rule, "runs": runs}
    if not args.no_write:
        model = f"_{args.model}" if args.model else ""
        print("wrote", common.write_result(f"train_{args.dataset}{model}_{args.rule}", payload))
    return payload


if __name__ == "__main__":
    main()
