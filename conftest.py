"""Root conftest: the doctests in snnjax/ run under the same strict flags as tests/."""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
