"""The comparison that checks each notebook's one run against its committed outputs (conftest)."""

from __future__ import annotations

import nbformat
from conftest import comparable, output_differences
from nbformat.v4 import new_code_cell, new_notebook, new_output


def notebook(*cells: tuple[str, list, list[str]]) -> nbformat.NotebookNode:
    """A notebook of code cells given as (id, outputs, tags)."""
    made = []
    for cell_id, outputs, tags in cells:
        cell = new_code_cell("print(1)", id=cell_id, outputs=outputs)
        cell.metadata["tags"] = tags
        made.append(cell)
    return new_notebook(cells=made)


def stream(text: str) -> nbformat.NotebookNode:
    return new_output("stream", name="stdout", text=text)


def test_equal_outputs_pass_and_a_changed_number_fails() -> None:
    stored = notebook(("a", [stream("61,706 parameters\n")], []))
    assert output_differences(stored, notebook(("a", [stream("61,706 parameters\n")], []))) == []
    (problem,) = output_differences(stored, notebook(("a", [stream("61,707 parameters\n")], [])))
    assert "cell a" in problem and "61,707" in problem


def test_ignored_and_parameter_cells_are_not_compared() -> None:
    stored = notebook(("a", [stream("accuracy 0.9145\n")], ["nbval-ignore-output"]),
                      ("b", [], ["parameters"]))  # fmt: skip
    executed = notebook(("a", [stream("accuracy 0.9171\n")], ["nbval-ignore-output"]),
                        ("b", [stream("injected\n")], ["parameters"]))  # fmt: skip
    assert output_differences(stored, executed) == []


def test_a_missing_cell_is_reported() -> None:
    stored = notebook(("a", [], []), ("b", [], []))
    assert output_differences(stored, notebook(("a", [], []))) == [
        "cell b: not in the executed notebook"
    ]


def test_timings_progress_and_split_streams_compare_as_nbval_does() -> None:
    stored = [stream("epoch 1 took 2.5 s\n"), stream("done\n")]
    fresh = [stream("epoch 1 took 3.1 s\ndone\n")]
    assert comparable(stored) == comparable(fresh) == {"stdout": ["epoch 1 took TIME\ndone\n"]}
    bar = [stream(" 10%|#    | 1/10\r100%|#####| 10/10 [00:03<00:00, 3.1it/s]\n")]
    assert comparable(bar) == {"stdout": ["PROGRESS\n"]}


def test_figures_widgets_and_recorded_values_are_left_out() -> None:
    data = {"image/png": "iVBOR", "text/plain": "<Figure size 640x480 with 1 Axes>",
            "application/vnd.lenet-course.record+json": {"accuracy": 0.9}}  # fmt: skip
    shown = comparable([new_output("display_data", data=data)])
    assert shown == {"text/plain": ["<Figure size 640x480 with 1 Axes>"]}
