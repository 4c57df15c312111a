"""Notebook 05 (Fashion-MNIST, the data) run with papermill and small parameters."""

from __future__ import annotations

import math

import pytest

SYMMETRIC = ("T-shirt/top", "Trouser", "Dress", "Coat", "Bag")  # flipped, barely changed
SHOES = ("Sandal", "Sneaker", "Ankle boot")  # flipped, they point the other way


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
    # pixel_statistics (a histogram, in float64) gives the mean of the float32 pixels
    assert values["pixel_statistics_difference"] < 1e-6
    # The parameters reached the notebook: the split follows validation_size.
    assert values["validation_part_size"] == 1000
    assert values["train_part_size"] == 59_000
    assert sum(values["validation_class_counts"]) == 1000
    assert values["split_matches_by_hand"] is True  # the permutation, cut by hand
    assert values["split_repeatable"] is True  # the same seed, the same split
    assert values["prepared_shape"] == [59_000, 1, 32, 32]
    assert len(set(values["prepared_devices"])) == 1  # prepared where the images are
    # Raw bytes at the rescaled inputs' learning rate: a far higher loss, a lower accuracy.
    assert values["raw_loss_ratio"] > 1000
    loss = values["scaling_train_loss"]
    assert all(loss["raw 0..255"] > 1000 * loss[name] for name in ("x / 255", "standardised"))
    accuracy = values["scaling_test_accuracy"]
    assert accuracy["raw 0..255"] < max(accuracy["x / 255"], accuracy["standardised"])
    # Flips: clothes that are nearly mirror-symmetric barely change, shoes and digits collapse.
    drop = values["fashion_flip_drop"]
    assert all(drop[name] < 0.1 for name in SYMMETRIC), drop
    assert all(drop[name] > 0.4 for name in SHOES), drop
    as_is, flipped = values["flip_accuracy"]["MNIST"]
    assert flipped < as_is - 0.3
    mnist_flipped, mnist_drop = values["mnist_flipped"], values["mnist_flip_drop"]
    assert mnist_flipped[3] < 0.2 and mnist_flipped[5] < 0.2
    assert mnist_drop[1] > 0.2
    assert all(mnist_drop[digit] > 0.05 for digit in (0, 1, 8))  # mirror-readable to a person
    # Without loss.backward() the zero-initialised model never moves: its loss is ln 10 throughout.
    assert values["no_backward_loss"] == [round(math.log(10), 4)] * 2
    low, high = values["no_backward_loss_range"]
    assert abs(low - math.log(10)) < 1e-5 and abs(high - math.log(10)) < 1e-5
    assert values["no_backward_weights_zero"] is True
    assert values["backward_last_loss"] < 0.8 * math.log(10)  # with backward() it learns
    assert values["load_seconds"] > 0  # measured, not bounded: benchmarks/bench_data.py times it
