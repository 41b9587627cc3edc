"""The parallel neurons against the sequential LIF and snnTorch's LeakyParallel, over T.

    python benchmarks/parallel_neurons.py                          # T in 100 500 2000 8000, CPU
    python benchmarks/parallel_neurons.py --steps 16 32 --repeats 1 --no-write   # smoke

One layer as a user writes it: ``Linear(n, n)`` then the neuron, time-major ``[T, B, n]``
(n = 128, B = 8 by default), loss = a fixed random readout of the spikes. Timed per call, forward
and forward + backward (the gradient with respect to the Linear's weights), the variants
interleaved (`common.time_side_by_side`), each after a warm-up that compiles, with XLA's
temporary memory of the training call:

- ``lif (sequential)``: `snnjax.lif` (reset by subtraction) scanned by `snnjax.run`;
- ``parallel_lif stepped`` / ``parallel_lif``: the reset-free LIF (`snnjax.parallel_lif`) scanned
  step by step, and computed at once by `snnjax.run_parallel` (`jax.lax.associative_scan`);
- ``sliding_psn stepped`` / ``sliding_psn``: Fang et al.'s sliding PSN with k = 8, both forms;
- ``snntorch LeakyParallel``: snnTorch's reset-free layer, its own Linear inside: a `torch.nn.RNN`
  with a ReLU (the membrane is clipped at zero) and biases, stepped by PyTorch's RNN kernel, eager,
  where snnTorch is installed (the ``bench`` extra).

beta = 0.9, threshold 1 everywhere, the fast-sigmoid surrogate for snnjax.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import snnjax  # noqa: E402
from snnjax.neurons.parallel import psn_weights  # noqa: E402

BETA, K = 0.9, 8


def neurons() -> dict:
    """``name -> (neuron, run)`` of the snnjax variants."""
    plif, psn = snnjax.parallel_lif(BETA), snnjax.sliding_psn(psn_weights(K))
    return {
        "lif (sequential)": (snnjax.lif(BETA), snnjax.run),
        "parallel_lif stepped": (plif, snnjax.run),
        "parallel_lif": (plif, snnjax.run_parallel),
        "sliding_psn stepped": (psn, snnjax.run),
        "sliding_psn": (psn, snnjax.run_parallel),
    }


def jax_variants(xs: jax.Array, w: jax.Array, readout: jax.Array) -> dict:
    """Jitted ``(w, xs) -> result`` per variant and mode (``forward/...``, ``forward+backward/...``)."""
    out = {}
    for name, (neuron, run) in neurons().items():

        def loss(w, xs, neuron=neuron, run=run):
            return jnp.sum(readout * run(neuron, xs @ w)[1])

        out[f"forward/{name}"] = jax.jit(loss)
        out[f"forward+backward/{name}"] = jax.jit(jax.grad(loss))
    return out


def torch_variants(xs: np.ndarray, readout: np.ndarray) -> dict:
    """snnTorch's ``LeakyParallel`` (eager), forward and forward + backward, as zero-argument calls."""
    import snntorch
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = xs.shape[-1]
    layer = snntorch.LeakyParallel(n, n, beta=BETA, threshold=1.0).to(device)
    x = torch.from_numpy(xs).to(device)
    r = torch.from_numpy(readout).to(device)

    def sync(value):
        if device == "cuda":
            torch.cuda.synchronize()
        return jnp.zeros(())  # time_side_by_side blocks on a JAX value

    def forward():
        with torch.no_grad():
            return sync((layer(x) * r).sum())

    def forward_backward():
        layer.zero_grad()
        (layer(x) * r).sum().backward()
        return sync(None)

    return {"forward/snntorch LeakyParallel": forward, "forward+backward/snntorch LeakyParallel": forward_backward}


def main(argv: list[str] | None = None) -> dict:
    parser = common.over_steps_parser(__doc__)
    parser.set_defaults(batch=8)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)
    use_torch = not args.no_torch and all(importlib.util.find_spec(m) for m in ("torch", "snntorch"))
    env = common.environment()
    print(f"device {env['device']}; n = {args.features}, B = {args.batch}; snnTorch {'on' if use_torch else 'off'}")
    results, memory = {}, {}
    for steps in args.steps:
        rng = np.random.default_rng(steps)
        xs = rng.standard_normal((steps, args.batch, args.features)).astype(np.float32)
        readout = rng.standard_normal((steps, args.batch, args.features)).astype(np.float32)
        w = jnp.asarray(rng.standard_normal((args.features, args.features)).astype(np.float32) / np.sqrt(args.features))
        xs_j, readout_j = jnp.asarray(xs), jnp.asarray(readout)
        jitted = jax_variants(xs_j, w, readout_j)
        compiled = {name: fn.lower(w, xs_j).compile() for name, fn in jitted.items()}
        memory[str(steps)] = {
            name.split("/", 1)[1]: c.memory_analysis().temp_size_in_bytes
            for name, c in compiled.items()
            if name.startswith("forward+backward/")
        }
        calls = {name: functools.partial(c, w, xs_j) for name, c in compiled.items()}
        if use_torch:
            calls.update(torch_variants(xs, readout))
        timings = common.time_side_by_side(calls, repeats=args.repeats, groups=common.library_groups(calls))
        base = {mode: timings[f"{mode}/lif (sequential)"]["median_s"] for mode in ("forward", "forward+backward")}
        row = {
            name: {**t, "ms": 1e3 * t["median_s"], "ratio_to_sequential_lif": t["median_s"] / base[name.split("/")[0]]}
            for name, t in timings.items()
        }
        results[str(steps)] = row
        print(f"\nT = {steps}: ms (forward / forward+backward), x the sequential LIF, training temp memory")
        for name in sorted({n.split("/", 1)[1] for n in row}):
            f, fb = row[f"forward/{name}"], row[f"forward+backward/{name}"]
            mib = memory[str(steps)].get(name)
            print(
                f"  {name:26s} {f['ms']:9.2f} / {fb['ms']:9.2f}   x{f['ratio_to_sequential_lif']:.2f} / "
                f"x{fb['ratio_to_sequential_lif']:.2f}" + (f"   {mib / 2**20:7.1f} MiB" if mib is not None else "")
            )
        payload = {
            "config": vars(args),
            "results": results,
            "train_temp_bytes": memory,
            "torch": _torch_versions() if use_torch else None,
            "command": "python benchmarks/parallel_neurons.py " + " ".join(sys.argv[1:] if argv is None else argv),
        }
        if not args.no_write:
            path = common.write_result("parallel_neurons", payload)  # after every T, so a partial run is kept
    if not args.no_write:
        if importlib.util.find_spec("matplotlib"):
            plot(results, path.with_suffix(".png"))
        print(f"wrote {path} (and the plot beside it)")
    return payload


def _torch_versions() -> dict[str, str]:
    import snntorch
    import torch

    return {"torch": torch.__version__, "snntorch": snntorch.__version__}


def plot(results: dict, path: Path) -> None:
    """Forward + backward time against T, log-log, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(t) for t in results]
    names = sorted({n.split("/", 1)[1] for n in results[str(steps[0])]})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, mode in zip(axes, ("forward", "forward+backward")):
        for i, name in enumerate(names):
            ax.plot(
                steps, [results[str(t)][f"{mode}/{name}"]["ms"] for t in steps], marker="os^vDx*"[i % 7], label=name
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("time steps T")
        ax.set_ylabel(f"{mode} (ms)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
