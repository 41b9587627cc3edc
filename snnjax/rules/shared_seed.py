r"""Data-parallel weight-perturbed forward gradient that exchanges K numbers per step, not a gradient.

With the batch split over :math:`N` devices and the loss a mean over examples, the directional
derivative along :math:`v_k` is the mean of the devices' own, :math:`d_k = \frac1N \sum_n d_k^{(n)}`,
and the estimate :math:`\hat g = \frac1K \sum_k d_k v_k` needs nothing else: if every device
draws the directions from the same key it holds the same :math:`v_k`, so the devices need to
agree only on the :math:`K` scalars :math:`d_k` (``exchange="derivatives"``), where data-parallel
backpropagation all-reduces a full gradient, :math:`P` numbers (``exchange="gradients"``, the
same estimate computed the usual way, for comparison). Both are written with ``jax.shard_map``,
so the collectives are exactly those named here; :func:`snnjax.sharding.collective_bytes`
reads them from the compiled program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from snnjax.rules import forward_mode
from snnjax.rules.forward_gradient import combine, directional_derivatives
from snnjax.rules.protocol import Rule, stateless

__all__ = ["EXCHANGES", "shared_seed_forward_gradient"]

EXCHANGES = ("derivatives", "gradients")


def _spec(axis: int | None, name: str) -> PartitionSpec:
    return PartitionSpec() if axis is None else PartitionSpec(*([None] * axis), name)


def shared_seed_forward_gradient(
    loss_fn: Callable[..., tuple[jax.Array, Any]],
    mesh: Mesh,
    num_directions: int = 1,
    *,
    distribution: str = "gaussian",
    exchange: str = "derivatives",
    batch_axes: int | None | tuple[int | None, ...] = 0,
    aux_batch_axis: int | None = 0,
) -> Rule:
    r"""Forward gradient (FG-W) with the batch split over ``mesh`` and the directions from a shared key.

    Equals :func:`snnjax.rules.forward_gradient` with the same key on one device, up to
    float32 rounding.

    Args:
      loss_fn: ``(params, *args) -> (loss, aux)``; the loss must be the **mean** over the
        examples of the batch (each device computes it on its share, and the shares are equal).
      mesh: a one-axis device mesh (:func:`snnjax.sharding.mesh`); the device count must
        divide the batch.
      num_directions: ``K``.
      distribution: ``"gaussian"`` or ``"rademacher"``.
      exchange: ``"derivatives"`` (all-reduce the ``K`` directional derivatives) or
        ``"gradients"`` (each device forms its own estimate, then they are all-reduced).
      batch_axes: the batch axis of each of ``args`` (one int for all); ``None`` for an
        argument that every device receives whole. Time-major spike trains ``[T, B, N]``
        with labels ``[B]`` take ``(1, 0)``.
      aux_batch_axis: the batch axis of every ``aux`` leaf (``None`` if ``aux`` is the same on
        every device).

    Returns:
      A :class:`snnjax.rules.Rule`: ``(loss, aux), grads = rule(params, *args, key=key)``.

    Raises:
      ValueError: for an unknown ``exchange`` or distribution, ``num_directions < 1``, a call
        without key, or a ``batch_axes`` tuple of the wrong length.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules, sharding
      >>> loss_fn = lambda w, x: (jnp.mean((x @ w) ** 2), None)
      >>> rule = rules.shared_seed_forward_gradient(loss_fn, sharding.mesh(1), 4, aux_batch_axis=None)
      >>> x = jnp.ones((8, 3))
      >>> (loss, _), g = rule(jnp.ones(3), x, key=jax.random.key(0))
      >>> (loss2, _), g2 = rules.forward_gradient(loss_fn, 4)(jnp.ones(3), x, key=jax.random.key(0))
      >>> float(loss), bool(jnp.allclose(g, g2))
      (9.0, True)
    """
    if not callable(loss_fn):
        raise ValueError("shared_seed_forward_gradient: loss_fn must be a callable (params, *args) -> (loss, aux).")
    forward_mode.check_options(num_directions, distribution, "shared_seed_forward_gradient")
    if exchange not in EXCHANGES:
        raise ValueError(
            f"shared_seed_forward_gradient: exchange must be one of {', '.join(map(repr, EXCHANGES))}, got "
            f"{exchange!r}."
        )
    name = mesh.axis_names[0]

    def apply(state, params, *args, key=None):
        key = forward_mode.require_key(key, "shared_seed_forward_gradient")
        axes = (batch_axes,) * len(args) if not isinstance(batch_axes, tuple) else batch_axes
        if len(axes) != len(args):
            raise ValueError(
                f"shared_seed_forward_gradient: batch_axes names {len(axes)} arguments, the call passes {len(args)}."
            )

        def local(params, args, key):
            loss, aux, derivatives, v = directional_derivatives(
                loss_fn, params, args, key, num_directions, distribution
            )
            if exchange == "derivatives":
                shared = jax.lax.pmean(derivatives, name)
                grads = jax.tree.map(lambda p, u: combine(p, shared, u), params, v)
            else:
                grads = jax.tree.map(
                    lambda g: jax.lax.pmean(g, name) if jnp.issubdtype(g.dtype, jnp.inexact) else g,
                    jax.tree.map(lambda p, u: combine(p, derivatives, u), params, v),
                )
            return jax.lax.pmean(loss, name), aux, grads

        specs = (PartitionSpec(), tuple(_spec(a, name) for a in axes), PartitionSpec())
        outs = (PartitionSpec(), _spec(aux_batch_axis, name), PartitionSpec())
        # check_vma=False: a network's scan starts from a zero state that the checker would call
        # device-invariant while the carry becomes device-varying; the collectives above are explicit.
        loss, aux, grads = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=outs, check_vma=False)(
            params, tuple(args), key
        )
        return (loss, aux), grads, state

    return stateless(apply, f"FG-W(K={num_directions}, {exchange})", loss_fn)
