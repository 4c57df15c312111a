"""One training run's state, built once: the training set as device-resident batches
(:class:`Batches`), the model on its device, the optimiser, and the :class:`RunContract` that a
resumed run must match.  :func:`setup` builds a :class:`Run`; ``train.fit`` passes it around."""

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
from lenet_course.config import (
    RunContract,
    TrainConfig,
    check_settings,
    has_batch_norm,
    learning_rate_at,
)
from lenet_course.data import (
    CLASS_NAMES,
    InputSpec,
    augment,
    check_labels,
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
    least: int = 1  # the fewest examples a process may get in a step (2 for batch normalisation)

    @property
    def per_step(self) -> int:
        """The global batch: all processes' examples of one step."""
        return self.batch_size * self.world

    @property
    def steps(self) -> int:
        """Steps per epoch, without a last batch that would give a process fewer than ``least``."""
        full, rest = divmod(len(self.y), self.per_step)
        return full + (rest >= self.world * self.least)

    def local_sizes(self, rank: int) -> torch.Tensor:
        """How many examples process ``rank`` trains on at each step (``distributed.shard``)."""
        sizes = [min(self.per_step, len(self.y) - s * self.per_step) for s in range(self.steps)]
        local = [m // self.world + (rank < m % self.world) for m in sizes]
        return torch.tensor(local, dtype=torch.float64, device=self.y.device)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This process's (images, labels) of every step of ``epoch``."""
        order = epoch_permutation(len(self.y), self.seed, epoch).to(self.y.device)
        for step in range(self.steps):
            # a slice of the permutation: one gather, no copy of the data set
            index = distributed.shard(order[step * self.per_step : (step + 1) * self.per_step])
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
    # set by train.start_run, once the ranks agree and a resumed run is loaded:
    runner: Any = None  # the model as it trains: itself, DDP-wrapped or compiled
    graphed: GraphedSteps | None = None  # the step as CUDA graphs (cuda_graphs=True)

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
        return F.cross_entropy(outputs, labels, label_smoothing=self.config.label_smoothing)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Higher = more likely: the outputs, or the model's own reading of them."""
        own = getattr(self.model, "scores", None)
        return own(outputs) if callable(own) else outputs


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

    x, y = prepared(train, "train")
    blank = prepare_images(torch.zeros(1, 28, 28, dtype=torch.uint8), spec, norm)
    background, world = blank.min().item(), distributed.world_size()
    least = 2 if has_batch_norm(model) else 1  # batch normalisation of one example fails
    batches = Batches(
        x, y, config.batch_size, config.seed, config.crop, config.flip, background, world, least
    )
    check_training_set(batches, model)
    sets = {name: prepared(data, name) for name, data in held_out.items() if data is not None}
    classes = tuple(getattr(train, "classes", ()) or map(str, range(int(y.max()) + 1)))
    dataset = next((name for name, names in CLASS_NAMES.items() if names == classes), None)
    saved = {"class_names": classes, "normalization": norm, "dataset": dataset}
    run = Run(model, config, device, batches, sets, make_optimizer(model, config, batches), saved)
    run.history.config = recorded_settings(run, train, held_out.get("test"), channels_last)
    return run


def check_training_set(batches: Batches, model: nn.Module) -> None:
    """Refuse labels beyond the model's classes, and fewer examples than processes."""
    # the classes the model scores: the out_features of its last layer that has them
    outputs = [m.out_features for m in model.modules() if hasattr(m, "out_features")]
    if outputs:
        check_labels(batches.y, outputs[-1], type(model).__name__)
    if batches.steps == 0:
        n, world = len(batches.y), batches.world
        raise ValueError(f"{n} training examples for {world} processes; give each one")


def checksum(data: Any) -> str | None:
    """The crc32 of a set's images and labels: other data, another checksum."""
    if data is None:
        return None
    images, labels = images_and_labels(data)
    crc = zlib.crc32(labels.cpu().numpy(), zlib.crc32(images.cpu().contiguous().numpy()))
    return f"crc32:{crc:08x}"


def recorded_settings(run: Run, train: Any, test: Any, channels_last: bool) -> dict[str, Any]:
    """What the history, the metrics and every checkpoint record of the run's settings: the
    config, and what decides the run besides it (the contract's other entries)."""
    b, schedule = run.batches, run.config.schedule
    return {
        **asdict(run.config),
        "device": run.device.type,
        "channels_last": channels_last,
        "schedule": f"callable:{schedule.__qualname__}" if callable(schedule) else schedule,
        "world_size": b.world,
        "global_batch": b.per_step,
        "train_size": len(b.y),
        "validation_size": len(run.held_out.get("validation", ((), ()))[1]),
        "test_size": len(run.held_out.get("test", ((), ()))[1]),
        "train_data": checksum(train),
        "test_data": checksum(test),
        "input_spec": input_spec(run.model).to_dict(),
        "dataset": run.saved["dataset"],
        "model": getattr(run.model, "config", None),
    }


def resume_from(run: Run, checkpoint: PathLike) -> None:
    """Continue the same run from ``checkpoint``: weights, optimiser, generators and history."""
    state = load_checkpoint(checkpoint)
    ours, saved = RunContract.of(run.history.config), RunContract.of(state["train_config"])
    refusal = ours.refusal(saved, len(state["history"]), run.config.epochs)
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
        why = f"its saved state cannot be restored ({type(error).__name__}: {error})"
        raise CheckpointError(f"{checkpoint} is damaged: {why}; start a new run") from error
    run.history.epochs = [dict(record) for record in state["history"]]
