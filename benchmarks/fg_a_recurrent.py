"""How FG-A's two ways of training recurrent weights compare with the true gradient (`compare_gradients`).

    python benchmarks/fg_a_recurrent.py
    python benchmarks/fg_a_recurrent.py --draws 16 --no-write

The network is the example's (`examples/train_randman.py`): 100-128-3, a linear synapse, a
recurrent LIF layer (beta 0.95), a linear readout into leaky integrators, max-over-time
cross-entropy, on 32 Randman samples. `activity_forward_gradient(recurrent="dynamics")` (the
default: the recurrent weights learn through the layer's own dynamics from the next layer's
perturbation) and `recurrent="current"` (the layer's whole input current perturbed at every step)
are each drawn `--draws` times at the same parameters; the table is `compare_gradients`' per layer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import snnjax  # noqa: E402
import snnjax.nn as snn  # noqa: E402
from snnjax import rules  # noqa: E402
from snnjax.datasets import randman  # noqa: E402


def setup(samples: int):
    data = randman(num_classes=3, samples_per_class=50, seed=0)
    spikes = np.transpose(data.spikes, (1, 0, 2))
    xs, labels = jnp.asarray(spikes[:, :samples]), jnp.asarray(data.labels[:samples])
    rngs = nnx.Rngs(0)
    surrogate = snnjax.surrogates.fast_sigmoid(slope=10.0)
    model = snn.Sequential(
        nnx.Linear(100, 128, rngs=rngs),
        snn.LIF(128, beta=0.95, recurrent=True, surrogate=surrogate, rngs=rngs),
        nnx.Linear(128, 3, rngs=rngs),
        snn.LeakyIntegrator(3, kappa=0.95),
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(p, xs, y):
        logits = nnx.merge(graphdef, p, rest)(xs).max(axis=0)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    return loss_fn, params, xs, labels


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=64)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    loss_fn, params, xs, labels = setup(args.samples)
    results = {}
    for mode in ("dynamics", "current"):
        rule = rules.activity_forward_gradient(loss_fn, recurrent=mode)
        comparison = snnjax.compare_gradients(rule, params, xs, labels, key=jax.random.key(0), draws=args.draws)
        print(f"recurrent={mode!r}\n{comparison.table()}\n")
        results[mode] = comparison.rows()
    kernel = "layers.1.recurrent.kernel"
    ratio = {
        c: next(r[c] for r in results["current"] if r["name"] == kernel)
        / next(r[c] for r in results["dynamics"] if r["name"] == kernel)
        for c in ("variance",)
    }
    print(f"recurrent kernel: variance with 'current' / with 'dynamics' = {ratio['variance']:.3g}")
    payload = {"config": vars(args), "results": results, "recurrent_kernel_variance_ratio": ratio["variance"]}
    if not args.no_write:
        print(f"wrote {common.write_result('fg_a_recurrent', payload)}")
    return payload


if __name__ == "__main__":
    main()
