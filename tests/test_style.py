"""The code base is ruff clean, and the helper package stays small enough to read in one sitting."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = sorted((REPO / "lenet_course").glob("*.py"))
# The whole package. Issue 11's redesign brought it to 3,490 (budget 3,500, aim 3,000); the
# kernel explorer, transposed-convolution sizes (issue 12), the exercise checker (issue 13), the
# CUDA whole-step graph (issue 14), DDP under torchrun (issue 15) and the accuracy challenge's
# network, crops, flips and test-time flips (issue 17, about 85) added about 500 lines. Code that
# only one notebook uses moved into that notebook (figures of 03, 04, 05 and 07, the error
# analysis of 07, notebook 08's LeNetVariant and command line: 294 lines out). A ratchet: still
# over the budget (see the README); lower it whenever code leaves the package. The checker's
# acceptance of any real number (fractions, numpy scalars, one-element tensors; issue 23) added 11.
MAX_PACKAGE_LINES = 3715
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def test_ruff_check_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_package_is_small():
    lines = {path.name: len(path.read_text().splitlines()) for path in PACKAGE}
    assert sum(lines.values()) <= MAX_PACKAGE_LINES, lines
    assert max(lines.values()) <= MAX_MODULE_LINES, lines


@pytest.mark.parametrize("path", PACKAGE, ids=lambda p: p.name)
def test_no_function_is_longer_than_a_screen(path):
    tree = ast.parse(path.read_text())
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


@pytest.mark.parametrize("path", PACKAGE, ids=lambda p: p.name)
def test_the_package_imports_nothing_back_up(path):
    """Data flows one way: a module imports only modules listed before it in LAYERS."""
    from lenet_course import LAYERS

    name = path.stem
    if name not in LAYERS:
        assert name in ("__init__", "__main__"), f"{name} is missing from lenet_course.LAYERS"
        return
    allowed = set(LAYERS[: LAYERS.index(name)])
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lenet_"):
            parts = node.module.split(".")
            imported |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lenet_")}
    imported.discard("__version__")
    assert imported <= allowed, f"{name} imports {sorted(imported - allowed)} from above it"
