"""Notebook 01 (what a convolution computes) run with other images, seed and sizes: it compares its
hand-written cross-correlation, im2col, sparse matrix and gradients with PyTorch on random
configurations and records the largest differences, so a run with another seed checks them on
other configurations."""

from __future__ import annotations

import pytest

from lenet_course.counting import conv2d_multiply_adds, conv2d_parameters, linear_parameters


@pytest.mark.slow
def test_notebook_01_with_another_seed(run_notebook, real_data_root) -> None:  # type: ignore[no-untyped-def]
    values = run_notebook("01_what_a_convolution_computes.ipynb", seed=1, image_index=3,
                          digit_index=5, random_checks=40, learning_steps=100)
    assert values["random_checks"] == 40 and values["learning_steps"] == 100
    assert values["first_output"] == 0 * 0 + 1 * 1 + 3 * 2 + 4 * 3
    assert values["dense_parameters"] == 784 * 4704 + 4704 == linear_parameters(784, 4704)
    assert values["c1_parameters"] == 6 * 26 == conv2d_parameters(1, 6, 5)
    assert values["c1_multiply_adds"] == 6 * 25 * 784 == conv2d_multiply_adds(1, 6, 5, 28)

    # The hand-written versions equal PyTorch's up to float32 rounding (a few 1e-6 here; a bug
    # gives differences of order 1).
    assert values["corr2d_difference"] < 1e-4  # corr2d_general, stride, padding and dilation
    assert values["c3_difference"] < 1e-3  # several channels in and out, 150 products per output
    assert values["unfold_difference"] < 1e-3  # im2col and one matrix product
    # the convolution as a sparse matrix W, and W.T as F.conv_transpose2d (4x4 input, 2x2 kernel)
    assert values["matrix_difference"] < 1e-4 and values["transpose_difference"] < 1e-4
    # C1's matrix holds 0 and the 150 weights; its non-zeros are the (output, tap) pairs inside the
    # 28x28 image: per axis 28 outputs x 5 taps, less the 2 + 1 taps of the first two outputs and
    # the 2 + 1 of the last two that fall on the padding; 6 kernels
    assert values["c1_matrix_nonzero"] == 6 * (28 * 5 - 2 * (2 + 1)) ** 2 == 107_736
    assert values["c1_matrix_values"] == 6 * 25 + 1
    assert max(values["gradient_differences"].values()) < 1e-3  # both gradients, batches, channels

    # pooling makes the output less sensitive to a 1-pixel shift, one stage after another
    changes = values["pooling_changes"]
    stages = ("edge map (ReLU)", "after one 2x2 max pool", "after two 2x2 max pools")
    assert sorted(changes) == sorted(stages)
    assert changes[stages[0]] > changes[stages[1]] > changes[stages[2]] > 0

    # The learning rates of section 6: plain descent's 0.5 just below its limit 2 / lambda_max,
    # momentum's 1.0 above that limit but below heavy-ball's 2 (1 + 0.9) / lambda_max; and the
    # edge kernel lies along a flat direction, the blur along the steepest.
    assert 0.5 < values["plain_lr_limit"] < 1.0 < values["momentum_lr_limit"]
    assert values["momentum_lr_limit"] == pytest.approx(1.9 * values["plain_lr_limit"])
    assert values["edge_curvature"] < values["blur_curvature"] / 10
    # After 100 steps momentum is already far closer to the kernel than plain descent (at the
    # default 200 steps, tests/claims.py holds the notebook's claims).
    assert values["kernel_error"] < values["plain_kernel_error"] / 10
