"""LeNet three equivalent ways (bitwise-equal from the same weights), LeNetBN for notebook 10, and
every course model by name (``build_model``)."""

import contextlib
import inspect
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lenet_course.arguments import choose
from lenet_course.data import INPUT_SIZES, InputSpec, check_input
from lenet_course.lenet1998 import LeNet5_1998

ACTIVATIONS: tuple[str, ...] = ("relu", "sigmoid", "tanh")
POOLINGS: tuple[str, ...] = ("avg", "max")
# What LeNet5v1.forward applies, and the modules the nn.Sequential styles hold, by option name.
ACTIVATION_FUNCTIONS = {"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
POOLING_FUNCTIONS = {"avg": F.avg_pool2d, "max": F.max_pool2d}
_ACTIVATION_MODULES = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
_POOLING_MODULES = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
#: LeNetBN's default widths: the channels of conv1 and conv2, the units of fc1 and fc2.
WIDTHS = (16, 32, 56, 48)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in evaluation mode inside the ``with`` block; each module's mode restored after."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@torch.no_grad()
def class_scores(model: nn.Module, x: torch.Tensor, batch_size=1000, flip=False) -> torch.Tensor:
    """Class scores (higher = more likely) of the prepared images ``x``, batch by batch on their
    device.  ``flip`` (test-time flips): the mean softmax of each image and its mirror image."""

    def scores(images: torch.Tensor) -> torch.Tensor:
        batches = range(0, len(images), batch_size)
        outputs = torch.cat([model(images[i : i + batch_size]) for i in batches])
        # LeNet5_1998 outputs penalties (lower = more likely): its scores() turns them round
        return model.scores(outputs) if callable(getattr(model, "scores", None)) else outputs

    with eval_mode(model):
        if not flip:
            return scores(x)
        return (scores(x).softmax(1) + scores(x.flip(3)).softmax(1)) / 2


def _configure(model, name, activation, pooling, input_size, num_classes) -> int:
    """Check the options, set ``model.config`` and ``model.input_spec``; return conv1's padding."""
    choices = {"activation": (activation, ACTIVATIONS), "pooling": (pooling, POOLINGS)}
    for option, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{option}={value!r} is unknown; use one of {allowed}")
    if input_size not in INPUT_SIZES:
        raise ValueError(f"input_size={input_size!r} is not supported; use 28 (padded by 2) or 32")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
    model.config = dict(
        name=name,
        activation=activation,
        pooling=pooling,
        input_size=input_size,
        num_classes=num_classes,
    )
    model.input_spec = InputSpec(channels=1, size=input_size, normalization="standardize")
    # 28x28 images are padded to 32x32, the size LeNet-5 read in 1998
    return 2 if input_size == 28 else 0


class LeNet5v1(nn.Module):
    """LeNet as an ``nn.Module`` whose ``forward`` applies the activations and pooling as functions.
    Default: 1x28x28 input (padded by 2), ReLU, average pooling: 61,706 parameters."""

    def __init__(self, activation="relu", pooling="avg", input_size=28, num_classes=10):
        super().__init__()
        padding = _configure(self, "v1", activation, pooling, input_size, num_classes)
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=padding)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    # Looked up by name rather than stored, so that the whole module pickles.
    @property
    def act(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return ACTIVATION_FUNCTIONS[self.config["activation"]]

    @property
    def pool(self) -> Callable[..., torch.Tensor]:
        return POOLING_FUNCTIONS[self.config["pooling"]]

    def extra_repr(self) -> str:
        # print(model) lists modules only; say what forward adds
        c = self.config
        return f"activation={c['activation']}, pooling={c['pooling']} (applied in forward)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_spec, type(self).__name__)
        x = self.pool(self.act(self.conv1(x)), kernel_size=2, stride=2)  # 6x28x28 -> 6x14x14
        x = self.pool(self.act(self.conv2(x)), kernel_size=2, stride=2)  # 16x10x10 -> 16x5x5
        x = self.act(self.fc1(torch.flatten(x, 1)))  # 400 -> 120
        x = self.act(self.fc2(x))  # 120 -> 84
        return self.fc3(x)


class _CheckedSequential(nn.Sequential):
    """An ``nn.Sequential`` that checks its input's shape first, with an error that says why."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_spec, type(self).__name__)
        return super().forward(x)


class LeNet5v2(_CheckedSequential):
    """LeNet as one flat ``nn.Sequential``: layers 0-11, numbered as in d2l's ``LeNet.net``."""

    def __init__(self, activation="relu", pooling="avg", input_size=28, num_classes=10):
        padding = _configure(self, "v2", activation, pooling, input_size, num_classes)
        act, pool = _ACTIVATION_MODULES[activation], _POOLING_MODULES[pooling]
        super().__init__(
            nn.Conv2d(1, 6, kernel_size=5, padding=padding),
            act(),
            pool(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            act(),
            pool(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            act(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, num_classes),
        )


class LeNet5v3(_CheckedSequential):
    """LeNet as an ``nn.Sequential`` of named blocks, one per stage."""

    def __init__(self, activation="relu", pooling="avg", input_size=28, num_classes=10):
        padding = _configure(self, "v3", activation, pooling, input_size, num_classes)
        act, pool = _ACTIVATION_MODULES[activation], _POOLING_MODULES[pooling]
        conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=padding)
        conv2 = nn.Conv2d(6, 16, kernel_size=5)
        super().__init__(
            OrderedDict(
                conv_block1=nn.Sequential(conv1, act(), pool(kernel_size=2, stride=2)),
                conv_block2=nn.Sequential(conv2, act(), pool(kernel_size=2, stride=2)),
                fc_block1=nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), act()),
                fc_block2=nn.Sequential(nn.Linear(120, 84), act()),
                output=nn.Linear(84, num_classes),
            )
        )


class LeNetBN(_CheckedSequential):
    """LeNet's shape with batch normalisation after every layer but the last, whose bias it makes
    redundant.  Defaults: 61,482 parameters, within LeNet-5's 61,706 (notebook 10's challenge)."""

    def __init__(
        self, activation="relu", pooling="max", input_size=28, num_classes=10, widths=WIDTHS
    ):
        padding = _configure(self, "lenet-bn", activation, pooling, input_size, num_classes)
        if len(widths) != 4 or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ValueError(f"widths={widths!r}; give 4 positive whole numbers, like {WIDTHS}")
        self.config["widths"] = c1, c2, h1, h2 = list(widths)
        act, pool = _ACTIVATION_MODULES[activation], _POOLING_MODULES[pooling]
        conv1 = nn.Conv2d(1, c1, kernel_size=5, padding=padding, bias=False)
        conv2 = nn.Conv2d(c1, c2, kernel_size=5, bias=False)
        fc1 = nn.Linear(c2 * 5 * 5, h1, bias=False)
        fc2 = nn.Linear(h1, h2, bias=False)
        super().__init__(
            OrderedDict(
                conv_block1=nn.Sequential(conv1, nn.BatchNorm2d(c1), act(), pool(2, stride=2)),
                conv_block2=nn.Sequential(conv2, nn.BatchNorm2d(c2), act(), pool(2, stride=2)),
                fc_block1=nn.Sequential(nn.Flatten(), fc1, nn.BatchNorm1d(h1), act()),
                fc_block2=nn.Sequential(fc2, nn.BatchNorm1d(h2), act()),
                output=nn.Linear(h2, num_classes),
            )
        )


def _tensors(module: nn.Module) -> list[list[tuple[str, torch.Tensor]]]:
    """[parameters, the buffers state_dict saves] of ``module``, each in registration order."""
    saved = module.state_dict(keep_vars=True).keys()
    params = list(module.named_parameters())
    buffers = [(name, b) for name, b in module.named_buffers() if name in saved]
    for name, tensor in params + buffers:
        if nn.parameter.is_lazy(tensor):
            raise ValueError(
                f"{type(module).__name__}.{name} is not initialised yet (a Lazy layer, as in d2l's"
                " LeNet): run one forward pass first to give it its shape, for example"
                " net(torch.zeros(1, 1, 28, 28))"
            )
    return [params, buffers]


def shape_text(t: torch.Tensor) -> str:
    return "x".join(str(n) for n in t.shape) if t.dim() else "a scalar"


def transfer_weights(src: nn.Module, dst: nn.Module) -> list[tuple[str, str]]:
    """Copy ``src``'s parameters and buffers into ``dst`` by order (names may differ), checked by
    shape, leaving ``dst`` untouched on a mismatch; return the ``(src_name, dst_name)`` pairs."""
    s_name, d_name = type(src).__name__, type(dst).__name__
    pairs = []
    kinds = zip(("parameters", "buffers"), _tensors(src), _tensors(dst), strict=True)
    for kind, ours, theirs in kinds:
        if len(ours) != len(theirs):
            n = min(len(ours), len(theirs))
            owner, (extra, tensor) = (s_name, ours[n]) if len(ours) > n else (d_name, theirs[n])
            counts = f"{s_name} has {len(ours)} {kind} and {d_name} has {len(theirs)}"
            unmatched = f"{owner}.{extra} {shape_text(tensor)} has no counterpart"
            raise ValueError(f"{counts}: the networks differ in structure ({unmatched})")
        for (a, ta), (b, tb) in zip(ours, theirs, strict=True):
            if ta.shape != tb.shape:
                why = f"{s_name}.{a} is {shape_text(ta)} but {d_name}.{b} is {shape_text(tb)}"
                raise ValueError(f"shape mismatch: {why}; nothing was copied")
            pairs.append((a, ta, b, tb))
    # Into clones first: a copy that fails halfway (a dtype, say) leaves dst as it was
    with torch.no_grad():
        values = [tb.detach().clone().copy_(ta) for _, ta, _, tb in pairs]
        for (_, _, _, tb), value in zip(pairs, values, strict=True):
            tb.copy_(value)
    return [(a, b) for a, _, b, _ in pairs]


# "classic" is d2l's LeNet: the flat style with sigmoid (and average pooling).
_CLASSES = {
    "v1": LeNet5v1,
    "v2": LeNet5v2,
    "v3": LeNet5v3,
    "classic": LeNet5v2,
    "lenet5-1998": LeNet5_1998,
    "lenet-bn": LeNetBN,
}
MODEL_NAMES: tuple[str, ...] = tuple(_CLASSES)


def build_model(name: str, **options: Any) -> nn.Module:
    """A course model by name and options; ``build_model(**model.config)`` rebuilds one."""
    model_class = choose(_CLASSES, name, f"unknown model {name!r}")
    allowed = tuple(inspect.signature(model_class).parameters)
    if unknown := sorted(set(options) - set(allowed)):
        listed = ", ".join(map(repr, unknown))
        raise ValueError(f"model {name!r} has no option {listed}; its options are {allowed}")
    if name == "classic":
        options = {"activation": "sigmoid", **options}
    model = model_class(**options)
    model.config["name"] = name
    return model
