"""Notebook 07 (inspecting a trained LeNet), run short with papermill on the real data."""

from __future__ import annotations

import pytest

UPPER_BODY = {"T-shirt/top", "Pullover", "Coat", "Shirt"}


@pytest.mark.slow
def test_notebook_07_trains_inspects_and_predicts_a_file(run_notebook, real_data_root):
    # use_saved=False: train here (1 epoch on the 60,000 images) so the run does not depend on
    # whether notebook 06 has left a checkpoint in runs/; it trains notebook 06's modern LeNet.
    values = run_notebook(
        "07_inspecting_lenet.ipynb", use_saved=False, epochs=1, train_size=60000, image_index=3
    )
    assert values["source"] == "trained here"
    assert values["test_count"] == 10000
    assert values["confusion_correct"] == round(values["test_accuracy"] * 10000)
    assert values["test_accuracy"] > 0.8  # one epoch; the default 5 epochs reach about 0.9
    shapes = {"C1": [6, 28, 28], "S2": [6, 14, 14], "C3": [16, 10, 10], "S4": [16, 5, 5]}
    assert values["stage_shapes"] == shapes
    assert values["c1_filters"] == [6, 1, 5, 5]
    true, predicted, count = values["most_confused"][0]
    assert {true, predicted} <= UPPER_BODY and count > 0
    assert values["upper_body_share"] > 0.5
    assert values["worst_class"] in UPPER_BODY
    # The picture written to disk is light, so it was inverted, and the file is classified as
    # the test image it was made from, the same by the library and the command line.
    assert values["file_inverted"] is True
    assert values["file_prediction"] == values["file_label"]
    assert values["cli_matches_library"] is True
