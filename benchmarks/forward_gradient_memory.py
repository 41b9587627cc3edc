"""Peak memory and time per step of forward gradients against BPTT, for T from 100 to 8000.

    python benchmarks/forward_gradient_memory.py                    # T in 100 500 2000 8000
    python benchmarks/forward_gradient_memory.py --steps 50 100 --no-write   # smoke

A 100-256-10 network (LIF hidden layer, leaky-integrator readout, B = 16) is scanned as a
whole, one `lax.scan` over time whose step runs every layer, with the readout summed in the
carry, so nothing per time step has to be kept unless the rule keeps it. Peak memory is XLA's
`compiled.memory_analysis().temp_size_in_bytes` (working memory beyond arguments and outputs);
time is the median of interleaved repeats. Rules: the forward pass alone, BPTT
(`jax.value_and_grad`), and the weight-perturbed forward gradient with K = 1 and K = 8.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import snnjax  # noqa: E402
from snnjax import rules  # noqa: E402


def make_loss(inputs: int, hidden: int, classes: int):
    lif, readout = snnjax.lif(0.95), snnjax.leaky_integrator(0.9)

    def loss_fn(params, xs, labels):
        batch = xs.shape[1]

        def step(carry, x_t):
            s_hidden, s_out, total = carry
            s_hidden, z = lif.step(s_hidden, x_t @ params["w1"] + params["b1"][None, :])
            s_out, v = readout.step(s_out, z @ params["w2"] + params["b2"][None, :])
            return (s_hidden, s_out, total + v), None

        init = (lif.init((batch, hidden)), readout.init((batch, classes)), jnp.zeros((batch, classes)))
        (_, _, total), _ = jax.lax.scan(step, init, xs)
        logits = total / xs.shape[0]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)), logits

    return loss_fn


def main(argv: list[str] | None = None) -> dict:
    args = common.over_steps_parser(__doc__).parse_args(argv)
    inputs, hidden, classes = 100, 256, 10
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "w1": jax.random.normal(k1, (inputs, hidden)) / inputs**0.5 * 3,
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k2, (hidden, classes)) / hidden**0.5,
        "b2": jnp.zeros(classes),
    }
    loss_fn = make_loss(inputs, hidden, classes)
    variants = {
        "forward": lambda p, xs, y: loss_fn(p, xs, y)[0],
        "bptt": lambda p, xs, y: rules.bptt(loss_fn)(p, xs, y)[1],
        "FG-W K=1": lambda p, xs, y: rules.forward_gradient(loss_fn, 1)(p, xs, y, key=jax.random.key(1))[1],
        "FG-W K=8": lambda p, xs, y: rules.forward_gradient(loss_fn, 8)(p, xs, y, key=jax.random.key(1))[1],
    }
    env = common.environment()
    print(f"device {env['device']}, jax {env['jax']}; B={args.batch}, 100-256-10 LIF network scanned as a whole")
    print(
        f"{'T':>6s} "
        + " ".join(f"{name + ' MiB':>14s}" for name in variants)
        + " "
        + " ".join(f"{name + ' ms':>14s}" for name in variants)
    )
    results = {}
    for steps in args.steps:
        xs = (jax.random.uniform(jax.random.key(steps), (steps, args.batch, inputs)) < 0.1).astype(jnp.float32)
        labels = jnp.arange(args.batch) % classes
        compiled = {name: jax.jit(fn).lower(params, xs, labels).compile() for name, fn in variants.items()}
        memory = {name: c.memory_analysis().temp_size_in_bytes for name, c in compiled.items()}
        times = common.time_side_by_side(
            {name: (lambda c=c, xs=xs, labels=labels: c(params, xs, labels)) for name, c in compiled.items()},
            repeats=args.repeats,
        )
        results[str(steps)] = {name: {"temp_bytes": memory[name], **times[name]} for name in variants}
        print(
            f"{steps:6d} "
            + " ".join(f"{memory[n] / 2**20:14.2f}" for n in variants)
            + " "
            + " ".join(f"{1e3 * times[n]['median_s']:14.1f}" for n in variants)
        )
    return common.finish_over_steps(
        "forward_gradient_memory", args, results, f"Forward gradients against BPTT: 100-256-10 LIF, B = {args.batch}"
    )


if __name__ == "__main__":
    main()
