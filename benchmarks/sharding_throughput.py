"""Training throughput and communication against the number of devices (data parallel).

    python benchmarks/sharding_throughput.py                          # 1, 2, 4, 8 devices
    python benchmarks/sharding_throughput.py --devices 1 2 --batch 16 --steps 10 --no-write   # smoke

The training step of `snnjax.train.make_train_step` with a mesh (`snnjax.sharding`): a
100-256-256-10 feed-forward LIF network, T time steps, global batch B split over the devices
(strong scaling: the same work on more devices), for BPTT, weight-perturbed forward gradients
(FG-W) and activity-perturbed ones (FG-A). Throughput is examples per second from the median of
interleaved repeats of all device counts and rules. Communication is the bytes of the
collectives in each compiled step (`snnjax.sharding.collective_bytes`), beside the
shared-seed forward gradient (`snnjax.rules.shared_seed_forward_gradient`) exchanging K
directional derivatives or the full gradient.

Without an accelerator the script asks for 8 simulated CPU devices; they share this machine's
cores, so their throughput says what the splitting costs, not what more hardware would gain.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

from snnjax import rules, sharding  # noqa: E402
from snnjax.train import build_model, build_rule, classifier_loss, make_train_step  # noqa: E402

sharding.simulate_cpu_devices(8)  # before JAX's first computation

RULES = ("bptt", "fg-w", "fg-a")


def _step(rule_name: str, devices: int, x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...]):
    """A compiled data-parallel training step on ``devices`` devices, its placed arguments and its collective bytes."""
    graphdef, params, rest = nnx.split(build_model("snn", x.shape[-1], 10, hidden, seed=0), nnx.Param, ...)
    prepare = lambda raw, key: jnp.swapaxes(raw, 0, 1)  # noqa: E731  [B, T, N] -> [T, B, N]
    example = (
        jax.ShapeDtypeStruct((x.shape[1], x.shape[0], x.shape[2]), jnp.float32),
        jax.ShapeDtypeStruct(y.shape, jnp.int32),
    )
    rule = build_rule(rule_name, classifier_loss(graphdef, rest, True))
    optimizer = optax.adam(1e-3)
    mesh = sharding.mesh(devices)
    state = sharding.put_state(
        (params, optimizer.init(params), rule.init(params, *example, key=jax.random.key(1))), mesh
    )
    args = (*state, sharding.put_batch(x, mesh), sharding.put_batch(y, mesh), jax.random.key(0))
    compiled = make_train_step(rule, optimizer, prepare, mesh=mesh).lower(*args).compile()
    params_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(params))
    return compiled, args, sharding.collective_bytes(compiled), params_bytes


def _runner(compiled, args: tuple):
    """A zero-argument call of the step that carries its (donated) states forward, as training does."""
    box = list(args)

    def call():
        *box[:3], loss, _ = compiled(*box)
        return loss

    return call


def _shared_seed_bytes(
    devices: int, x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...], directions: int
) -> dict[str, int]:
    graphdef, params, rest = nnx.split(build_model("snn", x.shape[-1], 10, hidden, seed=0), nnx.Param, ...)
    loss_fn = classifier_loss(graphdef, rest, True)
    mesh = sharding.mesh(devices)
    xs = jnp.swapaxes(jnp.asarray(x), 0, 1)  # [T, B, N]: split along axis 1
    out = {}
    for exchange in ("derivatives", "gradients"):
        rule = rules.shared_seed_forward_gradient(loss_fn, mesh, directions, exchange=exchange, batch_axes=(1, 0))
        lowered = jax.jit(lambda p, xs, y, k, rule=rule: rule(p, xs, y, key=k)).lower(params, xs, y, jax.random.key(0))
        out[exchange] = sharding.collective_bytes(lowered.compile())["total"]
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--batch", type=int, default=256, help="global batch, split over the devices")
    parser.add_argument("--steps", type=int, default=50, help="time steps T")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--directions", type=int, default=16, help="K of the shared-seed forward gradient")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    available = len(jax.devices())
    counts = [n for n in args.devices if n <= available]
    skipped = [n for n in args.devices if n > available]
    rng = np.random.default_rng(0)
    x = (rng.random((args.batch, args.steps, 100)) < 0.1).astype(np.float32)
    y = (np.arange(args.batch) % 10).astype(np.int32)
    hidden = tuple(args.hidden)
    env = common.environment()
    print(
        f"device {env['device']} x {available}, jax {env['jax']}; global batch {args.batch}, T={args.steps}, "
        f"100-{'-'.join(map(str, hidden))}-10 LIF"
        + (f"; skipped {skipped} (only {available} devices)" if skipped else "")
    )

    steps, communication = {}, {}
    for rule_name in RULES:
        for n in counts:
            compiled, step_args, collective, params_bytes = _step(rule_name, n, x, y, hidden)
            steps[f"{rule_name}/{n}"] = _runner(compiled, step_args)
            communication[f"{rule_name}/{n}"] = collective
    timings = common.time_side_by_side(steps, repeats=args.repeats)
    results = {}
    for rule_name in RULES:
        base = timings[f"{rule_name}/{counts[0]}"]["median_s"]
        for n in counts:
            key = f"{rule_name}/{n}"
            row = {
                **timings[key],
                "examples_per_second": args.batch / timings[key]["median_s"],
                "speedup": base / timings[key]["median_s"],
                "collective_bytes": communication[key],
            }
            results[key] = row
            print(
                f"{rule_name:5s} {n} devices: {row['median_s'] * 1e3:8.1f} ms/step  "
                f"{row['examples_per_second']:8.0f} ex/s  x{row['speedup']:.2f} vs {counts[0]}"
                f"  collectives {communication[key]['total']:>9,d} B"
            )
    shared = {n: _shared_seed_bytes(n, x, y, hidden, args.directions) for n in counts if n > 1}
    for n, sent in shared.items():
        print(
            f"FG-W K={args.directions}, shared seed, {n} devices: exchanging derivatives {sent['derivatives']:,d} B, "
            f"gradients {sent['gradients']:,d} B per step (parameters {params_bytes:,d} B)"
        )
    payload = {
        "batch": args.batch,
        "steps": args.steps,
        "hidden": list(hidden),
        "devices": counts,
        "skipped_devices": skipped,
        "parameter_bytes": params_bytes,
        "results": results,
        "shared_seed_fg_w": {"directions": args.directions, "bytes": {str(n): s for n, s in shared.items()}},
        "command": "python benchmarks/sharding_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    if not args.no_write:
        print(f"wrote {common.write_result('sharding_throughput', payload)}")
    return payload


if __name__ == "__main__":
    main()
