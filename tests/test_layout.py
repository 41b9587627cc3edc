"""The package's shape: layers point one way, no private name crosses a module, old paths work, lint is clean."""

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "snnjax"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, [names])`` for every import in a file (``import x`` gives ``(x, [])``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_importing_the_rules_loads_no_flax():
    code = "import sys, snnjax.rules; assert 'flax' not in sys.modules, sorted(m for m in sys.modules if 'flax' in m)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("below", ["rules", "neurons"])
def test_rules_and_neurons_sit_below_the_modules(below):
    for path in sorted((PACKAGE / below).glob("*.py")):
        for module, _ in _imports(path):
            assert not module.startswith(("flax", "snnjax.nn", "snnjax.train")), f"{path.name} imports {module}"


def test_no_private_name_crosses_a_module():
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, names in _imports(path):
            if module.startswith("snnjax"):
                private = [n for n in names if n.startswith("_")]
                assert not private, f"{path.relative_to(ROOT)} imports {private} from {module}"


def test_old_import_paths_and_every_public_name_still_work():
    import snnjax

    for old in ("neuron", "lif", "alif", "cuba", "readout", "decay", "chain", "bptt", "spike_time", "compare"):
        importlib.import_module(f"snnjax.{old}")
    from snnjax.compare import compare_gradients  # noqa: F401
    from snnjax.lif import LIFState, lif  # noqa: F401
    from snnjax.spike_time import SpikeTimeNet, simulate  # noqa: F401

    assert snnjax.lif is lif and snnjax.spike_time.simulate is simulate
    for module in (snnjax, snnjax.rules, snnjax.neurons, snnjax.nn):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_is_clean(args):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: pip install -e '.[test]' installs it")
    out = subprocess.run([ruff, *args, "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]
