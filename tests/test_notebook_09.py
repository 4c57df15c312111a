"""Notebook 09 (beyond one device) runs short with other parameters and proves what it claims."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_notebook_09_short(run_notebook, real_data_root) -> None:
    values = run_notebook("09_beyond_one_device.ipynb", train_subset=512, epochs=1,
                          bench_images=2048, seed=1)
    assert values["gradient_difference"] < 1e-6  # the whole batch = the mean of its halves
    assert values["weight_difference"] <= 1e-5  # 2 ranks of 64 = 1 process of 128
    assert values["world_sizes"] == [2, 1]
    reported = values["reported_accuracy"]
    assert reported["ddp"] == reported["one"]
    assert values["evaluated_accuracy"] == round(reported["ddp"], 4)  # the checkpoint, alone
    rows = values["bench"]
    assert [(r["processes"], r["threads"], r["device"]) for r in rows[:3]] == [
        (1, 1, "cpu"), (1, 2, "cpu"), (2, 1, "cpu")]
    assert all(r["parameters"] == 61_706 and r["global_batch"] == 256 for r in rows)
    assert rows[2]["allreduce_ms"] > 0
