r"""NIR interchange: export an snnjax NNX model to a ``nir.NIRGraph`` and load one back.

NIR (the Neuromorphic Intermediate Representation, ``pip install nir`` or ``snnjax[nir]``)
describes neurons in continuous time; snnjax steps them in discrete time. With time step
:math:`\Delta t`, a NIR leaky integrate-and-fire node

.. math:: \tau \dot v = (v_\text{leak} - v) + R\, I

stepped by forward Euler is :math:`v_t = (1 - \Delta t/\tau)\, v_{t-1} + (\Delta t/\tau)(R\, I_t +
v_\text{leak})`. snnjax's neurons have no input gain and no leak voltage, so the mapping is

=====================  ===========================================================================
snnjax                 NIR
=====================  ===========================================================================
``nnx.Linear``         ``Affine`` (``weight = kernel.T``, ``bias``), or ``Linear`` without a bias
``LIF(beta)``          ``LIF(tau = dt / (1 - beta), r = tau / dt, v_leak = 0, v_threshold, v_reset = 0)``
``IAF``                ``IF(r = 1 / dt, v_threshold, v_reset = 0)``
``CubaLIF``            ``CubaLIF(tau_syn = dt / (1 - alpha), tau_mem = dt / (1 - beta), r = tau_syn tau_mem
                       / dt^2, w_in = 1, v_leak = 0)``: the current updated before the membrane
``LeakyIntegrator``    ``LI(tau = dt / (1 - kappa), r = tau / dt, v_leak = 0)`` (``r = 1`` with
                       ``scale_input``)
=====================  ===========================================================================

Loading reverses it: :math:`\beta = 1 - \Delta t / \tau`, and a node's input gain
:math:`g = R\,\Delta t / \tau` (``R dt`` for ``IF``) and leak input :math:`\Delta t\, v_\text{leak}
/ \tau` are folded into the weights and bias of the ``Affine`` or ``Linear`` before it, which
is exact. NIR resets to ``v_reset`` after a spike; snnjax's default resets by subtraction,
which NIR cannot say: export a layer built with ``reset="zero"``, or pass
``approximate_reset=True`` to export a subtracting layer as resetting to zero (its outputs then
differ). A recurrent layer is a NIR subgraph whose neuron feeds itself through a ``Linear``
``w_rec`` (``weight = W_rec.T``; the spikes of the step before). Supported here: sequential
models (:class:`snnjax.nn.Sequential` or any module with a ``layers`` list) of the layers above.
Not yet: convolutions, pooling, flatten; ALIF has no NIR node. Each raises a ``ValueError``
naming the layer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax.nn import IAF, LIF, CubaLIF, LeakyIntegrator, Sequential

__all__ = ["export", "load"]


def _nir():
    try:
        import nir
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("snnjax.nir needs the nir package: pip install 'snnjax[nir]'.") from error
    return nir


def _check_dt(dt: float, where: str) -> float:
    if not isinstance(dt, (int, float)) or isinstance(dt, bool) or not dt > 0:
        raise ValueError(f"{where}: dt must be a positive number of seconds, got {dt!r}.")
    return float(dt)


def _vector(value: Any, size: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, np.float32), (size,)).copy()


def _options(layer: Any) -> dict[str, Any]:
    return dict(layer.options)


def _spiking(layer: Any, index: int, approximate_reset: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(threshold, v_reset)`` of a spiking layer, checked for NIR."""
    options = _options(layer)
    name = type(layer).__name__
    if options.get("reset", "subtract") == "subtract" and not approximate_reset:
        raise ValueError(
            f"export: layer {index} ({name}) resets by subtraction, which NIR cannot express (its neurons reset to "
            "v_reset): build it with reset='zero', or pass approximate_reset=True to export it as a reset to zero."
        )
    n = layer.features
    return _vector(options.get("threshold", 1.0), n), np.zeros(n, np.float32)


def _recurrent_subgraph(nir: Any, neuron: Any, layer: Any) -> Any:
    """A recurrent layer as NIR writes it: a subgraph whose neuron feeds itself through ``w_rec``."""
    n = layer.features
    weight = np.asarray(layer.recurrent.kernel[...], np.float32).T  # z @ W: NIR's [out, in] is W.T
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([n])}),
            "neuron": neuron,
            "w_rec": nir.Linear(weight=weight),
            "output": nir.Output(output_type={"output": np.array([n])}),
        },
        edges=[("input", "neuron"), ("neuron", "w_rec"), ("w_rec", "neuron"), ("neuron", "output")],
    )


def export(model: nnx.Module, dt: float = 1e-3, *, approximate_reset: bool = False, unit_r: bool = False) -> Any:
    """The ``nir.NIRGraph`` of a sequential snnjax NNX model (module docstring for the mapping).

    Args:
      model: :class:`snnjax.nn.Sequential` (or any module with a ``layers`` list) of
        ``nnx.Linear``, :class:`~snnjax.nn.LIF`, :class:`~snnjax.nn.IAF`,
        :class:`~snnjax.nn.CubaLIF` and :class:`~snnjax.nn.LeakyIntegrator` layers.
      dt: the time step in seconds that one snnjax step stands for.
      approximate_reset: export layers that reset by subtraction as resetting to zero.
      unit_r: write every neuron's ``r`` as 1 and fold its input gain into the ``Affine`` or
        ``Linear`` before it (the same dynamics), for importers that assume ``r = 1`` (Norse's
        does, and ignores ``r`` otherwise); not for recurrent layers.

    Returns:
      A ``nir.NIRGraph``: nodes ``input``, then ``0``, ``1``, ... (one per layer), then ``output``,
      chained in order.

    Raises:
      ValueError: naming the layer, for one NIR cannot represent (module docstring), or, with
        ``unit_r``, a neuron layer that is recurrent or has no ``nnx.Linear`` before it.
      ImportError: if the ``nir`` package is missing.

    Examples:
      >>> from flax import nnx
      >>> import snnjax.nn as snn, snnjax.nir
      >>> model = snn.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), snn.LIF(4, beta=0.9, reset="zero"))
      >>> graph = snnjax.nir.export(model, dt=1e-3)
      >>> [type(graph.nodes[k]).__name__ for k in ("input", "0", "1", "output")]
      ['Input', 'Affine', 'LIF', 'Output']
      >>> round(float(graph.nodes["1"].tau[0]), 6)  # dt / (1 - beta)
      0.01
    """
    nir = _nir()
    dt = _check_dt(dt, "export")
    layers = list(getattr(model, "layers", []) or [])
    if not layers:
        raise ValueError(f"export: the model ({type(model).__name__}) must have a non-empty list of layers.")
    nodes: dict[str, Any] = {}
    size = out_size = None
    for index, layer in enumerate(layers):
        name = type(layer).__name__
        if isinstance(layer, nnx.Linear):
            weight = np.asarray(layer.kernel[...], np.float32).T  # NIR: [out, in]
            size = size if size is not None else weight.shape[1]
            out_size = weight.shape[0]
            if layer.bias is None:
                nodes[str(index)] = nir.Linear(weight=weight)
            else:
                nodes[str(index)] = nir.Affine(weight=weight, bias=np.asarray(layer.bias[...], np.float32))
        elif isinstance(layer, IAF):
            threshold, reset = _spiking(layer, index, approximate_reset)
            n = layer.features
            nodes[str(index)] = nir.IF(r=np.full(n, 1.0 / dt, np.float32), v_threshold=threshold, v_reset=reset)
        elif isinstance(layer, LIF):
            threshold, reset = _spiking(layer, index, approximate_reset)
            beta = np.asarray(layer.beta(), np.float64)
            if np.any(beta >= 1.0):
                raise ValueError(f"export: layer {index} ({name}) has beta = 1 (no leak): use snnjax.nn.IAF for it.")
            tau = (dt / (1.0 - beta)).astype(np.float32)
            zeros = np.zeros_like(tau)
            nodes[str(index)] = nir.LIF(
                tau=tau, r=(tau / dt).astype(np.float32), v_leak=zeros, v_threshold=threshold, v_reset=reset
            )
        elif isinstance(layer, CubaLIF):
            threshold, reset = _spiking(layer, index, approximate_reset)
            alpha, beta = (np.asarray(d(), np.float64) for d in (layer.alpha, layer.beta))
            if np.any(alpha >= 1.0) or np.any(beta >= 1.0):
                raise ValueError(f"export: layer {index} ({name}) has a decay of 1 (no leak), which NIR cannot say.")
            tau_syn, tau_mem = dt / (1.0 - alpha), dt / (1.0 - beta)
            nodes[str(index)] = nir.CubaLIF(
                tau_syn=tau_syn.astype(np.float32),
                tau_mem=tau_mem.astype(np.float32),
                r=(tau_syn * tau_mem / dt**2).astype(np.float32),  # (dt / tau_mem) r (dt / tau_syn) w_in = 1
                v_leak=np.zeros(layer.features, np.float32),
                v_threshold=threshold,
                v_reset=reset,
                w_in=np.ones(layer.features, np.float32),
            )
        elif isinstance(layer, LeakyIntegrator):
            kappa = np.asarray(layer.kappa(), np.float64)
            if np.any(kappa >= 1.0):
                raise ValueError(f"export: layer {index} ({name}) has kappa = 1 (no leak), which NIR's LI cannot say.")
            tau = (dt / (1.0 - kappa)).astype(np.float32)
            r = np.ones_like(tau) if _options(layer).get("scale_input") else (tau / dt).astype(np.float32)
            nodes[str(index)] = nir.LI(tau=tau, r=r, v_leak=np.zeros_like(tau))
        else:
            raise ValueError(
                f"export: layer {index} ({name}) has no NIR counterpart here; supported: nnx.Linear, LIF, IAF, "
                "LeakyIntegrator (ALIF has no NIR node)."
            )
        if not isinstance(layer, nnx.Linear):
            out_size = layer.features
    if size is None:
        raise ValueError("export: the model has no nnx.Linear layer, so its input size is unknown.")
    if unit_r:
        _fold_gains(nir, nodes, layers)
    for index, layer in enumerate(layers):
        if getattr(layer, "recurrent", None) is not None:
            nodes[str(index)] = _recurrent_subgraph(nir, nodes[str(index)], layer)
    nodes["input"] = nir.Input(input_type={"input": np.array([size])})
    nodes["output"] = nir.Output(output_type={"output": np.array([out_size])})
    order = ["input", *map(str, range(len(layers))), "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])))


def _fold_gains(nir: Any, nodes: dict[str, Any], layers: list) -> None:
    """Move each neuron node's ``r`` into the ``Affine``/``Linear`` node before it (``weight`` is
    ``[out, in]``, so row ``j`` is scaled by ``r_j``), leaving ``r = 1``."""
    for index, layer in enumerate(layers):
        node = nodes[str(index)]
        if isinstance(layer, nnx.Linear) or not hasattr(node, "r"):
            continue
        previous = nodes.get(str(index - 1))
        if getattr(layer, "recurrent", None) is not None or not isinstance(previous, (nir.Affine, nir.Linear)):
            raise ValueError(
                f"export: unit_r folds layer {index}'s ({type(layer).__name__}) input gain into the layer before it, "
                "which must be an nnx.Linear, and the layer must not be recurrent."
            )
        r = np.broadcast_to(np.asarray(node.r, np.float32), (previous.weight.shape[0],))
        previous.weight = (np.asarray(previous.weight, np.float32) * r[:, None]).astype(np.float32)
        if isinstance(previous, nir.Affine):
            previous.bias = (np.asarray(previous.bias, np.float32) * r).astype(np.float32)
        node.r = np.ones_like(np.asarray(node.r, np.float32))


def _chain(graph: Any) -> list[str]:
    """The node names from ``input`` to ``output``, or a ``ValueError`` if the graph is not a chain."""
    nir = _nir()
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    outgoing: dict[str, list[str]] = {}
    for source, target in graph.edges:
        outgoing.setdefault(source, []).append(target)
    if len(inputs) != 1:
        raise ValueError(f"load: the graph must have one Input node, found {len(inputs)}.")
    order, seen = [inputs[0]], {inputs[0]}
    while not isinstance(graph.nodes[order[-1]], nir.Output):
        nexts = outgoing.get(order[-1], [])
        if len(nexts) != 1 or nexts[0] in seen:
            raise ValueError(
                f"load: node {order[-1]!r} has {len(nexts)} successors or closes a loop; only chains "
                "(input -> ... -> output, no recurrence) are loaded here."
            )
        order.append(nexts[0])
        seen.add(nexts[0])
    return order


def load(graph: Any, dt: float = 1e-3, *, rngs: nnx.Rngs | None = None) -> Sequential:
    """An :class:`snnjax.nn.Sequential` that steps ``graph`` with time step ``dt`` (module docstring).

    Args:
      graph: a ``nir.NIRGraph`` (or the path of a NIR file) whose nodes form a chain of
        ``Affine``, ``Linear``, ``LIF``, ``IF``, ``CubaLIF`` and ``LI``.
      dt: the time step in seconds of one snnjax step.
      rngs: for the layers' construction (the weights are then set from the graph).

    Returns:
      The model; its spiking layers reset to zero (NIR's ``v_reset = 0``).

    Raises:
      ValueError: naming the node, for a node without a counterpart, a non-zero ``v_reset``, a
        neuron whose input gain or leak cannot be folded into a preceding ``Affine``/``Linear``,
        or a graph that is not a chain.

    Examples:
      >>> import jax.numpy as jnp, numpy as np, nir
      >>> import snnjax.nir
      >>> graph = nir.NIRGraph.from_list(
      ...     nir.Affine(weight=np.eye(2, dtype=np.float32), bias=np.zeros(2, np.float32)),
      ...     nir.LI(tau=np.full(2, 0.01, np.float32), r=np.full(2, 10.0, np.float32), v_leak=np.zeros(2, np.float32)))
      >>> model = snnjax.nir.load(graph, dt=1e-3)
      >>> [type(layer).__name__ for layer in model.layers]
      ['Linear', 'LeakyIntegrator']
      >>> model(jnp.ones((3, 1, 2)))[:, 0, 0].tolist()  # v = 0.9 v + 1
      [1.0, 1.899999976158142, 2.7100000381469727]
    """
    nir = _nir()
    dt = _check_dt(dt, "load")
    if isinstance(graph, (str, bytes)) or hasattr(graph, "__fspath__"):
        graph = nir.read(graph)
    rngs = rngs if rngs is not None else nnx.Rngs(0)
    layers: list[Any] = []
    for name in _chain(graph)[1:-1]:
        node = graph.nodes[name]
        if isinstance(node, (nir.Affine, nir.Linear)):
            weight = np.asarray(node.weight, np.float32)
            bias = np.asarray(node.bias, np.float32) if isinstance(node, nir.Affine) else None
            linear = nnx.Linear(weight.shape[1], weight.shape[0], use_bias=bias is not None, rngs=rngs)
            linear.kernel[...] = jnp.asarray(weight.T)
            if bias is not None:
                linear.bias[...] = jnp.asarray(bias)
            layers.append(linear)
            continue
        if isinstance(node, (nir.LIF, nir.IF, nir.LI, nir.CubaLIF)):
            layers.append(_neuron(node, name, dt, layers, nir))
            continue
        if isinstance(node, nir.NIRGraph):
            neuron, weight = _recurrence(node, name, nir)
            layers.append(_neuron(neuron, name, dt, layers, nir, weight))
            continue
        raise ValueError(
            f"load: node {name!r} ({type(node).__name__}) has no snnjax counterpart here; supported: Affine, Linear, "
            "LIF, IF, LI, CubaLIF."
        )
    return Sequential(*layers)


def _recurrence(graph: Any, name: str, nir: Any) -> tuple[Any, np.ndarray]:
    """The neuron node and recurrent weight ``[out, in]`` of a recurrent subgraph, or a ``ValueError``."""
    kinds = {k: type(n).__name__ for k, n in graph.nodes.items()}
    neurons = [k for k, n in graph.nodes.items() if isinstance(n, (nir.LIF, nir.IF, nir.CubaLIF))]
    weights = [k for k, n in graph.nodes.items() if isinstance(n, (nir.Linear, nir.Affine))]
    ends = [k for k, n in graph.nodes.items() if isinstance(n, (nir.Input, nir.Output))]
    if len(neurons) == 1 and len(weights) == 1 and len(ends) == 2 and len(graph.nodes) == 4:
        (neuron,), (w,) = neurons, weights
        inp = next(k for k in ends if isinstance(graph.nodes[k], nir.Input))
        out = next(k for k in ends if isinstance(graph.nodes[k], nir.Output))
        rec = graph.nodes[w]
        bias = np.asarray(getattr(rec, "bias", 0.0))
        expected = {(inp, neuron), (neuron, w), (w, neuron), (neuron, out)}
        if set(map(tuple, graph.edges)) == expected and not np.any(bias != 0):
            return graph.nodes[neuron], np.asarray(rec.weight, np.float32)
    raise ValueError(
        f"load: subgraph {name!r} ({kinds}) is not a recurrent neuron layer (input -> neuron -> output, with the "
        "neuron fed back through one Linear without bias); no other subgraph is loaded here."
    )


def _neuron(node: Any, name: str, dt: float, layers: list, nir: Any, recurrent: np.ndarray | None = None) -> nnx.Module:
    """The snnjax layer of a NIR neuron node, its gain and leak folded into ``layers[-1]`` (and
    the gain into the ``recurrent`` weight ``[out, in]``, if any)."""
    kind = type(node).__name__
    if isinstance(node, nir.IF):
        decay, gain, leak = None, np.asarray(node.r, np.float64) * dt, np.zeros(np.shape(node.r))
    elif isinstance(node, nir.CubaLIF):
        tau_syn, tau_mem = (np.asarray(t, np.float64) for t in (node.tau_syn, node.tau_mem))
        if np.any(tau_syn <= dt) or np.any(tau_mem <= dt):
            raise ValueError(f"load: node {name!r} ({kind}) has a time constant <= dt = {dt:g} s; use a smaller dt.")
        decay = (1.0 - dt / tau_syn, 1.0 - dt / tau_mem)
        gain = (dt / tau_mem) * np.asarray(node.r, np.float64) * (dt / tau_syn) * np.asarray(node.w_in, np.float64)
        if np.any(np.asarray(node.v_leak) != 0):  # it would enter the membrane, past the synaptic filter
            raise ValueError(f"load: node {name!r} ({kind}) has v_leak != 0, which snnjax's current-based LIF cannot.")
        leak = np.zeros(np.shape(node.r))
    else:
        tau = np.asarray(node.tau, np.float64)
        decay = 1.0 - dt / tau
        if np.any(decay < 0) or np.any(decay >= 1):
            raise ValueError(
                f"load: node {name!r} ({kind}) has tau = {tau.min():g} s <= dt = {dt:g} s; use a smaller dt."
            )
        gain = np.asarray(node.r, np.float64) * dt / tau
        leak = np.asarray(node.v_leak, np.float64) * dt / tau
    n = int(np.asarray(node.r).size)
    if n == 1 and layers and isinstance(layers[-1], nnx.Linear):  # one value for the whole layer (as Norse writes)
        n = int(layers[-1].kernel.shape[1])
    decay, gain, leak = jax.tree.map(lambda d: np.broadcast_to(np.ravel(d), (n,)), (decay, gain, leak))
    if not isinstance(node, nir.LI) and np.any(np.asarray(node.v_reset) != 0):
        raise ValueError(f"load: node {name!r} ({kind}) resets to v_reset != 0, which snnjax's neurons cannot.")
    if np.any(gain != 1) or np.any(leak != 0):
        if not layers or not isinstance(layers[-1], nnx.Linear):
            raise ValueError(
                f"load: node {name!r} ({kind}) has an input gain R dt / tau != 1 or v_leak != 0 and no Affine or "
                "Linear before it to fold them into."
            )
        previous = layers[-1]
        previous.kernel[...] = previous.kernel[...] * jnp.asarray(gain, jnp.float32)[None]  # [N_in, N] x [1, N]
        if previous.bias is not None:
            previous.bias[...] = previous.bias[...] * jnp.asarray(gain, jnp.float32) + jnp.asarray(leak, jnp.float32)
        elif np.any(leak != 0):
            raise ValueError(f"load: node {name!r} ({kind}) has v_leak != 0 but the Linear before it has no bias.")
    if isinstance(node, nir.LI):
        return LeakyIntegrator(n, kappa=jnp.asarray(decay, jnp.float32))
    layer = _spiking_layer(node, n, decay, nir, nnx.Rngs(0) if recurrent is not None else None)
    if recurrent is not None:  # z_{t-1} @ W_rec, W_rec [in, out]; the node's gain scales each neuron's input
        scaled = recurrent.T * np.broadcast_to(gain, (n,))[None, :]
        layer.recurrent.kernel[...] = jnp.asarray(scaled, jnp.float32)
    return layer


def _spiking_layer(node: Any, n: int, decay: Any, nir: Any, rngs: nnx.Rngs | None) -> nnx.Module:
    """The snnjax spiking layer of a NIR LIF, IF or CubaLIF node (recurrent when given ``rngs``)."""
    recurrent = dict(recurrent=True, rngs=rngs) if rngs is not None else {}
    values = np.asarray(node.v_threshold, np.float32).ravel()
    threshold = float(values[0]) if np.all(values == values[0]) else tuple(map(float, values))  # hashable option
    if isinstance(node, nir.IF):
        return IAF(n, threshold=threshold, reset="zero", **recurrent)
    if isinstance(node, nir.CubaLIF):
        alpha, beta = (jnp.asarray(d, jnp.float32) for d in decay)
        return CubaLIF(n, alpha=alpha, beta=beta, threshold=threshold, reset="zero", **recurrent)
    return LIF(n, beta=jnp.asarray(decay, jnp.float32), threshold=threshold, reset="zero", **recurrent)
