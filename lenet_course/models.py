"""LeNet three equivalent ways (bitwise-equal from the same weights), and every model by name."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lenet_course.data import INPUT_SIZES, InputSpec, check_input
from lenet_course.lenet1998 import LeNet5_1998

ACTIVATIONS: tuple[str, ...] = ("relu", "sigmoid", "tanh")
POOLINGS: tuple[str, ...] = ("avg", "max")
MODEL_NAMES: tuple[str, ...] = ("v1", "v2", "v3", "classic", "lenet5-1998", "lenet-bn")
#: What LeNet5v1 applies in ``forward``, and the modules LeNet5v2/v3 hold, by option name.
ACTIVATION_FUNCTIONS = {"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
POOLING_FUNCTIONS = {"avg": F.avg_pool2d, "max": F.max_pool2d}
_MODULES = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "avg": nn.AvgPool2d,
            "max": nn.MaxPool2d}


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
def class_scores(model: nn.Module, x: torch.Tensor, batch_size: int = 1000,
                 flip: bool = False) -> torch.Tensor:
    """Class scores (higher = more likely) of the prepared images ``x``, batch by batch on their
    device: ``model.scores(outputs)`` when the model defines it, else the outputs.  ``flip``
    (test-time flips): the mean of the softmax of the scores of each image and its mirror image."""
    scores = getattr(model, "scores", None)
    with eval_mode(model):
        outputs = [torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
                   for x in ((x, x.flip(3)) if flip else (x,))]
    outputs = [scores(o) if callable(scores) else o for o in outputs]
    return (outputs[0].softmax(1) + outputs[1].softmax(1)) / 2 if flip else outputs[0]


def _configure(model: nn.Module, name: str, activation: str, pooling: str, input_size: int,
               num_classes: int) -> int:
    """Check the options, set ``model.config`` and ``model.input_spec``; return conv1's padding."""
    for option, value, allowed in (("activation", activation, ACTIVATIONS),
                                   ("pooling", pooling, POOLINGS)):
        if value not in allowed:
            raise ValueError(f"{option}={value!r} is unknown; use one of {allowed}")
    if input_size not in INPUT_SIZES:
        raise ValueError(f"input_size={input_size!r} is not supported; use 28 (the first "
                         "convolution pads by 2) or 32 (no padding)")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
    model.config = {"name": name, "activation": activation, "pooling": pooling,
                    "input_size": input_size, "num_classes": num_classes}
    model.input_spec = InputSpec(channels=1, size=input_size, normalization="standardize")
    return 2 if input_size == 28 else 0  # 28x28 images are padded to 32x32, as in 1998


class LeNet5v1(nn.Module):
    """LeNet as an ``nn.Module`` whose ``forward`` applies the activations and pooling as functions.
    Default: 1x28x28 input (padded by 2), ReLU, average pooling: 61,706 parameters."""

    def __init__(self, activation: str = "relu", pooling: str = "avg", input_size: int = 28,
                 num_classes: int = 10) -> None:
        super().__init__()
        padding = _configure(self, "v1", activation, pooling, input_size, num_classes)
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=padding)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    @property
    def act(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The activation ``forward`` applies (looked up, not stored, so the module pickles)."""
        return ACTIVATION_FUNCTIONS[self.config["activation"]]

    @property
    def pool(self) -> Callable[..., torch.Tensor]:
        """The pooling function applied in ``forward``."""
        return POOLING_FUNCTIONS[self.config["pooling"]]

    def extra_repr(self) -> str:  # print() shows modules only; say what forward adds
        c = self.config
        return f"activation={c['activation']}, pooling={c['pooling']} (applied in forward)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_spec, type(self).__name__)
        x = self.pool(self.act(self.conv1(x)), kernel_size=2, stride=2)  # 6x28x28 -> 6x14x14
        x = self.pool(self.act(self.conv2(x)), kernel_size=2, stride=2)  # 16x10x10 -> 16x5x5
        x = self.act(self.fc1(torch.flatten(x, 1)))  # 400 -> 120
        return self.fc3(self.act(self.fc2(x)))


class _CheckedSequential(nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_spec, type(self).__name__)
        return super().forward(x)


class LeNet5v2(_CheckedSequential):
    """LeNet as one flat ``nn.Sequential``: layers 0-11, numbered as in d2l's ``LeNet.net``."""

    def __init__(self, activation: str = "relu", pooling: str = "avg", input_size: int = 28,
                 num_classes: int = 10) -> None:
        padding = _configure(self, "v2", activation, pooling, input_size, num_classes)
        act, pool = _MODULES[activation], _MODULES[pooling]
        super().__init__(
            nn.Conv2d(1, 6, kernel_size=5, padding=padding), act(), pool(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), act(), pool(kernel_size=2, stride=2),
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), act(),
            nn.Linear(120, 84), act(),
            nn.Linear(84, num_classes),
        )


class LeNet5v3(_CheckedSequential):
    """LeNet as an ``nn.Sequential`` of named blocks, one per stage."""

    def __init__(self, activation: str = "relu", pooling: str = "avg", input_size: int = 28,
                 num_classes: int = 10) -> None:
        padding = _configure(self, "v3", activation, pooling, input_size, num_classes)
        act, pool = _MODULES[activation], _MODULES[pooling]
        super().__init__(OrderedDict(
            conv_block1=nn.Sequential(nn.Conv2d(1, 6, kernel_size=5, padding=padding), act(),
                                      pool(kernel_size=2, stride=2)),
            conv_block2=nn.Sequential(nn.Conv2d(6, 16, kernel_size=5), act(),
                                      pool(kernel_size=2, stride=2)),
            fc_block1=nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), act()),
            fc_block2=nn.Sequential(nn.Linear(120, 84), act()),
            output=nn.Linear(84, num_classes),
        ))


class LeNetBN(_CheckedSequential):
    """LeNet's shape (two 5x5 convolutions, three linear layers) with batch normalisation after
    every layer but the last (whose bias it makes redundant).  ``widths``: the channels of the two
    convolutions and the units of the two hidden linear layers.  Default: ReLU, max pooling and
    (16, 32, 56, 48), 61,482 parameters, within LeNet-5's 61,706 (notebook 10's challenge)."""

    def __init__(self, activation: str = "relu", pooling: str = "max", input_size: int = 28,
                 num_classes: int = 10, widths: Sequence[int] = (16, 32, 56, 48)) -> None:
        padding = _configure(self, "lenet-bn", activation, pooling, input_size, num_classes)
        if len(widths) != 4 or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ValueError(f"widths={widths!r}; give 4 positive whole numbers (conv1, conv2, "
                             "fc1, fc2)")
        self.config["widths"] = c1, c2, h1, h2 = list(widths)
        act, pool = _MODULES[activation], _MODULES[pooling]
        super().__init__(OrderedDict(
            conv_block1=nn.Sequential(nn.Conv2d(1, c1, 5, padding=padding, bias=False),
                                      nn.BatchNorm2d(c1), act(), pool(kernel_size=2, stride=2)),
            conv_block2=nn.Sequential(nn.Conv2d(c1, c2, 5, bias=False), nn.BatchNorm2d(c2), act(),
                                      pool(kernel_size=2, stride=2)),
            fc_block1=nn.Sequential(nn.Flatten(), nn.Linear(c2 * 5 * 5, h1, bias=False),
                                    nn.BatchNorm1d(h1), act()),
            fc_block2=nn.Sequential(nn.Linear(h1, h2, bias=False), nn.BatchNorm1d(h2), act()),
            output=nn.Linear(h2, num_classes),
        ))


def _entries(module: nn.Module) -> list[list[tuple[str, torch.Tensor]]]:
    """[parameters, persistent buffers] of ``module``, each in registration order."""
    saved = module.state_dict(keep_vars=True).keys()
    params = list(module.named_parameters())
    buffers = [(name, b) for name, b in module.named_buffers() if name in saved]
    for name, p in params + buffers:
        if nn.parameter.is_lazy(p):
            raise ValueError(f"{type(module).__name__}.{name} is not initialised yet (a Lazy "
                             "layer, as in d2l's LeNet): run one forward pass first to give it "
                             "its shape, for example net(torch.zeros(1, 1, 28, 28))")
    return [params, buffers]


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(n) for n in t.shape) if t.dim() else "a scalar"


def transfer_weights(src: nn.Module, dst: nn.Module) -> list[tuple[str, str]]:
    """Copy ``src``'s parameters and buffers into ``dst`` by order (names may differ), checked by
    shape, leaving ``dst`` untouched on a mismatch; return the ``(src_name, dst_name)`` pairs."""
    s_name, d_name = type(src).__name__, type(dst).__name__
    pairs = []
    for kind, ours, theirs in zip(("parameters", "buffers"), _entries(src), _entries(dst),
                                  strict=True):
        if len(ours) != len(theirs):
            longer, owner = (ours, s_name) if len(ours) > len(theirs) else (theirs, d_name)
            extra, tensor = longer[min(len(ours), len(theirs))]
            raise ValueError(f"{s_name} has {len(ours)} {kind} and {d_name} has {len(theirs)}: "
                             f"the networks differ in structure ({owner}.{extra} "
                             f"{_shape(tensor)} has no counterpart)")
        for (a, ta), (b, tb) in zip(ours, theirs, strict=True):
            if ta.shape != tb.shape:
                raise ValueError(f"shape mismatch: {s_name}.{a} is {_shape(ta)} but {d_name}.{b} "
                                 f"is {_shape(tb)}; nothing was copied")
            pairs.append((a, ta, b, tb))
    with torch.no_grad():  # into clones first: a copy that fails (a dtype, say) leaves dst intact
        values = [tb.detach().clone().copy_(ta) for _, ta, _, tb in pairs]
        for (*_, tb), value in zip(pairs, values, strict=True):
            tb.copy_(value)
    return [(a, b) for a, _, b, _ in pairs]


_CLASSES = {"v1": LeNet5v1, "v2": LeNet5v2, "v3": LeNet5v3, "lenet5-1998": LeNet5_1998,
            "lenet-bn": LeNetBN}
_OPTIONS = ("activation", "pooling", "input_size", "num_classes")


def build_model(name: str, **options: Any) -> nn.Module:
    """A course model by name; ``build_model(**model.config)`` rebuilds one.  "classic" is d2l's
    LeNet (``LeNet5v2`` with sigmoid and average pooling); "lenet5-1998" takes only ``j``;
    "lenet-bn" (``LeNetBN``) also ``widths``."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    allowed = {"lenet5-1998": ("j",), "lenet-bn": (*_OPTIONS, "widths")}.get(name, _OPTIONS)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; its "
                         f"options are {allowed}")
    if name == "classic":
        model = LeNet5v2(**{"activation": "sigmoid", **options})
        model.config["name"] = "classic"
        return model
    return _CLASSES[name](**options)
