"""The command line's frame: help, the ``data`` subcommand and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lenet_course.cli import main

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lenet_course", *args],
        capture_output=True, text=True, cwd=REPO, env=env, check=False,
    )  # fmt: skip


def test_help_lists_the_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "usage: python -m lenet_course" in result.stdout
    assert "data" in result.stdout


def test_unknown_subcommand_exits_2_with_one_line():
    result = run_cli("fly")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'fly'" in result.stderr


def test_no_subcommand_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_data_reports_ready_for_the_real_data(real_data_root, capsys):
    assert main(["data", "--root", str(real_data_root), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist: ready" in out and "mnist: ready" in out


def test_data_names_missing_files_and_the_fix(tmp_path, capsys):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert main(["data", "--dataset", "mnist", "--root", str(tmp_path), "--no-download"]) == 1
    err = capsys.readouterr().err
    assert "3 of 4 files missing" in err
    assert str(tmp_path / "MNIST" / "raw") in err
    assert "train-labels-idx1-ubyte" in err and "t10k-images-idx3-ubyte" in err
    assert "LENET_COURSE_DATA" in err


def test_data_rejects_an_unknown_dataset_with_exit_2():
    result = run_cli("data", "--dataset", "cifar10")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "invalid choice: 'cifar10'" in result.stderr
