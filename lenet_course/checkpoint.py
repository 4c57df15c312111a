"""What a training run leaves: its :class:`History`, checkpoints and run files, written atomically.

A checkpoint is a plain dict (:data:`CHECKPOINT_KEYS`, and ``rng`` for an exact resume), read with
``torch.load(weights_only=True)``, which runs no code, and checked."""

import csv
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lenet_course.config import valid_normalization
from lenet_course.data import PathLike
from lenet_course.models import build_model, shape_text

CHECKPOINT_FORMAT = "lenet_course.checkpoint/1"
#: A checkpoint's entries: the model and what its input and output mean, then its training state.
CHECKPOINT_KEYS = ("format", "model", "state_dict", "class_names", "dataset", "normalization")
CHECKPOINT_KEYS += ("optimizer", "epoch", "history", "train_config")
RUN_FILES = ("checkpoint.pt", "metrics.json", "history.csv")  # what a run leaves in its folder
#: A History's columns: each epoch's results (None for a set not evaluated), then its pace.
_RESULTS = ("train_loss", "train_accuracy", "validation_accuracy", "test_accuracy")
HISTORY_COLUMNS = ("epoch", *_RESULTS, "lr", "seconds", "examples_per_second")


@dataclass
class History:
    """What :func:`fit` measured: a dict per epoch (:data:`HISTORY_COLUMNS`) and the ``config``."""

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
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in self.epochs)
        atomic_write(path, text.getvalue().encode())

    def __repr__(self) -> str:
        if not self.epochs:
            return "History(no epochs)"
        last, test = self.last, self.last["test_accuracy"]
        train = f"train loss {last['train_loss']:.4f}, train accuracy {last['train_accuracy']:.4f}"
        shown = f", test accuracy {test:.4f}" if test is not None else ""
        return f"History({len(self)} epochs: {train}{shown}, {self.seconds:.1f} s)"


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, not a course checkpoint, or does not fit the model."""


def atomic_write(path: PathLike, data: bytes) -> None:
    """Write ``data`` beside ``path``, then rename it into place: a crash keeps the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    *,
    history: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    dataset: str | None,
    normalization: Mapping[str, Any],
    train_config: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Write the state after ``len(history)`` epochs; ``model.config`` says how to rebuild it."""
    config = getattr(model, "config", None)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
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
        "rng": {"torch": torch.get_rng_state(), "cuda": cuda},
    }
    torch.save(state, buffer := io.BytesIO())
    atomic_write(path, buffer.getvalue())


def _read(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:  # no permission, an I/O error: the file itself may well be fine
        raise CheckpointError(f"cannot read {path}: {error}; check its permissions") from error
    except Exception as error:
        reason = " ".join(str(error).split())
        if "weights only load failed" in reason.lower():
            why = "which a safe (weights_only) load refuses: written with torch.save(model)?"
            fix = "Save a state_dict (save_checkpoint)"
            raise CheckpointError(f"{path} holds pickled objects, {why} {fix}") from error
        why = f"(truncated or corrupt?): {type(error).__name__}: {reason[:200]}"
        raise CheckpointError(f"{path} is not a readable checkpoint {why}") from error


def _list_of(kind: type) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(isinstance(item, kind) for item in v)


#: What the entries that the course reads must be; a checkpoint with anything else is damaged.
VALID: dict[str, tuple[Callable[[Any], bool], str]] = {
    "state_dict": (
        lambda v: isinstance(v, dict) and all(map(torch.is_tensor, v.values())),
        "a dict of tensors",
    ),
    "history": (_list_of(dict), "a list of dicts"),
    "class_names": (_list_of(str), "a list of texts"),
    "normalization": (
        valid_normalization,
        "kind paper, or standardize with a mean in 0..1 and a std in 1e-6..1",
    ),
    "model": (lambda v: isinstance(v, dict | None), "a dict or None"),
    "train_config": (lambda v: isinstance(v, dict), "a dict"),
}


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a checkpoint safely; :class:`CheckpointError` says what is wrong with a bad one."""
    if not isinstance(path, str | os.PathLike):
        loaded = "; a checkpoint dict is loaded already" if isinstance(path, Mapping) else ""
        got = f"load_checkpoint(path): got type {type(path).__name__}"
        raise TypeError(f"{got}; give a checkpoint.pt's path (a str or a Path){loaded}")
    path = Path(path)
    if not path.is_file():  # checked first: torch.load would wait forever on a FIFO
        if path.is_dir():
            raise CheckpointError(f"{path} is a folder; pass the checkpoint.pt file inside it")
        if path.exists():
            raise CheckpointError(f"{path} is not a regular file (a FIFO?); pass a checkpoint.pt")
        raise CheckpointError(f"no checkpoint at {path}; `python -m lenet_course train` writes one")
    return check_checkpoint(_read(path), str(path))


def check_checkpoint(state: Any, name: str = "the checkpoint dict") -> dict[str, Any]:
    """Return ``state`` if it is a whole, intact course checkpoint; ``name`` names it in errors."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{name} is not a lenet_course checkpoint (format {found!r})")
    if missing := [key for key in CHECKPOINT_KEYS if key not in state]:
        raise CheckpointError(f"{name} is an incomplete checkpoint: it lacks {missing}")
    for key, (valid, expected) in VALID.items():
        if not valid(state[key]):
            why = f"its {key!r} is {state[key]!r:.80}, not {expected}"
            raise CheckpointError(f"{name} is damaged: {why}; train again or use an intact copy")
    for layer, weight in state["state_dict"].items():
        if weight.is_floating_point() and not weight.isfinite().all():
            why = "as a diverged run leaves them; train again with a lower learning rate"
            raise CheckpointError(f"{name} holds NaN or infinite weights ({layer}), {why}")
    return state


def as_checkpoint(checkpoint: PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's path, loaded, or a loaded one, checked again (it may have been edited)."""
    if isinstance(checkpoint, Mapping):
        return check_checkpoint(dict(checkpoint))
    return load_checkpoint(checkpoint)


def _misfits(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> Iterator[str]:
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state_dict:
            yield f"it has no weights for layer {key} ({shape_text(tensor)})"
        elif state_dict[key].shape != tensor.shape:
            found = shape_text(state_dict[key])
            yield f"layer {key} is {found} in the checkpoint but {shape_text(tensor)} in the model"
    for key, tensor in state_dict.items():
        if key not in expected:
            yield f"it has layer {key} ({shape_text(tensor)}) that the model lacks"


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` naming the first layer whose weights do not fit ``model``."""
    if problem := next(_misfits(model, state_dict), None):
        name = getattr(model, "config", {}).get("name", type(model).__name__)
        raise CheckpointError(f"the checkpoint does not fit model {name!r}: {problem}")


def model_from_checkpoint(checkpoint: PathLike | Mapping[str, Any]) -> nn.Module:
    """Rebuild the course model stored in ``checkpoint`` (a path or a loaded dict), in eval mode."""
    state = as_checkpoint(checkpoint)
    if not (config := state.get("model")):
        why = "the checkpoint's model is not one of the course's (it has no config)"
        how = "build it yourself, then call model.load_state_dict(checkpoint['state_dict'])"
        raise CheckpointError(f"{why}: {how}")
    try:
        model = build_model(**config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"cannot build the checkpoint's model {config}: {error}") from error
    check_state_dict(model, state["state_dict"])
    model.load_state_dict(state["state_dict"])
    return model.eval()


def save_run_files(
    out: PathLike, model: nn.Module, history: History, *, dataset: str | None, test_size: int
) -> dict[str, Any]:
    """Write a run's metrics.json and history.csv (fit writes checkpoint.pt); return the metrics."""
    out, config = Path(out), history.config
    metrics = {
        "dataset": dataset,
        "model": getattr(model, "config", None) or type(model).__name__,
        "epochs": len(history),
        **{k: history.last[k] for k in _RESULTS},
        "examples_per_second": history.examples_per_second,
        "seconds": history.seconds,
        **{k: config.get(k) for k in ("device", "threads", "train_size")},
        "test_size": test_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "train_config": config,
    }
    atomic_write(out / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    history.to_csv(out / "history.csv")
    return metrics
