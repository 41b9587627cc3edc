r"""How every rule sees a model: the jaxpr of its loss, read once and run again with changes.

A rule is built from ``loss_fn(params, *args) -> (loss, aux)`` alone, the way
``jax.value_and_grad`` is. To change what some layers do, it traces the loss once with
:func:`jax.make_jaxpr` (:func:`trace`) and finds in it, whatever library wrote the model
(Flax NNX, snnjax's own neurons, plain JAX):

- **weight products**, the :class:`Site` s: every ``dot_general`` (``nnx.Linear``,
  ``nnx.Einsum``, ``x @ w``, ``jnp.einsum``) and ``conv_general_dilated`` (``nnx.Conv``) with
  one operand computed from the parameters alone (the weight :math:`W`) and the other from
  the data (the layer's input :math:`x`); its output :math:`o = x \star W` is the layer's
  pre-activation;
- for each, whether its input is a **hidden** layer's output (it depends on another weight
  product), whether it is **recurrent** (inside a loop, its input comes from the loop's
  carry, not from the step's own input: the layer's own dynamics), whether it is an
  **output** (its result reaches the loss through no other weight product's input), and which
  of the local losses it reaches;
- the :func:`snnjax.rules.block` markers, which every rule reads as cuts.

:func:`evaluate` then runs the loss from its jaxpr with a rule's :class:`Handler`: each weight
product it touches is computed by the handler from :math:`(x, W)`, which may add a
perturbation, stop a gradient or swap the weight for a feedback matrix; every marker becomes
a stop-gradient. Products inside ``lax.scan`` (recurrent weights, networks stepped as a whole)
are reached by rebuilding the scan with the same options; a handler's extra inputs and the
values it collects are stacked over the scan's steps, with the steps on the leading axes. The
result is an ordinary JAX function of ``(params, *args)``, so the rule applies ``jax.grad``,
``jax.jvp`` and ``jax.vmap`` to it. Everything else is bound exactly as traced.

Limits: a handler cannot change a product inside a ``jax.custom_jvp`` or ``jax.custom_vjp``
function (such as :func:`snnjax.run_bptt`) or a ``while_loop`` (which reverse mode cannot
differentiate anyway), nor collect values or take per-step inputs inside a ``cond``; the rule then
raises a ``ValueError`` naming the layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal, jaxprs_in_params

from snnjax.rules.block import block_p, grouped_p

__all__ = ["Graph", "Handler", "Site", "evaluate", "trace"]

PRODUCTS = ("dot_general", "conv_general_dilated")
_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat2", "checkpoint", "custom_jvp_call", "custom_vjp_call")
_OPAQUE = ("custom_jvp_call", "custom_vjp_call")
# Operations that keep an array's elements where they are (for the pre-activation and activation of a layer).
_ELEMENTWISE = frozenset(
    "add sub mul div neg max min abs exp log tanh logistic sign floor ceil round convert_element_type "
    "select_n integer_pow pow sqrt rsqrt square clamp erf copy copy_p".split()
)
_RESHAPES = frozenset({"reshape", "squeeze", "expand_dims"})

_P, _D, _H, _F = 1, 2, 4, 8  # depends on: the parameters, the data, a weight product's output, this step's input


class Value(NamedTuple):
    """A variable of the traced loss: output ``index`` of the equation at ``path``, of shape ``struct``."""

    path: tuple[int, ...]
    index: int
    struct: jax.ShapeDtypeStruct


class Site(NamedTuple):
    """A weight product of the loss, as a rule sees it.

    Attributes:
      index: its position among the graph's sites (the order of the jaxpr).
      path: where its equation is: equation and sub-jaxpr indices through the nesting.
      primitive: the ``dot_general`` or ``conv_general_dilated`` primitive.
      params: its parameters (dimension numbers, ...).
      weight: which operand (0 or 1) is the weight.
      x: the data operand, one step: ``jax.ShapeDtypeStruct``.
      w: the weight operand.
      out: the product :math:`o`.
      loops: the lengths of the scans it sits in, outermost first (``()`` outside any loop).
      within: the names of the higher-order primitives it sits in, outermost first.
      hidden: its input depends on another weight product.
      trainable_input: its input depends on the parameters (so the error sent to it matters).
      recurrent: it sits in a loop and its input comes from the loop's carry only.
      merged: its pre-activation is part of a recurrent layer's input current (the feed-forward
        current the recurrent product adds to): activity perturbation perturbs that current once.
      output: its result reaches the loss through no other weight product's input.
      losses: the local losses (indices of the loss's leaves) its result reaches.
      where: the layer that computed it and the code that called that layer.
      pre_activation: the layer's pre-activation, a :class:`Value`: :math:`o` followed by the
        bias and reshapes (:math:`o` itself if nothing follows); or, where a
        :func:`snnjax.rules.grouped` marker ends a normalisation of it (steps that read nothing
        else of the data and nothing outside them reads), the marker's value, the normalised
        pre-activation; for a recurrent product, the layer's whole input current at the step
        (the feed-forward current added in).
      activation: the last value of the chain of elementwise steps (and reshapes) after the
        pre-activation (the layer's activation: a ReLU's output, say), a :class:`Value`; the
        pre-activation itself if none follows.
      groups: ``G`` if the model marked the pre-activation with :func:`snnjax.rules.grouped`
        (its token ``p``, group ``g`` reaches only element ``[p, g]`` of its local loss), else ``None``.
    """

    index: int
    path: tuple[int, ...]
    primitive: Any
    params: dict
    weight: int
    x: jax.ShapeDtypeStruct
    w: jax.ShapeDtypeStruct
    out: jax.ShapeDtypeStruct
    loops: tuple[int, ...]
    within: tuple[str, ...]
    hidden: bool
    trainable_input: bool
    recurrent: bool
    merged: bool
    output: bool
    losses: tuple[int, ...]
    where: str
    pre_activation: Value
    activation: Value
    groups: int | None = None

    @property
    def name(self) -> str:
        """A label for messages: the primitive, the shapes and the layer."""
        return f"{self.primitive.name} {list(self.x.shape)} x {list(self.w.shape)} in {self.where}"

    def apply(self, x: jax.Array, w: jax.Array) -> jax.Array:
        """The product of ``x`` and ``w`` as the model computes it (same dimension numbers)."""
        operands = (w, x) if self.weight == 0 else (x, w)
        return self.primitive.bind(*operands, **self.params)

    def layout(self, of: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(positions, features)``: the axes of ``x`` or ``out`` that index examples and time steps
        (the product's batch and free axes of ``x``; a convolution's batch axis), and those that index
        a layer's features (the contracted axes of ``x``; the weight's free axes of ``out``)."""
        if self.primitive.name == "conv_general_dilated":
            spec = self.params["dimension_numbers"]
            batch = (spec.lhs_spec[0] if of == "x" else spec.out_spec[0],)
            ndim = len(self.x.shape)
            return batch, tuple(a for a in range(ndim) if a not in batch)
        (lc, rc), (lb, rb) = self.params["dimension_numbers"]
        xi = 1 - self.weight
        contract, batch = ((lc, rc)[xi], (lb, rb)[xi])
        x_free = tuple(a for a in range(len(self.x.shape)) if a not in contract and a not in batch)
        if of == "x":
            return tuple(batch) + x_free, tuple(contract)
        w_ndim = len(self.w.shape)
        w_free = w_ndim - len(lc if self.weight == 0 else rc) - len(batch)
        n_batch, n_x = len(batch), len(x_free)
        if self.weight == 1:  # out = [batch, x free, w free]
            return tuple(range(n_batch + n_x)), tuple(range(n_batch + n_x, n_batch + n_x + w_free))
        return tuple(range(n_batch)) + tuple(range(n_batch + w_free, n_batch + w_free + n_x)), tuple(
            range(n_batch, n_batch + w_free)
        )

    def to_matrix(self, value: jax.Array, of: str) -> jax.Array:
        """``value`` (``x`` or ``out`` stacked over the site's loops, ``[*loops, ...]``) as a
        ``[positions, features]`` matrix, positions in row-major order, the loops' steps first."""
        positions, features = self.layout(of)
        k = len(self.loops)
        order = tuple(range(k)) + tuple(k + a for a in positions) + tuple(k + a for a in features)
        value = jnp.transpose(value, order)
        f = math.prod(value.shape[len(value.shape) - len(features) :])
        return value.reshape(-1, f)

    def from_matrix(self, matrix: jax.Array, of: str) -> jax.Array:
        """The inverse of :meth:`to_matrix`: ``[positions, features]`` back to ``[*loops, ...]``."""
        positions, features = self.layout(of)
        shape = self.x.shape if of == "x" else self.out.shape
        k = len(self.loops)
        order = tuple(range(k)) + tuple(k + a for a in positions) + tuple(k + a for a in features)
        full = tuple(self.loops) + tuple(shape)
        value = matrix.reshape(tuple(full[a] for a in order))
        inverse = [0] * len(order)
        for i, a in enumerate(order):
            inverse[a] = i
        return jnp.transpose(value, inverse)


class Graph(NamedTuple):
    """What :func:`trace` finds in a loss.

    Attributes:
      jaxpr: the closed jaxpr of ``loss_fn`` over the leaves of ``(params, args)``.
      sites: the weight products, in jaxpr order.
      blocks: the paths of the :func:`snnjax.rules.block` markers.
      in_tree: the tree structure of ``(params, args)``.
      out_tree: the tree structure of ``(loss, aux)``.
      num_params: the number of parameter leaves.
      num_losses: the number of local losses (leaves of ``loss``).
      param_losses: for each parameter leaf, the local losses it reaches.
      unseen: products the rule cannot see, inside primitives it does not know (labels).
      loose_markers: the :func:`snnjax.rules.grouped` markers that end no site's pre-activation
        (where they are, as labels).
    """

    jaxpr: ClosedJaxpr
    sites: tuple[Site, ...]
    blocks: tuple[tuple[int, ...], ...]
    in_tree: Any
    out_tree: Any
    num_params: int
    num_losses: int
    param_losses: tuple[tuple[int, ...], ...]
    unseen: tuple[str, ...]
    loose_markers: tuple[str, ...] = ()

    def require_sites(self, rule: str) -> None:
        """Raise ``ValueError`` if the model has no weight product, or one the rule cannot see."""
        if self.unseen:
            raise ValueError(
                f"{rule}: the loss computes a product inside {self.unseen[0]}, which the rule cannot see into."
            )
        if not self.sites:
            raise ValueError(
                f"{rule}: the loss has no weight product (a dot_general or convolution of the data with a tensor "
                "computed from params alone), so the rule has no layer to act on."
            )


class _Region(NamedTuple):
    """A sub-jaxpr of a higher-order equation and how its variables meet the equation's."""

    jaxpr: Jaxpr
    consts: list
    inputs: list  # the equation's operands, aligned with jaxpr.invars
    outputs: list | None  # the equation's results, aligned with jaxpr.outvars
    carry: tuple[int, int] | None  # (first carry input, count): outputs[:count] feed those inputs back
    length: int | None  # scan length: steps that collected values are stacked over
    loop: bool
    fresh: tuple[int, ...]  # the inputs that are the step's own (a scan's xs)


def _regions(eqn) -> list[_Region] | None:
    name, params = eqn.primitive.name, eqn.params
    if name == "scan":
        closed, nc, nk = params["jaxpr"], params["num_consts"], params["num_carry"]
        fresh = tuple(range(nc + nk, len(eqn.invars)))
        return [_Region(closed.jaxpr, closed.consts, eqn.invars, eqn.outvars, (nc, nk), params["length"], True, fresh)]
    if name == "while":
        body, cn, bn = params["body_jaxpr"], params["cond_nconsts"], params["body_nconsts"]
        return [_Region(body.jaxpr, body.consts, eqn.invars[cn:], eqn.outvars, (bn, len(eqn.outvars)), None, True, ())]
    if name == "cond":
        return [
            _Region(b.jaxpr, b.consts, eqn.invars[1:], eqn.outvars, None, None, False, ()) for b in params["branches"]
        ]
    if name in _CALLS:
        sub = params.get("jaxpr", params.get("call_jaxpr"))
        if isinstance(sub, ClosedJaxpr):
            return [_Region(sub.jaxpr, sub.consts, eqn.invars, eqn.outvars, None, None, False, ())]
        if isinstance(sub, Jaxpr):
            return [_Region(sub, [], eqn.invars, eqn.outvars, None, None, False, ())]
    return None


def _read(bits: dict, atom) -> int:
    return 0 if isinstance(atom, Literal) else bits.get(atom, 0)


def _where(eqn) -> str:
    """``layer (file:line), called from file:line`` from the equation's traceback."""
    tb = eqn.source_info.traceback
    frames = list(tb.frames) if tb is not None else []
    internal = ("/jax/", "/jaxlib/")
    library = internal + ("/flax/", "/snnjax/", "/site-packages/", "/optax/")
    layer = next((f for f in frames if not any(s in f.file_name for s in internal)), None)
    user = next((f for f in frames if not any(s in f.file_name for s in library)), None)
    if layer is None:
        return "the loss"
    text = f"{layer.function_name} ({_short(layer.file_name)}:{layer.line_num})"
    if user is not None and user is not layer:
        text += f", called from {_short(user.file_name)}:{user.line_num}"
    return text


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/snnjax/"):
        if marker in path:
            return ("snnjax/" if marker == "/snnjax/" else "") + path.split(marker, 1)[1]
    return path


def _contains_product(jaxpr: Jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in PRODUCTS:
            return True
        for sub in jaxprs_in_params(eqn.params):
            if _contains_product(sub):
                return True
    return False


@dataclasses.dataclass
class _Found:
    sites: dict  # path -> dict of the site's fields found so far
    blocks: set
    unseen: list
    markers: dict = dataclasses.field(default_factory=dict)  # path -> where, of every grouped marker
    outer: dict = dataclasses.field(default_factory=dict)  # a sub-jaxpr's input variable -> the atom it receives
    ends: dict = dataclasses.field(default_factory=dict)  # path -> (pre-activation variable, activation variable)
    currents: dict = dataclasses.field(default_factory=dict)  # recurrent site's path -> variables its current adds


def _walk(
    jaxpr: Jaxpr,
    consumers: dict,
    start,
    path: tuple[int, ...],
    forward: bool,
    bits: dict,
    added: list | None = None,
    groups: list | None = None,
    at: Value | None = None,
):
    """The end of the single-consumer chain from ``start`` (output 0 of the equation at ``path``),
    as ``(Value, variable)``: through the bias (an addition of something that does not depend on
    the data), reshapes and transposes (``forward=False``: the pre-activation), or through every elementwise
    step (``forward=True``: the activation). With ``added`` (a recurrent product), the
    pre-activation also takes in what this step's input adds, another layer's current at the same
    step, and those variables are appended to ``added``: the layer's whole input current. A
    :func:`snnjax.rules.grouped` marker ends the pre-activation, its group count appended to
    ``groups``; the activation's walk passes it. Where the chain stops before a marker, a marker
    that ends a normalisation of the chain's end (:func:`_normalised`) ends the pre-activation.
    ``at``: the :class:`Value` of ``start`` when it is not output 0 of the equation at ``path``
    (the activation's walk starts at the pre-activation). ``consumers``: :func:`_consumers` of ``jaxpr``."""
    outvars = set(v for v in jaxpr.outvars if not isinstance(v, Literal))
    var, end = start, at or Value(path, 0, _struct(start))
    fresh = _H | _F
    while var not in outvars and len(consumers.get(var, ())) == 1:
        i = consumers[var][0]
        eqn = jaxpr.eqns[i]
        if len(eqn.outvars) != 1 or math.prod(eqn.outvars[0].aval.shape) != math.prod(var.aval.shape):
            break
        name = eqn.primitive.name
        if name in _RESHAPES or name == "convert_element_type" or (name == "transpose" and not forward):
            pass  # the pre-activation also passes a transpose (einsum's output); the activation keeps its layout
        elif name == grouped_p.name:  # the model marked the pre-activation: it ends here
            if not forward:
                if groups is not None:
                    groups.append(eqn.params["groups"])
                return Value(path[:-1] + (i,), 0, _struct(eqn.outvars[0])), eqn.outvars[0]
        elif name in ("add", "sub") and not forward:
            others = [a for a in eqn.invars if a is not var]
            if any(_read(bits, a) & _D for a in others):
                if added is None or name != "add" or not all(_read(bits, a) & fresh == fresh for a in others):
                    break
                added.extend(a for a in others if not isinstance(a, Literal))
        elif forward and (name in _ELEMENTWISE or (name in _CALLS and _elementwise_call(eqn))):
            pass
        else:
            break
        var, end = eqn.outvars[0], Value(path[:-1] + (i,), 0, _struct(eqn.outvars[0]))
    if not forward and added is None and groups is not None and var not in outvars:
        marked = _normalised(jaxpr, var, bits, consumers)
        if marked is not None:
            i, marker = marked
            groups.append(marker.params["groups"])
            return Value(path[:-1] + (i,), 0, _struct(marker.outvars[0])), marker.outvars[0]
    return end, var


def _consumers(jaxpr: Jaxpr) -> dict:
    """``{variable: [index of each equation reading it]}``, in order."""
    consumers: dict = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for a in eqn.invars:
            if not isinstance(a, Literal):
                consumers.setdefault(a, []).append(i)
    return consumers


def _normalised(jaxpr: Jaxpr, var, bits: dict, consumers: dict):
    """The :func:`snnjax.rules.grouped` marker that ends a normalisation of ``var``, as ``(index,
    equation)``, or ``None``: the steps from ``var`` to the marker (a layer norm, say: Ren et al.
    perturb the normalised pre-activation) must form a closed region, reading nothing else
    that the data reaches, holding no weight product, and used by nothing but the marker.
    ``consumers``: :func:`_consumers` of ``jaxpr``. The scan runs from ``var``'s first reader
    until the marker or the first step that cannot belong to the region (a product, a loop, a
    read of other data): the layer's own equations. That nothing after the marker reads the
    region is checked on the region's readers."""
    if var not in consumers:
        return None
    inside, region = {var}, set()
    for i in range(consumers[var][0], len(jaxpr.eqns)):
        eqn = jaxpr.eqns[i]
        ins = [a for a in eqn.invars if not isinstance(a, Literal)]
        if not any(a in inside for a in ins):
            continue
        if eqn.primitive.name == grouped_p.name:
            read_elsewhere = any(j not in region and j != i for v in inside for j in consumers.get(v, ()))
            if read_elsewhere or any(v in inside for v in jaxpr.outvars if not isinstance(v, Literal)):
                return None  # the region is read after the marker, or beside it
            return i, eqn
        loop = _regions(eqn) is not None and eqn.primitive.name not in _CALLS  # a scan, a cond
        if loop or eqn.primitive.name in PRODUCTS or any(map(_contains_product, jaxprs_in_params(eqn.params))):
            return None
        if any(_read(bits, a) & _D for a in ins if a not in inside):
            return None
        inside.update(eqn.outvars)
        region.add(i)
    return None


def _elementwise_call(eqn) -> bool:
    """A call (``jit``, ``custom_jvp``: ``jax.nn.relu``, say) of elementwise steps only."""
    regions = _regions(eqn)
    return bool(regions) and all(
        e.primitive.name in _ELEMENTWISE
        or e.primitive.name in _RESHAPES
        or (e.primitive.name in _CALLS and _elementwise_call(e))
        for r in regions
        for e in r.jaxpr.eqns
    )


def _forward(jaxpr, in_bits, path, loops, within, in_loop, found: _Found) -> list[int]:
    """Dependence bits of every variable (parameters, data, products, the step's input); records sites."""
    bits: dict = {}
    for v, b in zip(jaxpr.invars, in_bits):
        bits[v] = b
    chains = []  # this level's sites: their pre-activations and activations, once every bit is known
    for i, eqn in enumerate(jaxpr.eqns):
        here = path + (i,)
        ins = [_read(bits, a) for a in eqn.invars]
        name = eqn.primitive.name
        anyin = 0
        for b in ins:
            anyin |= b
        if name == block_p.name:
            found.blocks.add(here)
            outs = [ins[0]]
        elif name == grouped_p.name:
            found.markers[here] = _where(eqn)
            outs = [anyin]
        elif name in PRODUCTS and len(ins) == 2:
            outs = [anyin]
            weights = [k for k in (0, 1) if ins[k] & (_P | _D) == _P and ins[1 - k] & _D]
            if len(weights) == 1:
                k = weights[0]
                xb = ins[1 - k]
                outs = [anyin | _H]
                found.sites[here] = dict(
                    path=here,
                    primitive=eqn.primitive,
                    params=dict(eqn.params),
                    weight=k,
                    x=_struct(eqn.invars[1 - k]),
                    w=_struct(eqn.invars[k]),
                    out=_struct(eqn.outvars[0]),
                    loops=loops,
                    within=within,
                    hidden=bool(xb & _H),
                    trainable_input=bool(xb & _P),
                    recurrent=in_loop and not xb & _F,
                    where=_where(eqn),
                )
                chains.append((here, eqn.outvars[0]))
        elif (regions := _regions(eqn)) is not None:
            outs = [0] * len(eqn.outvars)
            for r, region in enumerate(regions):
                sub_in = [_read(bits, a) for a in region.inputs]
                found.outer.update(
                    (v, a) for v, a in zip(region.jaxpr.invars, region.inputs) if not isinstance(a, Literal)
                )
                if region.loop:  # the step's own data is fresh; what the carry brings is not
                    carry_ids = set(range(region.carry[0], sum(region.carry))) if region.carry else set()
                    sub_in = [(b & ~_F) if j in carry_ids else (b | _F if b & _D else b) for j, b in enumerate(sub_in)]
                sub_loops = loops + (region.length,) if region.length is not None else loops
                sub_within = within + (name,)
                for _ in range(len(region.jaxpr.invars) + 2):  # the carry's bits only grow
                    sub_out = _forward(
                        region.jaxpr,
                        sub_in,
                        here + (r,),
                        sub_loops,
                        sub_within,
                        in_loop or region.loop,
                        found,
                    )
                    if not region.carry:
                        break
                    c0, n = region.carry
                    grown = [sub_in[c0 + j] | (sub_out[j] & ~_F if region.loop else sub_out[j]) for j in range(n)]
                    if grown == sub_in[c0 : c0 + n]:
                        break
                    sub_in[c0 : c0 + n] = grown
                for j, b in enumerate(sub_out):
                    outs[j] |= b
            outs = [b | (anyin & _F) for b in outs]
        else:
            outs = [anyin] * len(eqn.outvars)
            if any(_contains_product(sub) for sub in jaxprs_in_params(eqn.params)):
                found.unseen.append(f"{name} ({_where(eqn)})")
        for v, b in zip(eqn.outvars, outs):
            bits[v] = b
    consumers = _consumers(jaxpr) if chains else {}  # built once: every chain's walk reads it
    for here, out in chains:
        added = [] if found.sites[here]["recurrent"] else None
        groups: list = []
        walked = _walk(jaxpr, consumers, out, here, False, bits, added, groups)
        found.sites[here]["pre_activation"], pre_var = walked
        found.sites[here]["groups"] = groups[-1] if groups else None
        pre = found.sites[here]["pre_activation"]  # the activation follows it (a rule's noise enters there)
        found.sites[here]["activation"], act_var = _walk(jaxpr, consumers, pre_var, pre.path, True, bits, at=pre)
        found.ends[here] = (pre_var, act_var)
        if added:
            found.currents[here] = added
    return [_read(bits, v) for v in jaxpr.outvars]


def _struct(var) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(var.aval.shape, var.aval.dtype)


def _backward(jaxpr, out_reach, out_direct, path, found: _Found, sites_out: dict) -> tuple[list[int], list[int]]:
    """For every input, the local losses it reaches (``reach``) and those it reaches through no
    weight product's data input (``direct``); records each site's."""
    reach: dict = {}
    direct: dict = {}

    def add(table, atom, b):
        if not isinstance(atom, Literal):
            table[atom] = table.get(atom, 0) | b

    for v, r, d in zip(jaxpr.outvars, out_reach, out_direct):
        add(reach, v, r)
        add(direct, v, d)
    for i in reversed(range(len(jaxpr.eqns))):
        eqn = jaxpr.eqns[i]
        here = path + (i,)
        r_out = [reach.get(v, 0) for v in eqn.outvars]
        d_out = [direct.get(v, 0) for v in eqn.outvars]
        r_any, d_any = 0, 0
        for r, d in zip(r_out, d_out):
            r_any, d_any = r_any | r, d_any | d
        if here in found.blocks:
            continue  # a cut: nothing reaches the losses through it
        if here in found.sites:
            site = found.sites[here]
            sites_out[here] = (sites_out.get(here, (0, 0))[0] | r_any, sites_out.get(here, (0, 0))[1] | d_any)
            add(reach, eqn.invars[site["weight"]], r_any)
            add(direct, eqn.invars[site["weight"]], d_any)
            add(reach, eqn.invars[1 - site["weight"]], r_any)
            continue
        regions = _regions(eqn)
        if regions is None:
            for a in eqn.invars:
                add(reach, a, r_any)
                add(direct, a, d_any)
            continue
        for r, region in enumerate(regions):
            if region.outputs is None:
                continue
            sub_r = [reach.get(v, 0) for v in region.outputs]
            sub_d = [direct.get(v, 0) for v in region.outputs]
            for _ in range(len(region.jaxpr.outvars) + 2):
                in_r, in_d = _backward(region.jaxpr, sub_r, sub_d, here + (r,), found, sites_out)
                if not region.carry:
                    break
                c0, n = region.carry
                grown_r = [sub_r[j] | in_r[c0 + j] for j in range(n)]
                grown_d = [sub_d[j] | in_d[c0 + j] for j in range(n)]
                if grown_r == sub_r[:n] and grown_d == sub_d[:n]:
                    break
                sub_r[:n], sub_d[:n] = grown_r, grown_d
            for a, rr, dd in zip(region.inputs, in_r, in_d):
                add(reach, a, rr)
                add(direct, a, dd)
    return [reach.get(v, 0) for v in jaxpr.invars], [direct.get(v, 0) for v in jaxpr.invars]


def _merged(found: _Found) -> set:
    """The sites whose pre-activation or activation a recurrent site's current adds in (followed out
    of the loop that holds it): their current is perturbed there, as part of the layer's input current."""
    ends = {}
    for path, variables in found.ends.items():
        for var in variables:
            ends.setdefault(var, set()).add(path)
    merged = set()
    for path, added in found.currents.items():
        for var in added:
            while var in found.outer and var not in ends:
                var = found.outer[var]
            merged |= ends.get(var, set()) - {path}
    return merged


def _marks_groups(jaxpr: Jaxpr) -> bool:
    """Whether a :func:`snnjax.rules.grouped` marker is anywhere in the loss."""
    return any(
        eqn.primitive.name == grouped_p.name or any(_marks_groups(sub) for sub in jaxprs_in_params(eqn.params))
        for eqn in jaxpr.eqns
    )


def _indices(mask: int) -> tuple[int, ...]:
    return tuple(k for k in range(mask.bit_length()) if mask >> k & 1)


def trace(loss_fn: Callable, params: Any, args: tuple, rule: str = "rule") -> Graph:
    """Trace ``loss_fn(params, *args) -> (loss, aux)`` once, abstractly, and find its sites.

    ``loss`` is a scalar, or a tuple (or list) of local losses whose sum is the objective: each
    a scalar, or an array of losses (one per token and group, :func:`snnjax.rules.grouped`)
    whose elements all count.

    Args:
      loss_fn: the loss.
      params: the parameters (any pytree of arrays).
      args: the other arguments, a tuple.
      rule: the rule's name, for error messages.

    Returns:
      A :class:`Graph`.

    Raises:
      ValueError: if ``loss_fn`` does not return ``(loss, aux)`` with a floating-point scalar
        loss (or a tuple of them).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax.rules.graph import trace
      >>> def loss_fn(p, x):
      ...     h = jnp.tanh(x @ p["w1"])
      ...     return jnp.mean((h @ p["w2"]) ** 2), h
      >>> g = trace(loss_fn, {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2))}, (jnp.ones((5, 3)),))
      >>> [(s.hidden, s.output) for s in g.sites]
      [(False, False), (True, True)]
    """
    if not callable(loss_fn):
        raise ValueError(f"{rule}: loss_fn must be a callable (params, *args) -> (loss, aux).")
    leaves, in_tree = jax.tree.flatten((params, tuple(args)))
    num_params = len(jax.tree.leaves(params))

    def flat(*leaves):
        p, a = jax.tree.unflatten(in_tree, leaves)
        out = loss_fn(p, *a)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError(
                f"{rule}: loss_fn must return a pair (loss, aux), like jax.value_and_grad(..., has_aux=True) "
                f"expects (use None for no aux); got {type(out).__name__}."
            )
        return tuple(out)

    closed, shapes = jax.make_jaxpr(flat, return_shape=True)(*leaves)
    loss_shapes = jax.tree.leaves(shapes[0])
    if not loss_shapes:
        raise ValueError(f"{rule}: loss_fn returned no loss.")
    # local losses may be arrays, one per token and group, where the loss marks groups (group_local_loss does)
    local = isinstance(shapes[0], (tuple, list)) and _marks_groups(closed.jaxpr)
    for s in loss_shapes:
        if (s.shape != () and not local) or not jnp.issubdtype(s.dtype, jnp.floating):
            raise ValueError(
                f"{rule}: loss_fn must return a floating-point scalar loss (or a tuple of scalar local losses, or of "
                "snnjax.group_local_loss arrays), "
                f"got shape {s.shape} and dtype {s.dtype}; reduce per-example losses with jnp.mean."
            )
    num_losses = len(loss_shapes)
    found = _Found({}, set(), [])
    in_bits = [_P] * num_params + [_D | _F] * (len(leaves) - num_params)
    _forward(closed.jaxpr, in_bits, (), (), (), False, found)
    outs = len(closed.jaxpr.outvars)
    out_reach = [1 << k if k < num_losses else 0 for k in range(outs)]
    sites_out: dict = {}
    in_reach, _ = _backward(closed.jaxpr, out_reach, list(out_reach), (), found, sites_out)
    merged = _merged(found)
    sites = []
    for here in sorted(found.sites):
        fields = found.sites[here]
        r, d = sites_out.get(here, (0, 0))
        sites.append(Site(index=len(sites), output=bool(d), losses=_indices(r), merged=here in merged, **fields))
    claimed = {s.pre_activation.path for s in sites if s.groups is not None}
    return Graph(
        jaxpr=closed,
        sites=tuple(sites),
        blocks=tuple(sorted(found.blocks)),
        in_tree=in_tree,
        out_tree=jax.tree.structure(shapes),
        num_params=num_params,
        num_losses=num_losses,
        param_losses=tuple(_indices(r) for r in in_reach[:num_params]),
        unseen=tuple(found.unseen),
        loose_markers=tuple(where for path, where in sorted(found.markers.items()) if path not in claimed),
    )


class Handler:
    """What a rule does to the weight products while :func:`evaluate` runs the loss.

    The base class changes nothing. A rule's handler overrides :meth:`touches` (which sites
    it changes) and :meth:`product` (how); :meth:`watches` may name other variables of a site
    (its pre-activation or activation) to be passed through :meth:`value`.
    """

    name = "rule"

    def touches(self, site: Site) -> bool:
        """Whether :meth:`product` computes this site differently from the model."""
        return False

    def product(self, site: Site, x: jax.Array, w: jax.Array, extra: Any) -> tuple[jax.Array, Any]:
        """``(output, collected)``: the site's result and a value to collect (or ``None``).

        ``extra`` is this step's slice of the site's entry in :func:`evaluate`'s ``extras``.
        """
        return site.apply(x, w), None

    def watches(self, site: Site) -> dict[str, Value]:
        """Variables of this site (its :attr:`~Site.pre_activation`, say) to pass through :meth:`value`, by tag."""
        return {}

    def value(self, site: Site, tag: str, value: jax.Array, extra: Any) -> tuple[jax.Array, Any]:
        """``(value, collected)`` for the variable :meth:`watches` named ``tag``; ``extra`` is this step's
        slice of ``extras[(tag, site.index)]``, what is collected goes to ``collected[(tag, site.index)]``."""
        return value, None


@dataclasses.dataclass
class _Context:
    sites: dict  # path -> Site, the touched ones
    values: dict  # (path, output index) -> (Site, tag)
    blocks: set
    rebuild: set  # paths of equations that hold a touched site, a marker or a value
    handler: Handler
    extras: dict  # site index -> this level's array
    collected: dict  # site index (or (tag, site index)) -> value

    def child(self, extras: dict) -> _Context:
        return dataclasses.replace(self, extras=extras, collected={})


def _prefixes(path: tuple[int, ...]) -> list[tuple[int, ...]]:
    return [path[:k] for k in range(1, len(path) + 1, 2)]


def evaluate(graph: Graph, params: Any, args: tuple, handler: Handler | None = None, extras: dict | None = None):
    r"""Run the loss from its jaxpr, with ``handler`` computing the sites it touches.

    Every :func:`snnjax.rules.block` marker is a stop-gradient here.

    Args:
      graph: from :func:`trace` on arguments of the same shapes.
      params: the parameters.
      args: the other arguments, a tuple.
      handler: a :class:`Handler`; the identity if ``None``.
      extras: site index (or ``(tag, site index)`` for a watched value) -> an array handed to
        the handler there, with a leading axis per enclosing scan (``[*site.loops, ...]``),
        sliced step by step.

    Returns:
      ``((loss, aux), collected)``: the loss's outputs, and the handler's collected values by
      site index (``(tag, index)`` for :meth:`Handler.value`), stacked over the site's loops.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax.rules.graph import evaluate, trace
      >>> loss_fn = lambda w, x: (jnp.sum(x @ w), None)
      >>> g = trace(loss_fn, jnp.ones((2, 3)), (jnp.ones((4, 2)),))
      >>> float(evaluate(g, jnp.ones((2, 3)), (jnp.ones((4, 2)),))[0][0])
      24.0
    """
    handler = handler or Handler()
    touched = {s.path: s for s in graph.sites if handler.touches(s)}
    values = {(v.path, v.index): (s, tag) for s in graph.sites for tag, v in handler.watches(s).items()}
    rebuild = set()
    for path in list(touched) + list(graph.blocks) + [p for p, _ in values]:
        rebuild.update(_prefixes(path)[:-1])
    ctx = _Context(touched, values, set(graph.blocks), rebuild, handler, dict(extras or {}), {})
    leaves = jax.tree.leaves((params, tuple(args)))
    outs = _eval(graph.jaxpr.jaxpr, graph.jaxpr.consts, leaves, (), ctx)
    return jax.tree.unflatten(graph.out_tree, outs), ctx.collected


def _bind(eqn, invals):
    out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    return list(out) if eqn.primitive.multiple_results else [out]


def _eval(jaxpr: Jaxpr, consts, args, path, ctx: _Context) -> list:
    env: dict = {}
    for v, x in zip(jaxpr.constvars, consts):
        env[v] = x
    for v, x in zip(jaxpr.invars, args):
        env[v] = x

    def read(a):
        return a.val if isinstance(a, Literal) else env[a]

    for i, eqn in enumerate(jaxpr.eqns):
        here = path + (i,)
        invals = [read(a) for a in eqn.invars]
        if here in ctx.blocks:
            outvals = [jax.lax.stop_gradient(invals[0])]
        elif here in ctx.sites:
            site = ctx.sites[here]
            x, w = invals[1 - site.weight], invals[site.weight]
            out, collected = ctx.handler.product(site, x, w, ctx.extras.get(site.index))
            if collected is not None:
                ctx.collected[site.index] = collected
            outvals = [out]
        elif here in ctx.rebuild:
            outvals = _rebuild(eqn, invals, here, ctx)
        else:
            outvals = _bind(eqn, invals)
        for k, (v, x) in enumerate(zip(eqn.outvars, outvals)):
            if (here, k) in ctx.values:
                site, tag = ctx.values[(here, k)]
                x, collected = ctx.handler.value(site, tag, x, ctx.extras.get((tag, site.index)))
                if collected is not None:
                    ctx.collected[(tag, site.index)] = collected
            env[v] = x
    return [read(v) for v in jaxpr.outvars]


def _inside(ctx: _Context, path: tuple[int, ...]) -> dict:
    """This level's extras of the sites and values under ``path``."""
    sites = {s.index for p, s in ctx.sites.items() if p[: len(path)] == path}
    sites |= {(tag, s.index) for (p, _), (s, tag) in ctx.values.items() if p[: len(path)] == path}
    return {k: v for k, v in ctx.extras.items() if k in sites}


def _rebuild(eqn, invals, here, ctx: _Context) -> list:
    name, params = eqn.primitive.name, eqn.params
    (region,) = _regions(eqn) if name != "cond" else (None,)
    if name in _OPAQUE or name == "while":
        inner = [s for p, s in ctx.sites.items() if p[: len(here)] == here]
        what = inner[0].name if inner else "a marked value"
        if name == "while":
            raise ValueError(
                f"{ctx.handler.name}: the weight product {what} sits inside a while_loop (a fori_loop with traced "
                "bounds), which the rule cannot change; loop with lax.scan or a fori_loop with static bounds."
            )
        raise ValueError(
            f"{ctx.handler.name}: the weight product {what} sits inside a jax.{name.removesuffix('_call')} function "
            "(snnjax.run_bptt, say), which the rule cannot change; run that layer with snnjax.run instead."
        )
    if name == "scan":
        nc, nk = params["num_consts"], params["num_carry"]
        consts, init, xs = invals[:nc], invals[nc : nc + nk], invals[nc + nk :]
        extras = _inside(ctx, here)

        def body(carry, sliced):
            xs_t, extras_t = sliced
            sub = ctx.child(extras_t)
            outs = _eval(region.jaxpr, region.consts, consts + list(carry) + list(xs_t), here + (0,), sub)
            return outs[:nk], (outs[nk:], sub.collected)

        carry, (ys, collected) = jax.lax.scan(
            body, init, (xs, extras), length=params["length"], reverse=params["reverse"], unroll=params["unroll"]
        )
        ctx.collected.update(collected)
        return list(carry) + list(ys)
    if name in ("remat2", "checkpoint"):
        extras = _inside(ctx, here)

        def call(invals, extras):
            sub = ctx.child(extras)
            return _eval(region.jaxpr, region.consts, invals, here + (0,), sub), sub.collected

        outs, collected = jax.checkpoint(call, prevent_cse=params["prevent_cse"], policy=params["policy"])(
            invals, extras
        )
        ctx.collected.update(collected)
        return outs
    if name in _CALLS:
        return _eval(region.jaxpr, region.consts, invals, here + (0,), ctx)
    if name == "cond":
        branches = params["branches"]

        def branch(r):
            b = branches[r]
            return lambda *ops: _eval(b.jaxpr, b.consts, list(ops), here + (r,), _closed(ctx, here, "cond"))

        return list(jax.lax.switch(invals[0], [branch(r) for r in range(len(branches))], *invals[1:]))
    raise ValueError(f"{ctx.handler.name}: cannot rebuild a {name} equation.")  # pragma: no cover - guarded by _regions


def _closed(ctx: _Context, here, what: str) -> _Context:
    """A context for a loop or branch that cannot stack what it collects: refuse extras and collection."""
    if _inside(ctx, here):
        raise ValueError(
            f"{ctx.handler.name}: a layer inside a {what} needs per-step inputs, which a {what} cannot take."
        )
    return _Refusing(**{f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx)}, where=what)


@dataclasses.dataclass
class _Refusing(_Context):
    where: str = ""

    def __post_init__(self):
        self.collected = _NoCollect(self.handler.name, self.where)
        self.extras = {}


class _NoCollect(dict):
    def __init__(self, rule: str, where: str):
        super().__init__()
        self.rule, self.where = rule, where

    def __setitem__(self, key, value):
        raise ValueError(
            f"{self.rule}: a layer inside a {self.where} would have to hand back values per step, which it cannot."
        )
