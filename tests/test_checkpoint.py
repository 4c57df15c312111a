"""lenet_course.checkpoint: the contract of a checkpoint, atomic writes, safe and clear loading."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from lenet_course import checkpoint as checkpoint_module
from lenet_course.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    History,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    save_run_files,
)
from lenet_course.config import TrainConfig
from lenet_course.data import load_dataset
from lenet_course.models import build_model
from lenet_course.train import fit, seed_everything

QUIET = TrainConfig(progress=False, device="cpu", threads=1)
#: What save_checkpoint needs besides the model, for a model saved outside fit.
COMMON = dict(history=[{"epoch": 1}], class_names=["a"], dataset=None,
              normalization={"kind": "paper"}, train_config={})


@pytest.fixture(scope="module")
def tiny(real_data_root):
    return load_dataset("fashion-mnist", "train", root=real_data_root).subset(slice(0, 512))


def small_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def weights_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_contents_follow_the_contract(tiny, tmp_path):
    path = tmp_path / "checkpoint.pt"
    seed_everything(0)
    model = build_model("v1")
    fit(model, tiny, QUIET.replace(epochs=1, momentum=0.9), checkpoint=path)
    raw = torch.load(path, weights_only=True)  # safe load works
    assert raw["format"] == CHECKPOINT_FORMAT
    assert raw["model"] == model.config
    assert raw["epoch"] == 1 and len(raw["history"]) == 1
    assert raw["dataset"] == "fashion-mnist"
    assert raw["class_names"][0] == "T-shirt/top"
    assert raw["normalization"]["kind"] == "standardize" and raw["normalization"]["std"] > 0
    assert raw["train_config"]["momentum"] == 0.9
    assert raw["optimizer"]["state"]  # momentum buffers saved
    assert all(t.device.type == "cpu" for t in raw["state_dict"].values())
    rebuilt = model_from_checkpoint(path)
    assert not rebuilt.training and weights_equal(rebuilt.cpu(), model.cpu())
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(rebuilt(x), model(x))  # model is channels-last: not bitwise
    # a user's model without config: saved, but not rebuildable by name
    save_checkpoint(tmp_path / "mlp.pt", small_mlp(), **COMMON)
    with pytest.raises(CheckpointError, match="not one of the course's"):
        model_from_checkpoint(tmp_path / "mlp.pt")


def test_a_failed_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    model = build_model("v1")
    save_checkpoint(path, model, **COMMON)
    before = path.read_bytes()

    real_save = torch.save

    def save_half_then_fail(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        file.truncate(100)  # a partial file ...
        raise OSError(28, "No space left on device")  # ... and then the disk is full

    monkeypatch.setattr(checkpoint_module.torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, model, **{**COMMON, "history": [{"epoch": 1}, {"epoch": 2}]})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temp file left


def test_load_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)

    good = tmp_path / "good.pt"
    save_checkpoint(good, build_model("v1"), **COMMON)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)

    pickled = tmp_path / "whole_model.pt"
    torch.save(build_model("v1"), pickled)  # the unsafe habit of many tutorials
    with pytest.raises(CheckpointError, match=r"torch.save\(model\)"):
        load_checkpoint(pickled)

    other = tmp_path / "state_dict.pt"
    torch.save(build_model("v1").state_dict(), other)
    with pytest.raises(CheckpointError, match="not a lenet_course checkpoint"):
        load_checkpoint(other)

    incomplete = tmp_path / "incomplete.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": None}, incomplete)
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(incomplete)


def test_wrong_architecture_names_the_layer_and_both_shapes(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, build_model("v1", num_classes=10), **COMMON)
    state = load_checkpoint(path)
    state["model"] = {**state["model"], "num_classes": 5}
    with pytest.raises(CheckpointError, match=r"fc3.weight is 10x84 in the checkpoint but 5x84"):
        model_from_checkpoint(state)
    state["model"] = {"name": "lenet5-1998"}
    with pytest.raises(CheckpointError, match="no weights for layer c1.weight"):
        model_from_checkpoint(state)
    state["model"] = {"name": "v9"}
    with pytest.raises(CheckpointError, match="cannot build"):
        model_from_checkpoint(state)


def test_nan_or_infinite_weights_are_refused_on_load(tmp_path):
    for bad in (float("nan"), float("inf")):
        model = build_model("v1")
        with torch.no_grad():
            model.fc2.bias[3] = bad
        save_checkpoint(tmp_path / "diverged.pt", model, **COMMON)
        with pytest.raises(CheckpointError, match=r"NaN or infinite weights \(fc2.bias\).*lower "
                                                  "learning rate"):
            load_checkpoint(tmp_path / "diverged.pt")


def test_a_fifo_is_refused_before_it_is_opened(tmp_path):
    os.mkfifo(tmp_path / "checkpoint.pt")  # opening it would wait for a writer forever
    with pytest.raises(CheckpointError, match="is not a regular file"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_an_unreadable_checkpoint_says_so(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "checkpoint.pt", build_model("v1"), **COMMON)

    def refuse(*args, **kwargs):  # root reads anything: the refusal is simulated
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoint_module.torch, "load", refuse)
    with pytest.raises(CheckpointError, match="cannot read .*Permission denied.*permissions"):
        load_checkpoint(tmp_path / "checkpoint.pt")


@pytest.mark.parametrize("key, value", [
    ("state_dict", "weights"), ("state_dict", {"conv1.weight": [1.0]}), ("history", 5),
    ("history", [1, 2]), ("class_names", "abc"), ("class_names", [0, 1]), ("train_config", "x"),
    ("normalization", {"kind": "standardize"}), ("normalization", {"kind": "mystery"}),
    ("normalization", {"kind": "standardize", "mean": 0.3, "std": float("nan")}),
    ("normalization", {"kind": "standardize", "mean": 0.3, "std": 0.0}), ("model", 5),
])
def test_damaged_entries_are_refused_with_their_name(key, value, tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, build_model("v1"), **COMMON)
    state = torch.load(path, weights_only=True)
    state[key] = value
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=f"is damaged: its '{key}' is .*; train again"):
        load_checkpoint(path)


def test_run_files_are_written_atomically(tmp_path, monkeypatch):
    history = History([{"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8,
                        "validation_accuracy": None, "test_accuracy": 0.7, "lr": 0.1,
                        "seconds": 1.0, "examples_per_second": 100.0}], {"device": "cpu"})
    save_run_files(tmp_path, build_model("v1"), history, dataset="mnist", test_size=10)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert json.loads(before["metrics.json"])["test_accuracy"] == 0.7

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.os, "fsync", full_disk)
    history.epochs[0]["test_accuracy"] = 0.9
    with pytest.raises(OSError, match="No space left"):
        save_run_files(tmp_path, build_model("v1"), history, dataset="mnist", test_size=10)
    with pytest.raises(OSError, match="No space left"):
        history.to_csv(tmp_path / "history.csv")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp file left
