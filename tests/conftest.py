"""Strict JAX flags for the whole suite: no implicit rank promotion, float32 by default."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _strict_flags():
    # Doctests and tests alike run under the strict flags.
    with jax.numpy_rank_promotion("raise"):
        yield
