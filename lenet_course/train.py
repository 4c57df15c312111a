"""Training: a fast loop over device-resident tensors, with history, checkpoints and resume.

Why :func:`fit` is fast (the idea of KellerJordan/cifar10-airbench, kept simple):

- the whole data set is moved to the device once and normalised there; a batch is a slice of a
  per-epoch random permutation (one gather), so there is no ``DataLoader``, no worker process and
  no per-image Python in the hot loop;
- the loss and the number of correct predictions are accumulated on the device and read once per
  epoch, so the host never waits for the device inside an epoch (no ``loss.item()`` per step);
- on the CPU the model runs in the channels-last memory format (measured: see :func:`fit`), and
  the number of threads follows :func:`cpu_threads`.

Checkpoints (:func:`save_checkpoint`) are plain dicts of tensors, numbers and strings, written
atomically and read back with ``torch.load(weights_only=True)``; ``fit(..., resume=True)``
continues an interrupted run to the same weights, bit for bit on the CPU, as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CHECKPOINT_FORMAT = "lenet_course.checkpoint/1"
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
SCHEDULES: tuple[str, ...] = ("onecycle", "cosine")
#: Keys a checkpoint must have (see :func:`save_checkpoint`).
CHECKPOINT_KEYS: tuple[str, ...] = (
    "format", "model", "state_dict", "optimizer", "epoch", "history", "class_names", "dataset",
    "normalization", "train_config",
)  # fmt: skip
#: Settings that must not change when a run is resumed: they decide the result.
RESUME_KEYS: tuple[str, ...] = (
    "batch_size", "lr", "optimizer", "momentum", "nesterov", "weight_decay", "schedule",
    "label_smoothing", "seed", "channels_last", "bf16",
)  # fmt: skip

PathLike = str | os.PathLike[str]


class TrainingDivergedError(RuntimeError):
    """The loss (or a weight) became NaN or infinite: the learning rate is too high."""


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, not a course checkpoint, or does not fit the model."""


# --- devices, threads, seeds ---------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available here (torch {torch.__version__} sees no "
            "GPU); use device='cpu' or 'auto'"
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device={device!r}; use 'auto', 'cpu' or 'cuda'")
    return torch.device(device)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_threads(threads: int | None = None) -> int | None:
    """How many threads CPU training should use; ``None`` means "leave torch's setting".

    The policy: an explicit ``threads`` wins; otherwise 1 thread on machines with at most 2 cores,
    and torch's own choice on bigger ones.  Measured on a 2-core machine (AMD EPYC, torch 2.14),
    LeNet at batch 256: about 5,500 images/s with 1 thread and 7,700 with 2 threads while the
    machine is otherwise idle, but 3,700 with 1 thread and only 2,900 with 2 threads while another
    process keeps one core busy.  A second thread gains 40% at best and loses 20% as soon as
    anything else runs (a notebook kernel, a data loader, a browser), so small machines get 1.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads}; use a positive number, or None for the default")
        return threads
    return 1 if available_cores() <= 2 else None


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads (``None``: unchanged), then restore."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def seed_everything(seed: int) -> None:
    """Seed torch's generators (CPU and CUDA) and Python's ``random``: same seed, same weights."""
    import random

    random.seed(seed)
    torch.manual_seed(seed)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the ``n`` training examples in ``epoch``: a function of (seed, epoch) only.

    Drawn on the CPU from its own generator, so it is the same on every device and a resumed
    run shuffles exactly as an uninterrupted one would.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


# --- learning-rate schedules ---------------------------------------------------------------------


def learning_rate_at(
    schedule: str | Callable[[int], float] | None,
    lr: float,
    step: int,
    steps_per_epoch: int,
    total_steps: int,
) -> float:
    """The learning rate for (0-based) optimisation ``step`` out of ``total_steps``.

    ``None``: constant ``lr``.  ``"cosine"``: ``lr`` annealed to 0 along half a cosine.
    ``"onecycle"``: Smith's one-cycle policy with the defaults of ``torch.optim.lr_scheduler.
    OneCycleLR`` (30% warm-up from ``lr/25`` to ``lr``, then down to ``lr/25/1e4``, cosine
    shaped; the momentum is not cycled).  A callable gets the 0-based epoch and returns that
    epoch's learning rate (for example the piecewise-constant schedule of LeCun et al. 1998).
    """
    if schedule is None:
        return lr
    if callable(schedule):
        epoch = step // steps_per_epoch
        value = schedule(epoch)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"the schedule returned {value!r} for epoch {epoch}; it must return a finite "
                "learning rate >= 0"
            )
        return float(value)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    if schedule == "onecycle":
        start, end = lr / 25.0, lr / 25.0 / 1e4
        warm_end, last = 0.3 * total_steps - 1.0, total_steps - 1.0

        def cosine(a: float, b: float, fraction: float) -> float:
            return b + (a - b) / 2.0 * (math.cos(math.pi * fraction) + 1.0)

        if step <= warm_end:
            return cosine(start, lr, step / warm_end)
        return cosine(lr, end, (step - warm_end) / (last - warm_end))
    raise ValueError(
        f"schedule={schedule!r}; use None, one of {SCHEDULES}, or a function epoch -> lr"
    )


def _schedule_name(schedule: str | Callable[[int], float] | None) -> str | None:
    if schedule is None or isinstance(schedule, str):
        return schedule
    return f"callable:{getattr(schedule, '__qualname__', type(schedule).__name__)}"


# --- history -------------------------------------------------------------------------------------

HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch", "train_loss", "train_accuracy", "validation_accuracy", "test_accuracy", "lr",
    "seconds", "examples_per_second",
)  # fmt: skip


@dataclass
class History:
    """What :func:`fit` measured, one dict per epoch (keys: :data:`HISTORY_COLUMNS`).

    ``seconds`` is the wall-clock time of the whole epoch (training and evaluation), and
    ``examples_per_second`` is the number of training examples divided by it.
    ``validation_accuracy`` and ``test_accuracy`` are ``None`` when that set was not given.
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    #: The run's settings (the checkpoint's ``train_config``), filled in by :func:`fit`.
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
        """The last epoch's record."""
        if not self.epochs:
            raise IndexError("the history is empty: no epoch has been trained")
        return self.epochs[-1]

    @property
    def seconds(self) -> float:
        """Wall-clock seconds of all epochs together."""
        return sum(record["seconds"] for record in self.epochs)

    @property
    def examples_per_second(self) -> float:
        """Training examples per wall-clock second over the whole run (evaluation included)."""
        examples = sum(r["examples_per_second"] * r["seconds"] for r in self.epochs)
        return examples / self.seconds if self.epochs else 0.0

    def to_csv(self, path: PathLike) -> None:
        """Write one row per epoch (empty cells where a set was not evaluated)."""
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=HISTORY_COLUMNS)
            writer.writeheader()
            for record in self.epochs:
                writer.writerow(
                    {key: "" if record[key] is None else record[key] for key in HISTORY_COLUMNS}
                )

    def __repr__(self) -> str:
        if not self.epochs:
            return "History(no epochs)"
        last = self.last
        test = last["test_accuracy"]
        return (
            f"History({len(self)} epochs: train loss {last['train_loss']:.4f}, train accuracy "
            f"{last['train_accuracy']:.4f}"
            + (f", test accuracy {test:.4f}" if test is not None else "")
            + f", {self.seconds:.1f} s)"
        )


# --- data on the device --------------------------------------------------------------------------


def _images_and_labels(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images, int64 labels) from an ``ImageSet`` or an ``(images, labels)`` pair."""
    if hasattr(data, "images") and hasattr(data, "labels"):
        images, labels = data.images, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    else:
        raise TypeError(
            f"{what} is a {type(data).__name__}; pass an ImageSet from "
            "lenet_course.data.load_dataset or an (images, labels) pair of tensors"
        )
    if images.dtype != torch.uint8:
        raise TypeError(
            f"{what} images are {images.dtype}; fit expects the uint8 images (N x 28 x 28) that "
            "load_dataset returns, and normalises them itself"
        )
    if len(images) != len(labels):
        raise ValueError(f"{what} has {len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError(f"{what} is empty")
    return images, labels.long()


def _on_device(
    data: Any,
    what: str,
    spec: Any,
    normalization: dict[str, Any],
    device: torch.device,
    channels_last: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    from lenet_course.data import prepare_images

    images, labels = _images_and_labels(data, what)
    x = prepare_images(images.to(device), spec, normalization)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, labels.to(device)


def _default_spec() -> Any:
    from lenet_course.models import InputSpec

    return InputSpec(channels=1, size=28, normalization="standardize")


def _scores(model: nn.Module, outputs: torch.Tensor) -> torch.Tensor:
    scores = getattr(model, "scores", None)
    return scores(outputs) if callable(scores) else outputs


@torch.no_grad()
def _count_correct(
    model: nn.Module,
    runner: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    autocast: Any,
) -> torch.Tensor:
    """The number of correct predictions, as a tensor on the device (no host sync)."""
    correct = torch.zeros((), dtype=torch.int64, device=y.device)
    for start in range(0, len(y), batch_size):
        with autocast():
            outputs = runner(x[start : start + batch_size])
        correct += (_scores(model, outputs).argmax(1) == y[start : start + batch_size]).sum()
    return correct


def evaluate(
    model: nn.Module,
    data: Any,
    normalization: Mapping[str, Any] | None = None,
    *,
    input_spec: Any = None,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
) -> float:
    """The accuracy of ``model`` on ``data`` (an ``ImageSet`` or ``(uint8 images, labels)``).

    ``normalization`` is the one the model was trained with (a checkpoint's
    ``"normalization"``); by default it is computed from ``data`` itself, which is only right
    when ``data`` is the training set.  Runs in eval mode under ``no_grad``; the model's mode is
    restored afterwards.
    """
    from lenet_course.data import normalization_for

    spec = input_spec or getattr(model, "input_spec", None) or _default_spec()
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    images, _ = _images_and_labels(data, "data")
    norm = dict(normalization) if normalization is not None else normalization_for(spec, images)
    x, y = _on_device(data, "data", spec, norm, device, channels_last=False)
    was_training = model.training
    model.eval()
    try:
        correct = _count_correct(model, model, x, y, batch_size, contextlib.nullcontext)
    finally:
        model.train(was_training)
    return correct.item() / len(y)


# --- the training loop ---------------------------------------------------------------------------


def _make_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float, nesterov: bool, weight_decay: float
) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
    if momentum or nesterov:
        raise ValueError(f"momentum/nesterov apply to SGD; optimizer={name!r} has its own betas")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer={name!r}; use one of {OPTIMIZERS}")


def _check_settings(
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    label_smoothing: float,
    model: nn.Module,
) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r}; use a whole number >= 1")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; use a whole number >= 1")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r}; use a finite learning rate > 0")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum={momentum!r}; use 0 <= momentum < 1")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing!r}; use 0 <= label_smoothing < 1")
    if label_smoothing and callable(getattr(model, "loss", None)):
        raise ValueError(
            f"label_smoothing={label_smoothing} applies to cross-entropy, but "
            f"{type(model).__name__} defines its own loss(); use label_smoothing=0"
        )


def _guess_dataset(classes: tuple[str, ...]) -> str | None:
    from lenet_course.data import CLASS_NAMES

    return next((name for name, names in CLASS_NAMES.items() if tuple(names) == classes), None)


def fit(
    model: nn.Module,
    train: Any,
    *,
    test: Any = None,
    validation: Any = None,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 0.1,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    schedule: str | Callable[[int], float] | None = None,
    label_smoothing: float = 0.0,
    input_spec: Any = None,
    normalization: Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    threads: int | None = None,
    channels_last: bool | None = None,
    bf16: bool = False,
    compile_model: bool = False,
    cuda_graphs: bool = False,
    checkpoint: PathLike | None = None,
    resume: bool = False,
    dataset: str | None = None,
    tensorboard: PathLike | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    eval_batch_size: int = 1000,
) -> History:
    """Train ``model`` (any classifier ``nn.Module``) on ``train``; return its :class:`History`.

    Data: ``train``, ``validation`` and ``test`` are ``ImageSet``s (or ``(uint8 images,
    labels)`` pairs); they are moved to ``device`` once and normalised there with
    ``normalization`` (default: computed from the training images for ``input_spec``, which
    defaults to ``model.input_spec``, else 1x28x28 "standardize").  ``validation`` and ``test``
    are evaluated after every epoch.

    Optimisation: ``optimizer`` "sgd" (``momentum``, ``nesterov``), "adam" or "adamw";
    ``schedule`` None, "onecycle", "cosine" or a function epoch -> lr (see
    :func:`learning_rate_at`); ``label_smoothing`` for the default cross-entropy.  The loss is
    ``model.loss(outputs, targets)`` when the model defines one, and accuracy uses
    ``model.scores(outputs)`` when defined (else the outputs, as logits).

    Speed: ``threads`` follows :func:`cpu_threads`; ``channels_last`` memory format (default:
    on for the CPU, where it measured 1.4-1.6x faster for LeNet at batch 256; off on CUDA); on
    CUDA, ``bf16`` autocast, ``compile_model`` (``torch.compile``) and ``cuda_graphs``
    (``torch.compile`` in "reduce-overhead" mode, which replays the model as CUDA graphs).
    The first epoch includes any compilation.

    Reproducibility: ``seed`` seeds torch and decides every epoch's shuffle; two CPU runs with
    the same arguments give bitwise-equal weights.  Build the model after
    ``seed_everything(seed)`` for equal initial weights too.

    Checkpoints: with ``checkpoint=path`` the state after every epoch is written atomically
    (:func:`save_checkpoint`, including the RNG state); ``resume=True`` continues from it to the
    same result as an uninterrupted run.  ``dataset`` names the data set for the checkpoint
    (default: recognised from the class names).

    Also: ``tensorboard=log_dir`` writes scalars there (needs the ``tensorboard`` package);
    ``progress`` shows a tqdm bar; ``on_epoch_end(record)`` is called after each epoch's
    checkpoint.  A loss or weight that becomes NaN/inf raises :class:`TrainingDivergedError`
    naming the epoch and step.
    """
    from tqdm.auto import tqdm

    from lenet_course.data import normalization_for

    _check_settings(epochs, batch_size, lr, momentum, label_smoothing, model)
    device = resolve_device(device)
    if cuda_graphs and device.type != "cuda":
        raise ValueError("cuda_graphs=True needs a CUDA device; it does nothing on the CPU")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path of the checkpoint to continue>")
    writer_class = _summary_writer_class() if tensorboard is not None else None
    if channels_last is None:
        channels_last = device.type == "cpu"
    spec = input_spec or getattr(model, "input_spec", None) or _default_spec()
    train_images, train_labels = _images_and_labels(train, "train")
    classes = tuple(getattr(train, "classes", ()) or ())
    if not classes:
        classes = tuple(str(i) for i in range(int(train_labels.max()) + 1))
    dataset = dataset or _guess_dataset(classes)
    threads = cpu_threads(threads) if device.type == "cpu" else None

    with torch_threads(threads):
        seed_everything(seed)
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        # The data moves to the device once; the statistics come from the training images only.
        if normalization is None:
            normalization = normalization_for(spec, train_images.to(device))
        norm = dict(normalization)
        train_x, train_y = _on_device(train, "train", spec, norm, device, channels_last)
        sets = {
            name: _on_device(data, name, spec, norm, device, channels_last)
            for name, data in (("validation", validation), ("test", test))
            if data is not None
        }
        opt = _make_optimizer(model, optimizer, lr, momentum, nesterov, weight_decay)
        config = {
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
            "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay,
            "schedule": _schedule_name(schedule), "label_smoothing": label_smoothing,
            "seed": seed, "channels_last": channels_last, "bf16": bf16,
            "compile_model": compile_model, "cuda_graphs": cuda_graphs,
            "device": device.type, "threads": threads, "train_size": len(train_y),
            "validation_size": len(sets["validation"][1]) if "validation" in sets else 0,
            "input_spec": {k: getattr(spec, k) for k in ("channels", "size", "normalization")},
        }  # fmt: skip
        history = History()
        if resume:
            history = _restore(load_checkpoint(checkpoint), model, opt, config, device)
        history.config = config

        runner: Callable[[torch.Tensor], torch.Tensor] = model
        if cuda_graphs:  # torch.compile's "reduce-overhead" mode replays CUDA graphs
            runner = torch.compile(model, mode="reduce-overhead")
        elif compile_model:
            runner = torch.compile(model)
        run = _Run(
            model=model, runner=runner, optimizer=opt, x=train_x, y=train_y,
            batch_size=batch_size, lr=lr, schedule=schedule, epochs=epochs, seed=seed,
            label_smoothing=label_smoothing, bf16=bf16, cuda_graphs=cuda_graphs,
        )  # fmt: skip
        bar = tqdm(
            total=epochs * run.steps, initial=len(history) * run.steps, unit="batch",
            disable=not progress, desc=f"{type(model).__name__} on {device.type}",
        )  # fmt: skip
        writer = writer_class(str(tensorboard)) if writer_class is not None else None
        try:
            for epoch in range(len(history), epochs):
                start_time = time.perf_counter()
                train_loss, train_correct = _train_epoch(run, epoch, bar.update)
                model.eval()
                counts = [
                    _count_correct(model, runner, x, y, eval_batch_size, run.autocast)
                    for x, y in sets.values()
                ]
                finite = torch.stack([p.detach().isfinite().all() for p in model.parameters()])
                # The one read of the epoch: everything above ran without waiting for the device.
                loss_sum, n_correct, all_finite, *set_correct = torch.stack(
                    [train_loss, train_correct, finite.all(), *counts]
                ).tolist()
                seconds = time.perf_counter() - start_time
                if not (math.isfinite(loss_sum) and all_finite):
                    _raise_diverged(run, epoch)
                accuracy = {
                    name: c / len(y)
                    for (name, (_, y)), c in zip(sets.items(), set_correct, strict=True)
                }
                n = len(train_y)
                record = {
                    "epoch": epoch + 1,
                    "train_loss": loss_sum / n,
                    "train_accuracy": n_correct / n,
                    "validation_accuracy": accuracy.get("validation"),
                    "test_accuracy": accuracy.get("test"),
                    "lr": run.lr_at(epoch * run.steps + run.steps - 1),
                    "seconds": seconds,
                    "examples_per_second": n / seconds,
                }
                history.epochs.append(record)
                bar.set_postfix(_postfix(record), refresh=True)
                if writer is not None:
                    for key, value in record.items():
                        if key != "epoch" and value is not None:
                            writer.add_scalar(key, value, epoch + 1)
                if checkpoint is not None:
                    save_checkpoint(
                        checkpoint, model, optimizer=opt, epoch=epoch + 1,
                        history=history.epochs, class_names=list(classes), dataset=dataset,
                        normalization=norm, train_config=config,
                    )  # fmt: skip
                if on_epoch_end is not None:
                    on_epoch_end(record)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        model.eval()
    return history


@dataclass
class _Run:
    """What the hot loop needs, set up once by :func:`fit`."""

    model: nn.Module
    runner: Callable[[torch.Tensor], torch.Tensor]  # the model, or its compiled version
    optimizer: torch.optim.Optimizer
    x: torch.Tensor  # all training images, normalised, on the device
    y: torch.Tensor
    batch_size: int
    lr: float
    schedule: str | Callable[[int], float] | None
    epochs: int
    seed: int
    label_smoothing: float
    bf16: bool
    cuda_graphs: bool

    def __post_init__(self) -> None:
        n, device = len(self.y), self.y.device
        self.steps = math.ceil(n / self.batch_size)
        self.sizes = torch.full((self.steps,), float(self.batch_size), device=device)
        self.sizes[-1] = n - (self.steps - 1) * self.batch_size
        self.step_losses = torch.zeros(self.steps, device=device)  # for the divergence report
        self.correct = torch.zeros((), dtype=torch.int64, device=device)

    def lr_at(self, step: int) -> float:
        return learning_rate_at(self.schedule, self.lr, step, self.steps, self.epochs * self.steps)

    def autocast(self) -> Any:
        return torch.autocast(self.y.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        custom = getattr(self.model, "loss", None)
        if callable(custom):
            return custom(outputs, targets)
        return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)


def _train_epoch(
    run: _Run, epoch: int, on_step: Callable[[], Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over a fresh permutation; returns (summed loss, correct count) on the device."""
    run.model.train()
    order = epoch_permutation(len(run.y), run.seed, epoch).to(run.y.device)
    run.step_losses.zero_()
    run.correct.zero_()
    for step in range(run.steps):
        if run.schedule is not None:
            for group in run.optimizer.param_groups:
                group["lr"] = run.lr_at(epoch * run.steps + step)
        index = order[step * run.batch_size : (step + 1) * run.batch_size]
        xb, yb = run.x[index], run.y[index]  # a slice of the permutation: one gather
        if run.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with run.autocast():
            outputs = run.runner(xb)
            loss = run.loss(outputs, yb)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.step_losses[step] = loss.detach()  # stays on the device: no sync
        run.correct += (_scores(run.model, outputs.detach()).argmax(1) == yb).sum()
        on_step()
    return (run.step_losses * run.sizes).sum(), run.correct.double()


def _restore(
    state: Mapping[str, Any], model: nn.Module, opt: torch.optim.Optimizer,
    config: Mapping[str, Any], device: torch.device,
) -> History:  # fmt: skip
    """Load a checkpoint's weights, optimizer and RNG states to resume; return its history."""
    _check_resumable(state, model, config)
    model.load_state_dict(state["state_dict"])
    if state["optimizer"] is not None:
        opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and state["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return History([dict(record) for record in state["history"]])


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            "tensorboard=... needs the tensorboard package (pip install tensorboard); "
            "or pass tensorboard=None"
        ) from error
    return SummaryWriter


def _postfix(record: dict[str, Any]) -> dict[str, str]:
    shown = {"loss": f"{record['train_loss']:.3f}", "train": f"{record['train_accuracy']:.3f}"}
    for key, label in (("validation_accuracy", "val"), ("test_accuracy", "test")):
        if record[key] is not None:
            shown[label] = f"{record[key]:.3f}"
    return shown


def _raise_diverged(run: _Run, epoch: int) -> None:
    bad = (~torch.isfinite(run.step_losses)).nonzero()
    step = int(bad[0]) if len(bad) else run.steps - 1
    value = run.step_losses[step].item()
    what = f"the loss became {value}" if not math.isfinite(value) else "a weight became NaN/inf"
    raise TrainingDivergedError(
        f"training diverged in epoch {epoch + 1}, step {step + 1} of {run.steps}: {what} "
        f"(learning rate {run.lr_at(epoch * run.steps + step):g}). Lower the learning rate (for "
        f"example lr={run.lr / 10:g}) and train again; the last checkpoint, if any, holds the "
        "last good epoch."
    )


def save_run_files(
    out: PathLike, model: nn.Module, history: History, *, dataset: str | None, test_size: int
) -> dict[str, Any]:
    """Write ``out/metrics.json`` and ``out/history.csv`` for a finished run; return the metrics.

    (``fit(..., checkpoint=out/"checkpoint.pt")`` writes the third file of a run.)
    """
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    last = history.last
    metrics = {
        "dataset": dataset,
        "model": getattr(model, "config", None) or type(model).__name__,
        "epochs": len(history),
        "test_accuracy": last["test_accuracy"],
        "validation_accuracy": last["validation_accuracy"],
        "train_accuracy": last["train_accuracy"],
        "train_loss": last["train_loss"],
        "examples_per_second": history.examples_per_second,
        "seconds": history.seconds,
        "device": history.config.get("device", next(model.parameters()).device.type),
        "threads": history.config.get("threads"),
        "train_size": history.config.get("train_size"),
        "test_size": test_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "train_config": history.config,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    history.to_csv(out / "history.csv")
    return metrics


# --- checkpoints ---------------------------------------------------------------------------------


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` it into place.

    A crash or a full disk during the write leaves the previous checkpoint intact.
    """
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


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int,
    history: list[dict[str, Any]],
    class_names: list[str] | tuple[str, ...],
    dataset: str | None,
    normalization: Mapping[str, Any],
    train_config: Mapping[str, Any],
) -> None:
    """Write a checkpoint atomically: a dict of tensors, numbers and strings only.

    Keys: ``format`` (:data:`CHECKPOINT_FORMAT`), ``model`` (``model.config``, or None for a
    model that is not one of the course's), ``state_dict`` (on the CPU), ``optimizer`` (its
    state or None), ``epoch`` (epochs done), ``history``, ``class_names``, ``dataset``,
    ``normalization``, ``train_config``, and ``rng`` (the generator states, for resume).
    It loads with ``torch.load(path, weights_only=True)``, which never runs pickled code.
    """
    config = getattr(model, "config", None)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": dict(config) if config is not None else None,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
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
    _atomic_save(state, Path(path))


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` safely (``weights_only=True``).

    Raises :class:`CheckpointError` for a missing path, a truncated or corrupt file, a file
    holding pickled objects (such as a whole model saved with ``torch.save(model)``), or a file
    that is not a course checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; pass the checkpoint.pt file inside it")
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; train one with `python -m lenet_course train --out DIR`, "
            "which writes DIR/checkpoint.pt"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = " ".join(str(error).split())
        if "weights only load failed" in reason.lower():
            raise CheckpointError(
                f"{path} holds pickled Python objects, which a safe (weights_only) load refuses to "
                "run; it was probably written with torch.save(model). Save a state_dict instead "
                "(lenet_course.train.save_checkpoint)."
            ) from error
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): "
            f"{type(error).__name__}: {reason[:200]}"
        ) from error
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


def _shape_text(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) if tensor.dim() else "a scalar"


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` naming the first layer whose weights do not fit ``model``."""
    name = getattr(model, "config", {}).get("name", type(model).__name__)
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state_dict:
            raise CheckpointError(
                f"the checkpoint does not fit model {name!r}: it has no weights for layer {key} "
                f"({_shape_text(tensor)})"
            )
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"the checkpoint does not fit model {name!r}: layer {key} is "
                f"{_shape_text(state_dict[key])} in the checkpoint but {_shape_text(tensor)} in "
                "the model"
            )
    extra = [key for key in state_dict if key not in expected]
    if extra:
        raise CheckpointError(
            f"the checkpoint does not fit model {name!r}: it has layer {extra[0]} "
            f"({_shape_text(state_dict[extra[0]])}) that the model does not have"
        )


def model_from_checkpoint(checkpoint: PathLike | Mapping[str, Any]) -> nn.Module:
    """Rebuild the course model stored in ``checkpoint`` (a path or a loaded dict), in eval mode."""
    from lenet_course.models import build_model

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


def _check_resumable(state: Mapping[str, Any], model: nn.Module, config: Mapping[str, Any]) -> None:
    """Refuse to resume with settings that would not give the uninterrupted run's result."""
    saved = state["train_config"]
    keys = list(RESUME_KEYS)
    if config["schedule"] is not None:
        keys.append("epochs")  # the schedule's shape depends on the number of epochs
    for key in keys:
        if saved.get(key) != config[key]:
            raise ValueError(
                f"cannot resume: the checkpoint was trained with {key}={saved.get(key)!r} but "
                f"this run has {key}={config[key]!r}; use the same settings or start afresh"
            )
    model_config = getattr(model, "config", None)
    if state["model"] is not None and model_config is not None and state["model"] != model_config:
        raise ValueError(
            f"cannot resume: the checkpoint holds model {state['model']} but this model is "
            f"{model_config}"
        )
    check_state_dict(model, state["state_dict"])
