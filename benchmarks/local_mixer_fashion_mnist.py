"""Ren et al.'s Table 3 on Fashion-MNIST: LocalMixer trained by BP, FA, DFA, FG-W, FG-A and their
local-loss versions (LG-BP, LG-FG-W, LG-FG-A), 3 seeds each, the learning rate from a validation split.

    python benchmarks/local_mixer_fashion_mnist.py                          # every config, resumes
    python benchmarks/local_mixer_fashion_mnist.py --configs m1 --methods BP LG-FG-A --seeds 0
    python benchmarks/local_mixer_fashion_mnist.py --configs m1 --methods LG-FG-A --directions 4  # K = 4 directions
    python benchmarks/local_mixer_fashion_mnist.py --report                 # the table and the curves

Fashion-MNIST from the Debian IDX files (`dataset-fashion-mnist`, or `$SNNJAX_DATA`): 54 000
images to train on, the other 6 000 to pick the learning rate, the 10 000 test images to report.
Each run trains `snnjax.nn.LocalMixer` with Adam (cosine decay to 0, batch 128) and records the
validation and test error after every epoch. The learning rate is picked per config and method
from `--lrs` by seed 0's final validation error; seeds 1 and 2 then train at that rate. Every
finished run is written at once to `benchmarks/results/local_mixer_fashion_mnist-<platform>.json`
and skipped when the script is run again, so the grid can be stopped and resumed. The runs of
the earlier LocalMixer (every channel map normalised group by group, the noise before the
normalisation; commit 0853455) are kept apart, in `local_mixer_fashion_mnist_v0-cpu.json`.

The rules, all built from the loss alone (`snnjax.rules`):
- BP, FA, DFA, FG-W, FG-A: the classifier's cross-entropy, the network uncut;
- LG-*: each block cut by `rules.block`, its own patch- and group-wise local losses
  (`snnjax.group_local_loss`, Ren et al.'s feature aggregation), plus the classifier's loss;
- FG-A and LG-FG-A perturb every pre-activation, each group's noise weighted by its own loss
  (`rules.grouped`), and train the local heads and the classifier on their exact gradients, as
  Ren et al. do (`exact_output=True`); FG-W perturbs every weight, heads included;
- FG-guess-LG / FG-guess-DFA (Fournier et al. 2023): the global loss's forward gradient along a
  guessed direction, each layer projected on its own guess (`rules.guessed_forward_gradient`,
  `per_leaf=True`): LG-BP's gradient of the local losses (the heads learn from it), or DFA's.
  Biased: only the gradient's component along the guess is kept.

Configs (Ren et al.'s notation size/patches per side/groups):
- `m1`: their MNIST M/1/16, one patch (no token mixing), 2 blocks of 256 channels, 16 groups;
- `m1-g64`: `m1` with 64 groups of 4 channels;
- `m2`: deeper, 2 x 2 patches of 14 x 14 pixels with token mixing and patch-wise losses, 4 blocks of
  128 channels, 16 groups;
- `m4`: `m2` with 4 x 4 patches of 7 x 7 pixels (16 tokens): about 4 times `m2`'s time per step on
  a CPU, not run on one (`docs/benchmarks.md`);
- `m1-snn`: `m1` spiking, LIF neurons over 4 steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

from snnjax import rules  # noqa: E402
from snnjax.datasets import load_idx  # noqa: E402
from snnjax.nn import LocalMixer  # noqa: E402

NAME = "local_mixer_fashion_mnist"
CONFIGS = {
    "m1": dict(patches=1, channels=256, blocks=2, groups=16),
    "m1-g64": dict(patches=1, channels=256, blocks=2, groups=64),
    "m2": dict(patches=2, channels=128, blocks=4, groups=16),
    "m4": dict(patches=4, channels=128, blocks=4, groups=16),
    "m1-snn": dict(patches=1, channels=256, blocks=2, groups=16, spiking=True, num_steps=4, beta=0.9, threshold=1.0),
}
METHODS = ("BP", "FA", "DFA", "FG-W", "FG-A", "LG-BP", "LG-FG-W", "LG-FG-A", "FG-guess-LG", "FG-guess-DFA")
PERTURBED = ("FG-W", "FG-A", "LG-FG-W", "LG-FG-A")  # the methods that take --directions K
# Ren et al. (2023), Table 3, test error % on MNIST, M/1/16.
REN_MNIST_M116 = {"BP": 2.41, "FA": 2.90, "DFA": 3.17, "FG-W": 8.56, "FG-A": 3.76, "LG-FG-A": 2.55}


def model(config: str, seed: int) -> LocalMixer:
    return LocalMixer((28, 28, 1), 10, rngs=nnx.Rngs(seed), **CONFIGS[config])


def build(method: str, graphdef: nnx.GraphDef, directions: int = 1):
    """The rule for ``method``, built from the model's global or local loss; ``directions``: the
    forward gradients' ``K``, their estimates averaged."""

    def global_loss(params, images, labels):
        logits = nnx.merge(graphdef, params)(images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

    def local_loss(params, images, labels):
        return nnx.merge(graphdef, params).losses(images, labels)

    if method == "FG-guess-LG":  # the global loss along the local losses' gradient, layer by layer
        return rules.guessed_forward_gradient(global_loss, rules.bptt(local_loss), per_leaf=True)
    if method == "FG-guess-DFA":  # ... along DFA's direction
        return rules.guessed_forward_gradient(global_loss, rules.dfa(global_loss), per_leaf=True)
    loss = local_loss if method.startswith("LG-") else global_loss
    kind = method.removeprefix("LG-")
    return {
        "BP": lambda: rules.bptt(loss),
        "FA": lambda: rules.fa(loss),
        "DFA": lambda: rules.dfa(loss),
        "FG-W": lambda: rules.forward_gradient(loss, directions),
        "FG-A": lambda: rules.activity_forward_gradient(loss, directions, exact_output=True),
    }[kind]()


def load(directory: str | None):
    def norm(images):
        return ((images / 255.0 - 0.2860) / 0.3530).astype(np.float32)  # Fashion-MNIST's mean and std

    train, test = load_idx("fashion_mnist", "train", directory), load_idx("fashion_mnist", "test", directory)
    x, y = norm(train.images.reshape(-1, 28, 28)), train.labels.astype(np.int32)
    split = int(0.9 * len(y))  # 54 000 / 6 000 of Fashion-MNIST's 60 000
    return {
        "train": (x[:split], y[:split]),
        "val": (x[split:], y[split:]),
        "test": (norm(test.images.reshape(-1, 28, 28)), test.labels.astype(np.int32)),
    }


def error(predict, params, data) -> float:
    x, y = data
    wrong = sum(int(jnp.sum(predict(params, x[i : i + 1000]) != y[i : i + 1000])) for i in range(0, len(y), 1000))
    return 100.0 * wrong / len(y)


def train_one(
    config: str,
    method: str,
    seed: int,
    lr: float,
    epochs: int,
    batch: int,
    data,
    limit: int | None,
    directions: int = 1,
):
    net = model(config, seed)
    graphdef, params = nnx.split(net, nnx.Param)
    rule = build(method, graphdef, directions)
    x, y = data["train"]
    if limit:
        x, y = x[:limit], y[:limit]
    steps = epochs * (len(y) // batch)
    optimizer = optax.adam(optax.cosine_decay_schedule(lr, steps))
    key = jax.random.key(seed)
    state = rule.init(params, x[:batch], y[:batch], key=jax.random.fold_in(key, 1))
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, state, images, labels, key):
        (loss, _), grads, state = rule.apply(state, params, images, labels, key=key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, state, loss

    predict = jax.jit(lambda p, images: jnp.argmax(nnx.merge(graphdef, p)(images), axis=-1))
    rng = np.random.default_rng(seed)
    curve, start = [], time.perf_counter()
    for epoch in range(epochs):
        order, losses = rng.permutation(len(y)), []
        for i in range(0, len(order) - batch + 1, batch):
            key, sub = jax.random.split(key)
            idx = order[i : i + batch]
            params, opt_state, state, loss = step(params, opt_state, state, x[idx], y[idx], sub)
            losses.append(loss)
        curve.append(
            {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(np.asarray(jax.device_get(losses)))),
                "val_error": error(predict, params, data["val"]),
                "test_error": error(predict, params, data["test"]),
                "seconds": time.perf_counter() - start,
            }
        )
        print(
            f"  {config} {_label(method, directions)} seed {seed} lr {lr:g} epoch {epoch + 1}: {curve[-1]}", flush=True
        )
    return curve


def _path() -> Path:
    """The results file, per platform (``-cpu``, ``-gpu``), as every benchmark names it."""
    return common.result_path(NAME)


def _write(path: Path, payload: dict) -> None:
    """Add this process's runs to the file's (read again: several grids may run side by side), atomically."""
    common.merge_result(path, payload, "runs")


def _label(method: str, directions: int) -> str:
    """A method's name in the table and the plot: ``LG-FG-A``, or ``LG-FG-A K=4`` with 4 directions."""
    return method if directions == 1 else f"{method} K={directions}"


def _name(run: dict) -> str:
    return _label(run["method"], run.get("directions", 1))


def _order(name: str) -> tuple[int, int]:
    """Table order: the method's place in :data:`METHODS`, then ``K``."""
    method, _, k = name.partition(" K=")
    return METHODS.index(method), int(k or 1)


def _picked(runs: list[dict]) -> float:
    """The learning rate picked among ``runs`` (one config, method and length): the rate of seed 0's run
    with the lowest final validation error (of any seed's, where seed 0 has none)."""
    seed0 = [r for r in runs if r["seed"] == 0] or runs
    return min(seed0, key=lambda r: r["curve"][-1]["val_error"])["lr"]


def run_grid(args) -> dict:
    path = _path()
    done = json.loads(path.read_text()) if path.exists() and not args.no_write else {"runs": {}}
    done["environment"] = common.environment()
    done["protocol"] = {
        "epochs": args.epochs, "batch": args.batch, "lrs": args.lrs, "train": 54000, "val": 6000, "test": 10000,
        "train_size": args.train_size, "optimizer": "adam, cosine decay to 0",
    }  # fmt: skip
    data = load(args.directory)
    for config in args.configs:
        for method in args.methods:
            k = args.directions if method in PERTURBED else 1
            for seed in args.seeds:
                lrs = args.lrs
                if seed != 0:  # the rate seed 0 validated best
                    seed0 = [
                        r
                        for r in done["runs"].values()
                        if (r["config"], _name(r), r["seed"]) == (config, _label(method, k), 0)
                        and len(r["curve"]) == args.epochs
                    ]
                    if not seed0:
                        print(f"{config} {method}: seed 0 has not picked a learning rate; skipping seed {seed}")
                        continue
                    lrs = [_picked(seed0)]
                for lr in lrs:
                    run_id = f"{config}/{method}/seed{seed}/lr{lr:g}/epochs{args.epochs}" + (f"/K{k}" if k > 1 else "")
                    if run_id in done["runs"]:
                        continue
                    curve = train_one(config, method, seed, lr, args.epochs, args.batch, data, args.train_size, k)
                    run = {"config": config, "method": method, "seed": seed, "lr": lr, "curve": curve}
                    done["runs"][run_id] = run if k == 1 else {**run, "directions": k}
                    if not args.no_write:
                        _write(path, done)
    return done


def report(results: dict) -> str:
    """The table: per config, number of epochs and method, the test error at the rate seed 0
    validated best, mean and spread over the seeds."""
    lines = [
        "| config | method | epochs | lr | seeds | test error % (mean ± std) | val error % | Ren et al. MNIST M/1/16 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows: dict = {}
    for r in results["runs"].values():
        rows.setdefault((r["config"], len(r["curve"]), _name(r)), []).append(r)
    for config, epochs, method in sorted(rows, key=lambda k: (list(CONFIGS).index(k[0]), k[1], _order(k[2]))):
        runs = rows[(config, epochs, method)]
        lr = _picked(runs)
        picked = [r for r in runs if r["lr"] == lr]
        test = np.array([r["curve"][-1]["test_error"] for r in picked])
        val = np.array([r["curve"][-1]["val_error"] for r in picked])
        ren = REN_MNIST_M116.get(method) if config == "m1" else None
        lines.append(
            f"| {config} | {method} | {epochs} | {lr:g} | {len(picked)} | {test.mean():.2f} ± {test.std():.2f} | "
            f"{val.mean():.2f} | {'-' if ren is None else f'{ren:.2f}'} |"
        )
    return "\n".join(lines)


def picked_curves(results: dict) -> dict:
    """``{config: {method: mean test error per epoch}}`` over the seeds at each method's picked rate, from
    its longest runs (m1's BP and LG-FG-A: the 60-epoch ones; the table lists every length)."""
    out: dict = {}
    rows: dict = {}
    for r in results["runs"].values():
        rows.setdefault((r["config"], _name(r)), []).append(r)
    for (config, method), runs in rows.items():
        epochs = max(len(r["curve"]) for r in runs)
        runs = [r for r in runs if len(r["curve"]) == epochs]
        lr = _picked(runs)
        curves = np.array([[e["test_error"] for e in r["curve"]] for r in runs if r["lr"] == lr])
        out.setdefault(config, {})[method] = curves.mean(axis=0).tolist()
    return out


def plot(results: dict, path: Path) -> None:
    """Test error against epochs, one panel per config, one line per method (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = picked_curves(results)
    configs = [c for c in CONFIGS if c in curves]
    fig, axes = plt.subplots(1, len(configs), figsize=(4.6 * len(configs), 3.6), squeeze=False)
    for ax, config in zip(axes[0], configs):
        for method in sorted(curves[config], key=_order):
            y = curves[config][method]
            style = "--" if method.startswith(("LG-", "FG-guess")) else "-"  # local or guided: dashed
            style = ":" if " K=" in method else style  # several directions: dotted
            color = f"C{_order(method)[0] % 10}"  # one colour per method in every panel
            ax.plot(range(1, len(y) + 1), y, style, color=color, label=method, lw=1.3)
        ax.set_title(config, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test error %")
        ax.set_ylim(bottom=8, top=min(40, ax.get_ylim()[1]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument(
        "--directions",
        type=int,
        default=1,
        help=f"K directions per step for {', '.join(PERTURBED)} (rows of their own; the other methods ignore it)",
    )
    parser.add_argument("--train-size", type=int, default=None, help="train on the first N images only (quick checks)")
    parser.add_argument("--directory", default=None, help="folder of the IDX files")
    parser.add_argument("--report", action="store_true", help="print the table from the results so far")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.directions < 1:
        parser.error(f"--directions must be 1 or more, got {args.directions}")
    if args.directions > 1 and not set(args.methods) & set(PERTURBED):
        parser.error(f"--directions {args.directions} is for {', '.join(PERTURBED)}; --methods names none of them")
    if args.report:
        results = json.loads(_path().read_text())
        print(report(results))
        plot(results, _path().with_suffix(".png"))
        print(f"wrote {_path().with_suffix('.png')}")
        return results
    results = run_grid(args)
    print(report(results))
    return results


if __name__ == "__main__":
    main()
