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
``nnx.Conv`` (2-D)     ``Conv2d`` (``weight`` ``[C_out, C_in, kH, kW]`` from ``[kH, kW, C_in, C_out]``,
                       symmetric zero padding: ``'SAME'`` with stride 1 and an odd kernel, ``'VALID'``
                       or explicit)
``AvgPool2d``          ``AvgPool2d`` (:class:`snnjax.nn.AvgPool2d`, zero padding counted)
``Flatten``            ``Flatten`` of the whole ``(C, H, W)`` map (``start_dim = 0``); the next
                       ``nnx.Linear``'s inputs are reordered from snnjax's ``(H, W, C)`` to NIR's ``(C, H, W)``
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
snnjax's feature maps are channels last, ``[T, B, H, W, C]``, NIR's channels first: a neuron
node after a convolution holds its parameters over ``(C, H, W)``, and loading needs them equal
over the positions of a channel. Not here: ALIF (NIR has no node for it), pooling other than
average, a neuron layer right after a ``Flatten``; each raises a ``ValueError`` naming the layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from snnjax.nn import IAF, LIF, AvgPool2d, CubaLIF, Flatten, LeakyIntegrator, Sequential

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


def _options(layer: Any) -> dict[str, Any]:
    return dict(layer.options)


def _spiking(layer: Any, index: int, approximate_reset: bool, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(threshold, v_reset)`` of a spiking layer, checked for NIR."""
    options = _options(layer)
    name = type(layer).__name__
    if options.get("reset", "subtract") == "subtract" and not approximate_reset:
        raise ValueError(
            f"export: layer {index} ({name}) resets by subtraction, which NIR cannot express (its neurons reset to "
            "v_reset): build it with reset='zero', or pass approximate_reset=True to export it as a reset to zero."
        )
    return _spread(options.get("threshold", 1.0), shape), _spread(0.0, shape)


def _nir_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """One example's shape in NIR's layout: ``(C, H, W)`` for snnjax's ``(H, W, C)``."""
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def _spread(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A neuron parameter (a scalar or one value per feature or channel, the last axis) over NIR's shape."""
    values = np.broadcast_to(np.asarray(value, np.float64), (shape[-1],))
    if len(shape) == 3:  # channels last -> (C, H, W)
        return np.broadcast_to(values[:, None, None], _nir_shape(shape)).astype(np.float32)
    return values.astype(np.float32).copy()


def _input_shape(layers: list, given: tuple[int, ...] | None) -> tuple[int, ...]:
    if given is not None:
        shape = tuple(int(d) for d in given)
        if len(shape) not in (1, 3) or min(shape) < 1:
            raise ValueError(f"export: input_shape must be (N,) or (H, W, C) of positive sizes, got {given!r}.")
        return shape
    first = next((layer for layer in layers if isinstance(layer, (nnx.Linear, nnx.Conv))), None)
    if isinstance(first, nnx.Conv):
        raise ValueError("export: a model that starts with an nnx.Conv needs input_shape=(H, W, C).")
    if first is None:
        raise ValueError("export: the model has no nnx.Linear layer, so its input size is unknown; pass input_shape.")
    return (int(first.kernel.shape[0]),)


def _conv_node(nir: Any, layer: nnx.Conv, index: int, shape: tuple[int, ...]) -> tuple[Any, tuple[int, ...]]:
    """The ``Conv2d`` node of an ``nnx.Conv`` (2-D, zero padding) and its output shape ``(H, W, C)``."""
    kernel = np.asarray(layer.kernel[...], np.float32)  # [kH, kW, C_in / groups, C_out]
    if kernel.ndim != 4 or len(shape) != 3:
        raise ValueError(f"export: layer {index} (Conv) must be a 2-D convolution of (H, W, C) maps, given {shape}.")
    groups = int(layer.feature_group_count)
    if shape[2] != kernel.shape[2] * groups:
        raise ValueError(f"export: layer {index} (Conv) takes {kernel.shape[2] * groups} channels, given {shape}.")
    pairs = tuple(_pair(v, 2) for v in (layer.strides or 1, layer.kernel_dilation or 1))
    (stride, dilation) = pairs
    reach = [(k - 1) * d + 1 for k, d in zip(kernel.shape[:2], dilation)]
    padding = layer.padding
    if padding == "VALID":
        pads = [(0, 0), (0, 0)]
    elif padding == "SAME" and stride == (1, 1) and all(r % 2 for r in reach):
        pads = [((r - 1) // 2,) * 2 for r in reach]
    elif not isinstance(padding, str):
        pads = [
            tuple(p) if not isinstance(p, int) else (p, p)
            for p in (padding if not isinstance(padding, int) else [padding] * 2)
        ]
    else:
        pads = []
    if (
        len(pads) != 2
        or any(len(p) != 2 or p[0] != p[1] for p in pads)
        or layer.input_dilation not in (None, 1, (1, 1))
    ):
        raise ValueError(
            f"export: layer {index} (Conv) pads {padding!r} with strides {stride}: NIR's Conv2d pads the same on both "
            "sides; use padding='VALID', explicit symmetric padding, or 'SAME' with stride 1 and an odd kernel."
        )
    height, width = ((n + 2 * p[0] - r) // s + 1 for n, p, r, s in zip(shape[:2], pads, reach, stride))
    bias = np.zeros(kernel.shape[3], np.float32) if layer.bias is None else np.asarray(layer.bias[...], np.float32)
    node = nir.Conv2d(
        input_shape=shape[:2],
        weight=kernel.transpose(3, 2, 0, 1),  # [C_out, C_in / groups, kH, kW]
        stride=stride,
        padding=(pads[0][0], pads[1][0]),
        dilation=dilation,
        groups=groups,
        bias=bias,
    )
    return node, (height, width, kernel.shape[3])


def _pool_node(nir: Any, layer: AvgPool2d, index: int, shape: tuple[int, ...]) -> tuple[Any, tuple[int, ...]]:
    if len(shape) != 3:
        raise ValueError(f"export: layer {index} (AvgPool2d) pools feature maps (H, W, C), given {shape}.")
    height, width = (
        (n + 2 * p - k) // s + 1 for n, k, s, p in zip(shape[:2], layer.kernel_size, layer.stride, layer.padding)
    )
    node = nir.AvgPool2d(
        kernel_size=np.array(layer.kernel_size), stride=np.array(layer.stride), padding=np.array(layer.padding)
    )
    return node, (height, width, shape[2])


def _pair(value: Any, size: int) -> tuple[int, ...]:
    return tuple(int(v) for v in np.broadcast_to(np.asarray(value), (size,)))


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


def export(
    model: nnx.Module,
    dt: float = 1e-3,
    *,
    approximate_reset: bool = False,
    unit_r: bool = False,
    input_shape: tuple[int, ...] | None = None,
) -> Any:
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
      input_shape: one example's input as snnjax sees it, ``(H, W, C)`` for a model that starts
        with an ``nnx.Conv`` (needed), ``(N,)`` otherwise (default: the first ``nnx.Linear``'s).

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
    shape = _input_shape(layers, input_shape)  # one example's, as snnjax lays it out
    first_shape = shape
    order = None  # after a Flatten: the NIR (C, H, W) position of each snnjax (H, W, C) feature
    for index, layer in enumerate(layers):
        name = type(layer).__name__
        if isinstance(layer, nnx.Linear):
            weight = np.asarray(layer.kernel[...], np.float32).T  # NIR: [out, in]
            if shape != (weight.shape[1],):
                raise ValueError(f"export: layer {index} ({name}) takes {weight.shape[1]} inputs, given {shape}.")
            if order is not None:
                weight = weight[:, np.argsort(order)]  # NIR's column j is snnjax's feature argsort(order)[j]
                order = None
            shape = (weight.shape[0],)
            if layer.bias is None:
                nodes[str(index)] = nir.Linear(weight=weight)
            else:
                nodes[str(index)] = nir.Affine(weight=weight, bias=np.asarray(layer.bias[...], np.float32))
        elif isinstance(layer, nnx.Conv):
            nodes[str(index)], shape = _conv_node(nir, layer, index, shape)
        elif isinstance(layer, AvgPool2d):
            nodes[str(index)], shape = _pool_node(nir, layer, index, shape)
        elif isinstance(layer, Flatten):
            if len(shape) != 3:
                raise ValueError(f"export: layer {index} (Flatten) flattens feature maps (H, W, C), given {shape}.")
            height, width, channels = shape
            nodes[str(index)] = nir.Flatten(input_type={"input": np.array([channels, height, width])}, start_dim=0)
            order = np.arange(height * width * channels).reshape(channels, height, width).transpose(1, 2, 0).ravel()
            shape = (height * width * channels,)
        elif isinstance(layer, IAF):
            threshold, reset = _spiking(layer, index, approximate_reset, shape)
            nodes[str(index)] = nir.IF(r=_spread(1.0 / dt, shape), v_threshold=threshold, v_reset=reset)
        elif isinstance(layer, LIF):
            threshold, reset = _spiking(layer, index, approximate_reset, shape)
            beta = np.asarray(layer.beta(), np.float64)
            if np.any(beta >= 1.0):
                raise ValueError(f"export: layer {index} ({name}) has beta = 1 (no leak): use snnjax.nn.IAF for it.")
            tau = _spread(dt / (1.0 - beta), shape)
            zeros = np.zeros_like(tau)
            nodes[str(index)] = nir.LIF(
                tau=tau, r=(tau / dt).astype(np.float32), v_leak=zeros, v_threshold=threshold, v_reset=reset
            )
        elif isinstance(layer, CubaLIF):
            threshold, reset = _spiking(layer, index, approximate_reset, shape)
            alpha, beta = (np.asarray(d(), np.float64) for d in (layer.alpha, layer.beta))
            if np.any(alpha >= 1.0) or np.any(beta >= 1.0):
                raise ValueError(f"export: layer {index} ({name}) has a decay of 1 (no leak), which NIR cannot say.")
            tau_syn, tau_mem = dt / (1.0 - alpha), dt / (1.0 - beta)
            nodes[str(index)] = nir.CubaLIF(
                tau_syn=_spread(tau_syn, shape),
                tau_mem=_spread(tau_mem, shape),
                r=_spread(tau_syn * tau_mem / dt**2, shape),  # (dt / tau_mem) r (dt / tau_syn) w_in = 1
                v_leak=_spread(0.0, shape),
                v_threshold=threshold,
                v_reset=reset,
                w_in=_spread(1.0, shape),
            )
        elif isinstance(layer, LeakyIntegrator):
            kappa = np.asarray(layer.kappa(), np.float64)
            if np.any(kappa >= 1.0):
                raise ValueError(f"export: layer {index} ({name}) has kappa = 1 (no leak), which NIR's LI cannot say.")
            tau = _spread(dt / (1.0 - kappa), shape)
            r = np.ones_like(tau) if _options(layer).get("scale_input") else (tau / dt).astype(np.float32)
            nodes[str(index)] = nir.LI(tau=tau, r=r, v_leak=np.zeros_like(tau))
        else:
            raise ValueError(
                f"export: layer {index} ({name}) has no NIR counterpart here; supported: nnx.Linear, nnx.Conv, "
                "AvgPool2d, Flatten, LIF, IAF, CubaLIF, LeakyIntegrator (ALIF has no NIR node)."
            )
        if order is not None and not isinstance(layer, Flatten) and len(shape) == 1:
            raise ValueError(f"export: layer {index} ({name}) after a Flatten must be an nnx.Linear.")
        if isinstance(layer, (IAF, LIF, CubaLIF, LeakyIntegrator)) and layer.features != shape[-1]:
            raise ValueError(
                f"export: layer {index} ({name}) has {layer.features} neurons for inputs of shape {shape}."
            )
    if order is not None and np.any(order != np.arange(order.size)):
        raise ValueError(
            "export: the model ends with a Flatten of a feature map; NIR would order its outputs (C, H, W)."
        )
    if unit_r:
        _fold_gains(nir, nodes, layers)
    for index, layer in enumerate(layers):
        if getattr(layer, "recurrent", None) is not None:
            nodes[str(index)] = _recurrent_subgraph(nir, nodes[str(index)], layer)
    nodes["input"] = nir.Input(input_type={"input": np.array(_nir_shape(first_shape))})
    nodes["output"] = nir.Output(output_type={"output": np.array(_nir_shape(shape))})
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
    order = None  # after a Flatten: the NIR (C, H, W) position of each snnjax (H, W, C) feature
    for name in _chain(graph)[1:-1]:
        node = graph.nodes[name]
        if isinstance(node, nir.Conv2d):
            layers.append(_conv(node, name, rngs))
            continue
        if isinstance(node, nir.AvgPool2d):
            size, stride, pad = (_pair(v, 2) for v in (node.kernel_size, node.stride, node.padding))
            layers.append(AvgPool2d(size, stride, pad))  # type: ignore[arg-type]
            continue
        if isinstance(node, nir.Flatten):
            order = _flatten_order(node, name)
            if np.all(order == np.arange(order.size)):  # one position or one channel: the same order
                order = None
            layers.append(Flatten())
            continue
        if order is not None and not isinstance(node, (nir.Affine, nir.Linear)):
            raise ValueError(
                f"load: node {name!r} ({type(node).__name__}) follows a Flatten of a feature map; snnjax orders the "
                "flattened features (H, W, C), so only an Affine or Linear may come next."
            )
        if isinstance(node, (nir.Affine, nir.Linear)):
            weight = np.asarray(node.weight, np.float32)
            if order is not None:
                if weight.shape[1] != order.size:
                    raise ValueError(
                        f"load: node {name!r} takes {weight.shape[1]} inputs after a Flatten of {order.size}."
                    )
                weight, order = weight[:, order], None  # snnjax's feature i is NIR's column order[i]
            bias = np.asarray(node.bias, np.float32) if isinstance(node, nir.Affine) else None
            linear = nnx.Linear(weight.shape[1], weight.shape[0], use_bias=bias is not None, rngs=rngs)
            linear.kernel[...] = jnp.asarray(weight.T)
            if bias is not None:
                linear.bias[...] = jnp.asarray(bias)
            layers.append(linear)
            continue
        if isinstance(node, (nir.LIF, nir.IF, nir.LI, nir.CubaLIF)):
            layers.append(_neuron(_per_channel(node, name), name, dt, layers, nir))
            continue
        if isinstance(node, nir.NIRGraph):
            neuron, weight = _recurrence(node, name, nir)
            layers.append(_neuron(neuron, name, dt, layers, nir, weight))
            continue
        raise ValueError(
            f"load: node {name!r} ({type(node).__name__}) has no snnjax counterpart here; supported: Affine, Linear, "
            "Conv2d, AvgPool2d, Flatten, LIF, IF, LI, CubaLIF."
        )
    if order is not None:
        raise ValueError(
            "load: the graph ends with a Flatten of a feature map; snnjax would order its outputs (H, W, C)."
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
    if n == 1 and layers and isinstance(layers[-1], (nnx.Linear, nnx.Conv)):  # one value for the layer (Norse's)
        n = int(layers[-1].kernel.shape[-1])
    decay, gain, leak = jax.tree.map(lambda d: np.broadcast_to(np.ravel(d), (n,)), (decay, gain, leak))
    if not isinstance(node, nir.LI) and np.any(np.asarray(node.v_reset) != 0):
        raise ValueError(f"load: node {name!r} ({kind}) resets to v_reset != 0, which snnjax's neurons cannot.")
    if np.any(gain != 1) or np.any(leak != 0):
        if not layers or not isinstance(layers[-1], (nnx.Linear, nnx.Conv)):
            raise ValueError(
                f"load: node {name!r} ({kind}) has an input gain R dt / tau != 1 or v_leak != 0 and no Affine, "
                "Linear or Conv2d before it to fold them into."
            )
        previous = layers[-1]
        kernel = previous.kernel[...]  # [..., N]: each output feature or channel scaled by its gain
        previous.kernel[...] = kernel * jnp.asarray(gain, jnp.float32).reshape((1,) * (kernel.ndim - 1) + (-1,))
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


_NEURON_FIELDS = ("tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")


def _per_channel(node: Any, name: str) -> Any:
    """A neuron node over feature maps ``(C, H, W)`` with one value per channel (what snnjax's layers
    hold), as a node over ``C`` features; other nodes as they are."""
    fields = [f for f in _NEURON_FIELDS if hasattr(node, f)]
    if not any(np.ndim(getattr(node, f)) == 3 for f in fields):
        return node
    reduced = {}
    for f in fields:
        value = np.asarray(getattr(node, f), np.float32)
        if value.ndim == 3:
            if not np.all(value == value[:, :1, :1]):
                raise ValueError(
                    f"load: node {name!r} ({type(node).__name__}) has {f} varying over positions within a channel; "
                    "snnjax's layers hold one value per channel."
                )
            value = value[:, 0, 0]
        reduced[f] = value
    return dataclasses.replace(node, **reduced)


def _conv(node: Any, name: str, rngs: nnx.Rngs) -> nnx.Conv:
    """The ``nnx.Conv`` of a NIR ``Conv2d`` (``weight`` ``[C_out, C_in / groups, kH, kW]``)."""
    weight = np.asarray(node.weight, np.float32)
    if weight.ndim != 4:
        raise ValueError(f"load: node {name!r} (Conv2d) needs a weight [C_out, C_in, kH, kW], got {weight.shape}.")
    if isinstance(node.padding, str):
        padding: Any = node.padding.upper()
    else:
        padding = [(p, p) for p in _pair(node.padding, 2)]
    groups = int(node.groups)
    conv = nnx.Conv(
        weight.shape[1] * groups,
        weight.shape[0],
        weight.shape[2:],
        strides=_pair(node.stride, 2),
        padding=padding,
        kernel_dilation=_pair(node.dilation, 2),
        feature_group_count=groups,
        rngs=rngs,
    )
    conv.kernel[...] = jnp.asarray(weight.transpose(2, 3, 1, 0))
    conv.bias[...] = jnp.asarray(np.broadcast_to(np.asarray(node.bias, np.float32), (weight.shape[0],)))
    return conv


def _flatten_order(node: Any, name: str) -> np.ndarray:
    """For a ``Flatten`` of whole ``(C, H, W)`` maps: the NIR position of each snnjax ``(H, W, C)`` feature."""
    shape = node.input_type.get("input")
    out = node.output_type.get("output")
    if shape is None or len(shape) != 3 or out is None or len(out) != 1:
        raise ValueError(
            f"load: node {name!r} (Flatten) must flatten whole (C, H, W) feature maps into a vector (its input_type "
            f"{None if shape is None else tuple(shape)}, start_dim {node.start_dim})."
        )
    channels, height, width = (int(d) for d in shape)
    return np.arange(channels * height * width).reshape(channels, height, width).transpose(1, 2, 0).ravel()


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
