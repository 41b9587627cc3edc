r"""The one marker a model may need: where a local-loss block ends.

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
"""

from __future__ import annotations

from typing import Any

import jax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

__all__ = ["block", "block_p"]

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
