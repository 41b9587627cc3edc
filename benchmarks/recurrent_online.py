"""Recurrent networks: memory and time of exact RTRL, truncated BPTT, e-prop, OSTL and OTTT against
BPTT over T, and how far each approximation is from the exact gradient.

    python benchmarks/recurrent_online.py                                # T in 100 500 2000 8000
    python benchmarks/recurrent_online.py --steps 20 80 --no-write       # smoke

A 16-24-4 network of recurrent ALIF neurons and a leaky-integrator readout with a per-step
cross-entropy (`snnjax.rules.per_step_loss`, B = 16) on random inputs. Variants: the loss
alone; `snnjax.rules.bptt`; `snnjax.rules.tbptt` with a window of 16 steps; `snnjax.rules.rtrl`
(exact, forward mode, 128 parameter coordinates at a time); `snnjax.rules.eprop` (symmetric);
`snnjax.rules.ostl`; `snnjax.rules.ottt` (the leak read from the ALIF, alpha = 0.9). Peak memory is XLA's
`memory_analysis().temp_size_in_bytes`; time is the median of interleaved repeats. The cosine
table compares each truncation window's, e-prop's, OSTL's and OTTT's gradient with the exact one (`compare_gradients`
against BPTT; the rules are deterministic, so its two draws agree) on recurrent LIF and ALIF networks, T = 100.
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
from snnjax import compare_gradients, rules  # noqa: E402

SIZES, WINDOW, CHUNK = (16, 24, 4), 16, 128


def stepped(neuron: str):
    """The per-step loss of a recurrent LIF or ALIF network, and its parameters."""

    def network(p):
        layer = snnjax.alif(0.9, recurrent=p["rec"]) if neuron == "alif" else snnjax.lif(0.9, recurrent=p["rec"])
        return snnjax.chain(snnjax.dense(p["in"], p["b"]), layer, snnjax.dense(p["out"]), snnjax.leaky_integrator(0.9))

    n_in, n, n_out = SIZES
    keys = jax.random.split(jax.random.key(0), 3)
    params = {
        "in": jax.random.normal(keys[0], (n_in, n)) / jnp.sqrt(n_in) * 2,
        "b": jnp.zeros(n),
        "rec": jax.random.normal(keys[1], (n, n)) / jnp.sqrt(n),
        "out": jax.random.normal(keys[2], (n, n_out)) / jnp.sqrt(n),
    }
    return rules.per_step_loss(network, optax.softmax_cross_entropy_with_integer_labels), params


def cosines(steps: int = 100, batch: int = 16) -> dict:
    """Layer-mean and recurrent-kernel cosine of TBPTT(k) to the exact gradient, per neuron."""
    xs = jax.random.uniform(jax.random.key(1), (steps, batch, SIZES[0])) < 0.3
    labels = jnp.arange(batch) % SIZES[-1]
    table = {}
    for neuron in ("lif", "alif"):
        loss_fn, params = stepped(neuron)
        for name, rule in {
            "RTRL": rules.rtrl(loss_fn, CHUNK),
            **{f"TBPTT(k={k})": rules.tbptt(loss_fn, k) for k in (32, 8, 2, 1)},
            "e-prop (symmetric)": rules.eprop(loss_fn),
            "e-prop (random)": rules.eprop(loss_fn, feedback="random"),
            "OSTL": rules.ostl(loss_fn),
            "OTTT": rules.ottt(loss_fn),
        }.items():
            state = rule.init(params, key=jax.random.key(3))
            c = compare_gradients(
                rule, params, xs.astype(jnp.float32), labels, key=jax.random.key(2), draws=2, state=state
            )
            row = dict(zip(c.names, c.cosine.tolist()))
            table[f"{neuron} {name}"] = {"layer mean": row["layer mean"], "recurrent kernel": row["rec"]}
            print(
                f"{neuron:5s} {name:12s} cosine to the exact gradient: layer mean {row['layer mean']:.4f}, "
                f"recurrent kernel {row['rec']:.4f}"
            )
    return table


def variants(loss_fn, params) -> dict:
    eprop = rules.eprop(loss_fn)
    state = eprop.init(params)
    return {
        "forward": jax.jit(lambda p, x, y: loss_fn(p, x, y)[0]),
        "bptt": jax.jit(lambda p, x, y: rules.bptt(loss_fn)(p, x, y)[1]),
        f"tbptt k={WINDOW}": jax.jit(lambda p, x, y: rules.tbptt(loss_fn, WINDOW)(p, x, y)[1]),
        "rtrl": jax.jit(lambda p, x, y: rules.rtrl(loss_fn, CHUNK)(p, x, y)[1]),
        "e-prop": jax.jit(lambda p, x, y: eprop(p, x, y, state=state)[1]),
        "ostl": jax.jit(lambda p, x, y: rules.ostl(loss_fn)(p, x, y)[1]),
        "ottt": jax.jit(lambda p, x, y: rules.ottt(loss_fn)(p, x, y)[1]),
    }


def main(argv: list[str] | None = None) -> dict:
    args = common.over_steps_parser(__doc__).parse_args(argv)
    env = common.environment()
    print(f"device {env['device']}, jax {env['jax']}; B={args.batch}, {'-'.join(map(str, SIZES))} recurrent ALIF")
    loss_fn, params = stepped("alif")
    labels = jnp.arange(args.batch) % SIZES[-1]
    results = {}
    for steps in args.steps:
        xs = (jax.random.uniform(jax.random.key(1), (steps, args.batch, SIZES[0])) < 0.3).astype(jnp.float32)
        results[str(steps)] = common.measure_at(steps, variants(loss_fn, params), (params, xs, labels), args.repeats)
    table = cosines(min(100, max(args.steps)), args.batch)
    title = (
        f"RTRL, TBPTT, e-prop, OSTL and OTTT against BPTT: {'-'.join(map(str, SIZES))} recurrent ALIF, B = {args.batch}"
    )
    return common.finish_over_steps("recurrent_online", args, results, title, {"cosine_to_exact": table})


if __name__ == "__main__":
    main()
