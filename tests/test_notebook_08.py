"""Notebook 08 (LeNet-5 1998 on MNIST): a short papermill run, the command line that reproduces
its number, and the committed outputs' recorded results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lenet_course import paper
from lenet_course.notebook import recorded_values

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = "08_lenet5_1998_on_mnist.ipynb"
ABLATION_ROWS = [
    "1998 network, SGD + momentum",
    "optimiser: Adam",
    "+ softmax output",
    "+ max-pooling",
    "+ ReLU",
    "+ PyTorch init",
    "modern LeNet (v1)",
]


def test_committed_outputs_meet_the_issue_bounds() -> None:
    """The stored run (defaults, real data) shows what the notebook's prose says."""
    values = recorded_values(json.loads((REPO / "notebooks" / NOTEBOOK).read_text()))
    assert values["total_parameters"] == 60_000
    assert values["reproduction_passes"] == 6
    assert values["reproduction_test_error"] <= 1.2
    assert values["modern_test_accuracy"] >= 0.992
    # the modern LeNet over 3 seeds: what section 9's text says about its mean
    assert len(values["modern_errors"]) == 3
    assert values["modern_errors"][0] == paper.error_percent(values["modern_test_accuracy"])
    assert values["modern_mean_error"] == pytest.approx(sum(values["modern_errors"]) / 3)
    assert values["modern_mean_error"] < paper.PAPER_TEST_ERROR
    assert abs(values["modern_mean_error"] - paper.PAPER_TEST_ERROR_DISTORTED) <= 0.2
    assert values["sdlm_loss_after"] > values["sdlm_loss_before"]
    assert values["sdlm_wide_loss_after"] < values["sdlm_wide_loss_before"] / 3
    assert sorted(values["ablation_errors"]) == sorted(ABLATION_ROWS)  # stored JSON sorts keys
    assert values["ablation_epochs"] == 1


def test_parameters_cell_defaults() -> None:
    notebook = nbformat.read(REPO / "notebooks" / NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    namespace: dict = {}
    exec(cell.source, namespace)  # plain assignments only (see test_notebook_hygiene)
    assert namespace["passes"] == 6 and namespace["max_test_error"] == 1.2
    assert namespace["min_modern_accuracy"] == 0.992 and namespace["train_subset"] is None
    assert namespace["sdlm_passes"] == 0  # the hour-long SDLM run is the reader's choice
    assert namespace["modern_seeds"] == 3  # the text reports a mean over three seeds


@pytest.mark.slow
def test_short_run_and_the_command_line_agree(
    run_notebook, real_data_root: Path, tmp_path: Path
) -> None:
    settings = {"passes": 1, "train_subset": 10_000, "seed": 0}
    values = run_notebook(
        "08_lenet5_1998_on_mnist.ipynb",
        modern_epochs=1,
        ablation_epochs=1,
        sdlm_examples=200,
        sdlm_passes=1,  # the paper's whole recipe, one pass over the 10,000 images
        max_test_error=50.0,
        min_modern_accuracy=0.5,
        device="cpu",
        **settings,
    )
    assert values["total_parameters"] == 60_000
    assert values["table"] == {
        **{name: list(counts) for name, counts in paper.PAPER_LAYER_COUNTS.items()},
        "OUTPUT": [0, 840],
    }
    assert values["sdlm_loss_after"] > values["sdlm_loss_before"]  # printed initialisation
    assert values["sdlm_wide_loss_after"] < values["sdlm_wide_loss_before"] / 3  # 1/sqrt(F_i)
    assert values["sdlm_passes"] == 1 and values["sdlm_test_error"] < 15  # chance: 90%
    error = values["reproduction_test_error"]
    assert 0 <= error < 50 and values["reproduction_passes"] == 1  # chance would be 90%
    assert values["modern_test_accuracy"] > 0.9
    assert len(values["modern_errors"]) == 3  # modern_seeds' default
    assert max(values["modern_errors"]) < 10  # every seed learned (chance: 90%)
    ablation = values["ablation_errors"]
    assert sorted(ablation) == sorted(ABLATION_ROWS)
    assert ablation["modern LeNet (v1)"] < ablation["optimiser: Adam"]

    # The command the notebook prints gives the notebook's number.
    command = values["command"]
    assert command[-2:] == ["--out", "runs/lenet5-1998"]
    command = [sys.executable, *command[1:-1], str(tmp_path / "run"), "--root",
               str(real_data_root), "--device", "cpu"]
    command += ["--threads", "1"]  # the notebook runs on 1 thread
    command.append("--no-progress")
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert paper.error_percent(metrics["test_accuracy"]) == error
