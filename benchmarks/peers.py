"""The Open Neuromorphic workload in snnjax and its peers, side by side in one run.

    pip install -e '.[bench]'                            # torch, snntorch, norse, spyx
    python benchmarks/peers.py                           # n in {512, 1024} on CPU
    python benchmarks/peers.py --sizes 4096 8192 16384   # on a GPU
    python benchmarks/peers.py --sizes 32 --steps 10 --repeats 1 --no-write   # smoke

One ``Linear(n, n)`` + LIF layer (beta 0.9, threshold 1, reset by subtraction), T = 500 steps,
batch 16, loss = the sum of all output spikes. Every library runs time-major. The forward
pass is timed, and so is forward + backward (the gradient of the loss with respect to the
layer's weights), each after a warm-up that compiles. The median of repeats is taken, the
libraries interleaved round-robin, and each call is synchronised. Each library is written the
way its documentation writes it:

- snnjax: ``snnjax.lif`` scanned with ``snnjax.run`` (input projection hoisted out of the scan),
  and the NNX ``Sequential`` module.
- spyx: ``spyx.nn.Sequential(nnx.Linear, spyx.nn.LIF)`` run with ``spyx.nn.run`` (the Linear
  inside the scan, as spyx scans whole models).
- snntorch: ``snntorch.Leaky`` in a Python loop over time, the Linear applied to the whole
  sequence at once. Also ``torch.compile`` of the per-step neuron.
- norse: ``norse.torch.LIFBoxCell`` (LIF without synaptic current; its default
  ``dt * tau_mem_inv = 0.1`` gives beta 0.9) in a Python loop, the Linear applied at once. Also
  ``torch.compile`` of the per-step cell. Compiling a whole 500-step sequence
  unrolls it and takes longer to compile than to run this benchmark.

Beside them are the bare matrix products of the same shapes (JAX): the forward product
``[T*B, n] x [n, n]`` and, for the backward pass, the weight-gradient product. These are the
machine's limit for this layer. ``by-hand`` is the floor of a JAX scan: the same LIF written
as a plain scan with a hand-written VJP (``open_neuromorphic.lif_by_hand``). A peer that is
not installed is reported as skipped. Peak memory is recorded on a GPU.
"""

from __future__ import annotations

import os

# torch.compile's pool of compile workers, left running, slows every JAX call in this process
# (1.5 s per training step at T = 8 instead of 1 ms); compiling in-process avoids it.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402
from open_neuromorphic import variants as snnjax_variants  # noqa: E402

PEERS = ("spyx", "snntorch", "norse")
# The rows taken from open_neuromorphic.variants, with their labels in the plot.
OURS = {
    "matmuls": "matmuls",
    "lif-inject": "snnjax lif-inject",
    "nnx-Sequential": "snnjax nnx-Sequential",
    "by-hand": "JAX scan by hand",
}


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def spyx_variants(n: int, steps: int, batch: int, xs: np.ndarray) -> dict[str, Callable]:
    import spyx
    from flax import nnx

    model = spyx.nn.Sequential(nnx.Linear(n, n, rngs=nnx.Rngs(0)), spyx.nn.LIF((n,), beta=0.9, rngs=nnx.Rngs(0)))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def count(params, xs):
        spikes, _ = spyx.nn.run(nnx.merge(graphdef, params, rest), xs)
        return jnp.sum(spikes)

    x = jnp.asarray(xs)
    fwd, fwd_bwd = jax.jit(count), jax.jit(jax.value_and_grad(count))
    return {"forward/spyx": lambda: fwd(params, x), "forward+backward/spyx": lambda: fwd_bwd(params, x)}


def torch_variants(library: str, n: int, steps: int, batch: int, xs: np.ndarray, compiled: bool) -> dict[str, Callable]:
    import torch

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    linear = torch.nn.Linear(n, n).to(device)
    x = torch.from_numpy(np.array(xs)).to(device)
    if library == "snntorch":
        import snntorch

        cell = snntorch.Leaky(beta=0.9, threshold=1.0, reset_mechanism="subtract").to(device)

        def step(current, mem):
            return cell(current, mem)

        init = lambda: cell.init_leaky()  # noqa: E731
    else:
        import norse.torch as norse

        cell = norse.LIFBoxCell().to(device)

        def step(current, state):
            return cell(current, state)

        init = lambda: None  # noqa: E731
    step_fn = torch.compile(step) if compiled else step

    def count():
        currents = linear(x)  # [T, B, n] in one product
        state, total = init(), 0.0
        for t in range(steps):
            z, state = step_fn(currents[t], state)
            total = total + z.sum()
        return total

    def forward():
        with torch.no_grad():
            return float(count())

    def forward_backward():
        linear.zero_grad(set_to_none=True)
        loss = count()
        loss.backward()
        return float(loss.detach())

    label = f"{library}{'-compile' if compiled else ''}"
    return {f"forward/{label}": forward, f"forward+backward/{label}": forward_backward}


def plot(payload: dict, path: Path) -> None:
    """Bar chart of forward + backward time per library and size, on a log scale, matmuls marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(payload["results"])
    names = sorted(
        {k.split("/", 1)[1] for k in payload["results"][sizes[0]] if k.startswith("forward+backward/")} - {"matmuls"},
        key=lambda k: payload["results"][sizes[-1]].get(f"forward+backward/{k}", {}).get("median_s", 0),
    )
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(sizes)
    for i, n in enumerate(sizes):
        rows = payload["results"][n]
        ax.bar(
            [j + i * width for j in range(len(names))],
            [1e3 * rows[f"forward+backward/{k}"]["median_s"] for k in names],
            width,
            label=f"n = {n}",
        )
        ax.axhline(1e3 * rows["forward+backward/matmuls"]["median_s"], color=f"C{i}", ls=":", lw=1)
    labels = [OURS.get(k, k) for k in names]
    ax.set_xticks([j + width * (len(sizes) - 1) / 2 for j in range(len(names))], labels, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("forward + backward (ms)")
    ax.set_title(
        f"Linear + LIF, T = {payload['config']['steps']}, B = {payload['config']['batch']} (dotted: bare matmuls)"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--plot", metavar="JSON", help="only redraw the plot of an earlier result")
    common.add_allocator_flag(parser)
    args = parser.parse_args(argv)
    if args.plot:
        import json

        plot(json.loads(Path(args.plot).read_text()), Path(args.plot).with_suffix(".png"))
        return {}
    skipped = [p for p in args.peers if not installed(p) or (p != "spyx" and not installed("torch"))]
    peers = [p for p in args.peers if p not in skipped]
    common.tune_host_allocator(not args.no_tune_allocator)  # before the first JAX computation
    env = common.environment()
    versions = {p: _version(p) for p in peers + (["torch"] if installed("torch") else [])}
    if installed("torch"):
        import torch

        env["torch_threads"] = torch.get_num_threads()
    print(
        f"device {env['device']}, jax {env['jax']}; peers {versions}; skipped (not installed): {skipped or 'none'}; "
        f"T={args.steps}, B={args.batch}"
    )
    results = {}
    for n in args.sizes:
        xs = np.asarray(jax.random.normal(jax.random.key(0), (args.steps, args.batch, n), jnp.float32))
        ours = snnjax_variants(n, args.steps, args.batch)
        fns = {f"{mode}/{name}": ours[f"{mode}/{name}"] for mode in ("forward", "forward+backward") for name in OURS}
        if "spyx" in peers:
            fns.update(spyx_variants(n, args.steps, args.batch, xs))
        for library in (p for p in peers if p != "spyx"):
            fns.update(torch_variants(library, n, args.steps, args.batch, xs, compiled=False))
            if not args.no_compile:
                fns.update(torch_variants(library, n, args.steps, args.batch, xs, compiled=True))
        timings = common.time_side_by_side(fns, repeats=args.repeats, groups=common.library_groups(fns))
        rows = {}
        print(f"\nn = {n}: median ms; x matmuls; peer / snnjax (lif-inject)")
        for name, t in sorted(timings.items()):
            mode = name.split("/")[0]
            rows[name] = {
                **t,
                "ratio_to_matmuls": t["median_s"] / timings[f"{mode}/matmuls"]["median_s"],
                "ratio_to_snnjax": t["median_s"] / timings[f"{mode}/lif-inject"]["median_s"],
            }
            print(
                f"  {name:36s} {1e3 * t['median_s']:9.1f}  {rows[name]['ratio_to_matmuls']:6.2f}x  "
                f"{rows[name]['ratio_to_snnjax']:6.2f}x"
            )
        if jax.devices()[0].platform == "gpu":
            rows["peak_bytes_in_use"] = jax.devices()[0].memory_stats().get("peak_bytes_in_use")
        results[str(n)] = rows
        payload = {
            "config": {"steps": args.steps, "batch": args.batch, "sizes": args.sizes, "repeats": args.repeats},
            "versions": versions,
            "skipped": skipped,
            "results": results,
            "command": "python benchmarks/peers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        if not args.no_write:  # after every size, so a run stopped at a larger one keeps the smaller
            path = common.write_result("peers-n" + "-".join(map(str, args.sizes)), payload)
    if not args.no_write:
        if importlib.util.find_spec("matplotlib"):
            plot(payload, path.with_suffix(".png"))
        print(f"\nwrote {path} (and the plot beside it)")
    return payload


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    main()
