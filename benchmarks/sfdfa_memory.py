"""Memory and time of SFDFA (online) against backpropagation through spike times, over T.

    python benchmarks/sfdfa_memory.py                          # T in 100 500 2000 8000
    python benchmarks/sfdfa_memory.py --steps 20 80 --no-write   # smoke

A 100-128-10 exact-time current-based LIF network (`snnjax.spike_time`, B = 16, the 0.2 s
window of the SFDFA paper) on random time-to-first-spike inputs. T is the number of grid steps
over the window (``dt = 0.2 s / T``): a finer grid, the same network. Variants: the forward
pass alone (`snnjax.spike_time.simulate`); `snnjax.rules.sfdfa` with learned feedback (SFDFA)
and with fixed feedback (DFA), which carry their eligibility traces and spike grades in the one
forward scan; and `snnjax.rules.spike_time_bp`, `jax.grad` through the exact spike times, which
keeps every step for its backward pass. Peak memory is XLA's
`memory_analysis().temp_size_in_bytes`; time is the median of interleaved repeats.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

from snnjax.neurons.spike_time import SpikeTimeNet, init_weights, simulate, ttfs  # noqa: E402
from snnjax.rules import sfdfa, spike_count_loss, spike_time_bp  # noqa: E402

SIZES, WINDOW = (100, 128, 10), 0.2


def variants(net: SpikeTimeNet, params: tuple[jax.Array, ...]) -> dict:
    """Jitted ``(params, times, labels) -> result`` for the forward pass and each rule (a stateful
    rule's feedback state bound in)."""
    loss_fn = spike_count_loss(net)
    learned, fixed, bp = sfdfa(loss_fn), sfdfa(loss_fn, feedback="dfa"), spike_time_bp(loss_fn)
    states = {"sfdfa": learned.init(params), "dfa": fixed.init(params, key=jax.random.key(3))}
    key = jax.random.key(2)
    return {
        "forward": jax.jit(lambda p, x, y: simulate(net, p, x).counts),
        "sfdfa online": jax.jit(lambda p, x, y: learned(p, x, y, key=key, state=states["sfdfa"])[1]),
        "dfa online": jax.jit(lambda p, x, y: fixed(p, x, y, state=states["dfa"])[1]),
        "bp through spike times": jax.jit(lambda p, x, y: bp(p, x, y)[1]),
    }


def main(argv: list[str] | None = None) -> dict:
    args = common.over_steps_parser(__doc__).parse_args(argv)
    images = jax.random.randint(jax.random.key(1), (args.batch, SIZES[0]), 0, 256).astype(jnp.uint8)
    times, labels = ttfs(images), jnp.arange(args.batch) % SIZES[-1]
    env = common.environment()
    print(
        f"device {env['device']}, jax {env['jax']}; B={args.batch}, {'-'.join(map(str, SIZES))} exact-time LIF "
        f"network, {WINDOW} s window"
    )
    results = {}
    for steps in args.steps:
        net = SpikeTimeNet(SIZES, theta=(0.2, 0.7), window=WINDOW, dt=WINDOW / steps)
        params = init_weights(jax.random.key(0), net, scale=2.0)
        results[str(steps)] = common.measure_at(steps, variants(net, params), (params, times, labels), args.repeats)
    title = (
        f"SFDFA against BP through spike times: {'-'.join(map(str, SIZES))}, B = {args.batch}, "
        f"{WINDOW} s window on T steps"
    )
    return common.finish_over_steps("sfdfa_memory", args, results, title)


if __name__ == "__main__":
    main()
