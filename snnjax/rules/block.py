r"""The markers a model may need: where a local-loss block ends, and which local loss a group feeds.

Every rule finds a model's weight products, hidden layers and output by itself
(:mod:`snnjax.rules.graph`). What it cannot find is where a model trained with local losses
(Ren et al. 2023's block-wise losses) is cut: that is the model's own decision, so the model
says it, once, with :func:`block`:

.. code-block:: python

    h = snnjax.rules.block(h)      # the end of a block: h leaves for the next block

With no rule active (a plain forward pass, ``jax.grad``, ``jax.jvp``) :func:`block` is the
identity, values and derivatives alike. Every rule reads it the same way, as a cut that stops
both cotangents and tangents (:math:`\operatorname{sg}`), so the layers after it see ``h`` as
an input: the block before it learns from its own local loss only.

A block's local loss may be an array of losses, one per token and group (Ren et al.'s
patch- and group-wise losses, :func:`snnjax.group_local_loss`), shaped
``[*tokens, G]`` for one example. A layer whose pre-activation ``z`` (``[*tokens, H]`` for one
example and step) feeds, group by group, only its own token's and group's loss says so with
:func:`grouped`:

.. code-block:: python

    z = snnjax.rules.grouped(layer(x), groups=G)   # z[..., p, gH/G:(g+1)H/G] reaches loss[p, g] only

so that activity perturbation (:func:`snnjax.rules.activity_forward_gradient`) weighs that
group's noise by that loss's directional derivative alone, not the block's sum. It is a
promise about the model: what follows the marker must keep the groups apart (a per-group
normalisation does, a layer norm over all channels does not). A layer norm may come between
the product and the marker, as in Ren et al.'s model:

.. code-block:: python

    n = snnjax.rules.grouped(layer_norm(layer(x)), groups=G)   # the noise goes in after the norm

and activity perturbation then adds its noise to the normalised pre-activation and learns the
weights through the normalisation's Jacobian. Every other rule reads :func:`grouped` as the
identity.
"""

from __future__ import annotations

import operator
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

__all__ = ["block", "block_p", "group_count", "grouped", "grouped_p"]

block_p = Primitive("snnjax_block")
"""The marker's primitive: an identity that a rule's trace of the loss can see."""
block_p.def_impl(lambda x: x)
block_p.def_abstract_eval(lambda aval: aval)
ad.deflinear2(block_p, lambda cotangent, x: [cotangent])
batching.defvectorized(block_p)
mlir.register_lowering(block_p, lambda ctx, x: [x])


def block(h: Any) -> Any:
    """Mark the end of a local-loss block: the identity, which every rule reads as a cut.

    Args:
      h: the block's output, an array or a pytree of arrays (any shape).

    Returns:
      ``h`` unchanged.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> float(jax.grad(lambda x: rules.block(x) ** 2)(3.0))  # no rule active: the identity
      6.0
    """
    return jax.tree.map(block_p.bind, h)


grouped_p = Primitive("snnjax_grouped")
"""The group marker's primitive: an identity carrying the number of groups."""
grouped_p.def_impl(lambda x, *, groups: x)
grouped_p.def_abstract_eval(lambda aval, *, groups: aval)
ad.deflinear2(grouped_p, lambda cotangent, x, *, groups: [cotangent])
batching.defvectorized(grouped_p)
mlir.register_lowering(grouped_p, lambda ctx, x, *, groups: [x])


def group_count(groups: Any, where: str) -> int:
    """``groups`` as a Python int >= 1 (NumPy and JAX integer scalars too); else one line naming ``where``.

    Examples:
      >>> import numpy as np
      >>> from snnjax.rules.block import group_count
      >>> group_count(np.int64(4), "grouped")
      4
    """
    try:
        value = operator.index(groups)
    except TypeError:
        value = 0
    if isinstance(groups, bool) or value < 1:
        raise ValueError(f"{where}: groups must be an int >= 1, got {groups!r}.")
    return value


def grouped(z: jax.Array, groups: int = 1) -> jax.Array:
    r"""Declare that a layer's pre-activation feeds its block's local losses token by token, group by group.

    For one example (and one time step), ``z`` is ``[*tokens, H]``: its last axis splits into
    ``groups`` contiguous groups of ``H / groups`` units, and ``z[*p, g-th group]`` reaches only
    element ``[*p, g]`` of its block's local loss (``[*tokens, G]``, or ``[G]`` for one loss per
    group over all tokens). ``groups=1`` declares token-wise losses only (patch-wise).

    Args:
      z: the pre-activation, right after the layer's product and bias, or after a
        normalisation of it: ``[B, *tokens, H]``, ``[T, B, *tokens, H]`` inside a network
        stepped over time.
      groups: ``G``, a divisor of ``H``.

    Returns:
      ``z`` unchanged.

    Raises:
      ValueError: if ``groups`` is not a positive int dividing ``z``'s last axis.

    Examples:
      >>> import jax.numpy as jnp
      >>> from snnjax import rules
      >>> rules.grouped(jnp.ones((2, 4, 8)), groups=4).shape  # 2 examples, 4 tokens, 4 groups of 2 units
      (2, 4, 8)
    """
    groups = group_count(groups, "grouped")
    if jnp.ndim(z) < 1 or jnp.shape(z)[-1] % groups:
        raise ValueError(f"grouped: groups={groups} must divide the last axis of z, of shape {jnp.shape(z)}.")
    return grouped_p.bind(z, groups=groups)
