"""Training: one loop over device-resident tensors, with history, checkpoints and resume.

Fast because the data set moves to the device once, a batch is a slice of a per-epoch permutation,
and the loss and correct count stay on the device until the epoch ends (no host waits).  On CUDA,
``cuda_graphs=True`` records the whole step as one CUDA graph: one launch per step, not dozens."""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lenet_course import distributed
from lenet_course.checkpoint import (
    CheckpointError,
    History,
    PathLike,
    check_state_dict,
    load_checkpoint,
    save_checkpoint,
)
from lenet_course.config import RESUME_FLAGS, RESUME_KEYS, TrainConfig, learning_rate_at
from lenet_course.data import (
    CLASS_NAMES,
    InputSpec,
    augment,
    epoch_permutation,
    images_and_labels,
    normalization_for,
    prepare_images,
)
from lenet_course.distributed import resolve_device
from lenet_course.graphs import Graphed, capture, replay_epoch
from lenet_course.lenet1998 import LeNet5_1998
from lenet_course.models import class_scores
from lenet_course.paper import PAPER_HESSIAN_SAMPLES
from lenet_course.sdlm import sdlm_for


class TrainingDivergedError(RuntimeError):
    """The loss or a weight stopped being finite, or the loss exploded: the rate is too high."""


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_threads(threads: int | None = None) -> int | None:
    """CPU threads for training: ``threads``, else 1 with <= 2 cores (benchmarks/), else None."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads={threads}; use a positive number, or None for the default")
    return threads or (1 if available_cores() <= 2 else None)


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
    random.seed(seed)
    torch.manual_seed(seed)


def _input_spec(model: nn.Module) -> InputSpec:
    return getattr(model, "input_spec", None) or InputSpec()  # a user's model: 1 x 28 x 28


def _on_device(data: Any, what: str, run: _Run) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole set, prepared for the model, on the run's device (once)."""
    images, labels = images_and_labels(data, what)
    x = prepare_images(images.to(run.device), run.spec, run.normalization)
    x = x.contiguous(memory_format=torch.channels_last) if run.channels_last else x
    return x, labels.to(run.device)


def evaluate(model: nn.Module, data: Any, normalization: dict[str, Any] | None = None, *,
             batch_size: int = 1000, device: str | torch.device | None = None,
             flip: bool = False) -> float:
    """The accuracy of ``model`` on ``data``, scaled as ``normalization`` (default: data's own);
    ``flip``: with test-time flips (see ``class_scores``)."""
    spec = _input_spec(model)
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    images, labels = images_and_labels(data)
    norm = normalization if normalization is not None else normalization_for(spec, images)
    x = prepare_images(images.to(device), spec, dict(norm))
    right = class_scores(model, x, batch_size, flip).argmax(1) == labels.to(device)
    return right.sum().item() / len(x)


@dataclass
class _Run:
    """What the loop needs, set up once by :func:`fit`."""

    model: nn.Module
    config: TrainConfig
    device: torch.device
    spec: InputSpec
    normalization: dict[str, Any]
    channels_last: bool
    world: int = 1  # processes training together (torchrun)
    rank: int = 0
    background: float = 0.0  # a blank pixel, prepared: what a crop shifts in
    history: History = field(default_factory=History)
    x: torch.Tensor = field(init=False)  # all training images, prepared, on the device
    y: torch.Tensor = field(init=False)
    sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    optimizer: torch.optim.Optimizer = field(init=False)
    runner: Callable[[torch.Tensor], torch.Tensor] = field(init=False)  # the model, or compiled
    graphed: Graphed | None = None  # the CUDA graphs of cuda_graphs=True

    @property
    def per_step(self) -> int:  # the global batch: all ranks' examples of one step
        return self.config.batch_size * self.world

    @property
    def steps(self) -> int:  # the last batch, if smaller than the world size, is left out
        return len(self.y) // self.per_step + (len(self.y) % self.per_step >= self.world)

    def local_sizes(self) -> torch.Tensor:
        """How many examples this rank trains on at each step (``distributed.shard``'s parts)."""
        sizes = [min(self.per_step, len(self.y) - s * self.per_step) for s in range(self.steps)]
        local = [m // self.world + (self.rank < m % self.world) for m in sizes]
        return torch.tensor(local, dtype=torch.float64, device=self.device)

    def lr_at(self, step: int) -> float:
        c = self.config
        return learning_rate_at(c.schedule, c.lr, step, self.steps, c.epochs * self.steps)

    def autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16,
                              cache_enabled=False)  # no cache: a CUDA graph may record it

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        own = getattr(self.model, "loss", None)  # LeNet-5 (1998) has its MAP loss
        return own(outputs, targets) if callable(own) else F.cross_entropy(
            outputs, targets, label_smoothing=self.config.label_smoothing)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        own = getattr(self.model, "scores", None)  # higher = more likely
        return own(outputs) if callable(own) else outputs


def make_optimizer(run: _Run) -> torch.optim.Optimizer:
    """The optimiser ``run.config`` names, over the model's trainable parameters."""
    c, params = run.config, [p for p in run.model.parameters() if p.requires_grad]
    if c.optimizer == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                               weight_decay=c.weight_decay)
    if c.optimizer == "sdlm":  # the paper's: curvature from 500 training images per pass
        return sdlm_for(run.model, run.x, batch_size=c.batch_size, steps_per_pass=run.steps,
                        samples=min(PAPER_HESSIAN_SAMPLES, len(run.x)), lr=c.lr, seed=c.seed)
    adam = torch.optim.Adam if c.optimizer == "adam" else torch.optim.AdamW
    return adam(params, lr=c.lr, weight_decay=c.weight_decay)


def train_epoch(run: _Run, epoch: int, on_step: Callable[[], Any]) -> tuple[torch.Tensor, ...]:
    """One pass over a fresh permutation; returns (loss per step, correct count) on the device."""
    model, c, x, y = run.model, run.config, run.x, run.y
    model.train()
    order = epoch_permutation(len(y), c.seed, epoch).to(run.device)
    losses = torch.zeros(run.steps, device=run.device)
    correct = torch.zeros((), dtype=torch.int64, device=run.device)
    for step in range(run.steps):
        if c.schedule is not None:
            for group in run.optimizer.param_groups:
                group["lr"] = run.lr_at(epoch * run.steps + step)
        index = distributed.shard(order[step * run.per_step : (step + 1) * run.per_step])
        xb, yb = x[index], y[index]  # a slice of the permutation (this rank's part): one gather
        if c.crop or c.flip:
            xb = augment(xb, c.crop, c.flip, run.background)
        with run.autocast():
            outputs = run.runner(xb)
            loss = run.loss(outputs, yb)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        losses[step] = loss.detach()  # stays on the device: no sync
        correct += (run.scores(outputs.detach()).argmax(1) == yb).sum()
        on_step()
    return losses, correct


def end_epoch(run: _Run, epoch: int, trained: tuple[torch.Tensor, ...], start: float) -> dict:
    """Evaluate, check for divergence and return the epoch's record: the epoch's one host sync,
    and under torchrun one message that sums the ranks' losses and counts."""
    losses, correct = trained
    sizes = run.local_sizes()
    with run.autocast():  # correct counts, on the device (no host sync)
        counts = [(class_scores(run.model, x, run.config.eval_batch_size,
                                run.config.test_flip).argmax(1) == y).sum()
                  for x, y in run.sets.values()]
    finite = torch.stack([p.detach().isfinite().all() for p in run.model.parameters()]).all()
    calm = (losses <= 1000 * losses[0].clamp(min=1)).all()  # exploding, if not yet inf or NaN
    trained_sums = distributed.all_sum(torch.stack(
        [(losses * sizes).sum(), correct.double(), sizes.sum(), ~finite, ~calm]).double())
    loss_sum, n_correct, n, broken, exploding, *set_correct = torch.cat(
        [trained_sums, *(c.double().view(1) for c in counts)]).tolist()
    if not math.isfinite(loss_sum) or broken or exploding:
        raise _diverged(run, epoch, losses)
    seconds = time.perf_counter() - start
    accuracy = {name: c / len(y) for (name, (_, y)), c in zip(run.sets.items(), set_correct,
                                                                     strict=True)}
    return {
        "epoch": epoch + 1, "train_loss": loss_sum / n, "train_accuracy": n_correct / n,
        "validation_accuracy": accuracy.get("validation"), "test_accuracy": accuracy.get("test"),
        "lr": run.lr_at(epoch * run.steps + run.steps - 1), "seconds": seconds,
        "examples_per_second": n / seconds,
    }


def _diverged(run: _Run, epoch: int, losses: torch.Tensor) -> TrainingDivergedError:
    bad = (~torch.isfinite(losses) | (losses > 1000 * max(1.0, losses[0].item()))).nonzero()
    step = int(bad[0]) if len(bad) else run.steps - 1
    what = f"the loss became {losses[step].item():g}" if len(bad) else "a weight became NaN/inf"
    return TrainingDivergedError(
        f"training diverged in epoch {epoch + 1}, step {step + 1} of {run.steps}: {what} "
        f"(learning rate {run.lr_at(epoch * run.steps + step):g}). Lower the learning rate (for "
        f"example lr={run.config.lr / 10:g}) and train again; the last checkpoint, if any, holds "
        "the last good epoch.")


def check_settings(model: nn.Module, config: TrainConfig) -> torch.device:
    """Refuse settings that do not fit ``model`` or this machine; return the device to use."""
    device = resolve_device(config.device)
    name = getattr(model, "config", {}).get("name", type(model).__name__)
    if config.cuda_graphs and (device.type != "cuda" or config.compile or config.crop
                               or config.flip or config.optimizer == "sdlm"
                               or distributed.launched()):
        raise ValueError("cuda_graphs=True records each training step as a CUDA graph: it needs a "
                         "CUDA device (on the CPU, train without it), one process, no compile, "
                         "no crop or flip and no sdlm")
    if config.label_smoothing and callable(getattr(model, "loss", None)):
        raise ValueError(f"label_smoothing={config.label_smoothing} applies to cross-entropy, but "
                         f"{name} has its own loss(); use label_smoothing=0")
    if config.optimizer == "sdlm" and not isinstance(model, LeNet5_1998):
        raise ValueError(f"optimizer='sdlm' estimates the curvature of LeNet5_1998's layers; "
                         f"{name} is another network")
    return device


def _setup(model: nn.Module, train: Any, config: TrainConfig, sets: dict[str, Any]) -> _Run:
    """Check the settings, move the model and the data to the device, build the optimiser."""
    device = distributed.start(check_settings(model, config))  # under torchrun: this rank's
    channels_last = device.type == "cpu" if config.channels_last is None else config.channels_last
    spec, (images, _) = _input_spec(model), images_and_labels(train, "train")
    seed_everything(config.seed)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    norm = config.normalization or normalization_for(spec, images.to(device))  # train images only
    run = _Run(model, config, device, spec, dict(norm), channels_last, distributed.world_size(),
               distributed.rank())
    run.x, run.y = _on_device(train, "train", run)
    blank = torch.zeros(1, 28, 28, dtype=torch.uint8)
    run.background = prepare_images(blank, spec, run.normalization).min().item()
    if run.steps == 0:
        raise ValueError(f"{len(run.y)} training examples for {run.world} processes; give each one")
    run.sets = {name: _on_device(data, name, run) for name, data in sets.items()
                if data is not None}
    run.optimizer = make_optimizer(run)
    schedule = config.schedule
    crc = zlib.crc32(run.y.cpu().numpy(), zlib.crc32(images.cpu().contiguous().numpy()))
    run.history.config = {
        **asdict(config), "device": device.type, "channels_last": channels_last,
        "schedule": schedule if not callable(schedule) else f"callable:{schedule.__qualname__}",
        "world_size": run.world, "train_size": len(run.y),
        "validation_size": len(run.sets.get("validation", ((), ()))[1]),
        "train_data": f"crc32:{crc:08x}", "input_spec": spec.to_dict(),
    }
    return run


def _resume(run: _Run, checkpoint: PathLike) -> None:
    """Continue the same run from ``checkpoint``: weights, optimiser, generators and history."""
    state = load_checkpoint(checkpoint)
    saved, config = state["train_config"], run.history.config
    for key in [*RESUME_KEYS, "epochs"] if config["schedule"] is not None else RESUME_KEYS:
        if saved.get(key) != config[key]:
            flag = RESUME_FLAGS.get(key, "--" + key.replace("_", "-"))
            raise ValueError(
                f"cannot resume: the checkpoint was trained with {key}={saved.get(key)!r} but this "
                f"run has {key}={config[key]!r}; use the same {flag}, or start a new run "
                "(--overwrite or another --out)")
    check_state_dict(run.model, state["state_dict"])
    try:
        run.model.load_state_dict(state["state_dict"])
        if state["optimizer"] is not None:
            run.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if run.device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{checkpoint} is damaged: its saved state cannot be restored "
                              f"({type(error).__name__}: {error}); start a new run") from error
    run.history.epochs = [dict(record) for record in state["history"]]


def _tensorboard(log_dir: str | None) -> Any:
    if log_dir is None:
        return contextlib.nullcontext()
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional: only when asked for
    except ImportError as error:
        raise ImportError("tensorboard=... needs the tensorboard package (pip install "
                          "tensorboard); or leave tensorboard=None") from error
    return contextlib.closing(SummaryWriter(str(log_dir)))


def _postfix(record: dict[str, Any]) -> dict[str, str]:
    names = {"train_loss": "loss", "train_accuracy": "train", "validation_accuracy": "val",
             "test_accuracy": "test"}  # what the progress bar shows after each epoch
    return {short: f"{record[key]:.3f}" for key, short in names.items() if record[key] is not None}


def fit(model: nn.Module, train: Any, config: TrainConfig = TrainConfig(), *, test: Any = None,
        validation: Any = None, checkpoint: PathLike | None = None, resume: bool = False,
        on_epoch_end: Callable[[dict[str, Any]], Any] | None = None) -> History:
    """Train ``model`` on ``train`` (an ``ImageSet`` or ``(uint8 images, labels)``) as ``config``
    says, evaluating ``validation`` and ``test`` after every epoch; return its History.  With
    ``checkpoint`` every epoch is saved, and ``resume=True`` continues the same run from it."""
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path of the checkpoint to continue>")
    device = resolve_device(config.device)
    threads = cpu_threads(config.threads) if device.type == "cpu" else None
    main = distributed.rank() == 0  # under torchrun, rank 0 alone writes files and shows progress
    with torch_threads(threads), _tensorboard(config.tensorboard if main else None) as writer:
        run = _setup(model, train, config, {"validation": validation, "test": test})
        classes = tuple(getattr(train, "classes", ()) or map(str, range(int(run.y.max()) + 1)))
        meta = {"class_names": classes, "normalization": run.normalization,
                "dataset": next((k for k, v in CLASS_NAMES.items() if v == classes), None)}
        run.history.config.update(threads=threads, dataset=meta["dataset"],
                                  model=getattr(model, "config", None))
        distributed.check_same({k: v for k, v in run.history.config.items()
                                if k not in ("threads", "progress", "tensorboard")})
        run.runner = distributed.wrap(model, device)  # DDP under torchrun: rank 0's weights
        run.runner = torch.compile(run.runner) if config.compile else run.runner
        if resume:
            _resume(run, checkpoint)  # type: ignore[arg-type]
        if config.cuda_graphs:  # after resuming: the graphs read the resumed tensors
            start = time.perf_counter()
            capture(run)
            run.history.config["capture_seconds"] = time.perf_counter() - start
        total, name = config.epochs * run.steps, f"{type(model).__name__} on {device.type}"
        # ~100 redraws: a notebook client that reads late drops messages past about a thousand
        with tqdm(total=total, initial=len(run.history) * run.steps, unit="batch", desc=name,
                  disable=not (config.progress and main),
                  miniters=max(1, total // 100), mininterval=0.5) as bar:
            for epoch in range(len(run.history), config.epochs):
                start = time.perf_counter()
                trained = (replay_epoch if run.graphed else train_epoch)(run, epoch, bar.update)
                record = end_epoch(run, epoch, trained, start)
                run.history.epochs.append(record)
                bar.set_postfix(_postfix(record), refresh=True)
                for key, value in record.items():
                    if writer is not None and key != "epoch" and value is not None:
                        writer.add_scalar(key, value, epoch + 1)
                if checkpoint is not None and main:
                    save_checkpoint(checkpoint, model, optimizer=run.optimizer,
                                    history=run.history.epochs,
                                    train_config=run.history.config, **meta)
                distributed.barrier()  # every rank goes on once the epoch is saved
                if on_epoch_end is not None:
                    on_epoch_end(record)
        model.eval()
    return run.history
