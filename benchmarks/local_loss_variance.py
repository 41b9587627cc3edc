"""Ren et al.'s argument for many groups, measured: LG-FG-A's cosine to the true local gradient and
its variance against the number of groups G, on LocalMixer and a Fashion-MNIST batch.

    python benchmarks/local_loss_variance.py                     # G = 1, 2, 4, ..., 64
    python benchmarks/local_loss_variance.py --groups 1 16 --draws 50

For each G the same architecture (Ren et al.'s M/1/16 shape, `benchmarks/local_mixer_fashion_mnist.py`'s
`m1`: 2 blocks of 256 channels, one patch) is built with G groups, and `snnjax.compare_gradients`
draws LG-FG-A's estimate (`rules.activity_forward_gradient` on the model's patch- and group-wise
local losses, the heads and classifier on their exact gradients) `--draws` times against LG-BP's
gradient of the same local losses (`rules.bptt`, the true local gradient). Two weightings:
- `grouped`: each group's noise weighed by its own loss's directional derivative (`rules.grouped`);
- `summed`: every unit weighed by its block's summed derivative (`groupwise=False`), still unbiased.
Reported per G: the median over the block layers (each layer once, the exact heads and classifier
left out) of the cosine to the true gradient and of the relative variance `tr(Sigma) / |g|^2`
(the median: a leaf whose true gradient is near zero, such as a bias that a normalisation of a
few channels nearly cancels, has a relative variance without bound), and each layer's own.
Writes `benchmarks/results/local_loss_variance-<platform>.json` and its plot.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import snnjax  # noqa: E402
from snnjax import rules  # noqa: E402
from snnjax.datasets import load_idx  # noqa: E402
from snnjax.nn import LocalMixer  # noqa: E402

NAME = "local_loss_variance"


def measure(groups: int, images, labels, draws: int, channels: int) -> dict:
    net = LocalMixer((28, 28, 1), 10, patches=1, channels=channels, blocks=2, groups=groups, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(net, nnx.Param)

    def loss_fn(p, x, y):
        return nnx.merge(graphdef, p).losses(x, y)

    out = {}
    for name, groupwise in (("grouped", True), ("summed", False)):
        rule = rules.activity_forward_gradient(loss_fn, exact_output=True, groupwise=groupwise)
        c = snnjax.compare_gradients(
            rule, params, images, labels, key=jax.random.key(1), draws=draws, reference=rules.bptt(loss_fn)
        )
        layers = [i for i, n in enumerate(c.names) if n.startswith("blocks.")]
        out[name] = {
            "cosine": float(np.median(c.cosine[layers])),
            "variance": float(np.median(c.variance[layers])),
            "bias_over_expected": float(np.mean(c.bias[layers] / np.maximum(c.bias_if_unbiased[layers], 1e-12))),
            "layers": {c.names[i]: {"cosine": float(c.cosine[i]), "variance": float(c.variance[i])} for i in layers},
        }
        print(
            f"G = {groups:3d} {name:8s} cosine {out[name]['cosine']:.4f}  variance {out[name]['variance']:10.1f}  "
            f"bias / noise-only bias {out[name]['bias_over_expected']:.2f}",
            flush=True,
        )
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted(int(g) for g in results)
    fig, (cos, var) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, style in (("grouped", "o-"), ("summed", "s--")):
        cos.plot(groups, [results[str(g)][name]["cosine"] for g in groups], style, label=name)
        var.plot(groups, [results[str(g)][name]["variance"] for g in groups], style, label=name)
    for ax, label in ((cos, "cosine to the true local gradient"), (var, "relative variance tr Σ / |g|²")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("groups G")
        ax.set_ylabel(label)
    var.set_yscale("log")
    cos.legend(fontsize=8)
    fig.suptitle("LG-FG-A on LocalMixer (2 blocks, 256 channels), one Fashion-MNIST batch", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--directory", default=None, help="folder of the IDX files")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    data = load_idx("fashion_mnist", "train", args.directory)
    images = ((data.images[: args.batch].reshape(-1, 28, 28) / 255.0 - 0.2860) / 0.3530).astype(np.float32)
    labels = data.labels[: args.batch].astype(np.int32)
    results = {str(g): measure(g, images, labels, args.draws, args.channels) for g in args.groups}
    payload = {"config": vars(args), "results": results}
    if not args.no_write:
        path = common.write_result(NAME, payload)
        print(f"wrote {path}")
        if importlib.util.find_spec("matplotlib"):
            plot(results, path.with_suffix(".png"))
            print(f"wrote {path.with_suffix('.png')}")
    return payload


if __name__ == "__main__":
    main()
