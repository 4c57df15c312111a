"""Notebook 08 (LeNet-5 1998 on MNIST): one short papermill run with every knob turned, the command
line that reproduces its number, the notebook's LeNetVariant, and the committed outputs' records.

The committed run's trained numbers (test errors, losses) are machine-dependent: their ranges are
claims in tests/claims.py, checked after a full re-execution. Here only what holds exactly."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_every_knob_turned, notebook_knobs
from torch import nn

from lenet_course import counting, paper
from lenet_course.lenet1998 import MAP_J, LeNet5_1998, Subsampling, map_loss, squash, uniform_
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
# The one run: every knob of the parameters cell away from its default, and cheap.
SHORT = {
    "passes": 1,
    "modern_epochs": 1,
    "modern_seeds": 2,
    "ablation_epochs": 2,
    "train_subset": 10_000,
    "sdlm_examples": 200,
    "sdlm_passes": 1,  # the paper's whole recipe, one pass over the 10,000 images
    "device": "cpu",
    "seed": 1,
}


def paper_table() -> dict[str, list[int]]:
    """The paper's table by formula (counting), checked against the paper's printed numbers."""
    by_formula = {layer.name: [layer.parameters, layer.connections]
                  for layer in counting.lenet5_1998_layers()}  # fmt: skip
    as_printed = {name: list(counts) for name, counts in paper.PAPER_LAYER_COUNTS.items()}
    assert {name: by_formula[name] for name in as_printed} == as_printed
    return by_formula


def test_committed_records_hold_together() -> None:
    """The stored run (defaults, real data): the exact relations between its recorded values."""
    values = recorded_values(json.loads((REPO / "notebooks" / NOTEBOOK).read_text()))
    assert values["total_parameters"] == 60_000
    assert values["table"] == paper_table() and values["table"]["OUTPUT"] == [0, 840]
    assert values["reproduction_passes"] == 6 and len(values["reproduction_errors"]) == 6
    assert values["reproduction_errors"][-1] == values["reproduction_test_error"]
    assert len(values["modern_errors"]) == 3
    assert values["modern_errors"][0] == paper.error_percent(values["modern_test_accuracy"])
    assert values["modern_mean_error"] == pytest.approx(sum(values["modern_errors"]) / 3)
    assert sorted(values["ablation_errors"]) == sorted(ABLATION_ROWS)  # stored JSON sorts keys
    assert values["ablation_epochs"] == 1
    errors, changes = values["ablation_errors"], values["ablation_changes"]
    for before, after in zip(ABLATION_ROWS[:-1], ABLATION_ROWS[1:], strict=True):
        assert changes[after] == pytest.approx(errors[after] - errors[before])
    assert values["sdlm_passes"] == 0 and values["sdlm_test_error"] is None


def test_parameters_cell_defaults() -> None:
    knobs = notebook_knobs(NOTEBOOK)
    assert knobs["passes"] == 6 and knobs["train_subset"] is None
    assert knobs["sdlm_passes"] == 0  # the hour-long SDLM run is the reader's choice
    assert knobs["modern_seeds"] == 3  # the text reports a mean over three seeds
    assert not {"max_test_error", "min_modern_accuracy"} & set(knobs)  # bounds live here


def test_the_short_run_turns_every_knob() -> None:
    assert_every_knob_turned(NOTEBOOK, SHORT)


def lenet_variant() -> type[nn.Module]:
    """The notebook's LeNetVariant class, defined by running its cell."""
    notebook = nbformat.read(REPO / "notebooks" / NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if "class LeNetVariant" in c.source]
    namespace: dict[str, Any] = {
        "math": math, "torch": torch, "F": F, "nn": nn, "MAP_J": MAP_J, "LeNet5_1998": LeNet5_1998,
        "Subsampling": Subsampling, "map_loss": map_loss, "squash": squash, "uniform_": uniform_,
    }  # fmt: skip
    exec(cell.source, namespace)
    return namespace["LeNetVariant"]


def test_lenet_variant_defaults_compute_the_1998_network() -> None:
    variant_class = lenet_variant()
    x = torch.rand(5, 1, 32, 32) * 1.275 - 0.1
    y = torch.tensor([0, 1, 2, 3, 4])
    torch.manual_seed(3)
    reference = LeNet5_1998()
    torch.manual_seed(3)
    variant = variant_class()  # the defaults compute the 1998 network
    assert torch.equal(variant(x), reference(x))
    assert torch.equal(variant.loss(variant(x), y), reference.loss(reference(x), y))
    assert torch.equal(variant_class(j=3.0).loss(variant(x), y), map_loss(variant(x), y, 3.0))
    assert sum(p.numel() for p in variant.parameters()) == 60_000


def test_lenet_variant_swaps_one_layer_at_a_time() -> None:
    variant_class = lenet_variant()
    x = torch.rand(5, 1, 32, 32) * 1.275 - 0.1
    y = torch.tensor([0, 1, 2, 3, 4])
    linear = variant_class(output="linear")
    assert sum(p.numel() for p in linear.parameters()) == 60_000 + 850
    out = linear(x)
    assert out.shape == (5, 10) and torch.equal(linear.scores(out), out)
    torch.testing.assert_close(linear.loss(out, y), F.cross_entropy(out, y))
    pooled = variant_class(pooling="max", activation="relu")
    assert sum(p.numel() for p in pooled.parameters()) == 60_000 - 12 - 32
    assert pooled(x).shape == (5, 10)
    torch.manual_seed(0)
    wide = variant_class(init="pytorch")
    assert wide.c1.weight.abs().max() > 2.4 / 25  # wider than the paper's +/-2.4/F_i
    assert wide.c3.weight[:3].abs().max() <= 1 / 75**0.5
    with pytest.raises(ValueError, match="pooling='avg'"):
        variant_class(pooling="avg")


def check_the_paper_optimiser(values: dict[str, Any]) -> None:
    """Section 4: SDLM from the printed initialisation and from the wider one."""
    assert values["sdlm_loss_after"] > values["sdlm_loss_before"]  # printed initialisation: up
    assert values["sdlm_wide_loss_after"] < values["sdlm_wide_loss_before"] / 3  # 1/sqrt(F_i)
    (low, high), (wide_low, wide_high) = values["sdlm_steps"], values["sdlm_wide_steps"]
    cap = values["sdlm_cap"]
    assert high > 0.99 * cap  # at the printed initialisation the lower layers sit at the cap
    assert wide_low < 7e-5 < low  # 7e-5: the paper's smallest first-pass step
    # "the largest still sit at the cap": 0.99 x cap at seed 0 and 0.9905 x cap at seed 1
    assert wide_high > 0.95 * cap
    assert values["sdlm_passes"] == 1 and values["sdlm_test_error"] < 15  # chance: 90%


def check_the_command_line(values: dict[str, Any], real_data_root: Path, tmp_path: Path) -> None:
    """The command the notebook prints gives the notebook's number."""
    command = values["command"]
    assert command[-2:] == ["--out", "runs/lenet5-1998"]
    command = [sys.executable, *command[1:-1], str(tmp_path / "run"), "--root",
               str(real_data_root), "--device", "cpu"]
    command += ["--threads", "1"]  # the notebook runs on 1 thread
    command.append("--no-progress")
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert paper.error_percent(metrics["test_accuracy"]) == values["reproduction_test_error"]


@pytest.mark.slow
def test_short_run_and_the_command_line_agree(
    run_notebook, real_data_root: Path, tmp_path: Path
) -> None:
    values = run_notebook("08_lenet5_1998_on_mnist.ipynb", **SHORT)
    assert values["total_parameters"] == 60_000
    assert values["table"] == paper_table()
    check_the_paper_optimiser(values)
    error = values["reproduction_test_error"]
    assert 0 <= error < 50 and values["reproduction_passes"] == 1  # chance would be 90%
    assert values["modern_test_accuracy"] > 0.9
    assert len(values["modern_errors"]) == SHORT["modern_seeds"]
    assert values["modern_errors"][0] == paper.error_percent(values["modern_test_accuracy"])
    assert max(values["modern_errors"]) < 10  # every seed learned (chance: 90%)
    ablation = values["ablation_errors"]
    assert sorted(ablation) == sorted(ABLATION_ROWS) and values["ablation_epochs"] == 2
    assert all(0 <= e <= 100 for e in ablation.values())
    assert ablation["modern LeNet (v1)"] < ablation["optimiser: Adam"]
    assert values["f6_input_ratio"] > 3  # PyTorch's initialisation: several times larger
    check_the_command_line(values, real_data_root, tmp_path)
