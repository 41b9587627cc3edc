"""NIR interchange with snnTorch and Norse: the same network exported by one library and imported by
another, its spikes compared on a shared input.

    python benchmarks/nir_interchange.py            # needs torch, snntorch, norse, nirtorch, nir

A 4-8-2 network of LIF layers (beta = 0.9 and 0.8, threshold 1, reset to zero unless said) on
T = 60 steps of random input currents, B = 4. Four directions:
- snnTorch -> snnjax (`snntorch.export_nir.export_to_nir`, `snnjax.nir.load`), with snnTorch's
  reset to zero and its default reset by subtraction;
- snnjax -> snnTorch (`snnjax.nir.export`, `snntorch.import_nir.import_from_nir`);
- Norse -> snnjax (`norse.torch.to_nir`, `LIFBoxCell`, dt = 1 ms, tau_mem_inv = 100/s);
- snnjax -> Norse (`norse.torch.from_nir`), as exported and with `unit_r=True` (Norse's importer
  assumes r = 1).

For each: the fraction of (step, example, neuron) spike values that agree, per layer, and how
many spikes each side fired; or the error that stops the import, as it is. The JSON result
records them with the libraries' versions; `docs/howto/nir.md` explains each difference.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402

T, B, SIZES = 60, 4, (4, 8, 2)


def inputs(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((T, B, SIZES[0])) * 1.5).astype(np.float32)


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    return {"agree": float(np.mean(a == b)), "spikes": [int(a.sum()), int(b.sum())]}


def snnjax_spikes(model, xs: np.ndarray) -> list[np.ndarray]:
    _, recorded = model(jnp.asarray(xs), record=True)
    return [np.asarray(r) for r in recorded]


def torch_layers(reset: str):
    import snntorch as snn
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 8),
        snn.Leaky(beta=torch.full((8,), 0.9), threshold=torch.ones(8), init_hidden=True, reset_mechanism=reset),
        torch.nn.Linear(8, 2),
        snn.Leaky(beta=torch.full((2,), 0.8), threshold=torch.ones(2), init_hidden=True, reset_mechanism=reset),
    )
    with torch.no_grad():
        net[2].weight.mul_(4.0)  # so that the output layer fires too
    return net


def snntorch_spikes(net, xs: np.ndarray) -> list[np.ndarray]:
    """Each Leaky layer's spikes, stepping the sequential net one step at a time."""
    import torch
    from snntorch import utils

    utils.reset(net)
    out = [[], []]
    with torch.no_grad():
        for x in torch.from_numpy(xs):
            h = net[1](net[0](x))
            out[0].append(h.numpy())
            out[1].append(net[3](net[2](h)).numpy())
    return [np.stack(o) for o in out]


def graph_spikes(module, xs: np.ndarray, layers: tuple[str, str]) -> list[np.ndarray]:
    """Spikes of the nodes ``layers`` of an imported graph module (snnTorch's or Norse's), read by hooks."""
    import torch

    seen: dict[str, list] = {name: [] for name in layers}
    named = dict(module.named_modules())
    hooks = [
        named[name].register_forward_hook(
            lambda m, i, o, name=name: seen[name].append(o[0] if isinstance(o, tuple) else o)
        )
        for name in layers
    ]
    state = None
    with torch.no_grad():
        for x in torch.from_numpy(xs):
            _, state = module(x, state)
    for hook in hooks:
        hook.remove()
    return [np.stack([s.detach().numpy().reshape(B, -1) for s in seen[name]]) for name in layers]


def snnjax_model():
    from flax import nnx

    import snnjax.nn as snn

    rngs = nnx.Rngs(0)
    return snn.Sequential(
        nnx.Linear(4, 8, rngs=rngs),
        snn.LIF(8, beta=0.9, reset="zero"),
        nnx.Linear(8, 2, rngs=rngs),
        snn.LIF(2, beta=0.8, reset="zero"),
    )


def attempt(fn) -> dict:
    try:
        return fn()
    except Exception as error:  # an import the other library refuses: recorded as it is
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger().setLevel(logging.ERROR)  # Norse logs a warning per node whose r is not 1
    import norse.torch as nt
    import torch
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir

    import snnjax.nir

    xs = inputs()
    results = {}

    def from_snntorch(reset):
        net = torch_layers(reset)
        model = snnjax.nir.load(export_to_nir(net, torch.zeros(4)), dt=1e-4)  # snnTorch exports with dt = 1e-4
        theirs, ours = snntorch_spikes(net, xs), snnjax_spikes(model, xs)
        return {f"layer {i}": agreement(a, b) for i, (a, b) in enumerate(zip(theirs, ours))}

    for reset in ("zero", "subtract"):
        results[f"snnTorch -> snnjax (reset {reset})"] = attempt(lambda reset=reset: from_snntorch(reset))

    def to_snntorch():
        model = snnjax_model()
        net = import_from_nir(snnjax.nir.export(model, dt=1e-4))
        theirs, ours = graph_spikes(net, xs, ("1", "3")), snnjax_spikes(model, xs)
        return {f"layer {i}": agreement(a, b) for i, (a, b) in enumerate(zip(theirs, ours))}

    results["snnjax -> snnTorch"] = attempt(to_snntorch)

    def norse_model():
        torch.manual_seed(0)
        model = nt.SequentialState(torch.nn.Linear(4, 8), nt.LIFBoxCell(), torch.nn.Linear(8, 2), nt.LIFBoxCell())
        with torch.no_grad():
            model[2].weight.mul_(40.0)  # so that the output layer fires too (dt / tau = 0.1 of it enters)
        return model

    strong = xs * 10  # Norse's LIFBoxCell takes dt / tau = 0.1 of its input each step

    def norse_spikes(model):
        out, state = [], None
        with torch.no_grad():
            for x in torch.from_numpy(strong):
                z, state = model(x, state)
                out.append(z.numpy())
        return np.stack(out)

    def from_norse(fix_tau):
        model = norse_model()
        graph = nt.to_nir(model, torch.zeros(1, 4))
        if fix_tau:  # Norse 1.1.0 writes tau = dt / tau_mem_inv; NIR's tau is 1 / tau_mem_inv
            for node in graph.nodes.values():
                if hasattr(node, "tau"):
                    node.tau = np.asarray(node.tau) / 1e-3
        ours = snnjax_spikes(snnjax.nir.load(graph, dt=1e-3), strong)[-1]
        return {"output layer": agreement(norse_spikes(model), ours)}

    results["Norse -> snnjax"] = attempt(lambda: from_norse(False))
    results["Norse -> snnjax (tau corrected)"] = attempt(lambda: from_norse(True))

    def to_norse(unit_r):
        model = snnjax_model()
        net = nt.from_nir(snnjax.nir.export(model, dt=1e-3, unit_r=unit_r), dt=1e-3)
        out, state = [], None
        with torch.no_grad():
            for x in torch.from_numpy(xs):
                z, state = net(x, state)
                out.append(z.numpy())
        return {"output layer": agreement(np.stack(out), snnjax_spikes(model, xs)[-1])}

    results["snnjax -> Norse"] = attempt(lambda: to_norse(False))
    results["snnjax -> Norse (unit_r)"] = attempt(lambda: to_norse(True))
    versions = {name: importlib.metadata.version(name) for name in ("nir", "nirtorch", "snntorch", "norse", "torch")}
    for name, result in results.items():
        print(f"{name:36s} {result}")
    payload = {"config": {"T": T, "B": B, "sizes": SIZES}, "versions": versions, "results": results}
    if not args.no_write:
        print(f"wrote {common.write_result('nir_interchange', payload)}")
    return payload


if __name__ == "__main__":
    main()
