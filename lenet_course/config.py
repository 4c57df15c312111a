"""Every setting of a training run (:class:`TrainConfig`), the course's named :data:`RECIPES`,
what a resumed run must match (:class:`RunContract`) and the device a run's ``device`` names."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import torch

from lenet_course.paper import paper_learning_rate

OPTIMIZERS = ("sgd", "adam", "adamw", "sdlm")
SCHEDULES = ("onecycle", "cosine", "paper")
Schedule = str | Callable[[int], float] | None


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run.  ``config.replace(epochs=3)`` is a changed copy."""

    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.1  # the peak learning rate when there is a schedule
    optimizer: str = "sgd"  # one of OPTIMIZERS
    momentum: float = 0.0  # SGD only
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: Schedule = None  # None, one of SCHEDULES, or a function epoch -> lr
    label_smoothing: float = 0.0  # for cross-entropy; not for a model with its own loss()
    crop: int = 0  # random crops: each training image shifted by up to this many pixels each way
    flip: bool = False  # random horizontal flips of the training images (clothes, not digits)
    test_flip: bool = False  # evaluate each image and its mirror image (their mean probabilities)
    seed: int = 0  # seeds torch and decides every epoch's shuffle
    normalization: dict[str, Any] | None = None  # None: from the training images' statistics
    # The settings below change where and how fast the run goes, not what it learns.
    device: str = "auto"  # "auto": CUDA when there is a GPU, else the CPU
    threads: int | None = None  # CPU threads; None: see cpu_threads()
    channels_last: bool | None = None  # None: on for the CPU (faster there), off on CUDA
    bf16: bool = False  # bfloat16 autocast (CUDA)
    compile: bool = False  # torch.compile the model
    cuda_graphs: bool = False  # CUDA: each whole training step replayed as one CUDA graph
    eval_batch_size: int = 1000
    progress: bool = True  # a tqdm bar
    tensorboard: str | None = None  # a log folder for TensorBoard (needs the tensorboard package)

    def __post_init__(self) -> None:  # NaN and inf fail every range test below
        checks = [
            ("epochs", isinstance(self.epochs, int) and self.epochs >= 1, "a whole number >= 1"),
            (
                "batch_size",
                isinstance(self.batch_size, int) and self.batch_size >= 1,
                "a whole number >= 1",
            ),
            ("lr", isinstance(self.lr, (int, float)) and 0 < self.lr <= 1e15, "0 < lr <= 1e15"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
            ("momentum", 0.0 <= self.momentum < 1.0, "0 <= momentum < 1"),
            ("weight_decay", 0.0 <= self.weight_decay <= 1e15, "0 <= weight_decay <= 1e15"),
            ("label_smoothing", 0.0 <= self.label_smoothing < 1.0, "0 <= label_smoothing < 1"),
            ("crop", isinstance(self.crop, int) and 0 <= self.crop <= 8, "a whole number 0..8"),
            ("seed", isinstance(self.seed, int) and 0 <= self.seed < 2**63, "0 <= seed < 2**63"),
            (
                "schedule",
                self.schedule in (None, *SCHEDULES) or callable(self.schedule),
                f"None, one of {SCHEDULES}, or a function epoch -> lr",
            ),
        ]
        for name, good, valid in checks:
            if not good:
                raise ValueError(f"{name}={getattr(self, name)!r}; use {valid}")
        if (self.momentum or self.nesterov) and self.optimizer != "sgd":
            raise ValueError(
                f"momentum/nesterov apply to SGD; optimizer={self.optimizer!r} has its own"
            )

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (and checked)."""
        return replace(self, **changes)


#: The course's recipes.  "classic": d2l's train_ch6 for its LeNet.  "modern": notebook 06's
#: (Nesterov momentum, one-cycle, label smoothing).  "challenge": notebook 10's, for LeNetBN
#: (modern, with crops, flips and test-time flips, 40 epochs).  "lenet5-1998": how notebook 08
#: trains the 1998 network.  "sdlm-1998": the paper's own recipe (Section III-B), one at a time.
_MODERN = TrainConfig(
    epochs=12,
    batch_size=128,
    lr=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    schedule="onecycle",
    label_smoothing=0.1,
)
RECIPES: dict[str, TrainConfig] = {
    "classic": TrainConfig(epochs=10, batch_size=256, lr=0.9),
    "modern": _MODERN,
    "challenge": _MODERN.replace(epochs=40, crop=2, flip=True, test_flip=True),
    "lenet5-1998": TrainConfig(
        epochs=6, batch_size=64, lr=3e-3, optimizer="adam", schedule="cosine"
    ),
    "sdlm-1998": TrainConfig(epochs=20, batch_size=1, lr=5e-4, optimizer="sdlm", schedule="paper"),
}


@dataclass(frozen=True)
class RunContract:
    """What decides what a run computes: a run resumes only where this matches the checkpoint's.
    The settings that change the result, and what is not a setting: the data set, the model, the
    training data's size and checksum.  ``epochs`` counts only when a schedule depends on it."""

    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    nesterov: bool
    weight_decay: float
    schedule: str | None  # a function schedule is recorded by its name
    label_smoothing: float
    crop: int
    flip: bool
    seed: int
    channels_last: bool
    bf16: bool
    dataset: str | None
    model: dict[str, Any] | None  # the model's config (None: not one of the course's)
    train_size: int
    validation_size: int
    train_data: str  # "crc32:..." of the training images and labels
    epochs: int | None = None  # None without a schedule: then a run may go on for more epochs

    #: The flags to keep the same, where the field is not a flag of its own.
    FLAGS: ClassVar[dict[str, str]] = {
        "model": "--model/--activation/--pooling",
        "train_size": "--train-subset",
        "validation_size": "--validation",
        "channels_last": "--device",
        "train_data": "--dataset/--train-subset/--validation/--seed",
    }

    @classmethod
    def of(cls, settings: dict[str, Any]) -> RunContract:
        """The contract of a run's recorded settings: its history's ``config``, a checkpoint's
        ``train_config`` (where an entry is missing: None)."""
        values = {f.name: settings.get(f.name) for f in fields(cls)}
        if values["schedule"] is None:
            values["epochs"] = None
        return cls(**values)

    def refusal(self, saved: RunContract) -> str | None:
        """Why a run under this contract cannot continue ``saved``; None when it can."""
        for f in fields(self):
            theirs, ours = getattr(saved, f.name), getattr(self, f.name)
            if theirs != ours:
                flag = self.FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
                return (
                    f"cannot resume: the checkpoint was trained with {f.name}={theirs!r} but this "
                    f"run has {f.name}={ours!r}; use the same {flag}, or start a new run "
                    "(--overwrite or another --out)"
                )
        return None


def learning_rate_at(
    schedule: Schedule, lr: float, step: int, steps_per_epoch: int, total_steps: int
) -> float:
    """The learning rate of (0-based) optimisation ``step`` out of ``total_steps``.  None: constant
    ``lr``.  "cosine": ``lr`` annealed to 0 along half a cosine.  "onecycle": OneCycleLR's defaults
    (30% warm-up from lr/25 to lr, then down to lr/25/1e4; momentum not cycled).  "paper": LeCun
    et al.'s schedule by pass, whatever ``lr``.  A function maps the 0-based epoch to its rate."""
    epoch = step // steps_per_epoch
    if schedule is None:
        return lr
    if schedule == "paper":
        return paper_learning_rate(epoch)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    if schedule == "onecycle":
        warm_end, last = 0.3 * total_steps - 1.0, total_steps - 1.0
        if step <= warm_end:
            return _cosine(lr / 25.0, lr, step / warm_end)
        return _cosine(lr, lr / 25.0 / 1e4, (step - warm_end) / (last - warm_end))
    value = schedule(epoch)  # type: ignore[operator]
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"the schedule returned {value!r} for epoch {epoch}; it must return a "
            "finite learning rate >= 0"
        )
    return float(value)


def _cosine(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1.0)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device) != "cpu" and not str(device).startswith("cuda"):
        raise ValueError(f"device={device!r}; use 'auto', 'cpu' or 'cuda'")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available here (torch "
            f"{torch.__version__} sees no GPU); use device='cpu' or 'auto'"
        )
    return torch.device(device)
