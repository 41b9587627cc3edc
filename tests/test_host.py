"""snnjax.tune_host_allocator: XLA:CPU's large per-call temporaries stop page-faulting.

The allocator is process-wide, so each case runs in its own Python process.
"""

import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent(
    """
    import resource, sys
    import snnjax
    tuned = snnjax.tune_host_allocator() if sys.argv[1] == "tune" else False
    import jax, jax.numpy as jnp

    steps, batch, n = 500, 16, 1024  # two 32 MB temporaries per call: the scaled input, the spikes

    @jax.jit
    def count(x):
        _, z = snnjax.run(snnjax.lif(0.9), (x * 1.0001).reshape(steps, batch, n))
        return jnp.sum(z)

    x = jax.random.normal(jax.random.key(0), (steps * batch, n))
    for _ in range(3):
        count(x).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        count(x).block_until_ready()
    print(tuned, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
    """
)


def _faults_per_call(mode: str) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True, timeout=300)
    tuned, faults = out.stdout.split()
    return tuned == "True", float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_tuned_allocator_stops_page_faults_of_large_temporaries():
    tuned, tuned_faults = _faults_per_call("tune")
    untuned, untuned_faults = _faults_per_call("leave")
    assert tuned and not untuned
    assert untuned_faults > 4000  # at least 16 MB of fresh pages per call (measured ~16,000)
    assert tuned_faults < 0.4 * untuned_faults  # measured 0-30 %, depending on how the heap fragments


def test_tune_host_allocator_is_exported():
    import snnjax

    assert snnjax.tune_host_allocator is snnjax.host.tune_host_allocator


@pytest.mark.parametrize("argv, called", [(["--no-tune-allocator"], False), ([], True)])
def test_the_command_tunes_the_allocator_unless_told_not_to(argv, called, small_demo, monkeypatch):
    import snnjax.host
    from snnjax import cli

    calls = []
    monkeypatch.setattr(snnjax.host, "tune_host_allocator", lambda: calls.append(1) or True)
    run = [*small_demo, "--no-plots"]
    monkeypatch.setattr(sys, "argv", ["snnjax", *run, *argv])
    assert cli.main() == 0  # as the command
    assert bool(calls) == called
    calls.clear()
    assert cli.main([*run, "--overwrite"]) == 0  # from Python with an explicit argv: the caller's process is left alone
    assert not calls
