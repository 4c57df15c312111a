"""Notebook 06 (training, fast) runs short with other parameters and proves what it claims."""

from __future__ import annotations

import pytest

from lenet_course.checkpoint import load_checkpoint, model_from_checkpoint


@pytest.mark.slow
def test_notebook_06_short(run_notebook, real_data_root, tmp_path) -> None:
    checkpoint_dir = tmp_path / "06_modern"  # never overwrite the real run in runs/06_modern
    values = run_notebook(
        "06_training_on_gpu.ipynb",
        loop_images=2560,
        train_size=10000,
        classic_epochs=1,
        modern_epochs=3,
        min_modern_accuracy=0.5,
        compare_epochs=1,
        checkpoint_dir=str(checkpoint_dir),
        seed=1,
    )
    assert values["train_size"] == 10000  # the parameters reached the notebook
    assert values["modern_epochs"] == 3
    assert values["modern_test_accuracy"] >= 0.5  # chance is 0.1; 10,000 images, 3 epochs
    assert 0.0 <= values["classic_test_accuracy"] <= 1.0
    # speeds are measured and recorded, never asserted here (benchmarks/ measure them on demand)
    assert all(values[k] > 0 for k in ("textbook_rate", "fast_loop_rate", "fit_rate"))
    assert values["compare_epochs"] == 1
    assert values["d2l_ratio"] == pytest.approx(values["our_rate"] / values["d2l_rate"])
    # the checkpoint that notebook 07 would load
    assert values["checkpoint_epoch"] == 3
    assert values["checkpoint_model"]["pooling"] == "max"
    saved = load_checkpoint(checkpoint_dir / "checkpoint.pt")
    assert saved["history"][-1]["test_accuracy"] == pytest.approx(values["modern_test_accuracy"])
    assert not model_from_checkpoint(saved).training
