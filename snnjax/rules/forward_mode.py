r"""Forward-mode plumbing shared by the rules that use ``jax.jvp``: random directions and a
``jvp`` whose failure on ``custom_vjp`` code names the spike methods that work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from snnjax.spikes import FORWARD_MODE_ERROR, is_custom_vjp_jvp_error

__all__ = ["DISTRIBUTIONS", "directions", "draw", "jvp", "require_key"]

DISTRIBUTIONS = ("gaussian", "rademacher")


def check_options(num_directions: int, distribution: str, rule: str) -> None:
    """Raise ``ValueError`` unless ``num_directions >= 1`` and ``distribution`` is known."""
    if not isinstance(num_directions, int) or num_directions < 1:
        raise ValueError(f"{rule}: num_directions must be an int >= 1, got {num_directions!r}.")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"{rule}: distribution must be one of {', '.join(map(repr, DISTRIBUTIONS))}, got {distribution!r}."
        )


def require_key(key: jax.Array | None, rule: str) -> jax.Array:
    """The PRNG key of a stochastic rule, or a ``ValueError`` saying how to pass one."""
    if key is None:
        raise ValueError(f"{rule} is stochastic: call it with key=jax.random.key(...) (a fresh key every step).")
    return key


def draw(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32, distribution: str = "gaussian") -> jax.Array:
    """One array of i.i.d. Gaussian or Rademacher entries (mean 0, variance 1)."""
    if distribution == "gaussian":
        return jax.random.normal(key, shape, dtype)
    return jax.random.rademacher(key, shape, dtype)


def directions(key: jax.Array, like: Any, distribution: str = "gaussian") -> Any:
    r"""A random tangent shaped like the pytree ``like``: i.i.d. entries, mean 0, variance 1.

    Gaussian :math:`\mathcal N(0, 1)` or Rademacher :math:`\pm 1`. Leaves that are not floating
    point (integer counters, say) get a zero tangent of dtype ``float0``, as ``jax.jvp`` wants.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from snnjax import rules
      >>> v = rules.directions(jax.random.key(0), {'w': jnp.zeros((2, 3)), 'b': jnp.zeros(3)}, 'rademacher')
      >>> v['w'].shape, set(v['b'].tolist()) <= {-1.0, 1.0}
      ((2, 3), True)
    """
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, max(len(leaves), 1))
    out = []
    for k, leaf in zip(keys, leaves):
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            out.append(draw(k, leaf.shape, leaf.dtype, distribution))
        else:
            out.append(np.zeros(leaf.shape, jax.dtypes.float0))
    return jax.tree.unflatten(treedef, out)


def jvp(fun: Callable, primals: tuple, tangents: tuple, has_aux: bool = False):
    """``jax.jvp``, re-raising JAX's "no forward mode for custom_vjp" with the spike methods that work."""
    try:
        return jax.jvp(fun, primals, tangents, has_aux=has_aux)
    except TypeError as err:
        if is_custom_vjp_jvp_error(err):
            raise TypeError(FORWARD_MODE_ERROR) from err
        raise
