"""Notebook 01 (what a convolution computes) run with other images, seed and sizes: its hand-written
cross-correlation, im2col and gradients are checked inside it on random configurations, so a run
with another seed checks them on other configurations."""

from __future__ import annotations

from lenet_course.counting import conv2d_multiply_adds, conv2d_parameters, linear_parameters


def test_notebook_01_with_another_seed(run_notebook, real_data_root) -> None:  # type: ignore[no-untyped-def]
    values = run_notebook("01_what_a_convolution_computes.ipynb", seed=1, image_index=3,
                          digit_index=5, random_checks=40, learning_steps=200)
    assert values["random_checks"] == 40
    assert values["first_output"] == 0 * 0 + 1 * 1 + 3 * 2 + 4 * 3
    assert values["dense_parameters"] == 784 * 4704 + 4704 == linear_parameters(784, 4704)
    assert values["c1_parameters"] == 6 * 26 == conv2d_parameters(1, 6, 5)
    assert values["c1_multiply_adds"] == 6 * 25 * 784 == conv2d_multiply_adds(1, 6, 5, 28)
    # pooling makes the output less sensitive to a 1-pixel shift, one stage after another
    changes = values["pooling_changes"]
    stages = ("edge map (ReLU)", "after one 2x2 max pool", "after two 2x2 max pools")
    assert sorted(changes) == sorted(stages)
    assert changes[stages[0]] > changes[stages[1]] > changes[stages[2]] > 0
    # gradient descent with momentum recovers the kernel; plain descent is still far from it
    assert values["kernel_error"] < 1e-3 < values["plain_kernel_error"]
