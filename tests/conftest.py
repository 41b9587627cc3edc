"""Strict JAX flags for the whole suite: no implicit rank promotion, float32 by default; 8 CPU devices.

The CPU backend exposes 8 devices (``--xla_force_host_platform_device_count``, read when JAX's
backend starts, so set here before any test runs) for the multi-device tests; everything else
runs on the first, as it would on a one-device machine.
"""

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _strict_flags():
    # Doctests and tests alike run under the strict flags.
    with jax.numpy_rank_promotion("raise"):
        yield
