"""Regenerate every notebook from its plain-Python pair and run it, so it is committed with its outputs.

The ``.py`` files (jupytext's percent format) are the source of truth; each ``.ipynb`` is made from
its pair, executed top to bottom in a fresh kernel, and written with its outputs. Plots are PNG at
``--dpi`` (72 by default) to keep the repository light, and each is also written to
``docs/assets/gallery/<notebook>-<n>.png`` for the gallery page.

    pip install -e '.[notebooks]'
    python notebooks/build.py                       # every notebook
    python notebooks/build.py 02_forward_gradients  # one
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GALLERY = HERE.parent / "docs" / "assets" / "gallery"


def build(source: Path, dpi: int, timeout: int) -> list[Path]:
    """Make ``source``'s notebook, run it, write it and its plots; return the plots written."""
    import jupytext
    from nbclient import NotebookClient

    notebook = jupytext.read(source)
    with tempfile.TemporaryDirectory() as settings:  # the kernel's matplotlibrc: the dpi, not written in the notebook
        Path(settings, "matplotlibrc").write_text(f"figure.dpi: {dpi}\n")
        os.environ["MATPLOTLIBRC"] = settings
        NotebookClient(
            notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": HERE}}
        ).execute()
    for cell in notebook.cells:
        cell.get("metadata", {}).pop("execution", None)  # timestamps: noise in every diff
    jupytext.write(notebook, source.with_suffix(".ipynb"))
    images = [
        output["data"]["image/png"]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    GALLERY.mkdir(parents=True, exist_ok=True)
    for old in GALLERY.glob(f"{source.stem}-*.png"):
        old.unlink()
    written = []
    for n, image in enumerate(images, 1):
        path = GALLERY / f"{source.stem}-{n}.png"
        path.write_bytes(base64.b64decode(image))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to build, e.g. 02_forward_gradients (default: all)")
    parser.add_argument("--dpi", type=int, default=72, help="resolution of the plots (default 72)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a cell may run (default 1800)")
    args = parser.parse_args(argv)
    sources = sorted(HERE.glob("[0-9][0-9]_*.py"))
    if args.names:
        unknown = sorted(set(args.names) - {s.stem for s in sources})
        if unknown:
            parser.error(f"no notebook named {', '.join(unknown)}; choose from {', '.join(s.stem for s in sources)}")
        sources = [s for s in sources if s.stem in args.names]
    for source in sources:
        start = time.perf_counter()
        plots = build(source, args.dpi, args.timeout)
        print(f"{source.with_suffix('.ipynb').name}: {len(plots)} plots, {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
