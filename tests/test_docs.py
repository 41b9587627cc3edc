"""The documentation: the site builds with warnings as errors, its code runs, every public API has an example."""

import importlib
import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = [
    "snnjax",
    "snnjax.rules",
    "snnjax.spike_time",
    "snnjax.sharding",
    "snnjax.nn",
    "snnjax.datasets",
    "snnjax.train",
    "snnjax.surrogates",
    "snnjax.ste",
    "snnjax.encoders",
    "snnjax.losses",
    "snnjax.decay",
]


def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    out = subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "rules" / "index.html").is_file()


@pytest.mark.parametrize("page", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")))
def test_code_on_every_page_runs(page):
    """Each page's blocks run in order in one namespace, as a reader runs them one after the other."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)


def _public_objects():
    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or (inspect.isclass(obj) and not issubclass(obj, (tuple, Exception))):
                yield f"{module_name}.{name}", obj


def test_every_public_function_and_class_has_a_doctest_example():
    missing = sorted(name for name, obj in _public_objects() if ">>>" not in (obj.__doc__ or ""))
    assert not missing, f"no example in the docstring of: {', '.join(missing)}"
