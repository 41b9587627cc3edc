"""Strict JAX flags for the whole suite: no implicit rank promotion, float32 by default; 8 CPU devices;
LLVM's optimisation level 0 (faster compiles).

The CPU backend exposes 8 devices (``--xla_force_host_platform_device_count``, read when JAX's
backend starts, so set here before any test runs) for the multi-device tests; everything else
runs on the first, as it would on a one-device machine.
"""

import os

import jax
import pytest

from snnjax.sharding import simulate_cpu_devices

simulate_cpu_devices(8)  # JAX's backends start at the first computation, after this
# The suite's shapes are tiny, so compiling dominates its time, and LLVM's optimisation level 0
# compiles faster. It changes no XLA (HLO) pass, so XLA's memory analysis is as at the default level;
# two differently compiled programs may differ in the last bit (a tanh did), as they may at any level.
# Subprocesses (the command, the benchmarks) inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ['XLA_FLAGS']} --xla_backend_optimization_level=0".strip()

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


# The slowest tests (a minute or so each on two cores) go first: with pytest-xdist's two workers,
# one of them started last would otherwise run alone at the end of the suite.
SLOW_FIRST = (
    "test_gpu_suite_smoke",
    "test_notebooks_run_top_to_bottom",
    "test_every_rule_trains_the_mixer",
    "local-losses.md",
    "own-model.md",
    "test_online_rules_train_the_recurrent_network",
    "test_sfdfa_benchmark_continues",
    "test_example_loop_learns",
    "test_local_mixer_benchmark",
    "test_feedback_alignment_benchmark_smoke",
    "test_train_learns_an_image_set",
)


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: not any(name in item.nodeid for name in SLOW_FIRST))  # stable: order kept otherwise
