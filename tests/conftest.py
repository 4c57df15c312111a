"""Shared fixtures: the real data root, and papermill runs of the notebooks."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

if (os.cpu_count() or 1) <= 2:  # the notebooks' kernels run beside this process: one thread each
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The data root with the real Fashion-MNIST and MNIST files (skip-free: CI must have them)."""
    from lenet_course.data import data_root, missing_files

    root = data_root()
    missing = {name: missing_files(name, root) for name in ("fashion-mnist", "mnist")}
    if any(missing.values()):
        pytest.fail(
            f"the real data sets are not under {root}: missing {missing}. "
            "Set LENET_COURSE_DATA (e.g. to ../shared/data) or run `python -m lenet_course data`."
        )
    return root


@pytest.fixture
def run_notebook(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Run ``notebooks/<name>`` with papermill and the given parameters; return what it recorded.

    The executed copy is kept under ``test-artifacts/papermill/`` for inspection after a failure.
    """
    import papermill

    from lenet_course.notebook import recorded_values

    def run(name: str, **parameters: Any) -> dict[str, Any]:
        source = NOTEBOOKS / name
        artifacts = REPO / "test-artifacts" / "papermill"
        artifacts.mkdir(parents=True, exist_ok=True)
        output = artifacts / name
        workdir = tmp_path / "notebooks"  # so what a notebook writes to ../runs lands in tmp_path
        workdir.mkdir(exist_ok=True)
        if not (workdir / "quizzes").exists():
            (workdir / "quizzes").symlink_to(NOTEBOOKS / "quizzes")
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(workdir),
            progress_bar=False,
            request_save_on_cell_execute=False,
            execution_timeout=900,  # per cell; the longest take about 2 minutes: a hang
        )
        return recorded_values(json.loads(output.read_text()))

    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return run
