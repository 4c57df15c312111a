"""Bad inputs at the command line: each exits with its status and ONE line on stderr that names the
problem and the fix, and no file of an earlier run in the folder changes (bytes and mtimes)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import outcome, refused
from PIL import Image

from lenet_course import cli
from lenet_course import train as train_module
from lenet_course.checkpoint import load_checkpoint
from lenet_course.cli import main

TINY = ["--train-subset", "256", "--test-subset", "200", "--epochs", "1", "--threads", "1",
        "--no-progress"]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def finished(real_data_root, tmp_path_factory) -> Path:
    """A finished one-epoch run on 256 Fashion-MNIST images: every case starts from a copy."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *TINY, "--root", str(real_data_root), "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(finished, tmp_path, capsys) -> Path:
    shutil.copytree(finished, tmp_path / "run")  # copy2: the mtimes too
    capsys.readouterr()
    return tmp_path / "run"


def files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every regular file in ``folder``: its bytes and its modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())
            if p.is_file()} if folder.is_dir() else {}


def edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    """A setup that rewrites the run's checkpoint with ``change`` applied to its dict."""

    def setup(run: Path) -> None:
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        change(state)
        torch.save(state, run / "checkpoint.pt")

    return setup


def nan_weight(state: dict) -> None:
    state["state_dict"]["conv1.weight"][0, 0, 0, 0] = float("nan")


def fifo(name: str) -> Callable[[Path], None]:
    def setup(run: Path) -> None:
        (run / name).unlink(missing_ok=True)
        os.mkfifo(run / name)  # would block a reader forever

    return setup


def image(run: Path) -> None:
    Image.new("L", (28, 28), 0).save(run / "shoe.png")


#: (argv after the subcommand, setup of the run folder, exit status, what the line must say).
#: {run} is a finished run's folder, {new} a folder that does not exist yet.
CASES = {
    # the run folder: never destroyed, never mixed
    "train into a finished run's folder": (
        ["train", "--out", "{run}"], None, 2,
        ["already holds a run", "checkpoint.pt", "--resume", "--overwrite", "another --out"]),
    "--resume and --overwrite together": (
        ["train", "--out", "{run}", "--resume", "--overwrite"], None, 2,
        ["--overwrite: not allowed with argument --resume"]),
    "--resume without a checkpoint": (
        ["train", "--out", "{new}", "--resume"], None, 2, ["--resume: no checkpoint at"]),
    "--out held by a live run's lock": (
        ["train", "--out", "{run}", "--overwrite"],
        lambda run: (run / ".lock").write_text(str(os.getpid())), 1,
        ["is in use by another run", "wait", "another --out"]),
    "--out is a file": (
        ["train", "--out", "{run}/metrics.json"], None, 2,
        ["metrics.json is not a folder", "pass a folder"]),
    "--out is inside a file": (
        ["train", "--out", "{run}/metrics.json/sub"], None, 2,
        ["metrics.json is not a folder", "pass a folder"]),
    # numbers out of range or not finite
    "--seed 99999999999999999999": (
        ["train", "--out", "{new}", "--seed", "99999999999999999999"], None, 2,
        ["--seed: 99999999999999999999 must be >= 0 and < 9223372036854775808"]),
    "--seed -1": (["train", "--out", "{new}", "--seed", "-1"], None, 2,
                  ["--seed: -1 must be >= 0"]),
    "--lr 1e300": (["train", "--out", "{new}", "--lr", "1e300"], None, 2,
                   ["lr=1e+300", "use 0 < lr <= 1e15"]),
    "--lr inf": (["train", "--out", "{new}", "--lr", "inf"], None, 2,
                 ["--lr: inf is not a finite number"]),
    "--lr nan": (["train", "--out", "{new}", "--lr", "nan"], None, 2,
                 ["--lr: nan is not a finite number"]),
    "--weight-decay inf": (["train", "--out", "{new}", "--weight-decay", "inf"], None, 2,
                           ["--weight-decay: inf is not a finite number"]),
    "--momentum nan": (["train", "--out", "{new}", "--momentum", "nan"], None, 2,
                       ["--momentum: nan is not a finite number"]),
    "--batch-size 99999999999999999999": (
        ["train", "--out", "{new}", "--batch-size", "99999999999999999999"], None, 2,
        ["--batch-size: 99999999999999999999 must be >= 1 and < 9223372036854775808"]),
    "--threads 100000": (["train", "--out", "{new}", "--threads", "100000"], None, 2,
                         ["--threads: 100000 must be >= 1 and < 1025"]),
    "--validation 70000, more than the data": (
        ["train", "--out", "{new}", "--validation", "70000"], None, 2,
        ["validation=70000 examples out of 60000", "use 0 <= validation < 60000"]),
    # a resumed run is the same run
    "--resume --dataset mnist": (
        ["train", "--out", "{run}", "--resume", "--dataset", "mnist"], None, 2,
        ["cannot resume", "dataset='fashion-mnist'", "dataset='mnist'", "use the same --dataset"]),
    "--resume --train-subset 128": (
        ["train", "--out", "{run}", "--resume", "--train-subset", "128"], None, 2,
        ["cannot resume", "train_size=256", "train_size=128", "use the same --train-subset"]),
    "--resume --validation 0.1": (
        ["train", "--out", "{run}", "--resume", "--validation", "0.1"], None, 2,
        ["cannot resume", "validation_size=0", "use the same --validation"]),
    "--resume --model v2": (
        ["train", "--out", "{run}", "--resume", "--model", "v2"], None, 2,
        ["cannot resume", "'name': 'v1'", "'name': 'v2'", "--model"]),
    "--resume --activation sigmoid": (
        ["train", "--out", "{run}", "--resume", "--activation", "sigmoid"], None, 2,
        ["cannot resume", "'activation': 'relu'", "'activation': 'sigmoid'", "--activation"]),
    "--resume --seed 1": (
        ["train", "--out", "{run}", "--resume", "--seed", "1"], None, 2,
        ["cannot resume", "seed=0", "seed=1", "use the same --seed"]),
    "--resume --epochs 2 (the one-cycle schedule depends on it)": (
        ["train", "--out", "{run}", "--resume", "--epochs", "2"], None, 2,
        ["cannot resume", "epochs=1", "epochs=2", "use the same --epochs"]),
    # damaged or strange checkpoints
    "--resume, the checkpoint's settings damaged": (
        ["train", "--out", "{run}", "--resume"], edit(lambda s: s.update(train_config="x")), 1,
        ["is damaged", "'train_config'", "train again"]),
    "--resume, the checkpoint's generator state missing": (
        ["train", "--out", "{run}", "--resume"], edit(lambda s: s.pop("rng")), 1,
        ["is damaged", "cannot be restored", "start a new run"]),
    "--resume, NaN weights in the checkpoint": (
        ["train", "--out", "{run}", "--resume"], edit(nan_weight), 1,
        ["NaN or infinite weights", "conv1.weight", "lower learning rate"]),
    "--resume, checkpoint.pt is a FIFO": (
        ["train", "--out", "{run}", "--resume"], fifo("checkpoint.pt"), 1,
        ["not a regular file", "pass a checkpoint.pt"]),
    "evaluate --dataset mnist on a fashion-mnist checkpoint": (
        ["evaluate", "--checkpoint", "{run}/checkpoint.pt", "--dataset", "mnist"], None, 2,
        ["--dataset mnist", "trained on fashion-mnist", "leave out --dataset"]),
    "evaluate NaN weights": (
        ["evaluate", "--checkpoint", "{run}/checkpoint.pt"], edit(nan_weight), 1,
        ["NaN or infinite weights", "train again with a lower learning rate"]),
    "evaluate a damaged normalization": (
        ["evaluate", "--checkpoint", "{run}/checkpoint.pt"],
        edit(lambda s: s.update(normalization={"kind": "standardize"})), 1,
        ["is damaged", "'normalization'", "train again or use an intact copy"]),
    "evaluate a damaged history": (
        ["evaluate", "--checkpoint", "{run}/checkpoint.pt"], edit(lambda s: s.update(history=5)),
        1, ["is damaged", "'history'", "train again"]),
    "evaluate damaged weights": (
        ["evaluate", "--checkpoint", "{run}/checkpoint.pt"],
        edit(lambda s: s.update(state_dict={"conv1.weight": "x"})), 1,
        ["is damaged", "'state_dict'", "train again"]),
    "evaluate a FIFO": (["evaluate", "--checkpoint", "{run}/pipe"], fifo("pipe"), 1,
                        ["pipe is not a regular file", "pass a checkpoint.pt"]),
    "evaluate a folder": (["evaluate", "--checkpoint", "{run}"], None, 1,
                          ["is a folder", "pass the checkpoint.pt file inside it"]),
    "evaluate --seed 99999999999999999999": (
        ["evaluate", "--checkpoint", "{run}/checkpoint.pt", "--seed", "99999999999999999999"],
        None, 2, ["--seed: 99999999999999999999 must be >= 0"]),
    "predict with NaN weights": (
        ["predict", "--checkpoint", "{run}/checkpoint.pt", "{run}/shoe.png"],
        lambda run: (image(run), edit(nan_weight)(run)), 1, ["NaN or infinite weights"]),
    "predict from a FIFO": (["predict", "--checkpoint", "{run}/pipe", "{run}/shoe.png"],
                            lambda run: (image(run), fifo("pipe")(run)), 1,
                            ["not a regular file"]),
}


@pytest.mark.parametrize("argv, setup, code, needles", CASES.values(), ids=list(CASES))
def test_a_bad_input_is_one_line_and_changes_nothing(argv, setup, code, needles, run, tmp_path,
                                                     real_data_root, capsys):
    if setup is not None:
        setup(run)
    before = files(run)
    argv = [a.replace("{run}", str(run)).replace("{new}", str(tmp_path / "new")) for a in argv]
    root = ["--root", str(real_data_root)]
    quick = {"train": [*TINY, *root], "evaluate": ["--test-subset", "200", "--threads", "1", *root]}
    refused([argv[0], *quick.get(argv[0], []), *argv[1:]], capsys, code, needles)  # last wins
    assert files(run) == before
    assert not (tmp_path / "new" / ".lock").exists()


def test_bad_out_fails_at_once_even_when_it_is_not_writable(run, tmp_path, capsys, monkeypatch):
    """Root may write anywhere: a folder that cannot be written is simulated."""
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    start = time.perf_counter()
    refused(["train", "--out", str(tmp_path / "new"), *TINY], capsys, 2,
            ["cannot be written", "pass a folder you may write to"])
    assert time.perf_counter() - start < 1.0  # before any model, data or epoch
    assert not (tmp_path / "new").exists()


def interrupt_in_epoch(number: int, monkeypatch) -> None:
    """Ctrl-C at the end of epoch ``number`` (1-based), before its checkpoint is written."""
    real = train_module.end_epoch

    def end_epoch(run, epoch, *args):
        if epoch + 1 == number:
            raise KeyboardInterrupt
        return real(run, epoch, *args)

    monkeypatch.setattr(train_module, "end_epoch", end_epoch)


def test_a_failing_run_in_a_finished_runs_folder_is_refused(run, real_data_root, capsys,
                                                             monkeypatch):
    interrupt_in_epoch(2, monkeypatch)  # it would have replaced the checkpoint after epoch 1
    before = files(run)
    refused(["train", *TINY, "--epochs", "2", "--root", str(real_data_root), "--out", str(run)],
            capsys, 2, ["already holds a run"])
    assert files(run) == before


def test_ctrl_c_says_what_was_saved_and_the_run_resumes(real_data_root, tmp_path, capsys,
                                                        monkeypatch):
    out = tmp_path / "run"
    argv = ["train", *TINY, "--epochs", "2", "--root", str(real_data_root), "--out", str(out)]
    interrupt_in_epoch(2, monkeypatch)
    line = refused(argv, capsys, 130, [f"interrupted in epoch 2; the checkpoint in {out} holds "
                                       "epoch 1; continue with --resume"])
    assert not line.startswith("Traceback")
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1  # loadable, the last good epoch
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]  # no lock, no temp file
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


def test_overwrite_interrupted_in_its_first_epoch_leaves_no_file_of_the_old_run(
        run, real_data_root, capsys, monkeypatch):
    interrupt_in_epoch(1, monkeypatch)
    refused(["train", *TINY, "--root", str(real_data_root), "--out", str(run), "--overwrite"],
            capsys, 130, ["interrupted in epoch 1", "nothing was saved", "train again"])
    assert list(run.iterdir()) == []  # the old run went before the first epoch: never mixed


def test_a_diverging_run_is_one_line(real_data_root, tmp_path, capsys):
    refused(["train", *TINY, "--lr", "1e12", "--root", str(real_data_root), "--out",
             str(tmp_path / "new")], capsys, 1, ["training diverged", "Lower the learning rate"])
    assert list((tmp_path / "new").iterdir()) == []  # no checkpoint of a diverged epoch, no lock


def test_missing_tensorboard_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "find_spec", lambda name: None)
    refused(["train", *TINY, "--tensorboard", str(tmp_path / "tb"), "--out",
             str(tmp_path / "new")], capsys, 1, ["tensorboard package", "pip install tensorboard"])
    assert not (tmp_path / "new").exists() and not (tmp_path / "tb").exists()


def test_an_unreadable_checkpoint_is_one_line(run, real_data_root, capsys, monkeypatch):
    """Root reads anything: the refusal is simulated."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", refuse)
    refused(["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--root",
             str(real_data_root)], capsys, 1, ["cannot read", "Permission denied",
                                               "check its permissions"])


def test_predict_json_stays_json_when_probabilities_are_not_finite(run, capsys):
    """Huge but finite weights overflow to NaN probabilities: that file's error, valid JSON."""
    image(run)
    edit(lambda state: state["state_dict"]["fc3.weight"].fill_(3e38))(run)
    before = files(run)
    status, err, out = outcome(["predict", "--checkpoint", str(run / "checkpoint.pt"), "--json",
                                str(run / "shoe.png")], capsys)
    assert status == 1 and len(err) == 1 and "NaN or infinite probabilities" in err[0], err
    strict = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in --json output"))
    assert strict == [{"path": str(run / "shoe.png"), "error": err[0].removeprefix("error: ")}]
    assert files(run) == before
