"""Notebook 04 (three ways to define LeNet) runs with other parameters and proves what it claims."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_notebook_04_with_a_small_batch(run_notebook, real_data_root) -> None:
    values = run_notebook("04_three_ways_to_define_lenet.ipynb", batch_size=3, seed=1)
    assert values["batch_size"] == 3  # the parameters reached the notebook
    assert values["parameters_by_style"] == [61_706] * 3
    assert values["style2_rows_match_style3"] is True  # the same output shapes, row by row
    # the three styles, the package's three classes and d2l's LeNet: bitwise the same network
    assert values["outputs_equal"] is True
    assert values["gradients_equal"] is True
    assert values["library_equal"] == [True] * 3
    assert values["d2l_equal"] is True
    assert values["flatten_features_28_unpadded"] == 256
    assert values["flatten_features_28_padded"] == 400
    assert values["flatten_features_32"] == 400
    assert values["parameters_1998"] == {
        "C1": 156, "S2": 12, "C3": 1_516, "S4": 32, "C5": 48_120, "F6": 10_164, "OUTPUT": 0,
    }  # fmt: skip
    assert values["total_1998"] == 60_000
    # The drawn labels: the paper's Figure 2 (LeCun et al. 1998) for LeNet-5; the modern LeNet
    # has the same maps on a 28x28 input and a full layer F5 where the paper has C5.
    assert values["architecture_1998"] == [
        "INPUT: 1@32x32", "C1: 6@28x28", "S2: 6@14x14", "C3: 16@10x10", "S4: 16@5x5",
        "C5: 120@1x1", "F6: 84", "OUTPUT: 10",
    ]
    assert values["architecture_modern"] == [
        "INPUT: 1@28x28", "C1: 6@28x28", "S2: 6@14x14", "C3: 16@10x10", "S4: 16@5x5", "F5: 120",
        "F6: 84", "OUTPUT: 10",
    ]
    assert values["architecture_style1"] == ["INPUT", "C1", "C2", "F3", "F4", "OUTPUT"]
    # S2 adds its 2x2 window: two windows with one maximum but different sums get different S2
    # outputs and the same max-pooling output; the gradient reaches all 4 inputs, max pooling's 1.
    assert values["s2_windows_told_apart"] == [True, False]
    assert values["s2_gradient_inputs"] == [4, 1]
    # draw_architecture draws a plane a map (8 at most), a column a vector, a label a stage.
    # LeNet-5's drawing: 1 + 6 + 6 + 8 + 8 planes for the maps, columns for C5, F6 and OUTPUT
    assert values["drawing_1998_planes"] == 1 + 6 + 6 + 8 + 8 + 1 + 1 + 1
    assert values["drawing_1998_labels_drawn"] == 8
    # each drawn label names the shape that trace_shapes finds for its layer
    for size, labels, layers in values["drawings_and_traces"]:
        shapes = [[int(n) for n in label.split(": ")[1].replace("@", "x").split("x")]
                  for label in labels]
        assert shapes == [[1, size, size], *layers], (labels, layers)
    assert values["pooled_stages"] == [
        ["INPUT", ""], ["C1", "convolutions"], ["S2", "subsampling"], ["F3", "full connection"],
        ["OUTPUT", "full connection"],
    ]
