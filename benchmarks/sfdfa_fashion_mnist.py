"""SFDFA, DFA and BP through spike times on Fashion-MNIST (Bacho & Chu's protocol), seeds side by side.

    python benchmarks/sfdfa_fashion_mnist.py                                  # the CPU run recorded here
    # the paper's protocol (the GPU suite runs it within a time budget, resumable):
    python benchmarks/sfdfa_fashion_mnist.py --train-size 60000 --test-size 10000 --epochs 50 \\
        --budget-s 240 --checkpoint runs/sfdfa_checkpoints --name sfdfa_protocol

The released code's Fashion-MNIST settings (`snnjax.rules.sfdfa_preset("fashion_mnist")`):
784-400-400-10 exact-time current-based LIF neurons (`snnjax.spike_time`), tau_s = 130 ms,
thresholds 0.2 / 0.2 / 0.7, 200 ms window on a `--dt` grid, time-to-first-spike input over 100 ms,
weights U(-1, 1), Adam 3e-3, batch 50, spike-count targets 15 / 3, firing-rate regulariser 0.3
(1.0 for DFA) with target 0.4, feedback rate 1e-4. The variants (`--rules`):

- ``sfdfa``: the paper's rule as snnjax computes it: exact spike grades, errors from B before its update;
- ``sfdfa-released``: the released code's grades and update order (`grades="released"`,
  `order="feedback_first"`), with the paper's hidden error B delta + regulariser;
- ``rate-only``: what the released code trains with: the regulariser alone as the hidden error
  (`hidden_error="rate"`), so its learned B never reaches the weights;
- ``dfa``: fixed U(-1, 1) feedback; ``bp``: backpropagation through the exact spike times.

All seeds of a variant train side by side, one step of each in turn (each seed has its own
weights, optimiser, feedback, data order and perturbations; `jax.vmap` over the seeds would be
one call, but the eligibility traces' while-loop is far slower under it). Reported per variant
and seed: test accuracy after each epoch (the reference reports the best epoch of 50), seconds
per epoch, the grid's diagnostics, and for the feedback rules, every `--every` steps, the angle
between the last hidden layer's B and the output weights and the ratio of their norms
``|B| / |W_out|``. With `--budget-s` the variants share the wall time
equally; a variant that runs out saves a checkpoint (`--checkpoint DIR`, also after every epoch)
and the next run with the same settings continues it, step for step (one refused, naming the
setting, if they differ). Results are merged into the JSON by variant, so runs of some variants
keep the others'. The CPU results recorded before the seeds were trained side by side (data order from
`default_rng(seed)`, keys split per step) came from this script at commit 1ff17c1.
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

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

from snnjax.datasets import load  # noqa: E402
from snnjax.neurons.spike_time import SpikeTimeNet, init_weights, simulate, ttfs  # noqa: E402
from snnjax.rules import sfdfa, sfdfa_preset, spike_count_loss, spike_time_bp  # noqa: E402

# The paper's best-of-50-epochs accuracies; the released code trains as "rate-only" (its DFA likewise).
REFERENCE = {"sfdfa": 89.73, "rate-only": 89.73, "dfa": 89.41}
VARIANTS = {
    "sfdfa": {},
    "sfdfa-released": {"grades": "released", "order": "feedback_first"},
    "rate-only": {"grades": "released", "order": "feedback_first", "hidden_error": "rate"},
    "dfa": {"feedback": "dfa"},
    "bp": None,
}
PRESET = sfdfa_preset("fashion_mnist")


def angle(a: jax.Array, b: jax.Array) -> float:
    """Angle in degrees between two matrices seen as vectors."""
    cos = jnp.sum(a * b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-12)
    return float(jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0))))


def build(name: str, net: SpikeTimeNet):
    """The rule ``name`` (a key of ``VARIANTS``), built from the spike-count loss (targets 15 / 3)."""
    loss_fn = spike_count_loss(net, target_true=15.0, target_false=3.0)
    if VARIANTS[name] is None:
        return spike_time_bp(loss_fn, regularizer=PRESET.regularizer, rate_target=PRESET.rate_target)
    options = VARIANTS[name]
    return sfdfa(loss_fn, **PRESET.rule_options(options.get("feedback", "sfdfa")), **options)


def _settings(name: str, net: SpikeTimeNet, seeds: list[int], train_size: int, args) -> dict:
    """What a checkpoint must agree on to be continued."""
    return {
        "variant": name,
        "options": VARIANTS[name],
        "sizes": list(net.sizes),
        "dt": net.dt,
        "seeds": list(seeds),
        "train_size": train_size,
        "test_size": args.test_size,
        "batch": args.batch,
        "lr": args.lr,
        "every": args.every,
    }


def _file(path: Path) -> Path:
    return path.parent / (path.name + ".npz")


def _save(path: Path, state, progress: dict) -> None:
    """The stacked training state and the progress (as JSON) in one ``.npz``, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    leaves = {f"leaf{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))}
    tmp = path.parent / (path.name + ".tmp.npz")
    np.savez(tmp, progress=np.array(json.dumps(progress)), **leaves)
    tmp.replace(_file(path))


def _restore(path: Path, template, settings: dict):
    """``(state, progress)`` from a checkpoint, or ``None`` if there is none; refuses one made with other settings."""
    if not _file(path).exists():
        return None
    with np.load(_file(path)) as data:
        progress = json.loads(str(data["progress"]))
        leaves = [jnp.asarray(data[f"leaf{i}"]) for i in range(len(data.files) - 1)]
    want = json.loads(json.dumps(settings))
    if progress["settings"] != want:
        different = sorted(k for k in want if progress["settings"].get(k) != want[k])
        raise SystemExit(
            f"--checkpoint: {_file(path)} was made with other settings ({', '.join(different)}); "
            "delete it or choose another --checkpoint directory."
        )
    return jax.tree.unflatten(jax.tree.structure(template), leaves), progress


def run(name: str, seeds: list[int], net: SpikeTimeNet, train, test, args, budget_s: float | None = None) -> dict:
    """Train variant ``name`` for every seed at once; ``{seed: {"history", "angles", ...}}`` and ``"status"``.

    With ``budget_s`` it stops after the step that exceeds it (each step waited for, so the
    clock is true), saves a checkpoint there if ``args.checkpoint`` is set and returns; an epoch
    that was completed is always evaluated first.
    """
    rule = build(name, net)
    optimizer = optax.adam(args.lr)
    keys = [jax.random.key(s) for s in seeds]

    def start(seed):
        params = init_weights(jax.random.key(seed), net)
        return params, optimizer.init(params), rule.init(params, key=jax.random.key(1000 + seed))  # DFA's feedback

    state = [start(s) for s in seeds]  # one (params, opt_state, rule_state) per seed

    def step(state, images, labels, key):
        params, opt_state, rule_state = state
        (loss, aux), grads, rule_state = rule.apply(rule_state, params, ttfs(images), labels, key=key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, rule_state), loss, aux

    jstep = jax.jit(step)
    predict = jax.jit(lambda p, images: jnp.argmax(simulate(net, p, ttfs(images)).counts[-1], axis=1))

    def evaluate(params) -> float:
        hits = sum(
            int(jnp.sum(predict(params, test[0][i : i + 100]) == test[1][i : i + 100]))
            for i in range(0, len(test[1]), 100)
        )
        return 100.0 * hits / len(test[1])

    steps_per_epoch = len(train[1]) // args.batch
    settings = _settings(name, net, seeds, len(train[1]), args)
    path = Path(args.checkpoint) / f"{args.name}-{name}" if args.checkpoint else None
    progress = {
        "settings": settings,
        "epoch": 0,
        "step": 0,
        "loss_sum": None,
        "seconds": 0.0,
        "per_seed": {str(s): {"history": [], "angles": []} for s in seeds},
    }
    restored = _restore(path, state, settings) if path else None
    if restored:
        state, progress = restored
        where = (
            "finished"
            if progress["epoch"] >= args.epochs
            else f"at epoch {progress['epoch'] + 1}, step {progress['step']}"
        )
        print(f"{name}: continuing {_file(path)} ({where})", flush=True)
    began, steps_run = time.perf_counter(), 0
    status = "finished"
    while progress["epoch"] < args.epochs:
        epoch = progress["epoch"]
        orders = np.stack([np.random.default_rng([s, epoch]).permutation(len(train[1])) for s in seeds])
        resumed_at = time.perf_counter()
        loss_sum = jnp.asarray(progress["loss_sum"] or np.zeros(len(seeds)), jnp.float32)
        while progress["step"] < steps_per_epoch:
            late = budget_s is not None and time.perf_counter() - began > budget_s
            if steps_run and (late or steps_run == args.stop_after_steps):
                status = "out of budget"
                break
            i = progress["step"]
            idx = orders[:, i * args.batch : (i + 1) * args.batch]
            outs = [
                jstep(
                    state[k],
                    train[0][idx[k]],
                    train[1][idx[k]],
                    jax.random.fold_in(keys[k], epoch * steps_per_epoch + i),
                )
                for k in range(len(seeds))
            ]  # the seeds one after another: under jax.vmap the traces' while-loop is far slower (docs/benchmarks.md)
            state, aux = [o[0] for o in outs], [o[2] for o in outs]
            loss_sum = loss_sum + jnp.stack([o[1] for o in outs])
            if budget_s is not None:
                loss_sum.block_until_ready()  # dispatch runs ahead of the device: wait, so the budget is true
            if VARIANTS[name] is not None and i % args.every == 0:
                for k, s in enumerate(seeds):
                    b, w_out = state[k][2].matrices[-1], state[k][0][-1]
                    scale = float(jnp.linalg.norm(b) / jnp.linalg.norm(w_out))
                    entry = [epoch * steps_per_epoch + i, angle(b, w_out), scale]
                    progress["per_seed"][str(s)]["angles"].append(entry)
            progress["step"] += 1
            steps_run += 1
        jax.block_until_ready(state)
        progress["seconds"] += time.perf_counter() - resumed_at  # of this epoch, over the runs that made it
        if status != "finished":
            progress["loss_sum"] = np.asarray(loss_sum).tolist()  # the epoch's mean loss survives a resume
            break
        accuracy = [evaluate(st[0]) for st in state]
        mean_loss = np.asarray(loss_sum) / steps_per_epoch
        diag = {
            k: np.sum([np.asarray(getattr(a.diagnostics, k)) for a in aux], axis=0).tolist()
            for k in ("violations", "forced", "capped")
        }
        for k, s in enumerate(seeds):
            progress["per_seed"][str(s)]["history"].append(
                {
                    "epoch": epoch + 1,
                    "test_accuracy": accuracy[k],
                    "train_loss": float(mean_loss[k]),
                    "seconds": progress["seconds"],
                    "hidden_rates": [float(jnp.mean(c)) for c in aux[k].counts[:-1]],
                }
            )
        print(
            f"{name} epoch {epoch + 1}: test {', '.join(f'{a:.2f}' for a in accuracy)} % (seeds {seeds})  "
            f"{progress['seconds']:.0f} s  diag(last batch, all seeds) {diag}",
            flush=True,
        )
        progress.update(epoch=epoch + 1, step=0, loss_sum=None, seconds=0.0)
        if path:
            _save(path, state, progress)
    if status != "finished":
        where = f"{name}: out of time at epoch {progress['epoch'] + 1}, step {progress['step']}"
        if path:
            _save(path, state, progress)
        print(f"{where}; saved {_file(path)}" if path else f"{where}; not saved (no --checkpoint)")
    return {
        **progress["per_seed"],
        "settings": settings,
        "status": status,
        "epochs_done": progress["epoch"],
        "step": progress["step"],
    }


def summarise(results: dict) -> dict:
    """Per variant: final and best test accuracy over seeds (of the epochs done), seconds per epoch."""
    summary = {}
    for name, out in results.items():
        per_seed = {s: r for s, r in out.items() if isinstance(r, dict) and r.get("history")}
        if not per_seed:
            continue
        final = [r["history"][-1]["test_accuracy"] for r in per_seed.values()]
        best = [max(h["test_accuracy"] for h in r["history"]) for r in per_seed.values()]
        summary[name] = {
            "final_mean": float(np.mean(final)),
            "final_std": float(np.std(final)),
            "best_mean": float(np.mean(best)),
            "epochs": min(len(r["history"]) for r in per_seed.values()),
            "seconds_per_epoch": float(np.median([h["seconds"] for r in per_seed.values() for h in r["history"]])),
            "seeds": len(final),
            "reference": REFERENCE.get(name),
            "status": out.get("status"),
        }
    return summary


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for c, name in enumerate(n for n in results if n != "bp"):
        per_seed = [r for r in results[name].values() if isinstance(r, dict) and r.get("angles")]
        for k, res in enumerate(per_seed):
            steps, degrees = list(zip(*res["angles"]))[:2]
            ax.plot(steps, degrees, color=f"C{c}", alpha=0.8, label=name if k == 0 else None)
    ax.set_xlabel("training step")
    ax.set_ylabel("angle(B, W_out) (degrees)")
    ax.set_title("Feedback of the last hidden layer vs output weights")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rules", nargs="+", default=["sfdfa", "dfa", "bp"], choices=list(VARIANTS), help="the variants")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-size", type=int, default=6000)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--batch", type=int, default=PRESET.batch)
    p.add_argument("--lr", type=float, default=PRESET.learning_rate)
    p.add_argument("--dt", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, nargs="+", default=list(PRESET.net.sizes[1:-1]), help="hidden layer sizes")
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--budget-s", type=float, help="wall seconds for all variants together (shared equally)")
    p.add_argument("--checkpoint", metavar="DIR", help="save each variant's state here, and continue from it")
    p.add_argument(
        "--stop-after-steps",
        type=int,
        metavar="N",
        help="stop each variant after N steps in this run, as the budget does",
    )
    p.add_argument("--data-dir", help="the Fashion-MNIST IDX files (default: where snnjax finds them)")
    p.add_argument("--name", default="sfdfa_fashion_mnist")
    p.add_argument("--no-write", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.stop_after_steps is not None and args.stop_after_steps < 1:
        raise SystemExit(f"--stop-after-steps: must be at least 1, got {args.stop_after_steps}")
    if len(args.hidden) != len(PRESET.net.sizes) - 2:
        raise SystemExit(f"--hidden: the protocol's network has {len(PRESET.net.sizes) - 2} hidden layers")
    train_set = load("fashion_mnist", "train", directory=args.data_dir)
    test_set = load("fashion_mnist", "test", directory=args.data_dir)
    train = (np.asarray(train_set.inputs[: args.train_size]), np.asarray(train_set.labels[: args.train_size]))
    test = (np.asarray(test_set.inputs[: args.test_size]), np.asarray(test_set.labels[: args.test_size]))
    net = PRESET.net._replace(sizes=(784, *args.hidden, 10), dt=args.dt)
    results: dict = {}
    path = None
    if args.budget_s and not args.checkpoint:
        print("--budget-s without --checkpoint: a variant stopped by the budget keeps its finished epochs only")
    share = args.budget_s / len(args.rules) if args.budget_s else None
    began = time.perf_counter()
    for k, name in enumerate(args.rules):
        budget = None if share is None else share * (k + 1) - (time.perf_counter() - began)  # unspent time carries on
        results[name] = run(name, args.seeds, net, train, test, args, budget)
        if not args.no_write:  # after each variant, so a partial run is kept; earlier runs' variants too
            path = common.result_path(args.name)
            merged = {**(json.loads(path.read_text())["results"] if path.exists() else {}), **results}
            payload = {
                "benchmark": args.name,
                "environment": common.environment(),
                "settings": vars(args),
                "summary": summarise(merged),
                "results": results,
                "command": "python benchmarks/sfdfa_fashion_mnist.py "
                + " ".join(sys.argv[1:] if argv is None else argv),
            }
            common.merge_result(path, payload, "results")
    summary = summarise(results)
    for name, row in summary.items():
        print(
            f"{name}: final {row['final_mean']:.2f} +- {row['final_std']:.2f} %, best {row['best_mean']:.2f} % after "
            f"{row['epochs']} epochs, {row['seconds_per_epoch']:.0f} s/epoch ({args.train_size} examples, "
            f"{row['seeds']} seeds); reference {row['reference']}"
        )
    if path is not None and any(name != "bp" for name in results):
        plot(json.loads(path.read_text())["results"], path.with_suffix(".png"))
        print(f"wrote {path}")
    return {"summary": summary, "results": results}


if __name__ == "__main__":
    main()
