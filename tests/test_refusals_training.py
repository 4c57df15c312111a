"""Issue 25 for training: a resumed run is the same run or is refused; the environment is input
too; TrainConfig, fit and evaluate check types instead of coercing them; batch normalisation never
meets a batch of one.  Every case names what is at fault and what is valid."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys

import pytest
import torch

from lenet_course import distributed
from lenet_course.cli import main
from lenet_course.config import RECIPES, RunContract, TrainConfig, env_number
from lenet_course.data import load_dataset
from lenet_course.models import build_model
from lenet_course.run_state import Batches
from lenet_course.train import evaluate, fit, seed_everything

QUIET = TrainConfig(progress=False, device="cpu", threads=1)


@pytest.fixture(scope="module")
def tiny(real_data_root):
    return load_dataset("fashion-mnist", "train", root=real_data_root).subset(slice(0, 300))


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --- 1. a resumed run is the same run, or it is refused ------------------------------------------

SAVED = {  # a run's recorded settings, as a checkpoint's train_config holds them
    **dataclasses.asdict(RECIPES["challenge"]), "batch_size": 64, "world_size": 2,
    "schedule": "onecycle", "channels_last": True, "dataset": "fashion-mnist",
    "model": {"name": "lenet-bn"}, "train_size": 60000, "validation_size": 0, "test_size": 100,
    "train_data": "crc32:00000001", "test_data": "crc32:00000002",
}  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"batch_size": 128, "world_size": 1}, None),  # 2 x 64 resumed as 1 x 128: the same run
        ({"batch_size": 32, "world_size": 4}, None),
        ({"batch_size": 64, "world_size": 1}, ["global_batch=128", "global_batch=64", "--batch"]),
        ({"batch_size": 128, "world_size": 2}, ["global_batch=128", "global_batch=256"]),
        ({"test_size": 2000}, ["test_size=100", "test_size=2000", "--test-subset"]),
        ({"test_flip": False}, ["test_flip=True", "test_flip=False", "--test-flip/--no-test-flip"]),
        ({"test_data": "crc32:00000003"}, ["the data changed", "--dataset/--test-subset/--seed"]),
        ({"train_data": "crc32:00000004"}, ["the data changed", "train_data='crc32:00000001'"]),
        ({"seed": 5}, ["seed=0", "seed=5", "use the same --seed"]),
        ({"epochs": 41}, ["epochs=40", "epochs=41", "--epochs"]),  # a schedule depends on them
        ({"schedule": None, "epochs": 41}, ["schedule='onecycle'", "schedule=None"]),
        ({"flip": False}, ["flip=True", "flip=False", "--flip"]),
        ({"model": {"name": "v1"}}, ["'name': 'lenet-bn'", "'name': 'v1'", "--model"]),
        ({"validation_size": 5000}, ["validation_size=0", "--validation"]),
        ({"dataset": "mnist"}, ["dataset='fashion-mnist'", "dataset='mnist'", "--dataset"]),
    ],
    ids=lambda value: str(value)[:40],
)
def test_resume_checks_everything_that_decides_the_run(changes, words):
    refusal = RunContract.of({**SAVED, **changes}).refusal(RunContract.of(SAVED))
    if words is None:
        assert refusal is None
    else:
        assert refusal.startswith("cannot resume") and all(w in refusal for w in words), refusal


def test_a_checkpoint_from_before_the_global_batch_resumes_by_its_batch_and_world_size():
    older = {k: v for k, v in SAVED.items() if k != "global_batch"}
    assert RunContract.of(older).global_batch == 128
    assert RunContract.of({**SAVED, "world_size": 1, "batch_size": 128}).refusal(
        RunContract.of(older)) is None  # fmt: skip


def test_fewer_epochs_than_the_checkpoint_holds_is_refused_in_one_line():
    contract = RunContract.of({**SAVED, "schedule": None})
    refusal = contract.refusal(contract, done=2, epochs=1)
    assert "holds 2 epochs, more than epochs=1 (--epochs)" in refusal
    assert "--epochs 2 or more" in refusal and contract.refusal(contract, 2, 2) is None


def test_the_cli_refuses_resuming_with_another_test_subset_or_fewer_epochs(
        real_data_root, tmp_path, capsys):  # fmt: skip
    out = tmp_path / "run"
    args = ["train", "--epochs", "2", "--train-subset", "256", "--test-subset", "100",
            "--batch-size", "64", "--no-progress", "--threads", "1", "--root", str(real_data_root),
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    for change, words in (
        (["--test-subset", "200"], ["test_size=100", "test_size=200", "--test-subset"]),
        (["--epochs", "1"], ["holds 2 epochs", "--epochs 2 or more"]),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*args, *change, "--resume"])
        line = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and "\n" not in line, line
        assert all(w in line for w in words), line


# --- 3. the environment is input too ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        ("WORLD_SIZE", "abc", "a whole number >= 1"),
        ("WORLD_SIZE", "0", "a whole number >= 1"),
        ("WORLD_SIZE", "2.5", "a whole number >= 1"),
        ("RANK", "-1", "a whole number >= 0"),
        ("RANK", "first", "a whole number >= 0"),
        ("LOCAL_RANK", "x", "a whole number >= 0"),
        ("TORCHELASTIC_RESTART_COUNT", "many", "a whole number >= 0"),
        ("LENET_COURSE_DDP_TIMEOUT", "abc", "a number >= 1"),
        ("LENET_COURSE_DDP_TIMEOUT", "nan", "a number >= 1"),
        ("LENET_COURSE_DDP_TIMEOUT", "inf", "a number >= 1"),
        ("LENET_COURSE_DDP_TIMEOUT", "0", "a number >= 1"),
    ],
)
def test_every_environment_variable_is_checked_where_it_is_read(monkeypatch, name, value, valid):
    monkeypatch.setenv(name, value)
    timeout = name == "LENET_COURSE_DDP_TIMEOUT"
    kind, low = (float, 1) if timeout else (int, int(name == "WORLD_SIZE"))
    with pytest.raises(ValueError) as error:
        env_number(name, 1, kind, low)
    assert f"environment variable {name}={value!r} is not {valid}" in str(error.value)


def test_importing_the_package_never_reads_a_bad_variable():
    env = {**os.environ, "LENET_COURSE_DDP_TIMEOUT": "abc", "WORLD_SIZE": "abc"}
    code = "import lenet_course.train, lenet_course.cli, lenet_course.distributed"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("name", "value"), [("WORLD_SIZE", "abc"), ("RANK", "-3")])
def test_the_cli_names_a_bad_variable_in_one_line_with_status_2(monkeypatch, capsys, tmp_path,
                                                                name, value):  # fmt: skip
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    line = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in line and f"{name}={value!r}" in line, line


def test_a_world_of_two_with_one_rank_says_so_instead_of_a_store_traceback(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0"),
                        ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(port)),
                        ("LENET_COURSE_DDP_TIMEOUT", "1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="WORLD_SIZE=2 processes should meet at 127.0.0.1") as e:
        distributed.start(torch.device("cpu"))
    assert "within 1 s (LENET_COURSE_DDP_TIMEOUT)" in str(e.value)
    assert "unset WORLD_SIZE" in str(e.value)


# --- 4. types are checked, not coerced ----------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"flip": "no"}, "flip='no'; use True or False"),
        ({"test_flip": "False"}, "test_flip='False'; use True or False"),
        ({"nesterov": 1}, "nesterov=1; use True or False"),
        ({"bf16": None}, "bf16=None; use True or False"),
        ({"progress": "yes"}, "progress='yes'; use True or False"),
        ({"compile": 0}, "compile=0; use True or False"),
        ({"cuda_graphs": "True"}, "cuda_graphs='True'; use True or False"),
        ({"momentum": "0.9"}, "momentum='0.9'; use 0 <= momentum < 1"),
        ({"label_smoothing": None}, "label_smoothing=None; use 0 <= label_smoothing < 1"),
        ({"lr": "0.1"}, "lr='0.1'; use 0 < lr <= 1e15"),
        ({"lr": True}, "lr=True; use 0 < lr <= 1e15"),
        ({"weight_decay": None}, "weight_decay=None"),
        ({"threads": "2"}, "threads='2'; use None or a whole number >= 1"),
        ({"threads": 0}, "threads=0; use None or a whole number >= 1"),
        ({"eval_batch_size": 0}, "eval_batch_size=0; use a whole number >= 1"),
        ({"eval_batch_size": 2.5}, "eval_batch_size=2.5"),
        ({"epochs": True}, "epochs=True; use a whole number >= 1"),
        ({"epochs": 2.0}, "epochs=2.0; use a whole number >= 1"),
        ({"batch_size": "64"}, "batch_size='64'"),
        ({"crop": 1.5}, "crop=1.5; use a whole number 0..8"),
        ({"seed": "0"}, "seed='0'; use 0 <= seed < 2**63"),
        ({"channels_last": "yes"}, "channels_last='yes'; use None, True or False"),
        ({"channels_last": 1}, "channels_last=1; use None, True or False"),
        ({"normalization": {"kind": "standardize"}}, "normalization={'kind': 'standardize'}"),
        ({"normalization": {"kind": "standardize", "mean": 0.0, "std": 1e-300}}, "'std': 1e-300"),
        ({"normalization": {"kind": "minmax"}}, "use None, {'kind': 'paper'}"),
        ({"normalization": "paper"}, "normalization='paper'"),
        ({"device": None}, "device=None; use 'auto', 'cpu' or 'cuda'"),
        ({"device": 0}, "device=0"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_train_config_refuses_what_it_would_coerce(changes, words):
    with pytest.raises(ValueError) as error:
        TrainConfig(**changes)
    assert words in str(error.value)


def test_fit_takes_a_recipe_by_name_and_refuses_anything_else(tiny):
    seed_everything(0)
    history = fit(build_model("v1"), tiny, "lenet5-1998")  # as RECIPES["lenet5-1998"]
    assert history.config["optimizer"] == "adam" and len(history) == 6
    with pytest.raises(TypeError, match="config='newest' is not a TrainConfig; pass Tra.*'modern'"):
        fit(build_model("v1"), tiny, "newest")
    with pytest.raises(TypeError, match="config=3 is not a TrainConfig"):
        fit(build_model("v1"), tiny, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"batch_size": 0}, ValueError, "batch_size=0; use a whole number >= 1"),
        ({"batch_size": "1000"}, ValueError, "batch_size='1000'"),
        ({"normalization": {"kind": "standardize", "mean": 0.1, "std": 1e-300}}, ValueError,
         "normalization="),
        ({"normalization": {"kind": "standardize", "mean": float("nan"), "std": 0.3}}, ValueError,
         "s in 1e-6..1"),
    ],
    ids=["batch-0", "batch-text", "tiny-std", "nan-mean"],
)
def test_evaluate_checks_its_arguments(tiny, kwargs, error, words):
    with pytest.raises(error) as caught:
        evaluate(build_model("v1"), tiny, **kwargs)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (lambda y: y.clone().fill_(12), "labels go up to 12, but LeNet5v1 has 10 outputs"),
        (lambda y: y - 1, "labels must be a tensor of whole numbers >= 0"),
        (lambda y: y.float(), "labels must be a tensor of whole numbers >= 0"),
    ],
    ids=["beyond-the-classes", "negative", "floats"],
)
def test_labels_the_model_cannot_score_are_refused_before_training(tiny, labels, words):
    with pytest.raises(ValueError) as error:
        fit(build_model("v1"), (tiny.images, labels(tiny.labels)), QUIET.replace(epochs=1))
    assert words in str(error.value)


def test_a_model_with_more_outputs_than_the_labels_need_trains(tiny):
    fit(build_model("v1", num_classes=12), tiny, QUIET.replace(epochs=1))


# --- 6. batch normalisation meets a batch of one ------------------------------------------------


def test_batch_normalisation_with_batches_of_one_is_refused_naming_the_batch_size(tiny):
    with pytest.raises(ValueError, match="batch_size=1: the batch normalisation of lenet-bn needs"):
        fit(build_model("lenet-bn"), tiny, QUIET.replace(batch_size=1, epochs=1))
    fit(build_model("v1"), tiny.subset(slice(0, 20)), QUIET.replace(batch_size=1, epochs=1))


@pytest.mark.parametrize("n", [257, 129, 3])
def test_a_last_batch_of_one_is_left_out_for_batch_normalisation(tiny, n):
    data = (tiny.images[:n].repeat(2, 1, 1)[:n], tiny.labels[:n].repeat(2)[:n])
    history = fit(build_model("lenet-bn"), data, QUIET.replace(batch_size=128 if n > 3 else 2,
                                                               epochs=1))  # fmt: skip
    assert history.last["train_loss"] == history.last["train_loss"]  # a number, not NaN


@pytest.mark.parametrize(
    ("n", "batch", "world", "least", "steps"),
    [
        (257, 128, 1, 2, 2),  # the last batch of one is left out
        (257, 128, 1, 1, 3),  # without batch normalisation it trains
        (258, 128, 1, 2, 3),
        (256 + 3, 64, 2, 2, 2),  # 2 ranks: the last 3 would give one rank one example
        (256 + 4, 64, 2, 2, 3),
        (256 + 1, 64, 2, 1, 2),  # fewer than the world size: left out as before
        (429 * 128 + 1, 128, 1, 2, 429),
    ],
)
def test_batches_leave_out_a_last_step_that_would_give_a_process_too_few(n, batch, world, least,
                                                                         steps):  # fmt: skip
    y = torch.zeros(n, dtype=torch.long)
    batches = Batches(y.float(), y, batch, seed=0, world=world, least=least)
    assert batches.steps == steps
    assert all(batches.local_sizes(rank).min() >= least for rank in range(world))


# --- 7. a diverging run names every setting that can cause it -----------------------------------


def test_a_run_diverging_under_a_large_weight_decay_names_it(tiny):
    from lenet_course.train import TrainingDivergedError

    seed_everything(0)
    with pytest.raises(TrainingDivergedError) as error:
        fit(build_model("v1"), tiny, QUIET.replace(epochs=3, lr=0.5, weight_decay=50.0))
    message = str(error.value)
    assert "Lower the learning rate" in message
    assert "or the weight decay (weight_decay=50, --weight-decay)" in message


# --- 4 (continued). the loaders and builders the notebooks call ---------------------------------


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: load_dataset(3), ValueError, "unknown data set 3; choose one of"),
        (lambda: load_dataset("imagenet"), ValueError, "unknown data set 'imagenet'"),
        (lambda: load_dataset("mnist", "val"), ValueError, "split='val'; use 'train' or 'test'"),
        (lambda: load_dataset("mnist", root=5), TypeError, "root=5 is not a folder's path"),
        (lambda: load_dataset("mnist", download="no"), ValueError, "download='no'; use True"),
        (lambda: build_model(3), ValueError, "unknown model 3; choose one of"),
        (lambda: build_model("v1", activation=3), ValueError, "activation=3 is unknown"),
        (lambda: build_model("v1", num_classes="10"), ValueError, "num_classes='10' must be"),
        (lambda: build_model("v1", num_classes=0), ValueError, "num_classes=0 must be"),
        (lambda: build_model("lenet-bn", widths="abc"), ValueError, "widths='abc'; give 4"),
        (lambda: build_model("v1", input_size="28"), ValueError, "input_size='28' is not"),
        (lambda: build_model("v1", colour=True), ValueError, "colour"),
    ],
    ids=lambda value: "" if callable(value) else str(value)[:30],
)
def test_loaders_and_builders_check_their_arguments(real_data_root, monkeypatch, call, error,
                                                    words):  # fmt: skip
    monkeypatch.setenv("LENET_COURSE_DATA", str(real_data_root))
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value)


# --- 2. a notebook's stop button ----------------------------------------------------------------


def test_the_stop_button_keeps_what_was_trained_and_says_what_was_saved(tiny, tmp_path, capsys,
                                                                        monkeypatch):  # fmt: skip
    from lenet_course import train as train_module
    from lenet_course.checkpoint import load_checkpoint

    real = train_module.end_epoch

    def end_epoch(run, epoch, *args):
        if epoch == 1:
            raise KeyboardInterrupt  # the kernel's stop button, in epoch 2
        return real(run, epoch, *args)

    monkeypatch.setattr(train_module, "end_epoch", end_epoch)
    monkeypatch.setattr(train_module, "in_notebook", lambda: True)
    path = tmp_path / "checkpoint.pt"
    model = build_model("v1")
    history = fit(model, tiny, QUIET.replace(epochs=3), checkpoint=path)
    line = capsys.readouterr().err.strip()
    assert line == (f"interrupted in epoch 2: the model and the history hold 1 finished epoch; "
                    f"{path} holds epoch 1 (resume=True continues)")  # fmt: skip
    assert len(history) == 1 and not model.training and load_checkpoint(path)["epoch"] == 1
    assert evaluate(model, tiny) > 0  # usable
    monkeypatch.setattr(train_module, "in_notebook", lambda: False)  # a script: Ctrl-C goes on up
    with pytest.raises(KeyboardInterrupt):
        fit(build_model("v1"), tiny, QUIET.replace(epochs=3))


def test_a_plain_python_process_is_not_a_notebook():
    from lenet_course.notebook import in_notebook

    assert in_notebook() is False


def test_ctrl_c_while_the_command_line_starts_is_one_line():
    """Ctrl-C while torch is imported (the first seconds of ``python -m lenet_course``)."""
    code = (
        "import builtins, runpy\n"
        "real = builtins.__import__\n"
        "def stopped(name, *args, **kwargs):\n"
        "    if name == 'torch':\n"
        "        raise KeyboardInterrupt  # as a Ctrl-C in the middle of the import\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = stopped\n"
        "runpy.run_module('lenet_course', run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 130, result.stderr
    assert result.stderr == "interrupted while starting; nothing was done\n", result.stderr
