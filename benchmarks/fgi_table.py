"""The FGI speed table (Otte 2024): an ALIF network on sequential MNIST, snnjax beside PyTorch.

    pip install -e '.[bench]'                      # torch
    python benchmarks/fgi_table.py                 # T in 28 49 98 196 392 784
    python benchmarks/fgi_table.py --steps 98 --compile-max-steps 98
    python benchmarks/fgi_table.py --steps 8 --batch 4 --hidden 8 --repeats 1 --no-write   # smoke

The paper's benchmark model has one recurrent ALIF layer of 128 neurons
(``snnjax.alif(form="fgi")``: ``theta_t = 0.1 + 0.8 a_{t-1}``, a soft reset that is not
detached, trainable per-neuron ``alpha = sigmoid(N(3, 0.1))`` and ``rho = sigmoid(N(4, 0.5))``,
Gaussian surrogate ``exp(-v^2 / 2)``). A leaky-integrator readout feeds a cross-entropy on the
time-averaged output. Batch 128, Adam with amsgrad, lr 1e-3. The 784 pixels arrive 784 / T at a
time. The training step (loss, gradient, update) and the inference step (loss only) are timed,
jit-compiled, for each spike method of snnjax as ``snnjax.run`` runs it by default (``remat=True``:
the step's elementwise work recomputed in the backward pass instead of stored), and for
``inject`` with ``remat=False`` (every intermediate stored, as a plain scan does), and for
``inject`` run by ``snnjax.run_bptt`` (the recurrent weights' gradient as one product after the
backward loop, the decays' with one batch reduction), and for ``inject`` and ``custom_jvp`` with
the three layers stepped in one loop (``snnjax.chain``, as the PyTorch model's loop does; in
inference ``custom_jvp`` skips the surrogate factor that ``inject``'s identity evaluates in
the forward pass). ``jax-plain-scan`` is the same network written without snnjax
(:func:`plain_scan_loss`: one ``lax.scan``, a ``custom_jvp`` spike, nothing recomputed), the
reference for what a straightforward JAX scan does. Beside them the same
network is written in PyTorch by us in two ways: with a custom ``torch.autograd.Function`` (backward = the surrogate)
and with the injection identity ``h = v * sg(g'(v)); z = h - sg(h) + sg(H(v))``. Each runs
eager, and under ``torch.compile`` of the whole model for ``T <= --compile-max-steps``
(compiling unrolls the loop over time: about 3 minutes at T = 98 on a 2-core CPU, growing with
T). XLA's temporary memory of each snnjax training step is recorded beside its time. The random
input is not MNIST: the timing does not depend on the pixel values.
"""

from __future__ import annotations

import os

# torch.compile's pool of compile workers, left running, slows every JAX call in this process
# (1.5 s per training step at T = 8 instead of 1 ms); compiling in-process avoids it.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

import snnjax  # noqa: E402

METHODS = ("inject", "bypass", "custom_jvp", "custom_vjp")
CLASSES = 10


def init_params(key: jax.Array, inputs: int, hidden: int) -> dict[str, jax.Array]:
    ks = jax.random.split(key, 5)
    scale = 1.0 / np.sqrt(inputs + hidden)
    return {
        "w_in": scale * jax.random.normal(ks[0], (inputs, hidden)),
        "w_rec": scale * jax.random.normal(ks[1], (hidden, hidden)),
        "b": jnp.zeros(hidden),
        "alpha": 3.0 + 0.1 * jax.random.normal(ks[2], (hidden,)),  # logits of the decays
        "rho": 4.0 + 0.5 * jax.random.normal(ks[3], (hidden,)),
        "w_out": jax.random.normal(ks[4], (hidden, CLASSES)) / np.sqrt(hidden),
        "kappa": jnp.full((CLASSES,), 3.0, jnp.float32),  # not weakly typed: its update would recompile
    }


def snnjax_loss(method: str, remat: bool = True, bptt: bool = False, chained: bool = False) -> Callable:
    """``loss(params, xs, labels)`` of the snnjax network with spike ``method``, run by
    ``snnjax.run`` (with ``remat``) or, with ``bptt``, by ``snnjax.run_bptt``. With ``chained`` the
    ALIF layer, the readout projection and the leaky integrator step together in one loop
    (``snnjax.chain``, run by ``snnjax.run``)."""
    surrogate = snnjax.surrogates.gaussian()

    def loss_fn(p, xs, labels):
        steps, batch, inputs = xs.shape
        hidden = p["w_rec"].shape[0]
        neuron = snnjax.alif(
            jax.nn.sigmoid(p["alpha"]),
            jax.nn.sigmoid(p["rho"]),
            form="fgi",
            recurrent=p["w_rec"],
            surrogate=surrogate,
            method=method,
        )
        currents = (xs.reshape(steps * batch, inputs) @ p["w_in"] + p["b"][None, :]).reshape(steps, batch, hidden)
        run = snnjax.run_bptt if bptt else functools.partial(snnjax.run, remat=remat)
        readout = snnjax.leaky_integrator(jax.nn.sigmoid(p["kappa"]))
        if chained:
            _, v = run(snnjax.chain(neuron, lambda z: z @ p["w_out"], readout), currents)
        else:
            _, z = run(neuron, currents)
            _, v = run(readout, (z.reshape(steps * batch, hidden) @ p["w_out"]).reshape(steps, batch, CLASSES))
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(v.mean(axis=0), labels))

    return loss_fn


@jax.custom_jvp
def _plain_spike(x: jax.Array) -> jax.Array:
    return (x > 0).astype(x.dtype)


@_plain_spike.defjvp
def _plain_spike_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _plain_spike(x), dx * jnp.exp(-0.5 * x * x)  # snnjax.surrogates.gaussian()


def plain_scan_loss(p: dict, xs: jax.Array, labels: jax.Array) -> jax.Array:
    """The same network and loss as :func:`snnjax_loss`, written without snnjax: one
    ``lax.scan`` over the whole network, the readout summed in the carry, a ``custom_jvp`` spike,
    everything stored for the backward pass (no remat), as one would write it by hand."""
    steps, batch, inputs = xs.shape
    alpha, rho, kappa = (jax.nn.sigmoid(p[k])[None, :] for k in ("alpha", "rho", "kappa"))  # [1, N]
    currents = (xs.reshape(steps * batch, inputs) @ p["w_in"] + p["b"][None, :]).reshape(steps, batch, -1)

    def step(carry, x):
        v, a, z, out, total = carry
        v = alpha * v + (1.0 - alpha) * (x + z @ p["w_rec"])
        threshold = 0.1 + 0.8 * a
        z = _plain_spike(v - threshold)
        v = v - z * threshold
        a = rho * a + (1.0 - rho) * z
        out = kappa * out + z @ p["w_out"]
        return (v, a, z, out, total + out), None

    hidden, out = jnp.zeros((batch, p["w_rec"].shape[0])), jnp.zeros((batch, CLASSES))
    (*_, total), _ = jax.lax.scan(step, (hidden, hidden, hidden, out, out), currents)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(total / steps, labels))


def jax_steps(loss_fn: Callable, params: dict, xs: jax.Array, labels: jax.Array) -> tuple[Callable, Callable, int]:
    """Zero-argument training (Adam with amsgrad) and inference calls of ``loss_fn``, and the
    training step's temporary memory in bytes (XLA's ``memory_analysis``)."""
    optimizer = optax.amsgrad(1e-3)

    @jax.jit
    def train(p, opt_state, xs, labels):
        loss, grads = jax.value_and_grad(loss_fn)(p, xs, labels)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    box = [params, optimizer.init(params)]
    # Compiled ahead of time, once: a call whose argument types drifted would raise, not recompile.
    train = train.lower(box[0], box[1], xs, labels).compile()
    infer = jax.jit(loss_fn).lower(params, xs, labels).compile()

    def train_call():
        box[0], box[1], loss = train(box[0], box[1], xs, labels)
        return loss

    return train_call, lambda: infer(box[0], xs, labels), train.memory_analysis().temp_size_in_bytes


def torch_steps(
    spike_mode: str, compiled: bool, xs: np.ndarray, labels: np.ndarray, hidden: int
) -> tuple[Callable, Callable]:
    """The same network in PyTorch: ``spike_mode`` ``"function"`` (custom autograd.Function) or ``"inject"``."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps, batch, inputs = xs.shape

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return (v > 0).to(v.dtype)

        @staticmethod
        def backward(ctx, grad):
            (v,) = ctx.saved_tensors
            return grad * torch.exp(-0.5 * v * v)

    def spike(v):
        if spike_mode == "function":
            return Spike.apply(v)
        h = v * torch.exp(-0.5 * v * v).detach()
        return h - h.detach() + (v > 0).to(v.dtype).detach()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w_in = torch.nn.Linear(inputs, hidden)
            self.w_rec = torch.nn.Linear(hidden, hidden, bias=False)
            self.alpha = torch.nn.Parameter(3 + 0.1 * torch.randn(hidden))
            self.rho = torch.nn.Parameter(4 + 0.5 * torch.randn(hidden))
            self.w_out = torch.nn.Linear(hidden, CLASSES, bias=False)
            self.kappa = torch.nn.Parameter(torch.full((CLASSES,), 3.0))

        def forward(self, x):  # [T, B, inputs] -> time-averaged readout [B, CLASSES]
            alpha, rho, kappa = torch.sigmoid(self.alpha), torch.sigmoid(self.rho), torch.sigmoid(self.kappa)
            currents = self.w_in(x)
            v = torch.zeros(batch, hidden, device=x.device)
            a, z = torch.zeros_like(v), torch.zeros_like(v)
            out = torch.zeros(batch, CLASSES, device=x.device)
            total = torch.zeros_like(out)
            for t in range(steps):
                v = alpha * v + (1 - alpha) * (currents[t] + self.w_rec(z))
                threshold = 0.1 + 0.8 * a
                z = spike(v - threshold)
                v = v - z * threshold
                a = rho * a + (1 - rho) * z
                out = kappa * out + self.w_out(z)
                total = total + out
            return total / steps

    # Every Net shares one forward code object, so without a higher limit dynamo stops compiling
    # after 8 variants and silently runs the later ones eagerly.
    torch._dynamo.config.cache_size_limit = 64
    torch._dynamo.config.accumulated_cache_size_limit = 512
    torch.manual_seed(0)
    net = Net().to(device)
    model = torch.compile(net) if compiled else net
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, amsgrad=True)
    x, y = torch.from_numpy(np.array(xs)).to(device), torch.from_numpy(np.array(labels)).long().to(device)

    def train_call():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def infer_call():
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(model(x), y))

    return train_call, infer_call


def plot(results: dict, path: Path) -> None:
    """Training and inference time per step against T, log-log, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(results, key=int)
    names = sorted({n.split("/", 1)[1] for T in steps for n in results[T]["timings"]})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for ax, mode in zip(axes, ("train", "infer")):
        for i, name in enumerate(names):
            points = [
                (int(T), results[T]["timings"][f"{mode}/{name}"]["ms"])
                for T in steps
                if f"{mode}/{name}" in results[T]["timings"]
            ]
            style = "-" if name.startswith("snnjax") else "--"
            ax.plot(*zip(*points), style, marker="o", ms=3, label=name, color=f"C{i}")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="time steps T",
            ylabel=f"{'training' if mode == 'train' else 'inference'} step (ms)",
        )
        ax.set_xticks([int(T) for T in steps], steps)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[1].legend(fontsize=7)
    fig.suptitle("ALIF sequential MNIST (128 neurons, batch 128)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[28, 49, 98, 196, 392, 784])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--compile-max-steps", type=int, default=98, help="torch.compile the whole model only up to this T (0: never)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--plot", metavar="JSON", help="only redraw the plot of an earlier result")
    common.add_allocator_flag(parser)
    args = parser.parse_args(argv)
    if args.plot:
        import json

        plot(json.loads(Path(args.plot).read_text())["results"], Path(args.plot).with_suffix(".png"))
        return {}
    use_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    common.tune_host_allocator(not args.no_tune_allocator)  # before the first JAX computation
    env = common.environment()
    if use_torch:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    print(
        f"device {env['device']}, jax {env['jax']}, torch {env.get('torch', 'not installed')}; B={args.batch}, "
        f"{args.hidden} ALIF neurons"
    )
    results: dict = {}
    for steps in args.steps:
        if 784 % steps:
            raise SystemExit(f"--steps: {steps} does not divide the 784 pixels")
        rng = np.random.default_rng(steps)
        xs = rng.random((steps, args.batch, 784 // steps), dtype=np.float32)
        labels = (np.arange(args.batch) % CLASSES).astype(np.int32)
        params = init_params(jax.random.key(0), 784 // steps, args.hidden)
        fns, compile_seconds, temp_bytes = {}, {}, {}
        snnjax_variants = {f"snnjax-{m}": dict(method=m) for m in args.methods}
        snnjax_variants |= {
            "snnjax-inject-no-remat": dict(method="inject", remat=False),
            "snnjax-inject-run_bptt": dict(method="inject", bptt=True),
            "snnjax-inject-chain": dict(method="inject", chained=True),
            "snnjax-custom_jvp-chain": dict(method="custom_jvp", chained=True),
        }
        xs_jax, labels_jax = jnp.asarray(xs), jnp.asarray(labels)
        losses = {name: snnjax_loss(**options) for name, options in snnjax_variants.items()} | {
            "jax-plain-scan": plain_scan_loss
        }
        for name, loss_fn in losses.items():
            fns[f"train/{name}"], fns[f"infer/{name}"], temp = jax_steps(loss_fn, params, xs_jax, labels_jax)
            temp_bytes[name] = int(temp)
        if use_torch:
            for mode in ("function", "inject"):
                variants = [False] + ([True] if steps <= args.compile_max_steps else [])
                for compiled in variants:
                    name = f"torch-{mode}{'-compile' if compiled else ''}"
                    fns[f"train/{name}"], fns[f"infer/{name}"] = torch_steps(mode, compiled, xs, labels, args.hidden)
                    if compiled:  # compile here, so the warm-up inside the timing loop is short
                        start = time.perf_counter()
                        fns[f"train/{name}"](), fns[f"infer/{name}"]()
                        compile_seconds[name] = time.perf_counter() - start
        timings = common.time_side_by_side(fns, repeats=args.repeats, groups=common.library_groups(fns))
        row = {name: {**t, "ms": 1e3 * t["median_s"]} for name, t in timings.items()}
        best = {
            mode: min(t["median_s"] for n, t in timings.items() if n.startswith(mode + "/snnjax"))
            for mode in ("train", "infer")
        }
        print(
            f"\nT = {steps}: ms per step (train / infer), the best snnjax method's speed-up over each, and XLA's "
            "temporary memory of a training step"
        )
        for name in sorted({n.split("/", 1)[1] for n in timings}):
            tr, inf = timings[f"train/{name}"]["median_s"], timings[f"infer/{name}"]["median_s"]
            memory = f"   {temp_bytes[name] / 2**20:6.1f} MiB" if name in temp_bytes else ""
            print(
                f"  {name:28s} {1e3 * tr:8.1f} / {1e3 * inf:7.1f}   "
                f"x{tr / best['train']:.2f} / x{inf / best['infer']:.2f}{memory}"
            )
        results[str(steps)] = {"timings": row, "train_temp_bytes": temp_bytes, "torch_compile_seconds": compile_seconds}
        if not args.no_write:
            payload = {
                "config": vars(args),
                "torch": {k: env[k] for k in ("torch", "torch_threads") if k in env},
                "results": results,
                "command": "python benchmarks/fgi_table.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            }
            path = common.write_result("fgi_table", payload)  # after every T, so a partial run is kept
    if not args.no_write:
        if importlib.util.find_spec("matplotlib"):
            plot(results, path.with_suffix(".png"))
        print(f"\nwrote {path} (and the plot beside it)")
    return {"results": results}


if __name__ == "__main__":
    main()
