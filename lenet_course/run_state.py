"""One training run's state, built once: the training set as device-resident batches
(:class:`Batches`), the model on its device, the optimiser, and the :class:`RunContract` that a
resumed run must match.  :func:`setup` builds a :class:`Run`; ``train.fit`` passes it around."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lenet_course import distributed
from lenet_course.checkpoint import (
    CheckpointError,
    History,
    PathLike,
    check_state_dict,
    load_checkpoint,
)
from lenet_course.config import RunContract, TrainConfig, learning_rate_at, resolve_device
from lenet_course.data import (
    CLASS_NAMES,
    InputSpec,
    augment,
    epoch_permutation,
    images_and_labels,
    normalization_for,
    prepare_images,
)
from lenet_course.graphs import GraphedSteps


def input_spec(model: nn.Module) -> InputSpec:
    """What ``model`` expects; a user's own model without one gets 1 x 28 x 28."""
    return getattr(model, "input_spec", None) or InputSpec()


@dataclass
class Batches:
    """The training set on the device, served as airbench's loader serves CIFAR-10: each epoch a
    fresh permutation cut into global batches of ``batch_size`` examples per process; under
    torchrun each process takes its shard of every batch; crops and flips happen on the device."""

    x: torch.Tensor  # every training image, prepared for the model
    y: torch.Tensor
    batch_size: int
    seed: int  # with the epoch, decides the epoch's order
    crop: int = 0
    flip: bool = False
    background: float = 0.0  # a blank pixel, prepared: what a crop shifts in
    world: int = 1  # processes training together (torchrun)

    @property
    def per_step(self) -> int:
        """The global batch: all processes' examples of one step."""
        return self.batch_size * self.world

    @property
    def steps(self) -> int:
        """Steps per epoch; a last batch smaller than the world size is left out."""
        full, rest = divmod(len(self.y), self.per_step)
        return full + (rest >= self.world)

    def local_sizes(self, rank: int) -> torch.Tensor:
        """How many examples process ``rank`` trains on at each step (``distributed.shard``)."""
        sizes = [min(self.per_step, len(self.y) - s * self.per_step) for s in range(self.steps)]
        local = [m // self.world + (rank < m % self.world) for m in sizes]
        return torch.tensor(local, dtype=torch.float64, device=self.y.device)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This process's (images, labels) of every step of ``epoch``."""
        order = epoch_permutation(len(self.y), self.seed, epoch).to(self.y.device)
        for step in range(self.steps):
            batch = order[step * self.per_step : (step + 1) * self.per_step]
            index = distributed.shard(batch)
            # a slice of the permutation: one gather, no copy of the data set
            images, labels = self.x[index], self.y[index]
            if self.crop or self.flip:
                images = augment(images, self.crop, self.flip, self.background)
            yield images, labels


@dataclass
class Run:
    """One training run's state, built once by :func:`setup` and passed to every part of fit."""

    model: nn.Module
    config: TrainConfig
    device: torch.device
    batches: Batches
    held_out: dict[str, tuple[torch.Tensor, torch.Tensor]]  # validation, test: on the device
    optimizer: torch.optim.Optimizer
    saved: dict[str, Any]  # what each checkpoint stores besides the weights: class names, ...
    history: History = field(default_factory=History)
    runner: Any = None  # the model as it trains: itself, DDP-wrapped or compiled
    graphed: GraphedSteps | None = None  # the step as CUDA graphs (cuda_graphs=True)

    @property
    def contract(self) -> RunContract:
        """What a run that continues this one must match."""
        return RunContract.of(self.history.config)

    def lr_at(self, step: int) -> float:
        """The learning rate of (0-based) step ``step`` of the whole run."""
        c, steps = self.config, self.batches.steps
        return learning_rate_at(c.schedule, c.lr, step, steps, c.epochs * steps)

    def autocast(self) -> Any:
        """bfloat16 autocast when the config asks for it.  No weight cache: a CUDA graph may
        record the step, and must not keep a cast made before the weights changed."""
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16, cache_enabled=False
        )

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The model's own loss if it has one (LeNet-5 of 1998: MAP), else cross-entropy."""
        own = getattr(self.model, "loss", None)
        if callable(own):
            return own(outputs, labels)
        smoothing = self.config.label_smoothing
        return F.cross_entropy(outputs, labels, label_smoothing=smoothing)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Higher = more likely: the outputs, or the model's own reading of them."""
        own = getattr(self.model, "scores", None)
        return own(outputs) if callable(own) else outputs


def check_settings(model: nn.Module, config: TrainConfig) -> torch.device:
    """Refuse settings that do not fit ``model`` or this machine; return the device to use."""
    device = resolve_device(config.device)
    name = getattr(model, "config", {}).get("name", type(model).__name__)
    graphs_refused = config.compile or config.crop or config.flip or config.optimizer == "sdlm"
    if config.cuda_graphs and (device.type != "cuda" or graphs_refused or distributed.launched()):
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
        raise ValueError(
            f"optimizer='sdlm' estimates the curvature of LeNet5_1998's layers; {name} is "
            "another network"
        )
    return device


def make_optimizer(model: nn.Module, config: TrainConfig, batches: Batches) -> Any:
    """The model's own optimiser if it configures one (LeNet-5 of 1998: SDLM), else the one
    ``config`` names, over the model's trainable parameters."""
    configure = getattr(model, "configure_optimizer", None)
    own = configure(config, batches.x, batches.steps) if configure is not None else None
    if own is not None:
        return own
    params = [p for p in model.parameters() if p.requires_grad]
    c = config
    if c.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay
        )
    adam = torch.optim.Adam if c.optimizer == "adam" else torch.optim.AdamW
    return adam(params, lr=c.lr, weight_decay=c.weight_decay)


def setup(model: nn.Module, train: Any, config: TrainConfig, held_out: dict[str, Any]) -> Run:
    """Check the settings; move the model and the data to the device; build the optimiser."""
    device = distributed.start(check_settings(model, config))  # under torchrun: this rank's
    channels_last = device.type == "cpu" if config.channels_last is None else config.channels_last
    spec, (images, _) = input_spec(model), images_and_labels(train, "train")
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    # the training images' statistics scale every set: the held-out sets stay unseen
    norm = dict(config.normalization or normalization_for(spec, images.to(device)))

    def prepared(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = images_and_labels(data, what)
        x = prepare_images(images.to(device), spec, norm)
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        return x, labels.to(device)

    blank = prepare_images(torch.zeros(1, 28, 28, dtype=torch.uint8), spec, norm)
    x, y = prepared(train, "train")
    batches = Batches(
        x,
        y,
        config.batch_size,
        config.seed,
        config.crop,
        config.flip,
        background=blank.min().item(),
        world=distributed.world_size(),
    )
    if batches.steps == 0:
        raise ValueError(f"{len(y)} training examples for {batches.world} processes; give each one")
    sets = {name: prepared(data, name) for name, data in held_out.items() if data is not None}
    classes = tuple(getattr(train, "classes", ()) or map(str, range(int(y.max()) + 1)))
    dataset = next((name for name, names in CLASS_NAMES.items() if names == classes), None)
    saved = {"class_names": classes, "normalization": norm, "dataset": dataset}
    run = Run(model, config, device, batches, sets, make_optimizer(model, config, batches), saved)
    run.history.config = recorded_settings(run, images, channels_last)
    return run


def recorded_settings(run: Run, images: torch.Tensor, channels_last: bool) -> dict[str, Any]:
    """What the history, the metrics and every checkpoint record of the run's settings: the
    config, and what decides the run besides it (the contract's other entries)."""
    y, schedule = run.batches.y, run.config.schedule
    crc = zlib.crc32(y.cpu().numpy(), zlib.crc32(images.cpu().contiguous().numpy()))
    return {
        **asdict(run.config),
        "device": run.device.type,
        "channels_last": channels_last,
        "schedule": f"callable:{schedule.__qualname__}" if callable(schedule) else schedule,
        "world_size": run.batches.world,
        "train_size": len(y),
        "validation_size": len(run.held_out.get("validation", ((), ()))[1]),
        "train_data": f"crc32:{crc:08x}",
        "input_spec": input_spec(run.model).to_dict(),
        "dataset": run.saved["dataset"],
        "model": getattr(run.model, "config", None),
    }


def resume_from(run: Run, checkpoint: PathLike) -> None:
    """Continue the same run from ``checkpoint``: weights, optimiser, generators and history."""
    state = load_checkpoint(checkpoint)
    refusal = run.contract.refusal(RunContract.of(state["train_config"]))
    if refusal is not None:
        raise ValueError(refusal)
    check_state_dict(run.model, state["state_dict"])
    try:
        run.model.load_state_dict(state["state_dict"])
        if state["optimizer"] is not None:
            run.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if run.device.type == "cuda" and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{checkpoint} is damaged: its saved state cannot be restored "
            f"({type(error).__name__}: {error}); start a new run"
        ) from error
    run.history.epochs = [dict(record) for record in state["history"]]
