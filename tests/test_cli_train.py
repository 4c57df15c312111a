"""``python -m lenet_course train`` and ``evaluate``: end to end on a tiny subset; bad arguments."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lenet_course.cli import main

REPO = Path(__file__).resolve().parent.parent
TINY = ["--train-subset", "512", "--test-subset", "300", "--no-progress", "--threads", "1"]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_train_then_evaluate_end_to_end(real_data_root, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "v1", "--epochs", "3", "--batch-size", "64", "--out", str(out),
            "--root", str(real_data_root), "--device", "cpu", "--validation", "0.1", "--optimizer",
            "adam", "--lr", "0.003",
            *TINY]  # fmt: skip
    assert main(argv) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("fashion-mnist v1: test accuracy ")
    assert {p.name for p in out.iterdir()} == {"metrics.json", "history.csv", "checkpoint.pt"}

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "examples_per_second", "epochs", "device"):
        assert key in metrics
    assert metrics["epochs"] == 3 and metrics["device"] == "cpu"
    assert metrics["test_size"] == 300 and metrics["train_size"] == 512
    assert metrics["test_accuracy"] > 0.3  # chance is 0.1
    assert metrics["validation_accuracy"] is not None
    assert f"{metrics['test_accuracy']:.4f}" in summary[0]

    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(metrics["test_accuracy"])

    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--root",
                 str(real_data_root), "--test-subset", "300", "--threads", "1"]) == 0  # fmt: skip
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"fashion-mnist test accuracy {metrics['test_accuracy']:.4f} (300 ")
    assert f"the checkpoint recorded {metrics['test_accuracy']:.4f}" in line

    # --resume after the last epoch has nothing left to do; with more epochs and the same
    # schedule settings it is refused (the one-cycle schedule depends on the epoch count)
    assert main([*argv, "--resume"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        main([*argv[:4], "4", *argv[5:], "--resume"])
    assert caught.value.code == 2
    assert "cannot resume" in capsys.readouterr().err


def bad(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["--epochs", "0"], "--epochs: 0 must be >= 1"),
        (["--lr", "-0.1"], "--lr: -0.1 must be > 0.0"),
        (["--lr", "fast"], "'fast' is not a number"),
        (["--batch-size", "2.5"], "'2.5' is not a whole number"),
        (["--model", "alexnet"], "invalid choice: 'alexnet'"),
        (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
        (["--momentum", "1.5"], "--momentum: 1.5 must be >= 0.0 and < 1.0"),
        (["--validation", "1.5"], "--validation: 1.5 must be >= 0.0 and < 1.0"),
        (["--optimizer", "adam", "--momentum", "0.9"], "apply to sgd"),
        (["--model", "lenet5-1998", "--label-smoothing", "0.1"], "lenet5-1998"),
        (["--resume"], "--resume: no checkpoint at"),
    ],
)
def test_bad_train_arguments_exit_2_with_one_line(argv, reason, tmp_path, capsys):
    err = bad(["train", "--out", str(tmp_path / "none"), *argv], capsys)
    assert reason in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_exits_2(tmp_path, capsys):
    assert "CUDA is not available" in bad(["train", "--device", "cuda", "--out", str(tmp_path)],
                                          capsys)  # fmt: skip
    assert "CUDA" in bad(["train", "--cuda-graphs", "--device", "cpu", "--out", str(tmp_path)],
                         capsys)  # fmt: skip


def test_evaluate_a_missing_checkpoint_is_one_clear_line(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint at" in err[0]


def test_the_clis_choices_are_the_models():
    from lenet_course import cli, models

    assert cli.MODEL_NAMES == models.MODEL_NAMES
    assert (cli.ACTIVATIONS, cli.POOLINGS) == (models.ACTIVATIONS, models.POOLINGS)


def test_the_module_entry_point_lists_train_and_evaluate():
    result = subprocess.run(
        [sys.executable, "-m", "lenet_course", "train", "--help"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 0
    for flag in ("--dataset", "--model", "--epochs", "--lr", "--batch-size", "--optimizer",
                 "--device", "--seed", "--out", "--resume", "--threads", "--schedule"):  # fmt: skip
        assert flag in result.stdout
