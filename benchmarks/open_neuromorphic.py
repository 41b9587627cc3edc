"""Open Neuromorphic workload: one Linear(n, n) + LIF layer, T = 500, B = 16.

    python benchmarks/open_neuromorphic.py                 # n in {512, 1024}, writes results/
    python benchmarks/open_neuromorphic.py --sizes 4096 --repeats 3   # the size of the published runs
    python benchmarks/open_neuromorphic.py --sizes 64 --steps 20 --repeats 1 --no-write  # smoke

Times the jit-compiled forward pass (sum of spikes) and forward + backward pass (gradient of
the spike count with respect to the weights and bias) beside the bare matrix products the
layer cannot avoid: the forward product ``[T*B, n] x [n, n]`` and, for the backward pass, the
weight-gradient product ``[n, T*B] x [T*B, n]``. The ratio layer / matmuls is the overhead of
everything snnjax adds (bias, scan over time, spikes, surrogate derivative, reset); the target
on CPU is forward + backward within 1.3x. Each spike method (with ``run``'s default
``remat=True``), ``inject`` with ``remat=False`` and the NNX module are timed too.

A second reference, ``by-hand``, is the least a JAX scan can do for this layer: the same LIF
(beta 0.9, threshold 1, reset by subtraction, snnjax's default fast-sigmoid surrogate) written
as a plain scan with a hand-written VJP that stores one array per step (the potential before
the reset) and runs one reverse scan of three lines (:func:`lif_by_hand`). It computes the
same values and gradients as snnjax; the gap between it and the matmuls is the cost of
XLA's time loop on this machine, not of snnjax.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import snnjax  # noqa: E402
import snnjax.nn as snn  # noqa: E402

METHODS = ("inject", "custom_jvp", "bypass", "custom_vjp")
BETA, THRESHOLD, SLOPE = 0.9, 1.0, 25.0  # snnjax.lif(0.9)'s defaults: threshold 1, fast_sigmoid(25)


def _lif_loop(currents: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Spikes ``z`` and potentials before the reset ``u``, each ``[T, B, n]``."""

    def step(v, x):
        u = BETA * v + x
        z = (u > THRESHOLD).astype(u.dtype)
        return u - THRESHOLD * z, (z, u)

    _, (z, u) = jax.lax.scan(step, jnp.zeros_like(currents[0]), currents)
    return z, u


@jax.custom_vjp
def lif_by_hand(currents: jax.Array) -> jax.Array:
    r"""Spikes of ``snnjax.lif(0.9)`` from rest, ``[T, B, n] -> [T, B, n]``, by a plain scan.

    Its VJP is written out: with :math:`u_t = \beta v_{t-1} + x_t`, :math:`z_t = H(u_t - 1)`,
    :math:`v_t = u_t - z_t` and :math:`\sigma(x) = 1 / (1 + 25|x|)^2`,

    .. math::

        \bar u_t = \bar v_t + (\bar z_t - \bar v_t)\,\sigma(u_t - 1), \qquad
        \bar v_{t-1} = \beta \bar u_t, \qquad \bar x_t = \bar u_t .
    """
    return _lif_loop(currents)[0]


def _by_hand_bwd(u, g_z):
    def step(g_v, inputs):
        u_t, g_z_t = inputs
        g_u = g_v + (g_z_t - THRESHOLD * g_v) / (1.0 + SLOPE * jnp.abs(u_t - THRESHOLD)) ** 2
        return BETA * g_u, g_u

    _, g_x = jax.lax.scan(step, jnp.zeros_like(u[0]), (u, g_z), reverse=True)
    return (g_x,)


lif_by_hand.defvjp(_lif_loop, _by_hand_bwd)  # residuals: u


def variants(n: int, steps: int, batch: int) -> dict[str, callable]:
    """Zero-argument jit-compiled callables, keyed ``"<mode>/<variant>"``."""
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    xs = jax.random.normal(kx, (steps, batch, n), jnp.float32)
    w = jax.random.normal(kw, (n, n), jnp.float32) / jnp.sqrt(n)
    b = jnp.zeros((n,), jnp.float32)
    cotangent = jax.random.normal(kg, (steps * batch, n), jnp.float32)
    x2d = xs.reshape(steps * batch, n)

    matmul_fwd = jax.jit(lambda x, w: x @ w)
    matmul_fwd_bwd = jax.jit(lambda x, w, g: (x @ w, x.T @ g))
    out = {
        "forward/matmuls": lambda: matmul_fwd(x2d, w),
        "forward+backward/matmuls": lambda: matmul_fwd_bwd(x2d, w, cotangent),
    }

    def spike_count(params, xs, method, remat=True):
        w, b = params
        currents = (xs.reshape(steps * batch, n) @ w + b[None, :]).reshape(steps, batch, n)
        _, z = snnjax.run(snnjax.lif(0.9, method=method), currents, remat=remat)
        return jnp.sum(z)

    for method in METHODS:
        fwd = jax.jit(lambda p, x, m=method: spike_count(p, x, m))
        fwd_bwd = jax.jit(jax.value_and_grad(lambda p, x, m=method: spike_count(p, x, m)))
        out[f"forward/lif-{method}"] = lambda f=fwd: f((w, b), xs)
        out[f"forward+backward/lif-{method}"] = lambda f=fwd_bwd: f((w, b), xs)
    no_remat = jax.jit(jax.value_and_grad(lambda p, x: spike_count(p, x, "inject", remat=False)))
    out["forward+backward/lif-inject-no-remat"] = lambda: no_remat((w, b), xs)

    def by_hand_count(params, xs):
        w, b = params
        return jnp.sum(lif_by_hand((xs.reshape(steps * batch, n) @ w + b[None, :]).reshape(steps, batch, n)))

    hand_fwd, hand_fwd_bwd = jax.jit(by_hand_count), jax.jit(jax.value_and_grad(by_hand_count))
    out["forward/by-hand"] = lambda: hand_fwd((w, b), xs)
    out["forward+backward/by-hand"] = lambda: hand_fwd_bwd((w, b), xs)

    model = snn.Sequential(nnx.Linear(n, n, rngs=nnx.Rngs(0)), snn.LIF(n, beta=0.9))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def nnx_count(params, xs):
        return jnp.sum(nnx.merge(graphdef, params, rest)(xs))

    nnx_fwd, nnx_fwd_bwd = jax.jit(nnx_count), jax.jit(jax.value_and_grad(nnx_count))
    out["forward/nnx-Sequential"] = lambda: nnx_fwd(params, xs)
    out["forward+backward/nnx-Sequential"] = lambda: nnx_fwd_bwd(params, xs)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only, write no JSON")
    common.add_allocator_flag(parser)
    args = parser.parse_args(argv)

    common.tune_host_allocator(not args.no_tune_allocator)  # before the first JAX computation
    env = common.environment()
    print(f"device {env['device']}, jax {env['jax']}, flax {env['flax']}, T={args.steps}, B={args.batch}")
    results = {}
    for n in args.sizes:
        timings = common.time_side_by_side(variants(n, args.steps, args.batch), repeats=args.repeats)
        print(f"\nn = {n}: median ms (ratio to the bare matmuls of the same mode)")
        rows = {}
        for name, t in timings.items():
            mode = name.split("/")[0]
            ratio = t["median_s"] / timings[f"{mode}/matmuls"]["median_s"]
            rows[name] = {**t, "ratio_to_matmuls": ratio}
            print(f"  {name:36s} {1e3 * t['median_s']:9.2f}   {ratio:5.2f}x")
        results[str(n)] = rows
    payload = {
        "config": {"steps": args.steps, "batch": args.batch, "sizes": args.sizes, "repeats": args.repeats},
        "results": results,
    }
    if not args.no_write:
        name = "open_neuromorphic-n" + "-".join(map(str, args.sizes))
        print(f"\nwrote {common.write_result(name, payload)}")
    return payload


if __name__ == "__main__":
    main()
