"""Notebooks 02 (convolution arithmetic) and 03 (counting) run with other parameters, and what
they record is what the package and PyTorch say.  Notebook 02 reads one Fashion-MNIST image."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from lenet_course.arithmetic import (
    conv2d_output_size,
    conv_transpose2d_output_size,
    pool2d_output_size,
)
from lenet_course.counting import conv2d_multiply_adds, lenet5_1998_layers, linear_multiply_adds


def _valid(size_function, *arguments) -> bool:  # type: ignore[no-untyped-def]
    try:
        size_function(*arguments)
    except ValueError:
        return False
    return True


@pytest.mark.slow
def test_notebook_02_with_a_small_grid(run_notebook, real_data_root) -> None:  # type: ignore[no-untyped-def]
    values = run_notebook("02_convolution_arithmetic.ipynb", max_size=5, max_kernel=4)
    assert values["max_size"] == 5  # the parameters reached the notebook

    # The notebook counted, with PyTorch, the configurations it accepts; count them here with
    # the package: the two must agree, and the notebook must have found no disagreement.
    sizes, kernels = range(1, 6), range(1, 5)
    conv = [
        _valid(conv2d_output_size, n, k, s, p, d)
        for n, k, s, p, d in itertools.product(sizes, kernels, range(1, 4), [0, 1, 2, 3, "same"],
                                               range(1, 4))
        if p != "same" or s == 1
    ]  # fmt: skip
    pools = list(itertools.product(sizes, kernels, [None, 1, 2, 3], range(3), [False, True]))
    maxpool = [
        _valid(pool2d_output_size, n, k, s, p, d, c) for n, k, s, p, c in pools for d in (1, 2, 3)
    ]
    avgpool = [_valid(pool2d_output_size, n, k, s, p, 1, c) for n, k, s, p, c in pools]
    transposed = [
        _valid(conv_transpose2d_output_size, *configuration)
        for configuration in itertools.product(sizes, kernels, range(1, 4), range(4), range(3),
                                               range(1, 3))
    ]
    assert values["grid"] == {
        "Conv2d": [sum(conv), len(conv) - sum(conv), 0],
        "MaxPool2d": [sum(maxpool), len(maxpool) - sum(maxpool), 0],
        "AvgPool2d": [sum(avgpool), len(avgpool) - sum(avgpool), 0],
        "ConvTranspose2d": [sum(transposed), len(transposed) - sum(transposed), 0],
    }

    lenet = {"C1": 28, "S2": 14, "C3": 10, "S4": 5}
    assert values["lenet_shapes"] == {
        "28x28, padding 2": lenet,
        "32x32, no padding": lenet,
        "28x28, no padding": {"C1": 24, "S2": 12, "C3": 8, "S4": 4},
    }
    assert values["trace_28"][-1] == [1, 10] and values["trace_28"][5] == [1, 16, 5, 5]
    assert values["trace_32"] == values["trace_28"]  # the paper's 32x32, unpadded: the same shapes
    assert values["explorer_initial"] == "output size: 28 x 28"
    assert values["explorer_stride_2"] == "output size: 14 x 14"
    assert values["receptive_fields"] == {
        "C1": [5, 1], "S2": [6, 2], "C3": [14, 2], "S4": [16, 4], "C5": [32, 4],
    }  # fmt: skip

    # The drawn boxes (unit, first and last input pixel), worked out by hand from LeNet's layers:
    # C1's unit 13 sees 13 +- 2; S2's unit 6 pools C1's 12 and 13; C3's unit 4 reads S2's 4..8,
    # S4's unit 2 pools C3's 4 and 5; C5 reads all of S4, padding included.
    boxes = {"C1": [13, 11, 15], "S2": [6, 10, 15], "C3": [4, 6, 19], "S4": [2, 6, 21],
             "C5": [0, -2, 29]}
    assert values["receptive_field_boxes"] == boxes
    # The gradient of each unit reaches exactly its box, clipped to the 28x28 image.
    assert values["gradient_support"] == {
        name: [max(first, 0), min(last, 27)] * 2 for name, (_, first, last) in boxes.items()
    }
    # Section 6 shows two of its eight refused configurations; every one is refused by both.
    assert len(values["refusals"]) == 8
    assert all(refused == [True, True] for refused in values["refusals"].values())
    assert values["transposed_from_14"] == {"0": 27, "1": 28}
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    kernel = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
    expected = F.conv_transpose2d(x[None, None], kernel[None, None], stride=2)[0, 0]
    assert values["transposed_example"] == expected.tolist()
    assert values["transposed_views_agree"] is True
    assert values["transposed_scatter_agrees"] is True
    assert values["transposed_is_gradient"] is True

    # Section 10's table: a Conv2d with the same settings maps the transposed size to
    # n + output_padding // stride, back to n exactly when output_padding < stride; the last row
    # (stride 1, dilation 2, output_padding 1) is accepted by PyTorch and does not come back.
    trips = values["transposed_round_trips"]
    assert trips["5, 3, 1, 0, 1, 2"] == [10, 6]
    for configuration, (out, back) in trips.items():
        n, k, s, p, extra, d = map(int, configuration.split(", "))
        assert out == conv_transpose2d_output_size(n, k, s, p, extra, d)
        assert back == conv2d_output_size(out, k, s, p, d) == n + extra // s


@pytest.mark.slow
def test_notebook_03_with_another_batch_size(run_notebook) -> None:  # type: ignore[no-untyped-def]
    values = run_notebook("03_counting_parameters.ipynb", batch_size=3)
    assert values["batch_size"] == 3
    assert values["modern_parameters"] == 61_706
    assert values["modern_multiply_adds"] == 416_520
    assert values["multiply_adds_per_layer"] == [
        conv2d_multiply_adds(1, 6, 5, 28), conv2d_multiply_adds(6, 16, 5, 10),
        linear_multiply_adds(400, 120), linear_multiply_adds(120, 84), linear_multiply_adds(84, 10),
    ]  # fmt: skip
    assert values["paper_table"] == {
        "C1": [6, 28, 156, 122_304],
        "S2": [6, 14, 12, 5_880],
        "C3": [16, 10, 1_516, 151_600],
        "S4": [16, 5, 32, 2_000],
        "C5": [120, 1, 48_120, 48_120],
        "F6": [84, 1, 10_164, 10_164],
        "OUTPUT": [10, 1, 0, 840],
    }
    package = {row.name: [row.maps, row.map_size, row.parameters, row.connections]
               for row in lenet5_1998_layers()}
    assert values["paper_table"] == package
    assert values["paper_parameters"] == 60_000
    assert values["paper_connections"] == 340_908
    assert values["output_layer_connections"] == 840
    assert values["conv_share_parameters"] < 0.05 < 0.85 < values["conv_share_multiply_adds"]
    # Every layer output but Flatten's view: 6x28x28 twice, 6x14x14, 16x10x10 twice, 16x5x5,
    # 120 twice, 84 twice and 10 numbers per image, 4 bytes each.
    per_image = 2 * 4704 + 1176 + 2 * 1600 + 400 + 2 * 120 + 2 * 84 + 10
    assert values["activation_bytes"] == 3 * 4 * per_image
    # What autograd keeps: the input, conv1's sigmoid, pool1, conv2's sigmoid, the flattened
    # pool2, and the two hidden sigmoids.
    assert values["autograd_saved_bytes"] == 3 * 4 * (784 + 4704 + 1176 + 1600 + 400 + 120 + 84)
