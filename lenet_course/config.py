"""Every setting of a training run (:class:`TrainConfig`), the course's named :data:`RECIPES`,
what a resumed run must match (:class:`RunContract`) and the device a run's ``device`` names."""

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import torch

from lenet_course.paper import paper_learning_rate

OPTIMIZERS = ("sgd", "adam", "adamw", "sdlm")
SCHEDULES = ("onecycle", "cosine", "paper")
Schedule = str | Callable[[int], float] | None


def _whole(value: Any) -> bool:
    """An int, not a bool (True is an int to Python, but not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    """A real number, not a bool or a string: "0.9" would fail later, deep inside torch."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def valid_normalization(norm: Any) -> bool:
    """``{"kind": "paper"}``, or ``"standardize"`` with the mean in 0..1 and the std in 1e-6..1
    that ``normalization_for`` computes (a std of 1e-300 would scale the pixels to inf)."""
    if not isinstance(norm, dict) or norm.get("kind") not in ("paper", "standardize"):
        return False
    if norm["kind"] == "paper":
        return True
    mean, std = norm.get("mean"), norm.get("std")
    return _real(mean) and _real(std) and 0 <= mean <= 1 and 1e-6 <= std <= 1


#: What each setting of TrainConfig may be: (a test of the value, what to use). Types are checked,
#: not coerced; NaN and inf fail every range.
_COUNT = (lambda v: _whole(v) and v >= 1, "a whole number >= 1")
_FLAGS = ("nesterov", "flip", "test_flip", "bf16", "compile", "cuda_graphs", "progress")
_SETTINGS = {
    "epochs": _COUNT,
    "batch_size": _COUNT,
    "lr": (lambda v: _real(v) and 0 < v <= 1e15, "0 < lr <= 1e15"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {OPTIMIZERS}"),
    "momentum": (lambda v: _real(v) and 0 <= v < 1, "0 <= momentum < 1"),
    "weight_decay": (lambda v: _real(v) and 0 <= v <= 1e15, "0 <= weight_decay <= 1e15"),
    "label_smoothing": (lambda v: _real(v) and 0 <= v < 1, "0 <= label_smoothing < 1"),
    "crop": (lambda v: _whole(v) and 0 <= v <= 8, "a whole number 0..8"),
    "seed": (lambda v: _whole(v) and 0 <= v < 2**63, "0 <= seed < 2**63"),
    "schedule": (
        lambda v: v in (None, *SCHEDULES) or callable(v),
        f"None, one of {SCHEDULES}, or a function epoch -> lr",
    ),
    "threads": (lambda v: v is None or _whole(v) and v >= 1, "None or a whole number >= 1"),
    "eval_batch_size": _COUNT,
    "channels_last": (lambda v: v is None or isinstance(v, bool), "None, True or False"),
    "normalization": (
        lambda v: v is None or valid_normalization(v),
        "None, {'kind': 'paper'} or {'kind': 'standardize', 'mean': m, 'std': s > 0}",
    ),
    "device": (lambda v: isinstance(v, str), "'auto', 'cpu' or 'cuda'"),
    **dict.fromkeys(_FLAGS, (lambda v: isinstance(v, bool), "True or False")),
}


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

    def __post_init__(self) -> None:
        for name, (good, valid) in _SETTINGS.items():
            if not good(getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name)!r}; use {valid}")
        if (self.momentum or self.nesterov) and self.optimizer != "sgd":
            raise ValueError(
                f"momentum/nesterov apply to SGD; optimizer={self.optimizer!r} has its own"
            )

    def replace(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)


#: The course's recipes.  "classic": d2l's train_ch6 for its LeNet.  "modern": notebook 06's
#: (Nesterov momentum, one-cycle, label smoothing).  "challenge": notebook 10's, for LeNetBN
#: (modern, with crops, flips and test-time flips, 40 epochs).  "lenet5-1998": how notebook 08
#: trains the 1998 network.  "sdlm-1998": the paper's own recipe (Section III-B), one at a time.
_NESTEROV_SGD = TrainConfig(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
_MODERN = _NESTEROV_SGD.replace(epochs=12, batch_size=128, schedule="onecycle", label_smoothing=0.1)
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
    """What decides what a run computes and how it measures: a run resumes only where this
    matches the checkpoint's.  The settings that change the result; the global batch (processes x
    batch size: 1 x 128 and 2 x 64 are the same run); the data set, the model, the training and
    test data (sizes and checksums); ``epochs`` only when a schedule depends on it."""

    global_batch: int
    lr: float
    optimizer: str
    momentum: float
    nesterov: bool
    weight_decay: float
    schedule: str | None  # a function schedule is recorded by its name
    label_smoothing: float
    crop: int
    flip: bool
    test_flip: bool
    seed: int
    channels_last: bool
    bf16: bool
    dataset: str | None
    model: dict[str, Any] | None  # the model's config (None: not one of the course's)
    train_size: int
    validation_size: int
    test_size: int
    train_data: str  # "crc32:..." of the training images and labels
    test_data: str | None  # the same of the test set (None: no test set)
    epochs: int | None = None  # None without a schedule: then a run may go on for more epochs

    #: The flags to keep the same, where the field is not a flag of its own.
    FLAGS: ClassVar[dict[str, str]] = {
        "global_batch": "--batch-size (times the number of processes)",
        "model": "--model/--activation/--pooling",
        "train_size": "--train-subset",
        "validation_size": "--validation",
        "test_size": "--test-subset",
        "test_flip": "--test-flip/--no-test-flip",
        "channels_last": "--device (channels_last follows it)",
        "train_data": "--dataset/--train-subset/--validation/--seed",
        "test_data": "--dataset/--test-subset/--seed",
    }

    @classmethod
    def of(cls, settings: dict[str, Any]) -> "RunContract":
        """The contract of a run's recorded settings: its history's ``config``, a checkpoint's
        ``train_config`` (where an entry is missing: None)."""
        values = {f.name: settings.get(f.name) for f in fields(cls)}
        if values["global_batch"] is None and settings.get("batch_size") is not None:
            # recorded before the contract had it: batch size x processes
            values["global_batch"] = settings["batch_size"] * settings.get("world_size", 1)
        if values["schedule"] is None:
            values["epochs"] = None
        return cls(**values)

    def refusal(self, saved: "RunContract", done: int = 0, epochs: int = 1) -> str | None:
        """Why a run of ``epochs`` epochs under this contract cannot continue ``saved``, which
        has ``done`` epochs; None when it can."""
        new_run = "start a new run (--overwrite or another --out)"
        if epochs < done:
            return (
                f"cannot resume: the checkpoint holds {done} epochs, more than epochs={epochs} "
                f"(--epochs); pass --epochs {done} or more, or {new_run}"
            )
        for f in fields(self):
            theirs, ours = getattr(saved, f.name), getattr(self, f.name)
            if theirs == ours:
                continue
            if f.name in ("train_data", "test_data"):  # every flag that draws the data agreed
                return (
                    f"cannot resume: the data changed since the checkpoint ({f.name}={theirs!r} "
                    f"then, {ours!r} now) although the same {self.FLAGS[f.name]} drew it: "
                    f"resume with the data the run started with, or {new_run}"
                )
            flag = self.FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
            return (
                f"cannot resume: the checkpoint was trained with {f.name}={theirs!r} but this "
                f"run has {f.name}={ours!r}; use the same {flag}, or {new_run}"
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
        returned = f"the schedule returned {value!r} for epoch {epoch}"
        raise ValueError(f"{returned}; it must return a finite learning rate >= 0")
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
        why = f"CUDA is not available here (torch {torch.__version__} sees no GPU)"
        raise ValueError(f"device={device!r} but {why}; use device='cpu' or 'auto'")
    return torch.device(device)


def env_number(name: str, default: float, kind: type = int, low: float = 0) -> Any:
    """The environment variable ``name`` as a ``kind`` >= ``low`` (``default`` when unset)."""
    text = os.environ.get(name, "")
    try:
        value = kind(text) if text.strip() else default
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low:
        what = "a whole number" if kind is int else "a number"
        bad = f"the environment variable {name}={text!r} is not {what} >= {low}"
        raise ValueError(f"{bad}; set it to one, or unset it")
    return value


def missing_ranks(seconds: float) -> str:
    """What to say when the other processes of WORLD_SIZE never joined."""
    where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    return (
        f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} processes should meet at {where}, but the "
        f"others did not come within {seconds:g} s (LENET_COURSE_DDP_TIMEOUT); start them all "
        "with torchrun --nproc_per_node=N, or unset WORLD_SIZE to train in one process"
    )


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one of several (WORLD_SIZE > 1)."""
    return env_number("WORLD_SIZE", 1, low=1) > 1


def as_config(config: Any) -> TrainConfig:
    """``config`` itself, or the recipe it names: fit(model, data, "modern") is fine too."""
    if isinstance(config, str) and config in RECIPES:
        return RECIPES[config]
    if not isinstance(config, TrainConfig):
        use = f"pass TrainConfig(...) or a recipe name, one of {sorted(RECIPES)}"
        raise TypeError(f"config={config!r:.60} is not a TrainConfig; {use}")
    return config


def check_positive(name: str, value: Any) -> None:
    if not (_whole(value) and value >= 1):
        raise ValueError(f"{name}={value!r}; use a whole number >= 1")


def check_normalization(norm: Any) -> None:
    """Refuse a normalisation that would scale the images into NaN or inf."""
    if not valid_normalization(norm):
        use = "{'kind': 'paper'} or {'kind': 'standardize', 'mean': m, 'std': s}"
        ranges = "m in 0..1 and s in 1e-6..1 (normalization_for gives one)"
        raise ValueError(f"normalization={norm!r:.80}; use {use} with {ranges}")


def check_settings(model: Any, config: TrainConfig) -> torch.device:
    """Refuse settings that do not fit ``model`` or this machine; return the device to use."""
    device = resolve_device(config.device)
    name = getattr(model, "config", {}).get("name", type(model).__name__)
    graphs_refused = config.compile or config.crop or config.flip or config.optimizer == "sdlm"
    if config.cuda_graphs and (device.type != "cuda" or graphs_refused or launched()):
        raise ValueError(
            "cuda_graphs=True records each training step as a CUDA graph: it needs a CUDA device "
            "(on the CPU, train without it), one process, no compile, no crop or flip and no sdlm"
        )
    if config.label_smoothing and callable(getattr(model, "loss", None)):
        raise ValueError(
            f"label_smoothing={config.label_smoothing} applies to cross-entropy, but {name} has "
            "its own loss(); use label_smoothing=0"
        )
    if config.optimizer == "sdlm" and not hasattr(model, "configure_optimizer"):
        sdlm = "optimizer='sdlm' estimates the curvature of LeNet5_1998's layers"
        raise ValueError(f"{sdlm}; {name} is another network")
    if config.batch_size < 2 and has_batch_norm(model):
        raise ValueError(
            f"batch_size={config.batch_size}: the batch normalisation of {name} needs at least 2 "
            "examples per batch; use batch_size >= 2 (--batch-size)"
        )
    return device


def has_batch_norm(model: Any) -> bool:
    """Whether ``model`` normalises over the batch (a batch of one would fail in training)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
