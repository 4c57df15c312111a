"""The code base is ruff clean, and the helper package stays small enough to read in one sitting."""

from __future__ import annotations

import argparse
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
# Issue 24 formats the package with `ruff format` (3,715 lines as written were 4,416 formatted),
# splits the trainer for readers (run_state.py, arguments.py, a RunContract) and shortens what
# restated the code: 4,286 formatted, over the issue's 3,900 (aim 3,500). Issue 25's refusals (the
# resume contract's new entries, environment variables, types checked, the --out folder's module,
# Ctrl-C anywhere, predict's flips, explorers that never fall over) added 543: 4,829. A third
# round (issue 24: no __future__ imports, table-driven settings checks, docstrings that restated
# the code) took out 208 without changing a tested message; the Draw and watch pad (issue 29:
# draw.py, predict.resize) added 117: 4,738. The exercise checker in Chinese (issue 27) added 19:
# 4,757. The course root found from a student's clone on the class server (issue 26) added 12:
# 4,769. A fourth round (issue 24: messages built from named parts instead of three f-strings the
# formatter spreads over five lines, one shape_text for models and checkpoint, the recipes from one
# Nesterov SGD; a stray brace fixed) took out 52; the pad in Chinese (issue 27) added 3: 4,720.
MAX_PACKAGE_LINES = 4720
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


# --- issue 24: the trainer a reader can follow -------------------------------------------------

#: The modules that teach; friendly errors for a user's values belong at the edges (cli, data,
#: checkpoint, config, predict, widgets, check, arguments), so these read like their ideas.
TEACHING_CORE = (
    "train", "run_state", "graphs", "models", "lenet1998", "sdlm", "counting", "arithmetic",
    "plots", "inspect_model", "distributed",
)  # fmt: skip
MAX_RAISES_PER_100_CODE_LINES = 2.5
MAX_LOOP_FUNCTION_LINES = 40


def code_lines(path: Path) -> int:
    """Lines of code: not blank, not a comment, not part of a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                docstrings |= set(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(
        1
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#") and number not in docstrings
    )


def test_code_lines_skip_docstrings_comments_and_blanks(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""Doc\nstring."""\n\n# a comment\ndef f():\n    """Doc."""\n    return 1\n')
    assert code_lines(sample) == 2


def test_the_teaching_core_leaves_friendly_errors_to_the_edges():
    raises = lines = 0
    for name in TEACHING_CORE:
        path = REPO / "lenet_course" / f"{name}.py"
        raises += sum(isinstance(n, ast.Raise) for n in ast.walk(ast.parse(path.read_text())))
        lines += code_lines(path)
    assert 100 * raises / lines <= MAX_RAISES_PER_100_CODE_LINES, (raises, lines)


def test_ruff_format_leaves_the_package_as_it_is():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "lenet_course"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_fit_and_what_it_calls_fit_on_a_screen():
    """fit, and each function of the package that fit calls by name, under 40 lines."""
    modules = {path.stem: ast.parse(path.read_text()) for path in PACKAGE}
    functions = {
        node.name: node
        for tree in modules.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
    }
    fit = next(n for n in ast.walk(modules["train"]) if getattr(n, "name", None) == "fit")
    called = {
        n.func.id for n in ast.walk(fit) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    checked = [fit] + [functions[name] for name in sorted(called) if name in functions]
    assert len(checked) >= 8  # setup, start_run, train_epoch, end_epoch, log_epoch, save, ...
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in checked
        if node.end_lineno - node.lineno + 1 > MAX_LOOP_FUNCTION_LINES
    ]
    assert not long, long


def test_the_trainer_knows_no_model_by_name():
    """The 1998 network configures its own optimiser: train.py imports no model module."""
    tree = ast.parse((REPO / "lenet_course" / "train.py").read_text())
    imported = {
        node.module.rsplit(".", 1)[-1]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"lenet1998", "sdlm", "paper"}, imported
    assert "LeNet5_1998" not in (REPO / "lenet_course" / "train.py").read_text()


def test_every_train_flag_is_written_out_in_cli_py():
    """grep finds where a flag is defined: no option string is built in a loop."""
    from lenet_course.cli import build_parser

    source = (REPO / "lenet_course" / "cli.py").read_text()
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse's own)
    flags = {
        flag
        for command in commands.values()
        for action in command._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
        # argparse makes --no-flip from --flip (BooleanOptionalAction)
        and not (isinstance(action, argparse.BooleanOptionalAction) and flag.startswith("--no-"))
    }
    assert "--lr" in flags and "--epochs" in flags
    missing = sorted(flag for flag in flags if f'"{flag}"' not in source)
    assert not missing, missing
