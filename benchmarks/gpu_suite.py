"""Every GPU measurement in one prepared command, each part within its own time budget.

    python benchmarks/gpu_suite.py                   # on a GPU: every part, within --total-s (570 s)
    python benchmarks/gpu_suite.py --smoke           # every part at tiny sizes on the CPU, in a temp dir
    python benchmarks/gpu_suite.py --parts sfdfa --budget sfdfa=500   # one part, another budget

The parts run in this order, each as its own process (a part that overruns its budget is
stopped with its process group, the next one still runs), each writing its JSON as it goes,
with the device's platform in the name (``-gpu.json`` on a GPU):

(a) ``peers``: snnjax against spyx, snnTorch and Norse at n = 4096, 8192 and 16384
    (`peers.py`), with peak device memory;
(b) ``fgi``: the FGI table at T = 28 ... 784 against eager PyTorch and `torch.compile` (`fgi_table.py`);
(c) ``seeds``: SFDFA's training step for 1 and 3 seeds, one after another against `jax.vmap`
    (`sfdfa_seeds.py`: on the CPU `vmap` is many times slower);
(d) ``sfdfa``: on the full Fashion-MNIST protocol, 3 seeds side by side (`sfdfa_fashion_mnist.py`):
    SFDFA with exact and with the released code's grades, the released code's own training
    (``rate-only``), DFA and BP through spike times, each for its share of the budget, up to 50
    epochs, checkpointed in ``--checkpoint``: a later run with that directory continues them;
(e) ``parallel``: the parallel neurons against the sequential LIF and snnTorch's LeakyParallel,
    T = 100 ... 8000 (`parallel_neurons.py`).

It needs the ``bench`` extra (torch, snntorch, norse, spyx: a peer that is missing is reported
as skipped) and the Fashion-MNIST IDX files (``--data-dir``, or where snnjax finds them). After
every part it prints and writes the summary (``gpu_suite-<platform>.json``); ``--copy-to DIR``
also packs every result file written so far into ``DIR/gpu_suite_results.tar.gz`` (the device
tool returns only a few files, from ``$OUT``). ``bash benchmarks/gpu_prepare.sh`` prepares the
wheels and data a machine without internet needs and prints the command to run there. How the
budgets were planned, and what one run reaches, is in ``docs/benchmarks.md`` ("The GPU suite").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).parent


class Part(NamedTuple):
    """One part of the suite: a benchmark script, its arguments (full and smoke) and its budget in seconds."""

    script: str
    full: list[str]
    smoke: list[str]
    budget_s: float


SFDFA_VARIANTS = ["sfdfa", "sfdfa-released", "rate-only", "dfa", "bp"]
TINY_SFDFA = ["--train-size", "32", "--test-size", "16", "--batch", "8", "--hidden", "12", "10", "--dt", "5e-3"]
PARTS: dict[str, Part] = {
    "peers": Part(
        "peers.py",
        ["--sizes", "4096", "8192", "16384", "--repeats", "3"],
        ["--sizes", "32", "--steps", "10", "--repeats", "1", "--no-compile"],
        100,
    ),
    "fgi": Part(
        "fgi_table.py",
        ["--repeats", "3"],
        ["--steps", "8", "--batch", "4", "--hidden", "8", "--repeats", "1", "--compile-max-steps", "0"],
        100,
    ),
    "seeds": Part(
        "sfdfa_seeds.py",
        ["--seeds", "1", "3", "--repeats", "2"],
        ["--hidden", "16", "16", "--seeds", "1", "2", "--repeats", "1"],
        30,
    ),
    "sfdfa": Part(
        "sfdfa_fashion_mnist.py",
        ["--train-size", "60000", "--test-size", "10000", "--epochs", "50", "--seeds", "0", "1", "2", "--every", "50"]
        + ["--rules", *SFDFA_VARIANTS, "--name", "sfdfa_protocol"],
        [*TINY_SFDFA, "--epochs", "1", "--seeds", "0", "1", "--rules", *SFDFA_VARIANTS, "--name", "sfdfa_protocol"],
        270,
    ),
    "parallel": Part(
        "parallel_neurons.py",
        ["--steps", "100", "500", "2000", "8000", "--repeats", "3", "--batch", "16", "--features", "256"],
        ["--steps", "16", "32", "--repeats", "1"],
        50,
    ),
}
GRACE_S = 15  # for a part's start and its last write, beyond its budget (within the total)
RESERVE_S = 10  # kept at the end of the total for the summary and the archive
SMOKE_BUDGET_S = 90.0


def _budgets(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in PARTS or not value:
            raise SystemExit(f"--budget: expected PART=SECONDS with PART one of {', '.join(PARTS)}, got {pair!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise SystemExit(f"--budget: {pair!r} does not give a number of seconds") from None
    return out


def run_part(
    name: str, part: Part, args: argparse.Namespace, results: Path, budget: float, timeout: float
) -> dict[str, Any]:
    """Run one part as a subprocess with ``$SNNJAX_RESULTS`` set, stopped (with its process group) after
    ``timeout`` seconds; its status, seconds and new result files."""
    argv = list(part.smoke if args.smoke else part.full)
    if name == "sfdfa":
        # the training loop stops itself inside the budget (leaving time to save and write), and checkpoints
        train_s = max(min(budget, timeout - GRACE_S) - 30, 0.5 * budget)  # time to evaluate and save after
        argv += ["--budget-s", f"{train_s:.0f}", "--checkpoint", str(args.checkpoint)]
        if args.data_dir:
            argv += ["--data-dir", args.data_dir]
    command = [sys.executable, str(HERE / part.script), *argv]
    env = {**os.environ, "SNNJAX_RESULTS": str(results), "PYTHONUNBUFFERED": "1"}
    before = {p: p.stat().st_mtime for p in results.glob("*")}
    print(f"\n=== {name}: {' '.join(command[1:])} (budget {budget:.0f} s, stopped after {timeout:.0f} s)", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        rc = process.wait(timeout=timeout)
        status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # compile workers too (torch.compile), not only the child
        process.wait()
        status = "stopped at its budget"
    seconds = time.perf_counter() - start
    written = sorted(str(p) for p in results.glob("*") if p.suffix != ".tmp" and before.get(p) != p.stat().st_mtime)
    return {
        "status": status,
        "seconds": round(seconds, 1),
        "budget_s": budget,
        "command": command[1:],
        "files": written,
    }


def _headline(name: str, files: list[str]) -> str:
    """One line of the part's main numbers, read back from its JSON."""
    data = [json.loads(Path(f).read_text()) for f in files if f.endswith(".json")]
    if not data:
        return "no results"
    d = data[0]
    try:
        if name == "peers":
            n = list(d["results"])[-1]
            row = d["results"][n]
            peers = {
                k.split("/", 1)[1]: v["ratio_to_snnjax"] for k, v in row.items() if k.startswith("forward+backward/")
            }
            return f"n={n} fwd+bwd, peer / snnjax: " + ", ".join(f"{k} {v:.2f}x" for k, v in sorted(peers.items()))
        if name == "fgi":
            t = list(d["results"])[-1]
            timings = d["results"][t]["timings"]
            best = min(v["median_s"] for k, v in timings.items() if k.startswith("train/snnjax"))
            torch = {k[6:]: v["median_s"] / best for k, v in timings.items() if k.startswith("train/torch")}
            return f"T={t} train, torch / best snnjax: " + ", ".join(f"{k} {v:.1f}x" for k, v in torch.items())
        if name == "sfdfa":
            return (
                "; ".join(
                    f"{k} {v['final_mean']:.2f}% after {v['epochs']} ep ({v['status']})"
                    for k, v in d["summary"].items()
                )
                or "no epoch finished (see the checkpoints)"
            )
        if name == "seeds":
            return ", ".join(
                f"S={k}: vmap / sequential {v['vmap_over_sequential']:.2f}" for k, v in d["results"].items()
            )
        if name == "parallel":
            t = list(d["results"])[-1]
            row = d["results"][t]
            return f"T={t} fwd+bwd x sequential LIF: " + ", ".join(
                f"{k.split('/', 1)[1]} {v['ratio_to_sequential_lif']:.2f}"
                for k, v in row.items()
                if k.startswith("forward+backward/")
            )
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as error:
        return f"results unreadable ({error!r})"
    return ""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, results in a temporary directory")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    parser.add_argument("--budget", nargs="+", default=[], metavar="PART=SECONDS", help="override a part's budget")
    parser.add_argument("--data-dir", help="the Fashion-MNIST IDX files")
    parser.add_argument("--results", help="where results go (default: benchmarks/results; --smoke: a temp dir)")
    parser.add_argument("--checkpoint", help="SFDFA's checkpoints (default: runs/gpu_suite/checkpoints)")
    parser.add_argument("--copy-to", metavar="DIR", help="also pack every result file written into DIR/*.tar.gz")
    parser.add_argument(
        "--total-s", type=float, default=570.0, help="wall seconds for the whole suite (the device tool allows 600)"
    )
    args = parser.parse_args(argv)
    budgets = {name: SMOKE_BUDGET_S if args.smoke else part.budget_s for name, part in PARTS.items()}
    budgets.update(_budgets(args.budget))
    scratch = tempfile.mkdtemp(prefix="gpu_suite_") if args.smoke else None
    results = Path(args.results or (Path(scratch) / "results" if scratch else HERE / "results"))
    results.mkdir(parents=True, exist_ok=True)
    if args.checkpoint is None:
        args.checkpoint = str(Path(scratch) / "checkpoints" if scratch else HERE.parent / "runs/gpu_suite/checkpoints")
    sys.path.insert(0, str(HERE))
    import common

    os.environ["SNNJAX_RESULTS"] = str(results)
    common.RESULTS = results
    command = "python benchmarks/gpu_suite.py " + " ".join(sys.argv[1:] if argv is None else argv)
    began, parts, path = time.perf_counter(), {}, None
    for name in args.parts:
        left = args.total_s - (time.perf_counter() - began) - RESERVE_S
        if left < 10:
            parts[name] = {"status": "skipped: no time left", "seconds": 0.0, "files": [], "headline": ""}
            continue
        parts[name] = run_part(name, PARTS[name], args, results, budgets[name], min(budgets[name] + GRACE_S, left))
        parts[name]["headline"] = _headline(name, parts[name]["files"])
        path = finish(parts, args, command, common)  # after every part: a suite stopped later keeps these
    print(f"wrote {path}")
    return {"parts": parts, "smoke": args.smoke, "command": command}


def finish(parts: dict[str, Any], args: argparse.Namespace, command: str, common: Any) -> Path:
    """Write the summary so far (and with ``--copy-to`` the archive of every result file written)."""
    path = common.write_result("gpu_suite", {"parts": parts, "smoke": args.smoke, "command": command})
    print(f"\n=== summary so far\n{'part':9s} {'status':22s} {'seconds':>8s}  headline")
    for name, p in parts.items():
        print(f"{name:9s} {p['status']:22s} {p['seconds']:8.0f}  {p['headline']}", flush=True)
    if args.copy_to:
        target = Path(args.copy_to)
        target.mkdir(parents=True, exist_ok=True)
        archive = target / "gpu_suite_results.tar.gz"
        with tarfile.open(archive.with_suffix(".tmp"), "w:gz") as tar:
            for file in sorted({f for p in parts.values() for f in p["files"]} | {str(path)}):
                tar.add(file, arcname=Path(file).name)
        archive.with_suffix(".tmp").replace(archive)
    return path


if __name__ == "__main__":
    main()
