r"""Activity-perturbed forward gradient (Ren, Kornblith, Liao & Hinton 2023), with local losses.

Instead of the weights, perturb every layer's pre-activation :math:`z_l` (a weight product
followed by its bias, :mod:`snnjax.rules.graph`: dense and convolutional products alike) with
noise :math:`u_l \sim \mathcal N(0, I)` drawn per example, per position and per time step.
One ``jax.jvp`` gives each example's directional derivative :math:`d_b = \nabla_{z} \ell_b \cdot u_b`, so

.. math::

    \hat g_{z_l} = \frac{1}{B}\, d_b\, u_{l,b} \odot m_{l,b}, \qquad
    \hat g_{W_l} = x_l^\top \hat g_{z_l}, \qquad \hat g_{b_l} = \textstyle\sum \hat g_{z_l},

the weight gradient going through the layer's own local Jacobian only: the rule
differentiates a *local objective*, the model run again with every pre-activation cut
(:math:`\operatorname{sg}`), :math:`\sum_l \langle \operatorname{sg}(\hat g_{z_l}), z_l\rangle +
L(\operatorname{sg}(z))`, so each parameter learns from the estimate of the first
pre-activation after it, and everything after the last one (a readout's decay, say) from the
loss itself. This is unbiased, with about fan-in times less variance than weight
perturbation. :math:`m` masks the units whose activation has zero derivative (dead ReLUs, as
Ren et al. do): where the layer's elementwise activation passes no tangent, the true gradient
is zero, and the estimate is set to zero there (``mask=True``).

**Recurrent weights** learn in one of two ways, both unbiased (``recurrent=``):

- ``"dynamics"`` (the default): the recurrent product is part of the layer's own dynamics, like
  its decay. The layer's feed-forward current is perturbed before the loop; the recurrent
  weights learn from the next layer's perturbed current, through the layer's dynamics over time.
- ``"current"``: the layer's whole input current at each step, :math:`x_t W + b + z_{t-1}
  W_\text{rec}`, is perturbed once, inside the loop, and the recurrent weights learn from it
  directly, :math:`\hat g_{W_\text{rec}} = \sum_t z_{t-1}^\top \hat g_{c_t}`, as the
  feed-forward ones do.

The second involves no backward pass through time, but its estimate sums a noisy term over
every step, and on a recurrent LIF network its variance was far larger than the first's
(``benchmarks/fg_a_recurrent.py``, ``docs/benchmarks.md``).

**Per example.** :math:`d_b` needs each example's own loss, so the rule evaluates the loss one
example at a time under ``jax.vmap``, along each argument's batch axis (``batch_axes``, found
by itself when every array argument has exactly one axis of the batch size). The loss must be
the mean over the batch of independent per-example losses (no batch statistics).

**Local losses.** With a tuple of local losses, the blocks cut by :func:`snnjax.rules.block`
(LG-FG-A), block :math:`k`'s noise reaches loss :math:`k` only, so
:math:`\hat g_{z_l} = d^{(k)}_b u_{l,b} / B` for a layer in block :math:`k`. The rule checks it
on the traced loss and raises if a layer's pre-activation reaches two local losses.

**Patch- and group-wise losses** (Ren et al.'s): a block's local loss may be an array
``[*tokens, G]`` per example (:func:`snnjax.group_local_loss`), with one directional
derivative :math:`d^{(k)}_{b,p,g}` per element from the same ``jvp``. A layer marked
:func:`snnjax.rules.grouped` takes, for the units of group :math:`g` at token :math:`p`,
:math:`d^{(k)}_{b,p,g}` alone; an unmarked one takes their sum. Both are unbiased (the other
elements' derivatives do not depend on the unit); the first leaves out the noise of every
other group and token, which is what makes many groups lower the variance. A marker placed
after a layer norm of the pre-activation moves the noise there (Ren et al.'s placement): the
estimate is then that of the normalised pre-activation :math:`n_l`, masked where its ReLU is
off, and the weights learn through the normalisation's Jacobian,
:math:`\hat g_{W_l} = x_l^\top J_{\mathrm{norm}}^\top \hat g_{n_l}`.

Limits: the loss is evaluated twice (the ``jvp`` and the local objective's gradient), and like
the forward pass the rule holds every layer's activity over time. Products inside a
``jax.custom_vjp`` function (:func:`snnjax.run_bptt`) cannot be perturbed: the rule raises.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from snnjax.rules import forward_mode
from snnjax.rules.graph import Graph, Handler, Site, evaluate, trace
from snnjax.rules.protocol import Rule, stateless, total

__all__ = ["activity_forward_gradient", "batch_axes_of"]

_sg = jax.lax.stop_gradient


RECURRENT = ("dynamics", "current")


def _perturbed(site: Site, recurrent: str, exact_output: bool) -> bool:
    """Whether the rule perturbs this site's pre-activation (module docstring: recurrent weights, output layers)."""
    if exact_output and site.output:
        return False
    return not site.merged if recurrent == "current" else not site.recurrent


class _Perturb(Handler):
    """Adds this step's noise to every perturbed pre-activation; passes the activations on (for the mask)."""

    def __init__(self, name: str, mask: bool, recurrent: str, exact_output: bool):
        self.name, self.mask, self.recurrent, self.exact_output = name, mask, recurrent, exact_output

    def watches(self, site: Site):
        if not _perturbed(site, self.recurrent, self.exact_output):
            return {}
        tags = {"pre": site.pre_activation}
        if self.mask and site.activation != site.pre_activation:
            tags["act"] = site.activation
        return tags

    def value(self, site, tag, value, extra):
        if tag == "pre":
            return value + extra, None
        return value, value


class _Cut(Handler):
    """Stops the gradient after every perturbed pre-activation and collects it (the local objective)."""

    def __init__(self, name: str, recurrent: str, exact_output: bool):
        self.name, self.recurrent, self.exact_output = name, recurrent, exact_output

    def watches(self, site: Site):
        return {"pre": site.pre_activation} if _perturbed(site, self.recurrent, self.exact_output) else {}

    def value(self, site, tag, value, extra):
        return _sg(value), value


def batch_axes_of(args: tuple, batch_axes: Any, rule: str) -> tuple:
    """Each argument's batch axis (an int or ``None``), given or found from the shapes.

    Found, every array argument must have exactly one axis of the batch size, the one size
    that all of them share; scalars are not batched.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax.rules.activity import batch_axes_of
      >>> batch_axes_of((jnp.zeros((50, 8, 20)), jnp.zeros(8, int)), None, "rule")  # time-major spikes, labels
      (1, 0)
    """
    if batch_axes is not None:
        axes = (batch_axes,) * len(args) if not isinstance(batch_axes, (tuple, list)) else tuple(batch_axes)
        if len(axes) != len(args):
            raise ValueError(f"{rule}: batch_axes names {len(axes)} arguments, the call passes {len(args)}.")
        return axes
    shapes = [[tuple(jnp.shape(leaf)) for leaf in jax.tree.leaves(a)] for a in args]
    sizes = [set(s) for arg in shapes for s in arg if s]
    common = set.intersection(*sizes) if sizes else set()
    hint = f"pass batch_axes= (one int, or one per argument); the arguments' shapes are {shapes}"
    if len(common) != 1:
        raise ValueError(f"{rule}: cannot tell the batch axis of the arguments: {hint}.")
    (batch,) = common
    axes = []
    for arg in shapes:
        found = {s.index(batch) for s in arg if s and s.count(batch) == 1}
        if any(s and s.count(batch) > 1 for s in arg) or len(found) > 1:
            raise ValueError(f"{rule}: cannot tell the batch axis of the arguments (batch size {batch}): {hint}.")
        axes.append(found.pop() if found else None)
    return tuple(axes)


def _check_blocks(graph: Graph, rule: str, groupwise: bool) -> None:
    graph.require_sites(rule)
    if groupwise and graph.loose_markers:
        raise ValueError(
            f"{rule}: the snnjax.rules.grouped marker in {graph.loose_markers[0]} ends no layer's pre-activation: "
            "mark a weight product's output (after its bias), or a normalisation of it with nothing else between "
            "(not inside a jit, a loop or a recurrent layer's current), or pass groupwise=False."
        )
    for s in graph.sites:
        if len(s.losses) > 1:
            raise ValueError(
                f"{rule}: the pre-activation of {s.name} reaches the local losses {list(s.losses)}; each block's "
                "noise must reach its own loss only: end each block with snnjax.rules.block(h)."
            )


def _coefficient(site: Site, d: jax.Array, shape: tuple[int, ...], groupwise: bool, rule: str) -> jax.Array:
    r"""The directional derivatives that weigh a site's noise (of ``shape``): its local loss's, summed.

    ``d`` is the example's local loss's (a scalar, or ``[*tokens, G]`` for token- and group-wise
    losses). Marked :func:`snnjax.rules.grouped` (``[*tokens, H]`` per step), unit ``h`` of token
    ``p`` takes ``d[p, h // (H/G)]`` alone (``groups=1``: token ``p`` takes ``d[p]`` summed over
    the loss's groups); otherwise every element's derivative is summed.
    """
    if site.groups is None or not groupwise or jnp.ndim(d) == 0:
        return jnp.sum(d)
    groups, units = site.groups, shape[-1]
    if groups == 1:  # token-wise only: a token's units take its groups' derivatives, summed
        d = jnp.sum(d, axis=-1, keepdims=True)
    if d.shape[-1] != groups:
        raise ValueError(
            f"{rule}: the pre-activation of {site.name} is marked grouped(groups={groups}), but its local loss "
            f"has shape {tuple(d.shape)} per example: its last axis must be the {groups} groups."
        )
    per_unit = jnp.repeat(d, units // groups, axis=-1)
    if jnp.broadcast_shapes(per_unit.shape, shape) != tuple(shape):
        raise ValueError(
            f"{rule}: the pre-activation of {site.name} (shape {tuple(shape)} per example with its steps) is "
            f"marked grouped, but its local loss's tokens {tuple(d.shape[:-1])} are not its trailing axes "
            "before the units."
        )
    return jnp.broadcast_to(per_unit, shape)


def _rebuild_aux(per_example: Any, full: Any, rule: str) -> Any:
    """The batch's ``aux`` from the examples' (stacked on a leading axis, batch axis of size 1)."""

    def leaf(stacked, want):
        one = stacked.shape[1:]
        if one == tuple(want.shape) and stacked.shape[0] == 1:
            return stacked[0]
        diff = [a for a, (m, n) in enumerate(zip(one, want.shape)) if m != n]
        if len(one) != len(want.shape) or len(diff) != 1 or one[diff[0]] != 1:
            raise ValueError(
                f"{rule} evaluates the loss one example at a time, and cannot rebuild an aux of shape "
                f"{tuple(want.shape)} (no batch axis) from the examples'; return per-example values in aux."
            )
        return jnp.moveaxis(jnp.squeeze(stacked, diff[0] + 1), 0, diff[0])

    return jax.tree.map(leaf, per_example, full)


def activity_forward_gradient(
    loss_fn: Callable[..., tuple[Any, Any]],
    num_directions: int = 1,
    *,
    distribution: str = "gaussian",
    batch_axes: int | None | tuple[int | None, ...] = None,
    mask: bool = True,
    recurrent: str = "dynamics",
    groupwise: bool = True,
    exact_output: bool = False,
) -> Rule:
    r"""Forward gradient by activity perturbation (FG-A; LG-FG-A with local losses).

    Args:
      loss_fn: ``(params, *args) -> (loss, aux)``, the loss a mean over examples, or a tuple of
        local losses (module docstring).
      num_directions: ``K`` perturbations per call, vmapped; their estimates are averaged.
      distribution: ``"gaussian"`` or ``"rademacher"`` noise.
      batch_axes: the batch axis of each argument (one int for all, ``None`` for an argument
        shared by every example); ``None`` finds them from the shapes (time-major spikes
        ``[T, B, N]`` with labels ``[B]``: ``(1, 0)``).
      mask: zero the estimate where the layer's activation has zero derivative (dead ReLUs).
      recurrent: how recurrent weights learn, ``"dynamics"`` or ``"current"`` (module docstring).
      groupwise: weigh a layer marked :func:`snnjax.rules.grouped` by its own token's and
        group's loss only; ``False`` weighs it by its block's summed derivative, like any other
        (unbiased too, with more variance: for comparison).
      exact_output: leave the output layers (whose result reaches the loss through no other
        layer: the classifier, Ren et al.'s local heads) unperturbed; they learn from their
        exact gradient, back-propagated through the loss alone, as Ren et al. train them, and
        their noise no longer adds to the other layers' estimates.

    Returns:
      A :class:`snnjax.rules.Rule`, ``(loss, aux), grads = rule(params, *args, key=key)``.
      The noise of example ``b``, direction ``k``, layer ``l`` is drawn from
      ``fold_in(fold_in(split(key, K)[k], b), l)``.

    Raises:
      ValueError: at trace time, for a model without weight products, a layer reaching two
        local losses, a :func:`snnjax.rules.grouped` marker that ends no layer's pre-activation
        (with ``groupwise``), batch axes it cannot find, an aux without batch axis,
        ``num_directions < 1`` or a missing key.
      TypeError: for models using ``jax.custom_vjp`` (forward mode), naming the methods that work.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> def loss_fn(w, x):
      ...     return jnp.mean(jnp.sum(jnp.tanh(x @ w), axis=-1)), None
      >>> rule = rules.activity_forward_gradient(loss_fn, batch_axes=0)  # x [4, 2]: 4 examples of 2 features
      >>> (loss, _), g = rule(jnp.ones((2, 3)), jnp.ones((4, 2)), key=jax.random.key(0))
      >>> g.shape
      (2, 3)
    """
    name = f"FG-A(K={num_directions})"
    if not callable(loss_fn):
        raise ValueError("activity_forward_gradient: loss_fn must be a callable (params, *args) -> (loss, aux).")
    forward_mode.check_options(num_directions, distribution, "activity_forward_gradient")
    if not isinstance(mask, bool):
        raise ValueError(f"activity_forward_gradient: mask must be True or False, got {mask!r}.")
    for option, value in (("groupwise", groupwise), ("exact_output", exact_output)):
        if not isinstance(value, bool):
            raise ValueError(f"activity_forward_gradient: {option} must be True or False, got {value!r}.")
    if recurrent not in RECURRENT:
        raise ValueError(f"activity_forward_gradient: recurrent must be one of {RECURRENT}, got {recurrent!r}.")
    rule = "activity_forward_gradient"

    def apply(state, params, *args, key=None):
        key = forward_mode.require_key(key, rule)
        axes = batch_axes_of(args, batch_axes, rule)
        full_aux = jax.eval_shape(lambda p, a: loss_fn(p, *a), params, args)[1]

        def one(example):  # an example's arguments with their batch axis back, of size 1
            return tuple(
                a if ax is None else jax.tree.map(partial(jnp.expand_dims, axis=ax), a) for a, ax in zip(example, axes)
            )

        def estimate(b, *example):  # one example: its losses, aux and the pre-activations' estimates
            example = one(example)
            graph = trace(loss_fn, params, example, rule)
            _check_blocks(graph, rule, groupwise)
            handler = _Perturb(rule, mask, recurrent, exact_output)

            def run(eps):
                (loss, aux), collected = evaluate(graph, params, example, handler, eps)
                acts = {i: v for (tag, i), v in collected.items() if tag == "act"}
                return (tuple(jax.tree.leaves(loss)), acts), aux

            def direction(k):
                k = jax.random.fold_in(k, b)
                perturbed = [s for s in graph.sites if _perturbed(s, recurrent, exact_output)]
                noise = {
                    ("pre", s.index): forward_mode.draw(
                        jax.random.fold_in(k, s.index),
                        s.loops + s.pre_activation.struct.shape,
                        s.pre_activation.struct.dtype,
                        distribution,
                    )
                    for s in perturbed
                }
                zeros = {i: jnp.zeros_like(u) for i, u in noise.items()}
                (losses, _), (d, d_acts), aux = forward_mode.jvp(run, (zeros,), (noise,), has_aux=True)
                signals = {}
                for s in perturbed:
                    u = noise[("pre", s.index)]
                    coefficient = _coefficient(s, d[s.losses[0]], u.shape, groupwise, rule) if s.losses else 0.0
                    g = coefficient * u
                    if s.index in d_acts:  # zero where the activation passes no tangent
                        g = jnp.where(d_acts[s.index].reshape(g.shape) != 0, g, 0.0)
                    signals[s.index] = g
                return losses, aux, signals

            losses, aux, signals = jax.vmap(direction, out_axes=(None, None, 0))(jax.random.split(key, num_directions))
            losses = jnp.stack([jnp.sum(leaf) for leaf in losses])
            return losses, aux, {i: jnp.mean(g, axis=0) for i, g in signals.items()}

        batched = [(a, ax) for a, ax in zip(args, axes) if ax is not None and jax.tree.leaves(a)]
        if not batched:
            raise ValueError(f"{rule}: no argument has a batch axis (batch_axes={axes}).")
        batch = jnp.shape(jax.tree.leaves(batched[0][0])[0])[batched[0][1]]
        losses, aux, signals = jax.vmap(estimate, in_axes=(0, *axes))(jnp.arange(batch), *args)

        def objective(p):
            def local(signal, *example):
                example = one(example)
                graph = trace(loss_fn, p, example, rule)
                (loss, _), pre = evaluate(graph, p, example, _Cut(rule, recurrent, exact_output))
                return total(loss) + sum(jnp.vdot(_sg(signal[i]), pre[("pre", i)]) for i in signal)

            return jnp.sum(jax.vmap(local, in_axes=(0, *axes))(signals, *args)) / batch

        grads = jax.grad(objective)(params)
        loss = jnp.sum(jnp.mean(losses, axis=0))
        return (loss, _rebuild_aux(aux, full_aux, name)), grads, state

    return stateless(apply, name, loss_fn)
