"""The README's example, the main job and the benchmarks run as written (tiny sizes)."""

import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_readme_commands_and_example():
    text = (ROOT / "README.md").read_text()
    commands = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(commands) == 2 and "examples/train_randman.py" in commands[0] and "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert np.isfinite(float(namespace["loss"]))
    assert namespace["v"].shape == (50, 8, 3)


def test_main_job_runs_and_learns():
    module = runpy.run_path(str(ROOT / "examples" / "train_randman.py"))
    accuracy = module["main"](["--epochs", "4", "--classes", "3", "--samples-per-class", "60", "--hidden", "32", "--batch-size", "48", "--lr", "1e-2"])
    assert accuracy > 0.5  # chance is 1/3


def test_open_neuromorphic_benchmark_smoke():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        module = runpy.run_path(str(ROOT / "benchmarks" / "open_neuromorphic.py"))
        payload = module["main"](["--sizes", "16", "--steps", "8", "--batch", "2", "--repeats", "1", "--no-write"])
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    rows = payload["results"]["16"]
    assert {"forward/matmuls", "forward+backward/lif-inject", "forward+backward/nnx-Sequential"} <= set(rows)
    assert all(r["median_s"] > 0 for r in rows.values())


def test_cli_scripts_parse_help():
    for script in ("examples/train_randman.py", "benchmarks/open_neuromorphic.py"):
        out = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, check=True)
        assert "usage" in out.stdout


def test_notebooks_run_top_to_bottom(capsys):
    import json

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        exec(compile(source, str(path), "exec"), {})
    assert "jvp fails" in capsys.readouterr().out
