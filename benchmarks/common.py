"""Shared benchmark plumbing: side-by-side timing, environment record, JSON results.

Timings on a shared machine are noisy, so every benchmark times its variants interleaved
(round-robin, the same number of repeats each) and reports medians and ratios measured in
the same run; absolute times are only for orientation.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

# Where results go: benchmarks/results, or $SNNJAX_RESULTS (the GPU suite's --smoke writes there, never here).
RESULTS = Path(os.environ.get("SNNJAX_RESULTS") or Path(__file__).parent / "results")
HOST_ALLOCATOR = {"tuned": False}


def add_allocator_flag(parser: Any) -> None:
    """The ``--no-tune-allocator`` option of the speed benchmarks (see :func:`tune_host_allocator`)."""
    parser.add_argument(
        "--no-tune-allocator", action="store_true", help="leave glibc malloc as it is (see snnjax.tune_host_allocator)"
    )


def tune_host_allocator(enabled: bool = True) -> bool:
    """Call :func:`snnjax.tune_host_allocator` (before the first JAX computation) unless disabled.

    It changes the whole process, so every library timed in it gets the same allocator; the
    result is recorded with the environment.
    """
    import snnjax

    HOST_ALLOCATOR["tuned"] = HOST_ALLOCATOR["tuned"] or (enabled and snnjax.tune_host_allocator())
    return HOST_ALLOCATOR["tuned"]


def environment() -> dict[str, Any]:
    """Device, host and library versions, stored with every result."""
    import flax
    import jaxlib
    import numpy
    import optax

    device = jax.devices()[0]
    return {
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
        "num_devices": jax.device_count(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": numpy.__version__,
        "host_allocator_tuned": HOST_ALLOCATOR["tuned"],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


_COMPILES = {"count": 0, "listening": False}


def compile_count() -> int:
    """How many XLA compilations this process has run since the first call (a JAX monitoring listener)."""
    if not _COMPILES["listening"]:

        def listen(event: str, duration: float, **kwargs: Any) -> None:
            if event == "/jax/core/compile/backend_compile_duration":
                _COMPILES["count"] += 1

        jax.monitoring.register_event_duration_secs_listener(listen)
        _COMPILES["listening"] = True
    return _COMPILES["count"]


def time_side_by_side(
    fns: dict[str, Callable[[], Any]],
    repeats: int = 10,
    warmup: int = 2,
    groups: dict[str, str] | None = None,
    settle_s: float = 0.3,
) -> dict[str, dict[str, float]]:
    """Median wall time in seconds of each zero-argument function, timed round-robin.

    Each function must return JAX arrays (the result is blocked on). Compilation happens in the
    warm-up calls, which are not timed: at least ``warmup`` of them, and more (up to ``warmup +
    3``) while a call still compiles, as when the first update turns a weakly typed parameter
    into a strongly typed one. A JAX compilation inside a timed call is counted in
    ``"compiles_while_timed"`` and printed as a warning: that variant's median may include it.
    Each round runs the functions in a new order (seeded), so that no variant always comes first,
    or right after another. With ``groups`` (name -> library), each round runs one library's
    functions together and sleeps ``settle_s`` when the library changes: PyTorch's OpenMP threads
    keep spinning for a while after each call and would otherwise slow whatever JAX call comes
    next (measured: the first JAX training step after a PyTorch one took 34.6 ms, the same step
    timed twice more 32.9 and 30.8 ms).
    """
    for fn in fns.values():
        for i in range(warmup + 3):
            before = compile_count()
            jax.block_until_ready(fn())
            if i + 1 >= warmup and compile_count() == before:
                break
    samples: dict[str, list[float]] = {name: [] for name in fns}
    compiles = dict.fromkeys(fns, 0)
    order = random.Random(0)
    by_group: dict[Any, list[str]] = {}
    for name in fns:
        by_group.setdefault(groups.get(name) if groups else None, []).append(name)
    previous = None
    for _ in range(repeats):
        blocks = list(by_group.items())
        order.shuffle(blocks)
        for group, block in blocks:
            if groups and previous is not None and group != previous:
                time.sleep(settle_s)
            previous = group
            for name in order.sample(block, len(block)):
                before = compile_count()
                start = time.perf_counter()
                jax.block_until_ready(fns[name]())
                samples[name].append(time.perf_counter() - start)
                compiles[name] += compile_count() - before
    for name, n in compiles.items():
        if n:
            print(
                f"warning: {name} compiled {n} time(s) while being timed (its arguments changed type or shape after "
                "the warm-up)"
            )
    return {
        name: {
            "median_s": statistics.median(s),
            "min_s": min(s),
            "repeats": len(s),
            "compiles_while_timed": compiles[name],
        }
        for name, s in samples.items()
    }


def library_groups(names: Any) -> dict[str, str]:
    """``"torch"`` for the PyTorch-based variants (torch, snntorch, norse), ``"jax"`` for the rest."""
    return {n: "torch" if any(k in n for k in ("torch", "norse")) else "jax" for n in names}


def result_path(name: str) -> Path:
    """``results/<name>-<platform>.json`` (``-cpu``, ``-gpu``), its folder made."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{name}-{jax.devices()[0].platform}.json"


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with the environment to ``results/<name>-<platform>.json`` and return the path."""
    env = environment()
    path = result_path(name)
    path.write_text(json.dumps({"benchmark": name, "environment": env, **payload}, indent=2) + "\n")
    return path


def merge_result(path: Path, payload: dict[str, Any], key: str) -> None:
    """Write ``payload`` to ``path``, its ``key`` entries added to those on disk (read again just before:
    runs written side by side, or by an earlier run, are kept), atomically."""
    on_disk = json.loads(path.read_text()) if path.exists() else {}
    payload = {**payload, key: {**on_disk.get(key, {}), **payload.get(key, {})}}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, path)


def summarise_over_steps(
    results: dict[str, dict[str, dict[str, float]]], baseline: str = "forward"
) -> tuple[dict, dict]:
    """Print and return, from ``results[T][variant] = {"temp_bytes", "median_s"}``, each variant's
    peak-memory growth from the first T to the last and its time at the last T over ``baseline``'s."""
    first, last = list(results)[0], list(results)[-1]
    growth = {n: results[last][n]["temp_bytes"] / max(results[first][n]["temp_bytes"], 1) for n in results[last]}
    slowdown = {n: results[last][n]["median_s"] / results[last][baseline]["median_s"] for n in results[last]}
    print(f"\npeak-memory growth from T={first} to T={last}: " + ", ".join(f"{n} {g:.2f}x" for n, g in growth.items()))
    print(
        f"time relative to the {baseline} pass at T={last}: " + ", ".join(f"{n} {s:.2f}x" for n, s in slowdown.items())
    )
    return growth, slowdown


def measure_at(steps: int, functions: dict[str, Any], args: tuple, repeats: int) -> dict[str, dict[str, float]]:
    """One T of a memory-against-T benchmark: compile each jitted function for ``args``, read XLA's
    temporary memory, time them side by side, print one line; ``{name: {"temp_bytes", "median_s", ...}}``."""
    compiled = {name: fn.lower(*args).compile() for name, fn in functions.items()}
    memory = {name: c.memory_analysis().temp_size_in_bytes for name, c in compiled.items()}
    timings = time_side_by_side({name: functools.partial(c, *args) for name, c in compiled.items()}, repeats=repeats)
    print(
        f"T={steps:5d}  "
        + "  ".join(f"{n}: {memory[n] / 2**20:.2f} MiB {1e3 * timings[n]['median_s']:.1f} ms" for n in compiled)
    )
    return {name: {"temp_bytes": memory[name], **timings[name]} for name in compiled}


def over_steps_parser(doc: str | None) -> argparse.ArgumentParser:
    """The command line of a memory-against-T benchmark: ``--steps``, ``--batch``, ``--repeats``, ``--no-write``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 500, 2000, 8000])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    return parser


def finish_over_steps(
    name: str,
    args: Any,
    results: dict[str, dict[str, dict[str, float]]],
    title: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The closing of a memory-against-T benchmark: summarise, build the payload (with ``extra``
    results, if any), and unless ``args.no_write`` write it, with its plot (:func:`plot_over_steps`)
    where matplotlib is installed."""
    growth, slowdown = summarise_over_steps(results)
    payload = {"config": vars(args), "results": results, "memory_growth": growth, "time_vs_forward": slowdown}
    payload.update(extra or {})
    if not args.no_write:
        path = write_result(name, payload)
        print(f"wrote {path}")
        if importlib.util.find_spec("matplotlib"):
            plot_over_steps(results, path.with_suffix(".png"), title)
            print(f"wrote {path.with_suffix('.png')}")
    return payload


def plot_over_steps(results: dict[str, dict[str, dict[str, float]]], path: Path, title: str = "") -> None:
    """Temporary memory (MiB) and time (ms) of each variant against T, log-log, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(t) for t in results]
    fig, (mem, tim) = plt.subplots(1, 2, figsize=(9, 3.6))
    for i, name in enumerate(results[str(steps[0])]):
        style = dict(
            marker="os^vDx*"[i % 7], ms=4, mfc="none", color=f"C{i % 10}", ls="-" if i % 2 == 0 else "--", label=name
        )
        mem.plot(steps, [results[str(t)][name]["temp_bytes"] / 2**20 for t in steps], **style)
        tim.plot(steps, [1e3 * results[str(t)][name]["median_s"] for t in steps], **style)
    for ax, label in ((mem, "temporary memory (MiB)"), (tim, "time per call (ms)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("time steps T")
        ax.set_ylabel(label)
    tim.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
