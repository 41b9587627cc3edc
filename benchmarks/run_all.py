"""Run the speed and memory suite: every benchmark below, each in its own process, default settings.

    pip install -e '.[bench]'
    python benchmarks/run_all.py                  # about an hour on a 2-core CPU
    python benchmarks/run_all.py --only peers fgi_table

Each benchmark writes its JSON (device, versions, date, command) to ``benchmarks/results/``. A
process of its own per benchmark keeps their settings apart, for example the simulated CPU
devices of ``sharding_throughput`` and the torch threads of ``peers``. The training benchmarks
(``train_runs``, ``*_fashion_mnist``) take hours and need the data, so they are run on their own.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

SUITE = (
    "open_neuromorphic",
    "peers",
    "fgi_table",
    "remat",
    "forward_gradient_memory",
    "online_memory",
    "sfdfa_memory",
    "recurrent_online",
    "sharding_throughput",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=SUITE, help="run only these")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or SUITE:
        print(f"=== {name}", flush=True)
        start = time.perf_counter()
        status = subprocess.call([sys.executable, str(Path(__file__).parent / f"{name}.py")])
        print(f"=== {name}: exit {status} after {time.perf_counter() - start:.0f} s", flush=True)
        if status:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
