"""What a training run leaves: its :class:`History`, checkpoints and run folders, written safely.

A checkpoint is a plain dict of tensors, numbers and strings (:data:`CHECKPOINT_KEYS`, and
``rng`` so that a resumed run continues exactly), written atomically and read back with
``torch.load(weights_only=True)``, which never runs code from the file.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lenet_course.models import build_model

CHECKPOINT_FORMAT = "lenet_course.checkpoint/1"
CHECKPOINT_KEYS = (
    "format", "model", "state_dict", "optimizer", "epoch", "history", "class_names",
    "dataset", "normalization", "train_config",
)
PathLike = str | os.PathLike[str]


HISTORY_COLUMNS = (
    "epoch", "train_loss", "train_accuracy", "validation_accuracy", "test_accuracy", "lr",
    "seconds", "examples_per_second",
)


@dataclass
class History:
    """What :func:`fit` measured: one dict per epoch (keys :data:`HISTORY_COLUMNS`; a set that
    was not given has ``None``), and ``config``, the run's settings as the checkpoint keeps them.
    ``seconds`` is the whole epoch's wall clock, evaluation included."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.epochs[index]

    def column(self, key: str) -> list[Any]:
        """One value per epoch, e.g. ``history.column("test_accuracy")``."""
        if key not in HISTORY_COLUMNS:
            raise KeyError(f"{key!r} is not recorded; the columns are {HISTORY_COLUMNS}")
        return [record[key] for record in self.epochs]

    @property
    def last(self) -> dict[str, Any]:
        if not self.epochs:
            raise IndexError("the history is empty: no epoch has been trained")
        return self.epochs[-1]

    @property
    def seconds(self) -> float:
        return sum(record["seconds"] for record in self.epochs)

    @property
    def examples_per_second(self) -> float:
        """Training examples per wall-clock second over the whole run (evaluation included)."""
        examples = sum(r["examples_per_second"] * r["seconds"] for r in self.epochs)
        return examples / self.seconds if self.epochs else 0.0

    def to_csv(self, path: PathLike) -> None:
        """One row per epoch; an empty cell where a set was not evaluated."""
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=HISTORY_COLUMNS)
            writer.writeheader()
            for record in self.epochs:
                writer.writerow({k: "" if v is None else v for k, v in record.items()})

    def __repr__(self) -> str:
        if not self.epochs:
            return "History(no epochs)"
        last, test = self.last, self.last["test_accuracy"]
        shown = f", test accuracy {test:.4f}" if test is not None else ""
        return (f"History({len(self)} epochs: train loss {last['train_loss']:.4f}, train accuracy "
                f"{last['train_accuracy']:.4f}{shown}, {self.seconds:.1f} s)")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, not a course checkpoint, or does not fit the model."""


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` into a temporary file beside ``path``, then rename it into place.

    A crash or a full disk during the write leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def save_checkpoint(path: PathLike, model: nn.Module, *, history: Sequence[Mapping[str, Any]],
                    class_names: Sequence[str], dataset: str | None,
                    normalization: Mapping[str, Any], train_config: Mapping[str, Any],
                    optimizer: torch.optim.Optimizer | None = None) -> None:
    """Write the state after ``len(history)`` epochs; ``model.config`` says how to rebuild it."""
    config = getattr(model, "config", None)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": dict(config) if config is not None else None,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": len(history),
        "history": [dict(record) for record in history],
        "class_names": [str(name) for name in class_names],
        "dataset": dataset,
        "normalization": dict(normalization),
        "train_config": dict(train_config),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        },
    }
    atomic_save(state, path)


def _read(path: Path) -> Any:
    """``torch.load(weights_only=True)``, with the reason for a failure in one line."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = " ".join(str(error).split())
        if "weights only load failed" in reason.lower():
            raise CheckpointError(
                f"{path} holds pickled Python objects, which a safe (weights_only) load refuses "
                "to run; it was probably written with torch.save(model). Save a state_dict "
                "instead (lenet_course.checkpoint.save_checkpoint)."
            ) from error
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): "
            f"{type(error).__name__}: {reason[:200]}"
        ) from error


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a checkpoint safely; :class:`CheckpointError` says what is wrong with a bad one."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; pass the checkpoint.pt file inside it")
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; train one with `python -m lenet_course train --out DIR`, "
            "which writes DIR/checkpoint.pt"
        )
    state = _read(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path} is not a lenet_course checkpoint: format {found!r}, expected "
            f"{CHECKPOINT_FORMAT!r}"
        )
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} is an incomplete checkpoint: it lacks {missing}")
    return state


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) if tensor.dim() else "a scalar"


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` naming the first layer whose weights do not fit ``model``."""
    name = getattr(model, "config", {}).get("name", type(model).__name__)
    expected = model.state_dict()
    problems = [
        f"it has no weights for layer {key} ({_shape(tensor)})" if key not in state_dict else
        f"layer {key} is {_shape(state_dict[key])} in the checkpoint but {_shape(tensor)} in the "
        "model" for key, tensor in expected.items()
        if key not in state_dict or state_dict[key].shape != tensor.shape
    ] + [f"it has layer {key} ({_shape(tensor)}) that the model lacks"
         for key, tensor in state_dict.items() if key not in expected]
    if problems:
        raise CheckpointError(f"the checkpoint does not fit model {name!r}: {problems[0]}")


def model_from_checkpoint(checkpoint: PathLike | Mapping[str, Any]) -> nn.Module:
    """Rebuild the course model stored in ``checkpoint`` (a path or a loaded dict), in eval mode."""
    state = checkpoint if isinstance(checkpoint, Mapping) else load_checkpoint(checkpoint)
    config = state.get("model")
    if not config:
        raise CheckpointError(
            "the checkpoint holds the weights of a model that is not one of the course's (it has "
            "no model config); build that model yourself and call "
            "model.load_state_dict(checkpoint['state_dict'])"
        )
    try:
        model = build_model(**config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"cannot build the checkpoint's model {config}: {error}") from error
    check_state_dict(model, state["state_dict"])
    model.load_state_dict(state["state_dict"])
    return model.eval()


def save_run_files(out: PathLike, model: nn.Module, history: History, *, dataset: str | None,
                   test_size: int) -> dict[str, Any]:
    """Write ``out/metrics.json`` and ``out/history.csv`` for a finished run; return the metrics.
    (``fit(..., checkpoint=out / "checkpoint.pt")`` writes the third file of a run.)"""
    out, config = Path(out), history.config
    out.mkdir(parents=True, exist_ok=True)
    last = {k: history.last[k] for k in HISTORY_COLUMNS[1:5]}  # losses and accuracies
    metrics = {
        "dataset": dataset, "model": getattr(model, "config", None) or type(model).__name__,
        "epochs": len(history), **last, "examples_per_second": history.examples_per_second,
        "seconds": history.seconds, "device": config.get("device"),
        "threads": config.get("threads"), "train_size": config.get("train_size"),
        "test_size": test_size, "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__, "train_config": config,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    history.to_csv(out / "history.csv")
    return metrics
