r"""Activity-perturbed forward gradient (Ren, Kornblith, Liao & Hinton 2023), with local losses.

Instead of the weights, perturb every layer's pre-activation (input current) :math:`z_l`
with per-example, per-time-step noise :math:`u_l \sim \mathcal N(0, I)`. One ``jax.jvp``
gives each example's directional derivative :math:`d_b = \nabla_{z} L_b \cdot u_b`, so

.. math::

    \hat g_{z_l} = \frac{1}{B}\, d_b\, u_{l,b}, \qquad
    \hat g_{W_l} = x_l^\top \hat g_{z_l}, \qquad \hat g_{b_l} = \textstyle\sum \hat g_{z_l},

the weight gradient going through the layer's own local Jacobian only. This is unbiased, with
about fan-in times less variance than weight perturbation. With **local losses** the network
is cut into blocks by a stop-gradient, each block with its own head and loss; the stop-gradient
also stops tangents, so block :math:`k`'s noise reaches only loss :math:`k`, and
:math:`\hat g_{z_l} = d^{(k)}_b u_{l,b} / B` for a layer in block :math:`k`.

**Tapped models.** The rule needs to reach the pre-activations, so it is built from a *model*
``model(params, *args, tap) -> (losses, aux)`` that passes each pre-activation through
``z = tap(z, block=k)`` (``block`` defaults to 0) and returns **per-example** losses, ``[B]``,
or ``[num_blocks, B]`` with local losses. :class:`snnjax.nn.Sequential` taps the input current
of every neuron layer when called with ``tap=``. :func:`as_loss` turns a tapped model into the
``loss_fn`` every other rule takes, so FG-W, FG-A, LG-FG-A and LG-BP run on one model::

    fg_w = rules.forward_gradient(rules.as_loss(model))
    fg_a = rules.activity_forward_gradient(model)
    lg_bp = rules.bptt(rules.as_loss(blockwise_model))
    lg_fg_a = rules.activity_forward_gradient(blockwise_model)

Limits: taps must see whole tensors, outside any ``lax.scan`` (the time axis included, as in
``Sequential``'s ``[T, B, N]`` currents); parameters that reach the loss only through something
other than a tapped pre-activation (recurrent weights and trainable decays inside a neuron
layer) get a zero gradient from this rule; the forward pass is computed twice (the ``jvp`` and
the local weight-gradient pass), and like the forward pass it holds the ``[T, B, N]``
activations of a ``Sequential`` network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from snnjax.rules import forward_mode
from snnjax.rules.protocol import EmptyState, Rule

__all__ = ["activity_forward_gradient", "as_loss", "identity_tap"]

Model = Callable[..., tuple[jax.Array, Any]]


def identity_tap(z: jax.Array, block: int = 0) -> jax.Array:
    """The tap of an unperturbed forward pass: returns ``z`` unchanged.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import rules
      >>> rules.identity_tap(jnp.ones(2), block=1)
      Array([1., 1.], dtype=float32)
    """
    del block
    return z


def _num_blocks(shape: tuple[int, ...]) -> int:
    if len(shape) not in (1, 2):
        raise ValueError(f"a tapped model must return per-example losses [B] or [num_blocks, B], got shape {shape}.")
    return 1 if len(shape) == 1 else shape[0]


def _per_block(losses: jax.Array) -> jax.Array:
    losses = jnp.asarray(losses)
    return losses.reshape(_num_blocks(losses.shape), -1)


def _total(losses: jax.Array) -> jax.Array:
    """Mean over the batch, summed over blocks."""
    return jnp.sum(jnp.mean(_per_block(losses), axis=1))


def as_loss(model: Model) -> Callable[..., tuple[jax.Array, Any]]:
    r"""The ``loss_fn(params, *args) -> (loss, aux)`` of a tapped model, for any other rule.

    The loss is the batch mean of the per-example losses, summed over blocks, with every tap
    the identity.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import rules
      >>> model = lambda w, x, tap: (jnp.sum(tap(x @ w) ** 2, axis=-1), None)
      >>> float(rules.as_loss(model)(jnp.ones((2, 1)), jnp.ones((3, 2)))[0])
      4.0
    """
    if not callable(model):
        raise ValueError("as_loss: model must be a callable (params, *args, tap) -> (losses, aux).")

    def loss_fn(params, *args):
        losses, aux = model(params, *args, tap=identity_tap)
        return _total(losses), aux

    return loss_fn


class _Tap:
    """A tap that applies ``fn(index, z, block)`` to the i-th tapped value, counting calls."""

    def __init__(self, fn: Callable[[int, jax.Array, int], jax.Array]):
        self.fn, self.count = fn, 0

    def __call__(self, z: jax.Array, block: int = 0) -> jax.Array:
        if not isinstance(block, int) or block < 0:
            raise ValueError(f"tap: block must be a non-negative int, got {block!r}.")
        out = self.fn(self.count, jnp.asarray(z), block)
        self.count += 1
        return out


def _discover(model: Model, params: Any, args: tuple) -> list[tuple[jax.ShapeDtypeStruct, int]]:
    found: list[tuple[jax.ShapeDtypeStruct, int]] = []

    def record(i, z, block):
        found.append((jax.ShapeDtypeStruct(z.shape, z.dtype), block))
        return z

    losses, _ = jax.eval_shape(lambda p: model(p, *args, tap=_Tap(record)), params)
    if not found:
        raise ValueError(
            "activity_forward_gradient: the model never called tap(z); pass each pre-activation through it."
        )
    num_blocks = _num_blocks(losses.shape)
    for _, block in found:
        if block >= num_blocks:
            raise ValueError(f"tap used block={block} but the model returns losses for {num_blocks} block(s).")
    return found


def activity_forward_gradient(
    model: Model,
    num_directions: int = 1,
    *,
    distribution: str = "gaussian",
    batch_axis: int = -2,
) -> Rule:
    r"""Forward gradient by activity perturbation (FG-A; LG-FG-A with a block-wise model).

    Args:
      model: a tapped model ``(params, *args, tap) -> (losses, aux)`` (module docstring);
        ``losses`` per example, ``[B]`` or ``[num_blocks, B]``.
      num_directions: ``K`` perturbations per call, vmapped; their estimates are averaged.
      distribution: ``"gaussian"`` or ``"rademacher"`` noise.
      batch_axis: the batch axis of every tapped pre-activation: ``-2`` fits both ``[B, N]``
        and time-major ``[T, B, N]``.

    Returns:
      A :class:`snnjax.rules.Rule`, ``(loss, aux), grads = rule(params, *args, key=key)``,
      ``loss`` the batch mean summed over blocks. Direction ``k`` of tap ``i`` is drawn from
      ``jax.random.fold_in(jax.random.split(key, K)[k], i)``.

    Raises:
      ValueError: for a model that never taps, a bad block index, a batch axis that does not
        match the losses, ``num_directions < 1``, a missing key.
      TypeError: for models using ``jax.custom_vjp`` (forward mode), naming the methods that work.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> model = lambda w, x, tap: (jnp.sum(jnp.tanh(tap(x @ w)), axis=-1), None)
      >>> (loss, _), g = rules.activity_forward_gradient(model)(jnp.ones((2, 3)), jnp.ones((4, 2)), key=jax.random.key(0))
      >>> g.shape
      (2, 3)
    """
    if not callable(model):
        raise ValueError("activity_forward_gradient: model must be a callable (params, *args, tap) -> (losses, aux).")
    forward_mode.check_options(num_directions, distribution, "activity_forward_gradient")

    def apply(state, params, *args, key=None):
        key = forward_mode.require_key(key, "activity_forward_gradient")
        taps = _discover(model, params, args)

        def one_direction(k):
            us = [
                forward_mode.draw(jax.random.fold_in(k, i), s.shape, s.dtype, distribution)
                for i, (s, _) in enumerate(taps)
            ]

            def perturbed(es):
                losses, aux = model(params, *args, tap=_Tap(lambda i, z, block: z + es[i]))
                return _per_block(losses), aux

            zeros = [jnp.zeros(s.shape, s.dtype) for s, _ in taps]
            losses, dlosses, aux = forward_mode.jvp(perturbed, (zeros,), (us,), has_aux=True)
            batch = losses.shape[1]
            signals = [_scale_per_example(dlosses[block] / batch, u, batch_axis) for u, (_, block) in zip(us, taps)]
            return losses, aux, signals

        keys = jax.random.split(key, num_directions)
        losses, aux, signals = jax.vmap(one_direction, out_axes=(None, None, 0))(keys)
        signals = [jnp.mean(s, axis=0) for s in signals]

        def local_objective(p):
            terms: list[jax.Array] = []

            def local(i, z, block):
                terms.append(jnp.sum(jax.lax.stop_gradient(signals[i]) * z))
                return jax.lax.stop_gradient(z)  # nothing flows past a layer's own Jacobian

            model(p, *args, tap=_Tap(local))
            return sum(terms)

        grads = jax.grad(local_objective)(params)
        return (jnp.sum(jnp.mean(losses, axis=1)), aux), grads, state

    return Rule(init=lambda params: EmptyState(), apply=apply, name=f"FG-A(K={num_directions})", loss_fn=as_loss(model))


def _scale_per_example(d: jax.Array, u: jax.Array, batch_axis: int) -> jax.Array:
    """``d[b] * u`` with ``b`` along ``u``'s batch axis."""
    axis = batch_axis % u.ndim if u.ndim else 0
    if u.ndim == 0 or u.shape[axis] != d.shape[0]:
        raise ValueError(
            f"activity_forward_gradient: a tapped pre-activation has shape {u.shape}, whose batch axis "
            f"{batch_axis} should have the batch size {d.shape[0]} of the per-example losses."
        )
    shape = [1] * u.ndim
    shape[axis] = d.shape[0]
    return d.reshape(shape).astype(u.dtype) * u
