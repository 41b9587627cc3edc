"""Peak memory and time of the online rules against their offline forms and BPTT, over T.

    python benchmarks/online_memory.py                        # T in 100 500 2000 8000
    python benchmarks/online_memory.py --steps 20 80 --no-write   # smoke

A 100-128-10 network (`snnjax.nn.Sequential`: Linear, LIF, Linear, leaky-integrator readout,
B = 16) with a cross-entropy at every time step, averaged over time. Offline rules run the
network layer by layer over the whole sequence and differentiate it (BPTT: `jax.grad`; DFA:
`snnjax.rules.dfa`, one `jax.grad` through each layer's own dynamics; FG-A:
`snnjax.rules.activity_forward_gradient` on the tapped network); the online rules
(`snnjax.rules.online_dfa`, `snnjax.rules.online_activity_forward_gradient`) run one scan over
time carrying eligibility traces or forward-mode tangents. Peak memory
is XLA's `memory_analysis().temp_size_in_bytes`; time is the median of interleaved repeats.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import snnjax.nn as snn  # noqa: E402
from snnjax import rules  # noqa: E402


def loss_t(y, labels):
    return optax.softmax_cross_entropy_with_integer_labels(y, labels)


def main(argv: list[str] | None = None) -> dict:
    args = common.over_steps_parser(__doc__).parse_args(argv)
    rngs = nnx.Rngs(0)
    net = snn.Sequential(
        nnx.Linear(100, 128, rngs=rngs),
        snn.LIF(128, beta=0.95),
        nnx.Linear(128, 10, rngs=rngs),
        snn.LeakyIntegrator(10, kappa=0.9),
    )
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)

    def model(p, xs, labels, **hook):  # route= for DFA, tap= for FG-A
        y = nnx.merge(graphdef, p, rest)(xs, **hook)
        return jnp.mean(jax.vmap(loss_t, in_axes=(0, None))(y, labels), axis=0), y

    key = jax.random.key(0)
    results = {}
    env = common.environment()
    print(f"device {env['device']}, jax {env['jax']}; B={args.batch}, 100-128-10 LIF network, loss at every step")
    for steps in args.steps:
        xs = (jax.random.uniform(jax.random.key(steps), (steps, args.batch, 100)) < 0.1).astype(jnp.float32) * 3
        labels = jnp.arange(args.batch) % 10
        example = (xs, labels)
        dfa, online, fonline = (
            rules.dfa(model, example, key=key),
            rules.online_dfa(net, loss_t, key=key),
            rules.online_dfa(net, loss_t, feedback="fdfa"),
        )
        fg_a, fg_a_online = rules.activity_forward_gradient(model), rules.online_activity_forward_gradient(net, loss_t)
        states = {
            "dfa offline": dfa.init(params),
            "dfa online": online.init(params),
            "fdfa online": fonline.init(params),
        }
        variants = {
            "forward": jax.jit(lambda p, xs, y: rules.as_routed_loss(model)(p, xs, y)[0]),
            "bptt": jax.jit(lambda p, xs, y: jax.grad(lambda q: rules.as_routed_loss(model)(q, xs, y)[0])(p)),
            "dfa offline": jax.jit(lambda p, xs, y: dfa.apply(states["dfa offline"], p, xs, y)[1]),
            "dfa online": jax.jit(lambda p, xs, y: online.apply(states["dfa online"], p, xs, y)[1]),
            "fdfa online": jax.jit(lambda p, xs, y: fonline.apply(states["fdfa online"], p, xs, y, key=key)[1]),
            "fg-a offline": jax.jit(lambda p, xs, y: fg_a(p, xs, y, key=key)[1]),
            "fg-a online": jax.jit(lambda p, xs, y: fg_a_online(p, xs, y, key=key)[1]),
        }
        compiled = {name: fn.lower(params, xs, labels).compile() for name, fn in variants.items()}
        memory = {name: c.memory_analysis().temp_size_in_bytes for name, c in compiled.items()}
        times = common.time_side_by_side(
            {name: (lambda c=c: c(params, xs, labels)) for name, c in compiled.items()}, repeats=args.repeats
        )
        results[str(steps)] = {name: {"temp_bytes": memory[name], **times[name]} for name in variants}
        print(
            f"T={steps:5d}  "
            + "  ".join(f"{n}: {memory[n] / 2**20:.2f} MiB {1e3 * times[n]['median_s']:.1f} ms" for n in variants)
        )
    return common.finish_over_steps(
        "online_memory",
        args,
        results,
        f"Online rules against BPTT: 100-128-10 LIF, B = {args.batch}, loss at every step",
    )


if __name__ == "__main__":
    main()
