"""The documentation: the site builds with warnings as errors, its code runs, every public API has an example."""

import contextlib
import importlib
import inspect
import io
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
    "snnjax.nir",
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


NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _same_output(got: str, want: str) -> bool:
    """Equal text, and equal numbers to 2 % (XLA:CPU may round the last digits differently)."""
    got_lines = [line.rstrip() for line in got.strip().splitlines()]
    want_lines = [line.rstrip() for line in want.strip().splitlines()]
    if len(got_lines) != len(want_lines):
        return False
    for g, w in zip(got_lines, want_lines):
        if NUMBER.sub("#", g) != NUMBER.sub("#", w):
            return False
        for a, b in zip(NUMBER.findall(g), NUMBER.findall(w)):
            if abs(float(a) - float(b)) > 2e-2 * max(abs(float(b)), 5e-2):
                return False
    return True


@pytest.mark.parametrize("page", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")))
def test_code_on_every_page_runs_and_prints_what_the_page_shows(page):
    """Each page's blocks run in order in one namespace, as a reader runs them one after the other;
    a block that prints is followed on the page by a ``text`` block with what it prints."""
    text = (ROOT / page).read_text()
    namespace: dict = {}
    for match in re.finditer(r"```python\n(.*?)```(\s*```text\n(.*?)```)?", text, re.S):
        block, shown = match.group(1), match.group(3)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, page, "exec"), namespace)
        if "print(" in block:
            assert shown is not None, f"{page}: a block prints but the page does not show its output:\n{out.getvalue()}"
            assert _same_output(out.getvalue(), shown), f"{page}: printed\n{out.getvalue()}\nthe page shows\n{shown}"


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


def test_the_commands_rules_have_one_source():
    """docs/howto/datasets.md shows the command's rules as `snnjax train --help` does, from RULE_HELP."""
    from snnjax.train.config import RULE_HELP, RULES, rules_table

    assert RULES == tuple(RULE_HELP)
    assert rules_table() in (ROOT / "docs" / "howto" / "datasets.md").read_text()
