"""Several seeds of SFDFA's training step: one after another, or as one `jax.vmap` call.

    python benchmarks/sfdfa_seeds.py                               # S in 1 2, the protocol's network, CPU
    python benchmarks/sfdfa_seeds.py --seeds 1 2 3                 # on a GPU
    python benchmarks/sfdfa_seeds.py --hidden 16 16 --seeds 1 2 --repeats 1 --no-write   # smoke

The Fashion-MNIST protocol's training step (`snnjax.rules.sfdfa` on the 784-400-400-10 exact-time
network, batch 50, random images with the protocol's time-to-first-spike coding), for S
independent copies (seeds): ``sequential`` calls the jitted step once per seed, ``vmap`` calls
`jax.vmap` of it once. Under `vmap` the eligibility traces' `while_loop` gets a batched
condition, and JAX then selects its whole carry (the per-synapse traces) in every iteration.
The median of interleaved repeats after a compiling warm-up; the ratio is measured in the run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

from snnjax.neurons.spike_time import init_weights, ttfs  # noqa: E402
from snnjax.rules import sfdfa, sfdfa_preset, spike_count_loss  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="numbers of copies S")
    parser.add_argument("--hidden", type=int, nargs=2, default=[400, 400])
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    net = sfdfa_preset("fashion_mnist").net._replace(sizes=(784, *args.hidden, 10))
    rule = sfdfa(spike_count_loss(net))
    rng = np.random.default_rng(0)

    def one(params, state, images, labels, key):
        (loss, _), grads, state = rule.apply(state, params, ttfs(images), labels, key=key)
        return grads, state, loss

    single, mapped = jax.jit(one), jax.jit(jax.vmap(one))
    results = {}
    for s in args.seeds:
        images = rng.integers(0, 256, (s, args.batch, 784)).astype(np.uint8)
        images[..., rng.random(784) < 0.25] = 0  # silent pixels, as in the data
        labels = rng.integers(0, 10, (s, args.batch))
        keys = [jax.random.key(k) for k in range(s)]
        params = [init_weights(k, net) for k in keys]
        states = [rule.init(p) for p in params]
        stacked = [jax.tree.map(lambda *x: jnp.stack(x), *tree) for tree in (params, states)]

        def sequential(params=params, states=states, images=images, labels=labels, keys=keys):
            return [single(p, st, x, y, k) for p, st, x, y, k in zip(params, states, images, labels, keys)]

        def vmapped(stacked=stacked, images=images, labels=labels, keys=keys):
            return mapped(*stacked, images, labels, jnp.stack(keys))

        timings = common.time_side_by_side({"sequential": sequential, "vmap": vmapped}, repeats=args.repeats)
        ratio = timings["vmap"]["median_s"] / timings["sequential"]["median_s"]
        results[str(s)] = {**timings, "vmap_over_sequential": ratio}
        print(
            f"S = {s}: sequential {timings['sequential']['median_s']:.2f} s, vmap {timings['vmap']['median_s']:.2f} s "
            f"per step (x{ratio:.1f})",
            flush=True,
        )
        payload = {
            "config": vars(args),
            "results": results,
            "command": "python benchmarks/sfdfa_seeds.py " + " ".join(sys.argv[1:] if argv is None else argv),
        }
        if not args.no_write:
            path = common.write_result("sfdfa_seeds", payload)  # after every S, so a partial run is kept
            print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
