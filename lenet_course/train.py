"""Training: :func:`fit` is the textbook loop (set up; each epoch: train, evaluate, record, save).

It is fast because the data set moves to the device once, a batch is a slice of a per-epoch
permutation (``run_state.Batches``), and the loss and correct count stay on the device until the
epoch ends, so the host never waits inside an epoch.  On CUDA, ``cuda_graphs=True`` replays the
same :func:`train_step`, recorded once as a CUDA graph (graphs.py)."""

import contextlib
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lenet_course import distributed
from lenet_course.checkpoint import History, PathLike, load_checkpoint, save_checkpoint
from lenet_course.config import (
    TrainConfig,
    as_config,
    check_normalization,
    check_positive,
    resolve_device,
)
from lenet_course.config import check_settings as check_settings  # the command line's too
from lenet_course.data import epoch_permutation as epoch_permutation  # notebook 06's order
from lenet_course.data import images_and_labels, normalization_for, prepare_images
from lenet_course.graphs import GraphedSteps
from lenet_course.models import class_scores
from lenet_course.notebook import in_notebook
from lenet_course.run_state import Run, input_spec, resume_from, setup


class TrainingDivergedError(RuntimeError):
    """The loss or a weight stopped being finite, or the loss exploded: the rate is too high."""


def fit(
    model: nn.Module,
    train: Any,
    config: TrainConfig = TrainConfig(),
    *,
    test: Any = None,
    validation: Any = None,
    checkpoint: PathLike | None = None,
    resume: bool = False,
    on_epoch_end: Callable[[dict[str, Any]], Any] | None = None,
) -> History:
    """Train ``model`` on ``train`` (an ``ImageSet`` or ``(uint8 images, labels)``) as ``config``
    (or the recipe it names) says, evaluating ``validation`` and ``test`` after every epoch; return
    its History, the model left in eval mode.  With ``checkpoint`` every epoch is saved, and
    ``resume=True`` continues the same run from it.  In a notebook the stop button ends training
    early: the History holds the epochs finished, and one line says what was saved."""
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<path of the checkpoint to continue>")
    config = as_config(config)
    threads = cpu_threads(config.threads) if resolve_device(config.device).type == "cpu" else None
    main = distributed.rank() == 0  # under torchrun, rank 0 alone writes files and shows progress
    with torch_threads(threads), tensorboard(config.tensorboard if main else None) as writer:
        # set up: the device, the data on it, the optimiser, the run to continue
        seed_everything(config.seed)
        run = setup(model, train, config, {"validation": validation, "test": test})
        start_run(run, threads, checkpoint if resume else None)
        # each epoch: train, evaluate, record, save
        with progress_bar(run, config.progress and main) as bar, stop_button(run, checkpoint):
            for epoch in range(len(run.history), config.epochs):
                start = time.perf_counter()
                trained = train_epoch(run, epoch, bar.update)  # CUDA graphs replay, if asked for
                record = end_epoch(run, epoch, trained, start)  # evaluate; stop if diverged
                log_epoch(run, record, bar, writer)
                if checkpoint is not None and main:
                    save(run, checkpoint)
                distributed.barrier()  # every rank goes on once the epoch is saved
                if on_epoch_end is not None:
                    on_epoch_end(run.history.last)
    model.eval()
    return run.history


@contextlib.contextmanager
def stop_button(run: Run, checkpoint: PathLike | None) -> Iterator[None]:
    """A notebook's stop button ends training, and one line says what the checkpoint holds;
    elsewhere Ctrl-C goes on up (the command line says it)."""
    try:
        yield
    except KeyboardInterrupt:
        if not in_notebook():
            raise
        done = len(run.history)
        # what this run (or the run it resumed) saved, not a file an earlier run left there
        there = checkpoint is not None and done > 0 and os.path.isfile(checkpoint)
        saved = load_checkpoint(checkpoint)["epoch"] if there else 0
        where = f"; {checkpoint} holds epoch {saved} (resume=True continues)" if saved else ""
        held = f"{done} finished epoch" + ("s" if done != 1 else "")
        message = f"interrupted in epoch {done + 1}: the model and the history hold {held}{where}"
        print(message, file=sys.stderr)


def start_run(run: Run, threads: int | None, resume: PathLike | None) -> None:
    """Agree on the settings across ranks; wrap the model (DDP, compile); continue a saved run;
    record the step as CUDA graphs."""
    run.history.config["threads"] = threads
    local = ("threads", "progress", "tensorboard")  # may differ between ranks
    distributed.check_same({k: v for k, v in run.history.config.items() if k not in local})
    run.runner = distributed.wrap(run.model, run.device)  # DDP: rank 0's weights everywhere
    run.runner = torch.compile(run.runner) if run.config.compile else run.runner
    if resume is not None:
        resume_from(run, resume)
    if run.config.cuda_graphs:  # after resuming: the graphs read the resumed tensors
        start = time.perf_counter()
        lrs = [run.lr_at(step) for step in range(run.config.epochs * run.batches.steps)]
        b = run.batches
        step = partial(train_step, run)
        run.graphed = GraphedSteps(step, b.x, b.y, b.batch_size, b.steps, b.seed, lrs)
        run.graphed.capture(run.model, run.optimizer)
        run.history.config["capture_seconds"] = time.perf_counter() - start


def train_epoch(run: Run, epoch: int, on_step: Callable[[], Any]) -> tuple[torch.Tensor, ...]:
    """One pass over a fresh permutation; returns (loss per step, correct count) on the device."""
    run.model.train()
    if run.graphed is not None:  # the same steps, replayed as CUDA graphs
        return run.graphed.epoch(epoch, on_step)
    steps = run.batches.steps
    losses = torch.zeros(steps, device=run.device)
    correct = torch.zeros((), dtype=torch.int64, device=run.device)
    for step, (images, labels) in enumerate(run.batches.epoch(epoch)):
        if run.config.schedule is not None:
            for group in run.optimizer.param_groups:
                group["lr"] = run.lr_at(epoch * steps + step)
        losses[step], right = train_step(run, images, labels)
        correct += right
        on_step()
    return losses, correct


def train_step(run: Run, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """zero_grad, forward, loss, backward, step, as notebook 06 writes it out; returns the loss and
    the correct count, left on the device (reading them would wait)."""
    run.optimizer.zero_grad(set_to_none=True)
    with run.autocast():
        outputs = run.runner(images)
        loss = run.loss(outputs, labels)
    loss.backward()
    run.optimizer.step()
    correct = (run.scores(outputs.detach()).argmax(1) == labels).sum()
    return loss.detach(), correct


def end_epoch(run: Run, epoch: int, trained: tuple[torch.Tensor, ...], start: float) -> dict:
    """Evaluate, check for divergence, return the epoch's record: the epoch's one wait for the
    device; under torchrun one message sums the ranks' losses and counts."""
    losses, correct = trained
    sizes = run.batches.local_sizes(distributed.rank())
    flip, size = run.config.test_flip, run.config.eval_batch_size
    with run.autocast():
        held_out = [accuracy_on(run.model, x, y, size, flip) for x, y in run.held_out.values()]
    finite = torch.stack([p.detach().isfinite().all() for p in run.model.parameters()]).all()
    # exploding: a loss a thousand times the first, before it reaches inf or NaN
    calm = (losses <= 1000 * losses[0].clamp(min=1)).all()
    sums = [(losses * sizes).sum(), correct, sizes.sum(), ~finite, ~calm]
    summed = distributed.all_sum(torch.stack([value.double() for value in sums]))
    values = torch.cat([summed, *(share.view(1) for share in held_out)]).tolist()
    loss_sum, n_correct, n, broken, exploding, *held_out_accuracy = values
    if not math.isfinite(loss_sum) or broken or exploding:
        raise diverged(run, epoch, losses)
    seconds = time.perf_counter() - start
    accuracy = dict(zip(run.held_out, held_out_accuracy, strict=True))
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / n,
        "train_accuracy": n_correct / n,
        "validation_accuracy": accuracy.get("validation"),
        "test_accuracy": accuracy.get("test"),
        "lr": run.lr_at((epoch + 1) * run.batches.steps - 1),
        "seconds": seconds,
        "examples_per_second": n / seconds,
    }


def diverged(run: Run, epoch: int, losses: torch.Tensor) -> TrainingDivergedError:
    """The error that names the first bad step of ``epoch`` and a lower rate to try."""
    bad = (~torch.isfinite(losses) | (losses > 1000 * max(1.0, losses[0].item()))).nonzero()
    steps = run.batches.steps
    step = int(bad[0]) if len(bad) else steps - 1
    what = f"the loss became {losses[step].item():g}" if len(bad) else "a weight became NaN/inf"
    decay = run.config.weight_decay
    # a large weight decay diverges as a large rate does: lr * weight_decay scales each weight
    also = f", or the weight decay (weight_decay={decay:g}, --weight-decay)" if decay else ""
    where = f"training diverged in epoch {epoch + 1}, step {step + 1} of {steps}"
    rate = f"learning rate {run.lr_at(epoch * steps + step):g}"
    fix = f"Lower the learning rate (for example lr={run.config.lr / 10:g}){also} and train again"
    kept = "the last checkpoint, if any, holds the last good epoch."
    return TrainingDivergedError(f"{where}: {what} ({rate}). {fix}; {kept}")


def log_epoch(run: Run, record: dict[str, Any], bar: tqdm, writer: Any) -> None:
    """Add the epoch's record to the history, the progress bar and TensorBoard."""
    run.history.epochs.append(record)
    names = {
        "train_loss": "loss",
        "train_accuracy": "train",
        "validation_accuracy": "val",
        "test_accuracy": "test",
    }
    shown = {short: f"{record[key]:.3f}" for key, short in names.items() if record[key] is not None}
    bar.set_postfix(shown, refresh=True)
    for key, value in record.items():
        if writer is not None and key != "epoch" and value is not None:
            writer.add_scalar(key, value, record["epoch"])


def save(run: Run, checkpoint: PathLike) -> None:
    """The checkpoint after the epoch just recorded: weights, optimiser, history, settings."""
    save_checkpoint(
        checkpoint,
        run.model,
        optimizer=run.optimizer,
        history=run.history.epochs,
        train_config=run.history.config,
        **run.saved,
    )


def progress_bar(run: Run, shown: bool) -> tqdm:
    """A bar over every step of the run, starting at the epochs already done."""
    total, done = run.config.epochs * run.batches.steps, len(run.history) * run.batches.steps
    name = f"{type(run.model).__name__} on {run.device.type}"
    # about 100 redraws: a notebook client that reads late drops messages past about a thousand
    redraws = dict(miniters=max(1, total // 100), mininterval=0.5)
    return tqdm(total=total, initial=done, unit="batch", desc=name, disable=not shown, **redraws)


def tensorboard(log_dir: str | None) -> Any:
    """A TensorBoard writer for ``log_dir``, closed at the end; None when there is no folder."""
    if log_dir is None:
        return contextlib.nullcontext()
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional: imported when asked for
    except ImportError as error:
        need = "tensorboard=... needs the tensorboard package (pip install tensorboard)"
        raise ImportError(f"{need}; or leave tensorboard=None") from error
    return contextlib.closing(SummaryWriter(str(log_dir)))


def evaluate(
    model: nn.Module,
    data: Any,
    normalization: dict[str, Any] | None = None,
    *,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
    flip: bool = False,
) -> float:
    """The accuracy of ``model`` on ``data``, scaled as ``normalization`` (default: data's own),
    with test-time flips if ``flip`` (see ``class_scores``)."""
    check_positive("batch_size", batch_size)
    spec = input_spec(model)
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    images, labels = images_and_labels(data)
    norm = normalization if normalization is not None else normalization_for(spec, images)
    check_normalization(norm)
    x = prepare_images(images.to(device), spec, dict(norm))
    return accuracy_on(model, x, labels.to(device), batch_size, flip).item()


def accuracy_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int, flip: bool) -> Any:
    """The share of the images ``x`` that ``model`` classifies as ``y``, left on the device."""
    right = class_scores(model, x, size, flip).argmax(1) == y
    return right.sum().double() / len(y)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
    """Seed torch (CPU and CUDA) and ``random``: call it before building a model for the same
    weights (fit calls it again for the same dropout and augmentation)."""
    random.seed(seed)
    torch.manual_seed(seed)
