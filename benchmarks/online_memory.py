"""Peak memory and time of the online rules against their offline forms and BPTT, over T.

    python benchmarks/online_memory.py                        # T in 100 500 2000 8000
    python benchmarks/online_memory.py --steps 20 80 --no-write   # smoke

A 100-128-10 network (`snnjax.nn.Sequential`: Linear, LIF, Linear, leaky-integrator readout,
B = 16) with a cross-entropy at every time step, averaged over time. Offline rules run the
network layer by layer over the whole sequence (the `Sequential` called as it is, in a plain
loss) and differentiate it (BPTT: `jax.grad`; DFA: `snnjax.rules.dfa`, one `jax.grad` through
each layer's own dynamics; FG-A: `snnjax.rules.activity_forward_gradient`); the online rules
(`snnjax.rules.online_dfa`, `snnjax.rules.online_activity_forward_gradient`) take the same
network as a stepped chain (`snnjax.nn.network`, `snnjax.rules.per_step_loss`) and run one scan
over time carrying eligibility traces or forward-mode tangents. Peak memory
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


def variants(net: snn.Sequential, xs: jax.Array, labels: jax.Array) -> dict:
    """Jitted ``(params, xs, labels) -> result`` for the forward pass and each rule (a stateful
    rule's state, initialised on ``xs``, bound in)."""
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)

    def loss_fn(p, xs, labels):  # for the offline rules: the network run layer by layer
        y = nnx.merge(graphdef, p, rest)(xs)
        return jnp.mean(jax.vmap(loss_t, in_axes=(0, None))(y, labels)), y

    stepped = rules.per_step_loss(snn.network(net), loss_t)  # for the online rules: the same loss, stepped
    key = jax.random.key(0)
    dfa, online, fonline = rules.dfa(loss_fn), rules.online_dfa(stepped), rules.online_dfa(stepped, feedback="fdfa")
    fg_a = rules.activity_forward_gradient(loss_fn, batch_axes=(1, 0))
    fg_a_online = rules.online_activity_forward_gradient(stepped)
    states = {
        "dfa offline": dfa.init(params, xs, labels, key=key),
        "dfa online": online.init(params, xs, labels, key=key),
        "fdfa online": fonline.init(params, xs, labels),
    }
    return {
        "forward": jax.jit(lambda p, xs, y: loss_fn(p, xs, y)[0]),
        "bptt": jax.jit(lambda p, xs, y: jax.grad(lambda q: loss_fn(q, xs, y)[0])(p)),
        "dfa offline": jax.jit(lambda p, xs, y: dfa.apply(states["dfa offline"], p, xs, y)[1]),
        "dfa online": jax.jit(lambda p, xs, y: online.apply(states["dfa online"], p, xs, y)[1]),
        "fdfa online": jax.jit(lambda p, xs, y: fonline.apply(states["fdfa online"], p, xs, y, key=key)[1]),
        "fg-a offline": jax.jit(lambda p, xs, y: fg_a(p, xs, y, key=key)[1]),
        "fg-a online": jax.jit(lambda p, xs, y: fg_a_online(p, xs, y, key=key)[1]),
    }


def main(argv: list[str] | None = None) -> dict:
    args = common.over_steps_parser(__doc__).parse_args(argv)
    rngs = nnx.Rngs(0)
    net = snn.Sequential(
        nnx.Linear(100, 128, rngs=rngs),
        snn.LIF(128, beta=0.95),
        nnx.Linear(128, 10, rngs=rngs),
        snn.LeakyIntegrator(10, kappa=0.9),
    )
    params = nnx.state(net, nnx.Param)
    results = {}
    env = common.environment()
    print(f"device {env['device']}, jax {env['jax']}; B={args.batch}, 100-128-10 LIF network, loss at every step")
    for steps in args.steps:
        xs = (jax.random.uniform(jax.random.key(steps), (steps, args.batch, 100)) < 0.1).astype(jnp.float32) * 3
        labels = jnp.arange(args.batch) % 10
        results[str(steps)] = common.measure_at(steps, variants(net, xs, labels), (params, xs, labels), args.repeats)
    return common.finish_over_steps(
        "online_memory",
        args,
        results,
        f"Online rules against BPTT: 100-128-10 LIF, B = {args.batch}, loss at every step",
    )


if __name__ == "__main__":
    main()
