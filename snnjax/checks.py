"""Argument checks that run at trace time on concrete values, and pass traced ones through.

Parameters known when a function is traced (Python numbers, NumPy arrays, concrete JAX arrays)
are checked with NumPy, so a bad value raises a ``ValueError`` naming the argument before any
computation. Traced values (trainable parameters inside ``jit`` or ``grad``) cannot be checked
then; they are kept in range by a parameterisation instead (:mod:`snnjax.decay`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

DECAY_HINT = "; it is a decay factor exp(-dt / tau): convert time constants with snnjax.decay_from_tau(tau, dt)"

__all__ = ["DECAY_HINT", "concrete", "check_unit_interval", "check_positive", "check_finite", "float_array"]


def concrete(value: Any) -> np.ndarray | None:
    """``value`` as a NumPy array, or ``None`` if it is traced (unknown until run time)."""
    if isinstance(value, jax.core.Tracer):
        return None
    try:
        return np.asarray(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def _numeric(v: np.ndarray, name: str, value: Any) -> None:
    if v.dtype == object or not (
        np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer) or v.dtype == bool
    ):
        raise ValueError(f"{name} must be a number or numeric array, got {value!r}.")


def _check(value: Any, name: str, ok, what: str, hint: str = "") -> Any:
    """Raise ``ValueError`` ("``name`` must ``what``") unless every element of a concrete value is ``ok``."""
    v = concrete(value)
    if v is not None:
        _numeric(v, name, value)
        if v.size and not np.all(ok(v)):
            raise ValueError(f"{name} must {what}, got {value!r}{hint}.")
    return value


def check_unit_interval(value: Any, name: str, hint: str = "") -> Any:
    """Check a concrete value lies in ``[0, 1]``; return it unchanged."""
    return _check(value, name, lambda v: (v >= 0) & (v <= 1), "lie in [0, 1]", hint)


def check_positive(value: Any, name: str) -> Any:
    """Check a concrete value is positive (and finite); return it unchanged."""
    return _check(value, name, lambda v: (v > 0) & np.isfinite(v), "be positive and finite")


def check_finite(value: Any, name: str) -> Any:
    """Check a concrete value is finite; return it unchanged."""
    return _check(value, name, np.isfinite, "be finite")


def float_array(x: Any, what: str) -> jax.Array:
    """``x`` as a JAX array, or a ``ValueError`` saying that ``what`` must be floating point."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{what} must be a floating-point array, got dtype {x.dtype}.")
    return x
