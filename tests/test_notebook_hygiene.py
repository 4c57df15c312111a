"""Notebook hygiene: every committed notebook is a clean, fresh-kernel run that a reader, nbval,
papermill and the book can all rely on.

The checks read the stored JSON only (fast; nothing is executed here):
- executed top to bottom from a fresh kernel (execution counts 1..n), no error outputs;
- no absolute path of the author's machine anywhere in outputs or metadata;
- no output over the size limit, kernelspec ``python3``;
- a markdown title cell first, exercises at the end;
- exactly one ``parameters`` cell (plain assignments, for papermill) and a papermill test;
- the widgets' state is stored, so the book can render the widget views.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TESTS = Path(__file__).resolve().parent

# One cell's outputs may take at most this many bytes of JSON (figures included): a figure at
# dpi 100 is 20-80 kB; anything near the limit bloats the repository and the book.
MAX_CELL_OUTPUT_BYTES = 500_000
# The whole notebook file (outputs and stored widget state included; the largest is ~0.6 MB).
MAX_NOTEBOOK_BYTES = 2_000_000
NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
# Folders of whoever ran the notebook: /root/..., /home/<user>/..., /tmp/..., /work/...,
# macOS /Users/<user>/ and /private/var/folders/..., Windows C:\Users\<user>\.
MACHINE_PATH = re.compile(
    r"(?<![\w.])/(root|home|tmp|work|Users|private/var|var/folders|mnt)/[\w.-]+"
    r"|\b[A-Za-z]:\\\\?Users\\"
)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def load(path: Path) -> nbformat.NotebookNode:
    """Read a notebook as nbformat v4."""
    return nbformat.read(path, as_version=4)


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The code cells that hold code (empty cells are never executed, so they have no count)."""
    return [c for c in notebook.cells if c.cell_type == "code" and c.source.strip()]


def texts(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string inside ``value`` (outputs, metadata) with its location, images left out."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if not str(key).startswith("image/"):  # base64 data, not text
                yield from texts(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from texts(item, f"{where}[{index}]")


def headings(notebook: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """The markdown headings of the notebook as (level, text), in order, outside code fences."""
    found = []
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        fenced = False
        for line in cell.source.splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            match = re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line)
            if match and not fenced:
                found.append((len(match.group(1)), match.group(2)))
    return found


def tags(cell: nbformat.NotebookNode) -> list[str]:
    """The cell's tags."""
    return list(cell.get("metadata", {}).get("tags", []))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no *.ipynb: the course has no notebooks"


notebook_paths = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])


@notebook_paths
def test_valid_nbformat_and_name(path: Path) -> None:
    notebook = load(path)
    nbformat.validate(notebook)
    assert NAME.match(path.name), f"{path.name}: name it NN_lower_case_words.ipynb (reading order)"


@notebook_paths
def test_kernelspec_is_python3(path: Path) -> None:
    metadata = load(path).metadata
    kernelspec = metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3", f"kernelspec is {kernelspec}, not python3"
    assert kernelspec.get("language", "python") == "python"
    assert metadata.get("language_info", {}).get("name") == "python", "not executed by Python"


@notebook_paths
def test_executed_in_order_from_a_fresh_kernel(path: Path) -> None:
    cells = code_cells(load(path))
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"execution counts {counts} are not 1..{len(cells)}: re-run the notebook top to bottom "
        "from a fresh kernel (jupyter nbconvert --to notebook --execute --inplace ...)"
    )
    for cell in cells:
        for output in cell.outputs:
            if output.output_type == "execute_result":
                assert output.execution_count == cell.execution_count, "stale execute_result"


@notebook_paths
def test_no_error_outputs(path: Path) -> None:
    for index, cell in enumerate(code_cells(load(path)), start=1):
        for output in cell.outputs:
            assert output.output_type != "error", (
                f"code cell {index} stored an error: {output.ename}: {output.evalue}"
            )
            if output.output_type == "stream":
                assert "Traceback (most recent call last)" not in output.text, (
                    f"code cell {index} printed a traceback on {output.name}"
                )


@notebook_paths
def test_no_paths_of_the_authors_machine(path: Path) -> None:
    notebook = load(path)
    places = [
        (f"cell {i} outputs", c.outputs) for i, c in enumerate(notebook.cells) if "outputs" in c
    ]
    places.append(("notebook metadata", notebook.metadata))
    found = [
        f"{where}: ...{text[max(0, m.start() - 40) : m.end() + 40]!r}..."
        for name, value in places
        for where, text in texts(value, name)
        for m in [MACHINE_PATH.search(text)]
        if m
    ]
    assert not found, "absolute paths of the machine that ran the notebook:\n" + "\n".join(found)


@notebook_paths
def test_outputs_within_size_limits(path: Path) -> None:
    notebook = load(path)
    for index, cell in enumerate(notebook.cells):
        size = len(json.dumps(cell.get("outputs", [])))
        assert size <= MAX_CELL_OUTPUT_BYTES, (
            f"cell {index} stores {size:,} bytes of output (limit {MAX_CELL_OUTPUT_BYTES:,}): "
            "lower the figure's dpi/size, or print less"
        )
    size = path.stat().st_size
    assert size <= MAX_NOTEBOOK_BYTES, f"{size:,} bytes (limit {MAX_NOTEBOOK_BYTES:,})"


@notebook_paths
def test_opens_with_a_markdown_title(path: Path) -> None:
    first = load(path).cells[0]
    assert first.cell_type == "markdown", "the first cell must be markdown with the title"
    lines = [line for line in first.source.splitlines() if line.strip()]
    assert lines and re.match(r"^# \S", lines[0]), (
        f"the first cell must start with a '# Title' line (the book's page title), not {lines[:1]}"
    )


@notebook_paths
def test_ends_with_exercises(path: Path) -> None:
    top = [text for level, text in headings(load(path)) if level <= 2]
    assert top and re.search(r"exercise", top[-1], re.IGNORECASE), (
        f"the last section must be the exercises ('## Exercises'); the last heading is {top[-1:]}"
    )


@notebook_paths
def test_one_parameters_cell_of_plain_assignments(path: Path) -> None:
    notebook = load(path)
    tagged = [cell for cell in notebook.cells if "parameters" in tags(cell)]
    assert len(tagged) == 1, f"{len(tagged)} cells tagged 'parameters'; papermill needs exactly 1"
    cell = tagged[0]
    assert cell.cell_type == "code", "the 'parameters' tag must be on a code cell"
    for node in ast.parse(cell.source).body:
        assert isinstance(node, (ast.Assign, ast.AnnAssign)), (
            f"the parameters cell must hold plain assignments only (line {node.lineno}): "
            "papermill's injected values override them"
        )
    injected = [c for c in notebook.cells if "injected-parameters" in tags(c)]
    assert not injected, "a papermill output was committed (cell tagged 'injected-parameters')"


@notebook_paths
def test_papermill_test_exists(path: Path) -> None:
    """Some tests/test_*.py runs this notebook through ``run_notebook`` (tests/conftest.py)."""
    call = re.compile(r"run_notebook\(\s*['\"]" + re.escape(path.name) + r"['\"]")
    users = [
        test.name
        for test in sorted(TESTS.glob("test_*.py"))
        if test.name != Path(__file__).name and call.search(test.read_text(encoding="utf-8"))
    ]
    assert users, (
        f"no test calls run_notebook({path.name!r}, ...): add a papermill test with short "
        "parameters that asserts on the values the notebook record()s"
    )


@notebook_paths
def test_widget_views_have_stored_state(path: Path) -> None:
    """A widget view without stored state renders as nothing in the book (and in a fresh Lab)."""
    notebook = load(path)
    views = {
        output.data[WIDGET_VIEW]["model_id"]
        for cell in code_cells(notebook)
        for output in cell.outputs
        if WIDGET_VIEW in output.get("data", {})
    }
    state = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    missing = sorted(views - set(state))
    assert not missing, (
        f"{len(missing)} widget view(s) without stored widget state: execute with nbconvert "
        "(it stores the state) or save with 'Save Widget State Automatically' on"
    )


# --- the learner never sees scaffolding ---------------------------------------------------------

SCAFFOLDING = re.compile(r"NBVAL_IGNORE_OUTPUT|# fmt: (skip|off|on)")
# The course's test machinery, which a learner never needs to hear of ("test set", "test accuracy"
# and "test images" are course vocabulary, and stay).
TEST_WORDS = re.compile(
    r"\bpapermill\b|\bnbval\b|\bCI\b|\bassert(s|ed|ion|ions)?\b|\btests/|\btest_\w+\.py"
    r"|\bthe tests?\b(?! (set|accuracy|images?|error|split|data|loss))|\bunit tests?\b",
    re.IGNORECASE,
)
# A knob named after a test's bound: min_modern_accuracy, max_test_error, ...
BOUND_KNOB = re.compile(r"^(min|max)_\w*(accuracy|error|loss)\b", re.MULTILINE)
MAX_SHOWN_ASSERTS = 3  # per notebook, and only where the check is the lesson
MAX_SHOWN_ASSERTS_IN_ALL = 20


def for_the_tests(source: str) -> bool:
    """A cell that exists for the tests: a lone ``record(...)`` or nothing but asserts."""
    try:
        body = ast.parse(source).body
    except SyntaxError:  # IPython magics: a cell for the learner
        return False
    if body and all(isinstance(node, ast.Assert) for node in body):
        return True
    value = getattr(body[0], "value", None) if len(body) == 1 else None
    return isinstance(value, ast.Call) and getattr(value.func, "id", "") == "record"


@notebook_paths
def test_no_scaffolding_comments(path: Path) -> None:
    """nbval's cell tags, not comments; no formatter pragmas; no test machinery in the prose."""
    for index, cell in enumerate(load(path).cells):
        if cell.cell_type == "code":
            assert not SCAFFOLDING.search(cell.source), (
                f"cell {index}: use the cell tag 'nbval-ignore-output', not a comment or pragma"
            )
        comments = cell.source if cell.cell_type == "markdown" else "\n".join(
            line.split("#", 1)[1] for line in cell.source.splitlines() if "#" in line
        )
        if "remove-cell" not in tags(cell):
            assert not TEST_WORDS.search(comments), (
                f"cell {cell.id} speaks of the test machinery: "
                f"{TEST_WORDS.search(comments).group()!r}"
            )


def shown_asserts(path: Path) -> int:
    """The assert statements in code cells a learner can see (solutions, folded, included)."""
    return sum(
        sum(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(strip_magics(c.source))))
        for c in code_cells(load(path)) if "remove-cell" not in tags(c)
    )


def strip_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


@notebook_paths
def test_few_asserts_where_a_learner_reads(path: Path) -> None:
    """A printed comparison teaches; an assert is kept only where the check is the lesson."""
    assert shown_asserts(path) <= MAX_SHOWN_ASSERTS


def test_few_asserts_in_the_whole_course() -> None:
    assert sum(shown_asserts(path) for path in NOTEBOOKS) <= MAX_SHOWN_ASSERTS_IN_ALL


@notebook_paths
def test_quizzes_and_knobs_say_nothing_of_the_tests(path: Path) -> None:
    quiz = path.parent / "quizzes" / f"{path.name[:2]}.json"
    if quiz.exists():
        found = TEST_WORDS.search(quiz.read_text())
        assert not found, f"{quiz.name} speaks of the test machinery: {found.group()!r}"
    (parameters,) = [c for c in code_cells(load(path)) if "parameters" in tags(c)]
    assert not BOUND_KNOB.search(parameters.source), "a knob named after a test's bound"


@notebook_paths
def test_cells_for_the_tests_are_out_of_sight(path: Path) -> None:
    """The book removes them (``remove-cell``) and JupyterLab shows them collapsed."""
    cells = [c for c in code_cells(load(path)) if for_the_tests(c.source)]
    for cell in cells:
        assert "remove-cell" in tags(cell), f"not tagged remove-cell: {cell.source[:80]!r}"
    for cell in code_cells(load(path)):
        if {"remove-cell", "hide-cell"} & set(tags(cell)):  # test cells, and the solutions
            shown = cell.metadata.get("jupyter", {})
            assert shown.get("source_hidden") and shown.get("outputs_hidden"), (
                f"not collapsed in JupyterLab (metadata.jupyter.source_hidden and "
                f"outputs_hidden): {cell.source[:80]!r}"
            )
    assert any("record(" in c.source for c in code_cells(load(path))), "no record() at all"


@notebook_paths
def test_the_checker_prints_only_its_verdict(path: Path) -> None:
    """An answer cell shows the checker's sentences, not a True or False under them."""
    for cell in code_cells(load(path)):
        if "check.exercise(" in cell.source:
            results = [o for o in cell.outputs if o.output_type == "execute_result"]
            assert not results, f"{cell.source[-60:]!r} displays {results[0]['data']}"
