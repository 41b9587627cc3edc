"""Online rules on temporal tasks: accuracy of BPTT, e-prop (three feedbacks), OSTL, OTTT and online
DFA on recurrent LIF and ALIF networks, over seeds, through `snnjax.train.fit`.

    python benchmarks/temporal_tasks.py                       # both tasks, every rule, 3 seeds
    python benchmarks/temporal_tasks.py --tasks randman --rules bptt eprop --seeds 0 --epochs 1 --no-write  # smoke

Tasks (no download):
- `randman`: Randman (Zenke & Vogels) with a long T: 10 classes, 50 units, T = 200 steps, 150
  samples per class (1200 train, 300 test), 10 epochs.
- `seq-fmnist`: sequential Fashion-MNIST, each image presented row by row (T = 28 steps of 28
  pixels, the pixel values as input currents), from the offline IDX files (`--data-dir`, or the
  Debian package's folder), the first `--train-size` / `--test-size` images (3000 / 1000),
  written once as a `.npz` data set (the command's own route for any arrays), 3 epochs.

Every run is one hidden layer of 64 neurons (recurrent for every rule but online DFA, which takes
feed-forward layers only and so runs the same network without recurrent weights), a
leaky-integrator readout, a cross-entropy at every step (`--readout per-step`, for every rule,
BPTT included, so all train the same loss), Adam at `--lr` (5e-3), batch 32. The JSON result keeps each
run's per-epoch history, and is rewritten after every run, so a stopped benchmark keeps what it
measured; a rerun skips the runs it already holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

from snnjax.datasets import load_idx  # noqa: E402
from snnjax.train import Config, fit  # noqa: E402

RULES = ("bptt", "eprop", "eprop-random", "eprop-learned", "ostl", "ottt", "online-dfa")
TASKS = ("randman", "seq-fmnist")
RANDMAN = {"num_classes": 10, "units": 50}


def sequential_fashion_mnist(folder: Path, data_dir: str | None, train_size: int, test_size: int) -> Path:
    """Fashion-MNIST images as sequences of rows, ``[N, 28, 28]`` float32 in [0, 1], in a ``.npz`` file."""
    path = folder / "seq-fmnist.npz"
    splits = {}
    for split, size in (("train", train_size), ("test", test_size)):
        images = load_idx("fashion_mnist", split, data_dir)
        splits[f"x_{split}"] = images.images[:size].astype(np.float32) / 255.0
        splits[f"y_{split}"] = images.labels[:size]
    np.savez(path, **splits, kind="sequence", num_classes=10)
    return path


def config(task: str, rule: str, neuron: str, seed: int, args, data: Path | None, out: Path) -> Config:
    model = "snn" if rule == "online-dfa" else "rsnn"
    common_options = dict(
        rule=rule, model=model, neuron=neuron, seed=seed, hidden=(64,), epochs=epochs(task, args), lr=args.lr,
        batch_size=args.batch_size, readout="per-step", out=str(out), checkpoints=False, plots=False, progress=False,
    )  # fmt: skip
    if task == "randman":
        options = {**RANDMAN, "steps": args.randman_steps, "samples_per_class": args.randman_samples}
        return Config(dataset="randman", data_options=options, **common_options)
    return Config(dataset=str(data), **common_options)


def epochs(task: str, args) -> int:
    return args.epochs if args.epochs is not None else (10 if task == "randman" else 3)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--rules", nargs="+", choices=RULES, default=list(RULES))
    parser.add_argument("--neurons", nargs="+", choices=("lif", "alif"), default=["lif", "alif"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="default: 10 on Randman, 3 on sequential Fashion-MNIST")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--randman-steps", type=int, default=200)
    parser.add_argument("--randman-samples", type=int, default=150, help="per class")
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--data-dir", help="Fashion-MNIST's IDX folder (default: the usual places)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    path = common.result_path("temporal_tasks")
    held = json.loads(path.read_text()).get("runs", {}) if path.is_file() and not args.no_write else {}
    runs = dict(held)
    with tempfile.TemporaryDirectory() as tmp:
        data = None
        if "seq-fmnist" in args.tasks:
            data = sequential_fashion_mnist(Path(tmp), args.data_dir, args.train_size, args.test_size)
        for task in args.tasks:
            for neuron in args.neurons:
                for rule in args.rules:
                    for seed in args.seeds:
                        name = f"{task}/{neuron}/{rule}/{seed}"
                        if name in runs and runs[name].get("epochs") == epochs(task, args):
                            continue
                        out = Path(tmp) / name.replace("/", "-")
                        result = fit(config(task, rule, neuron, seed, args, data, out), log=lambda line: None)
                        runs[name] = {"epochs": epochs(task, args), "history": result.history}
                        accuracy = result.history[-1]["test_accuracy"]
                        seconds = sum(h["seconds"] for h in result.history)
                        print(f"{name:40s} test accuracy {accuracy:.3f} ({seconds:.0f} s)", flush=True)
                        if not args.no_write:
                            write(path, runs, args)
    table = summary(runs)
    for row, cells in table.items():
        print(f"{row:24s} " + "  ".join(f"{r} {c}" for r, c in cells.items()))
    return {"runs": runs, "summary": table}


def summary(runs: dict) -> dict:
    """Per task and neuron, each rule's last-epoch test accuracy: mean ± standard deviation over seeds (%)."""
    groups: dict = {}
    for name, run in runs.items():
        task, neuron, rule, _ = name.split("/")
        groups.setdefault(f"{task}/{neuron}", {}).setdefault(rule, []).append(run["history"][-1]["test_accuracy"])

    def cell(a: list[float]) -> str:
        spread = statistics.stdev(a) if len(a) > 1 else 0.0
        return f"{100 * statistics.mean(a):.1f} ± {100 * spread:.1f} (n={len(a)})"

    return {row: {rule: cell(a) for rule, a in rules.items()} for row, rules in groups.items()}


def write(path: Path, runs: dict, args) -> None:
    config = {k: v for k, v in vars(args).items() if k != "no_write"}
    common.write_result("temporal_tasks", {"config": config, "runs": runs, "summary": summary(runs)})


if __name__ == "__main__":
    main()
