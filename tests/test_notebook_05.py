"""Notebook 05 (Fashion-MNIST, the data) run with papermill and small parameters."""

from __future__ import annotations

import math

import pytest


@pytest.mark.slow
def test_notebook_05_runs_and_records_the_data_facts(run_notebook, real_data_root) -> None:
    values = run_notebook(
        "05_fashion_mnist.ipynb", per_class=3, epochs=1, validation_size=1000, seed=1
    )
    assert values["train_size"] == 60_000 and values["test_size"] == 10_000
    assert values["train_class_counts"] == [6000] * 10
    assert values["test_class_counts"] == [1000] * 10
    assert values["mnist_train_class_counts"] == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]  # fmt: skip
    assert (values["mean"], values["std"]) == (0.286, 0.353)
    assert (values["mnist_mean"], values["mnist_std"]) == (0.1307, 0.3081)
    # The parameters reached the notebook: the split follows validation_size.
    assert values["validation_part_size"] == 1000
    assert values["train_part_size"] == 59_000
    assert sum(values["validation_class_counts"]) == 1000
    assert values["prepared_shape"] == [59_000, 1, 32, 32]
    # The experiments' claims, as recorded (the notebook asserts them too).
    accuracy = values["scaling_test_accuracy"]
    assert accuracy["raw 0..255"] < max(accuracy["x / 255"], accuracy["standardised"])
    as_is, flipped = values["flip_accuracy"]["MNIST"]
    assert flipped < as_is - 0.3
    # Without loss.backward() the zero-initialised model never moves: its loss is ln 10 throughout.
    assert values["no_backward_loss"] == [round(math.log(10), 4)] * 2
    assert values["no_backward_weights_zero"] is True
    assert values["load_seconds"] > 0  # measured, not bounded: benchmarks/bench_data.py times it
