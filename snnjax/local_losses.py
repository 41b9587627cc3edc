r"""Ren et al.'s (ICLR 2023) local losses: one cross-entropy per token and group of a block's output.

A block's output :math:`x` (``[B, *tokens, C]``, the channels split into :math:`G` groups of
:math:`c = C/G`) feeds a linear head on its token-average :math:`m = \frac1P\sum_p x_p`:
:math:`\ell = \operatorname{CE}(m W + b, y)`. :func:`group_local_loss` splits that loss into one
element per token :math:`p` and group :math:`g`, each with the same value share, whose
derivative reaches only its own token's and group's features (their linear-projection trick:
the other groups and tokens enter through a stop-gradient):

.. math::

    \ell_{p,g} = \frac{\ell}{PG}\Big|_{x\ \text{stopped}}
      + \operatorname{CE}\Big(\operatorname{sg}(mW+b) + \tfrac1P (x_{p,g} - \operatorname{sg}(x_{p,g}))
      \,\operatorname{sg}(W_g),\ y\Big) - \operatorname{sg}(\cdot),

so that :math:`\sum_{p,g} \ell_{p,g} = \ell` in value and in gradient, for the head
(:math:`W, b`) and for the features alike, while :math:`\partial \ell_{p,g} / \partial
x_{p',g'} = 0` unless :math:`(p', g') = (p, g)`. A forward gradient then weighs each group's
noise by its own element's directional derivative (:func:`snnjax.rules.grouped`), and the
variance falls with :math:`G`.

Options:

- ``patches=False``: one loss per group over all tokens (``[G]``), its derivative reaching
  every token of its group.
- ``aggregate=False``: no aggregation across groups, every group its own head (``W``
  ``[G, c, K]``, ``b`` ``[G, K]``) on its own features; with ``aggregate=True`` (Ren et al.'s
  feature aggregation, the default) one head ``W`` ``[C, K]`` sees every group's features.

The rules (:mod:`snnjax.rules.graph`) see two products: the head's (its input stopped) and the
feature path's, :math:`(x - \operatorname{sg}(x))\,\operatorname{sg}(W_g)`, whose result
(zero, with a tangent) is marked :func:`snnjax.rules.grouped`: a token's and group's change
reaches its own loss only. Both are output layers; the block's layers before them are not.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from snnjax.rules.block import group_count, grouped

__all__ = ["group_local_loss"]

_sg = jax.lax.stop_gradient


def group_local_loss(
    features: ArrayLike,
    kernel: ArrayLike,
    bias: ArrayLike,
    labels: ArrayLike,
    *,
    groups: int,
    patches: bool = True,
    aggregate: bool = True,
) -> jax.Array:
    r"""Patch- and group-wise local cross-entropy losses of a block, averaged over the batch.

    Args:
      features: the block's output ``[B, *tokens, C]`` (``[B, C]`` for no token axes; a spiking
        block's rates, averaged over time).
      kernel: the head's weight, ``[C, K]`` with ``aggregate``, else ``[G, C/G, K]``.
      bias: the head's bias, ``[K]`` with ``aggregate``, else ``[G, K]``.
      labels: class indices ``[B]``.
      groups: ``G``, a divisor of ``C``.
      patches: one loss per token (``[*tokens, G]``), or one per group over all tokens (``[G]``).
      aggregate: one head over all groups' features (Ren et al.), or one head per group.

    Returns:
      The batch mean of the losses, ``[*tokens, G]`` (``[G]`` without ``patches``); their sum
      is the head's cross-entropy (with ``aggregate``; the sum of the groups' heads' without).
      Return it in the tuple of local losses.

    Raises:
      ValueError: for shapes that do not fit together or labels that are not integers ``[B]``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import group_local_loss
      >>> x = jax.random.normal(jax.random.key(0), (4, 3, 8))  # 4 examples, 3 tokens, 8 channels
      >>> w, b, y = jnp.ones((8, 5)) * 0.1, jnp.zeros(5), jnp.array([0, 1, 2, 3])
      >>> loss = group_local_loss(x, w, b, y, groups=4)
      >>> loss.shape, round(float(loss.sum()), 4)  # the sum: the cross-entropy of the head, log 5
      ((3, 4), 1.6094)
    """
    x, w, b, labels = (jnp.asarray(a) for a in (features, kernel, bias, labels))
    groups = group_count(groups, "group_local_loss")
    if w.ndim not in (2, 3):
        raise ValueError(f"group_local_loss: kernel must be [C, K] or [G, C/G, K], got shape {w.shape}.")
    if x.ndim < 2 or x.shape[-1] % groups:
        raise ValueError(
            f"group_local_loss: features must be [B, *tokens, C] with C divisible by groups={groups}, "
            f"got shape {x.shape}."
        )
    if labels.shape != x.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"group_local_loss: labels must be [B] = {x.shape[:1]} integers, got {labels.shape} {labels.dtype}."
        )
    size, c = x.shape[-1], x.shape[-1] // groups
    want_w = (size, w.shape[-1]) if aggregate else (groups, c, w.shape[-1])
    want_b = want_w[-1:] if aggregate else (groups, want_w[-1])
    if w.shape != want_w or b.shape != want_b:
        raise ValueError(
            f"group_local_loss: with aggregate={aggregate}, kernel must be {list(want_w)} and bias {list(want_b)} "
            f"for {size} channels in {groups} groups, got {list(w.shape)} and {list(b.shape)}."
        )
    tokens = x.shape[1:-1]
    p, token_axes = math.prod(tokens), tuple(range(1, 1 + len(tokens)))
    x = x.reshape(x.shape[:-1] + (groups, c))  # [B, *tokens, G, c]
    pooled = jnp.mean(x, axis=token_axes)  # [B, G, c]
    w_g = w.reshape(groups, c, -1)  # [G, c, K]
    if aggregate:  # [B, K]: one head over all groups
        logits = _sg(pooled).reshape(pooled.shape[0], -1) @ w + b[None]
        head = optax.softmax_cross_entropy_with_integer_labels(logits, labels)[:, None]  # [B, 1]
        share = groups
    else:  # [B, G, K]: each group its own head
        logits = jnp.einsum("bgc,gck->bgk", _sg(pooled), w) + b[None]
        head = optax.softmax_cross_entropy_with_integer_labels(logits, labels[:, None])  # [B, G]
        share = 1
    # The feature path: a zero-valued change of token p's (or every token's) group g, through the stopped head.
    delta = x - _sg(x)
    if patches:
        share, scale = share * p, 1.0 / p
        head = head.reshape(head.shape[:1] + (1,) * len(tokens) + head.shape[1:])
        base = _sg(logits).reshape(logits.shape[:1] + (1,) * len(tokens) + logits.shape[1:])
    else:
        delta, scale, base = jnp.mean(delta, axis=token_axes), 1.0, _sg(logits)
    if aggregate:
        base = jnp.expand_dims(base, -2)  # the one head's logits, for every group
    change = jnp.einsum("...gc,gck->...gk", delta, _sg(w_g))  # [B, (*tokens,) G, K], zero-valued
    change = grouped(change.reshape(change.shape[:-2] + (-1,)), groups).reshape(change.shape)
    moved = base + scale * change
    target = labels.reshape(labels.shape + (1,) * (moved.ndim - 2))
    path = optax.softmax_cross_entropy_with_integer_labels(moved, jnp.broadcast_to(target, moved.shape[:-1]))
    losses = head / share + (path - _sg(path))
    return jnp.mean(jnp.broadcast_to(losses, path.shape), axis=0)
