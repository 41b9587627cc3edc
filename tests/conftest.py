"""Strict JAX flags for the whole suite: no implicit rank promotion, float32 by default; 8 CPU devices.

The CPU backend exposes 8 devices (``--xla_force_host_platform_device_count``, read when JAX's
backend starts, so set here before any test runs) for the multi-device tests; everything else
runs on the first, as it would on a one-device machine.
"""

import jax
import pytest

from snnjax.sharding import simulate_cpu_devices

simulate_cpu_devices(8)  # JAX's backends start at the first computation, after this

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _strict_flags():
    # Doctests and tests alike run under the strict flags.
    with jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture
def small_demo(tmp_path):
    """Arguments of a one-epoch ``snnjax demo`` on 256 images writing to ``tmp_path / "demo"``."""
    out = str(tmp_path / "demo")
    return ["demo", "--epochs", "1", "--train-size", "256", "--test-size", "64", "--out", out, "--no-progress"]
