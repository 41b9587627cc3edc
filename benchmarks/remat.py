"""Which way of running BPTT pays? ``snnjax.run(..., remat=True / False)`` and ``snnjax.run_bptt``.

    python benchmarks/remat.py
    python benchmarks/remat.py --steps 8 --batch 2 --neurons 8 --repeats 1 --no-write   # smoke

The gradient of the summed spikes with respect to the input weights, a trainable per-neuron
decay and (for the recurrent neurons) the recurrent weights, for each neuron with and without
``remat`` and through ``snnjax.run_bptt``, timed interleaved, with XLA's temporary memory of
each compiled gradient (``memory_analysis().temp_size_in_bytes``). ``snnjax.run`` defaults to
``remat=True``; this is the evidence, and the evidence for when to choose ``run_bptt``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import snnjax  # noqa: E402

NEURONS = {
    "lif": lambda decay, w_rec: snnjax.lif(decay),
    "lif-recurrent": lambda decay, w_rec: snnjax.lif(decay, recurrent=w_rec),
    "cuba_lif": lambda decay, w_rec: snnjax.cuba_lif(0.8, decay),
    "alif-fgi": lambda decay, w_rec: snnjax.alif(decay, 0.95, form="fgi", surrogate="gaussian"),
    "alif-fgi-recurrent": lambda decay, w_rec: snnjax.alif(
        decay, 0.95, form="fgi", recurrent=w_rec, surrogate="gaussian"
    ),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--neurons", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    common.add_allocator_flag(parser)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    common.tune_host_allocator(not args.no_tune_allocator)  # before the first JAX computation
    env = common.environment()
    T, B, N = args.steps, args.batch, args.neurons
    print(f"device {env['device']}, jax {env['jax']}; T={T}, B={B}, N={N}")
    kx, kw, kr = jax.random.split(jax.random.key(0), 3)
    xs = jax.random.normal(kx, (T, B, N))
    params = (
        jax.random.normal(kw, (N, N)) / jnp.sqrt(N),
        0.05 * jax.random.normal(kr, (N, N)),
        jnp.full((N,), 0.9, jnp.float32),
    )
    fns, memory = {}, {}
    runs = {
        "remat=True": snnjax.run,
        "remat=False": functools.partial(snnjax.run, remat=False),
        "run_bptt": snnjax.run_bptt,
    }
    for name, make in NEURONS.items():
        for variant, run in runs.items():

            def loss(params, make=make, run=run):
                w, w_rec, decay = params
                return run(make(decay, w_rec), jnp.einsum("tbi,ij->tbj", xs, w))[1].sum()

            grad = jax.jit(jax.grad(loss)).lower(params).compile()
            memory[f"{name}/{variant}"] = grad.memory_analysis().temp_size_in_bytes
            fns[f"{name}/{variant}"] = lambda grad=grad: grad(params)
    timings = common.time_side_by_side(fns, repeats=args.repeats)
    results = {}
    print("\nms per gradient (remat / no remat / run_bptt); the time without remat over the time with it; remat's over")
    print("run_bptt's; XLA's temporary memory in MiB (remat / no remat / run_bptt)")
    for name in NEURONS:
        on, off, bptt = (timings[f"{name}/{v}"]["median_s"] for v in runs)
        mib = [memory[f"{name}/{v}"] / 2**20 for v in runs]
        results[name] = {
            "remat_ms": 1e3 * on,
            "no_remat_ms": 1e3 * off,
            "run_bptt_ms": 1e3 * bptt,
            "speed_up": off / on,
            "run_bptt_speed_up": on / bptt,
        }
        results[name].update({f"{key}_temp_mib": m for key, m in zip(("remat", "no_remat", "run_bptt"), mib)})
        print(
            f"  {name:20s} {1e3 * on:8.2f} {1e3 * off:8.2f} {1e3 * bptt:8.2f}   x{off / on:.2f}   x{on / bptt:.2f}   "
            + " / ".join(f"{m:.1f}" for m in mib)
        )
    payload = {
        "config": vars(args),
        "results": results,
        "command": "python benchmarks/remat.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    if not args.no_write:
        print(f"\nwrote {common.write_result('remat', payload)}")
    return payload


if __name__ == "__main__":
    main()
