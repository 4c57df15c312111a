"""Tests of ``lenet_course.paper``: the 1998 paper's numbers, as plain data."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lenet_course import counting, paper


def test_paper_schedule_is_section_iii_b() -> None:
    rates = [paper.paper_learning_rate(p) for p in range(paper.PAPER_PASSES)]
    assert rates == [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
    assert paper.paper_learning_rate(100) == 1e-5
    assert paper.PAPER_MU == 0.02 and paper.PAPER_HESSIAN_SAMPLES == 500


@pytest.mark.parametrize("bad", [-1, 1.5, True, "0"])
def test_paper_schedule_rejects_bad_passes(bad) -> None:
    with pytest.raises(ValueError, match="epoch="):
        paper.paper_learning_rate(bad)


def test_printed_layer_counts_agree_with_the_formulas() -> None:
    by_formula = {layer.name: layer for layer in counting.lenet5_1998_layers()}
    for name, (parameters, connections) in paper.PAPER_LAYER_COUNTS.items():
        assert (by_formula[name].parameters, by_formula[name].connections) == (
            parameters,
            connections,
        )
    assert sum(p for p, _ in paper.PAPER_LAYER_COUNTS.values()) == 60_000
    rbf_output = 84 * 10  # fixed prototypes: connections, not trainable parameters
    assert sum(c for _, c in paper.PAPER_LAYER_COUNTS.values()) + rbf_output == 340_908


def test_c3_table_is_table_i() -> None:
    """Table I of the paper, row by row: which S2 maps each C3 map reads."""
    assert paper.C3_TABLE == (
        (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
        (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
        (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
        (0, 1, 2, 3, 4, 5),
    )


def test_published_figures() -> None:
    errors = [row["test_error_percent"] for row in paper.PUBLISHED]
    assert errors == [0.95, 0.8, None]  # d2l: Fashion-MNIST, not comparable
    assert all(set(row) == {"source", "network", "dataset", "test_error_percent"}
               for row in paper.PUBLISHED)
    assert paper.error_percent(0.9905) == 0.95
    with pytest.raises(ValueError, match="accuracy="):
        paper.error_percent(1.5)


def test_paper_is_plain_data_without_torch() -> None:
    code = "import sys, lenet_course.paper; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
