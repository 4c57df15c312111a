"""LeNet written three equivalent ways, the classic variants, and LeNet-5 as published in 1998.

- :class:`LeNet5v1`, :class:`LeNet5v2` and :class:`LeNet5v3` are one network written in three
  styles (a module with a ``forward``, one flat ``nn.Sequential``, ``nn.Sequential`` blocks per
  stage).  Given the same weights they compute bitwise-equal outputs and gradients.  Options choose
  the activation (``relu``/``sigmoid``/``tanh``), the pooling (``avg``/``max``) and the input size
  (28 with padding 2, or 32 without padding); d2l's classic LeNet is ``activation="sigmoid",
  pooling="avg"``; the tanh LeNets of Keras tutorials are ``activation="tanh"`` with
  ``pooling="avg"`` or ``pooling="max"``.
- :func:`transfer_weights` copies the weights of one LeNet into another that names or nests its
  layers differently (including d2l's ``d2l.torch.LeNet``).
- :class:`LeNet5_1998` is the network of LeCun, Bottou, Bengio and Haffner, "Gradient-based
  learning applied to document recognition", Proc. IEEE 86(11):2278-2324, 1998: trainable
  subsampling, the partial C3 connection table, the scaled tanh and Euclidean RBF outputs.
- :func:`build_model` builds any of them by name; every model carries ``model.config`` (so that
  ``build_model(**model.config)`` rebuilds it) and ``model.input_spec`` (what input it expects).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lenet_course.arithmetic import C3_TABLE

ACTIVATIONS: tuple[str, ...] = ("relu", "sigmoid", "tanh")
POOLINGS: tuple[str, ...] = ("avg", "max")
INPUT_SIZES: tuple[int, ...] = (28, 32)
NORMALIZATIONS: tuple[str, ...] = ("standardize", "paper")
MODEL_NAMES: tuple[str, ...] = ("v1", "v2", "v3", "classic", "lenet5-1998")


# --- what a model expects as input ---------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """The input a model expects: ``channels`` x ``size`` x ``size`` images, normalised one way.

    ``normalization="standardize"``: ``(x / 255 - mean) / std`` with the training set's statistics.
    ``normalization="paper"``: background -0.1 and foreground 1.175, as in LeCun et al. (1998).
    A 28x28 image is zero-padded (with the background value) to 32x32 when ``size == 32``.
    """

    channels: int = 1
    size: int = 28
    normalization: str = "standardize"

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"channels={self.channels!r} must be a positive integer")
        if self.size not in INPUT_SIZES:
            raise ValueError(f"size={self.size!r} is not supported; use one of {INPUT_SIZES}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization={self.normalization!r} is unknown; use one of {NORMALIZATIONS}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of one image: ``(channels, size, size)``."""
        return (self.channels, self.size, self.size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return asdict(self)


def check_input(x: torch.Tensor, spec: InputSpec, model_name: str) -> None:
    """Raise a ``ValueError`` that names the expected shape when ``x`` is not a batch for ``spec``.

    Without this check a wrongly sized image fails deep inside the network, with a message about
    matrix shapes ("mat1 and mat2 shapes cannot be multiplied") that does not say what to fix.
    """
    expected = spec.shape
    if x.dim() == 4 and tuple(x.shape[1:]) == expected:
        return
    c, s = spec.channels, spec.size
    message = f"{model_name} expects a batch of shape (N, {c}, {s}, {s}); got {tuple(x.shape)}."
    if tuple(x.shape) == expected:
        message += " Add the batch dimension: x.unsqueeze(0)."
    elif x.dim() == 4 and x.shape[-1] in INPUT_SIZES and x.shape[-1] != s:
        message += (
            f" This model was built for {s}x{s} images; build it with input_size={x.shape[-1]}"
            f" for {x.shape[-1]}x{x.shape[-1]} images, or prepare the images for it with"
            " lenet_course.data.prepare_images(images, model.input_spec, ...)."
        )
    raise ValueError(message)


# --- the modern LeNet, three ways ----------------------------------------------------------------


def _check_options(activation: str, pooling: str, input_size: int, num_classes: int) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is unknown; use one of {ACTIVATIONS}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is unknown; use one of {POOLINGS}")
    if input_size not in INPUT_SIZES:
        raise ValueError(
            f"input_size={input_size!r} is not supported; use 28 (the first convolution pads by 2)"
            " or 32 (no padding)"
        )
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer")


def _activation_module(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[name]()


def _pooling_module(name: str) -> nn.Module:
    return {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}[name](kernel_size=2, stride=2)


#: The functions LeNet5v1 applies in ``forward``, by option name.
ACTIVATION_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
}  # fmt: skip
POOLING_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "avg": F.avg_pool2d, "max": F.max_pool2d,
}  # fmt: skip


class _Configured:
    """Sets ``config`` and ``input_spec`` for the three modern LeNets (a mix-in)."""

    name = "?"

    def _configure(self, activation: str, pooling: str, input_size: int, num_classes: int) -> None:
        _check_options(activation, pooling, input_size, num_classes)
        self.config: dict[str, Any] = {
            "name": self.name,
            "activation": activation,
            "pooling": pooling,
            "input_size": input_size,
            "num_classes": num_classes,
        }
        self.input_spec = InputSpec(channels=1, size=input_size, normalization="standardize")
        # 28x28 images are padded by 2 so that the first convolution sees 32x32, as in 1998.
        self.padding = 2 if input_size == 28 else 0


class LeNet5v1(_Configured, nn.Module):
    """LeNet as an ``nn.Module`` whose ``forward`` applies the activations and pooling as functions.

    Default: 1x28x28 input, conv 6@5x5 (padding 2), 2x2 pooling, conv 16@5x5, 2x2 pooling,
    400 -> 120 -> 84 -> 10, ReLU, average pooling: 61,706 parameters.
    """

    name = "v1"

    def __init__(
        self,
        activation: str = "relu",
        pooling: str = "avg",
        input_size: int = 28,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self._configure(activation, pooling, input_size, num_classes)
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=self.padding)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    # Looked up by name rather than stored as attributes, so that the module pickles
    # (torch.save(model) cannot pickle F.max_pool2d, a function made inside torch).
    @property
    def act(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The activation function applied in ``forward``."""
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
        x = torch.flatten(x, 1)  # 400
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)


class LeNet5v2(_Configured, nn.Sequential):
    """LeNet as one flat ``nn.Sequential``: layers 0-11, numbered as in d2l's ``LeNet.net``."""

    name = "v2"

    def __init__(
        self,
        activation: str = "relu",
        pooling: str = "avg",
        input_size: int = 28,
        num_classes: int = 10,
    ) -> None:
        _check_options(activation, pooling, input_size, num_classes)
        padding = 2 if input_size == 28 else 0
        super().__init__(
            nn.Conv2d(1, 6, kernel_size=5, padding=padding),
            _activation_module(activation),
            _pooling_module(pooling),
            nn.Conv2d(6, 16, kernel_size=5),
            _activation_module(activation),
            _pooling_module(pooling),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            _activation_module(activation),
            nn.Linear(120, 84),
            _activation_module(activation),
            nn.Linear(84, num_classes),
        )
        self._configure(activation, pooling, input_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_spec, type(self).__name__)
        return super().forward(x)


class LeNet5v3(_Configured, nn.Sequential):
    """LeNet as an ``nn.Sequential`` of named blocks, one per stage."""

    name = "v3"

    def __init__(
        self,
        activation: str = "relu",
        pooling: str = "avg",
        input_size: int = 28,
        num_classes: int = 10,
    ) -> None:
        _check_options(activation, pooling, input_size, num_classes)
        padding = 2 if input_size == 28 else 0
        act, pool = _activation_module, _pooling_module
        super().__init__(
            OrderedDict(
                conv_block1=nn.Sequential(
                    nn.Conv2d(1, 6, kernel_size=5, padding=padding), act(activation), pool(pooling)
                ),
                conv_block2=nn.Sequential(
                    nn.Conv2d(6, 16, kernel_size=5), act(activation), pool(pooling)
                ),
                fc_block1=nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), act(activation)),
                fc_block2=nn.Sequential(nn.Linear(120, 84), act(activation)),
                output=nn.Linear(84, num_classes),
            )
        )
        self._configure(activation, pooling, input_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_spec, type(self).__name__)
        return super().forward(x)


# --- copying weights between differently written networks ----------------------------------------


def _entries(
    module: nn.Module,
) -> tuple[list[tuple[str, torch.Tensor]], list[tuple[str, torch.Tensor]]]:
    """The parameters and the persistent buffers of ``module``, in registration order."""
    saved = module.state_dict(keep_vars=True).keys()
    params = list(module.named_parameters())
    buffers = [(name, b) for name, b in module.named_buffers() if name in saved]
    for name, p in params + buffers:
        if nn.parameter.is_lazy(p):
            raise ValueError(
                f"{type(module).__name__}.{name} is not initialised yet (a Lazy layer, as in"
                " d2l's LeNet): run one forward pass first to give it its shape, for example"
                " net(torch.zeros(1, 1, 28, 28))"
            )
    return params, buffers


def transfer_weights(src: nn.Module, dst: nn.Module) -> list[tuple[str, str]]:
    """Copy every parameter and buffer of ``src`` into ``dst``, matched by order, checked by shape.

    The two networks may name and nest their layers differently (``LeNet5v1`` -> ``LeNet5v3``, a
    hand-written ``nn.Sequential``, d2l's ``LeNet``...): the k-th parameter of ``src`` goes into
    the k-th parameter of ``dst``, and likewise for buffers.  A different count or shape raises a
    ``ValueError`` that names both layers and both shapes, and then ``dst`` is left untouched.
    Lazy layers (``nn.LazyConv2d``...) must have seen one forward pass first.
    Returns the ``(src_name, dst_name)`` pairs that were copied.
    """
    src_params, src_buffers = _entries(src)
    dst_params, dst_buffers = _entries(dst)
    src_name, dst_name = type(src).__name__, type(dst).__name__
    pairs: list[tuple[tuple[str, torch.Tensor], tuple[str, torch.Tensor]]] = []
    for kind, ours, theirs in (
        ("parameters", src_params, dst_params),
        ("buffers", src_buffers, dst_buffers),
    ):
        if len(ours) != len(theirs):
            longer, name = (ours, src_name) if len(ours) > len(theirs) else (theirs, dst_name)
            extra, tensor = longer[min(len(ours), len(theirs))]
            raise ValueError(
                f"{src_name} has {len(ours)} {kind} and {dst_name} has {len(theirs)}: the networks"
                f" differ in structure ({name}.{extra} {_shape(tensor)} has no counterpart)"
            )
        for (a, ta), (b, tb) in zip(ours, theirs, strict=True):
            if ta.shape != tb.shape:
                raise ValueError(
                    f"shape mismatch: {src_name}.{a} is {_shape(ta)} but {dst_name}.{b} is"
                    f" {_shape(tb)}; nothing was copied"
                )
            pairs.append(((a, ta), (b, tb)))
    backup = [tb.detach().clone() for _, (_, tb) in pairs]
    try:
        with torch.no_grad():
            for (_, ta), (_, tb) in pairs:
                tb.copy_(ta)
    except Exception:  # e.g. a dtype that cannot be converted: restore what was already copied
        with torch.no_grad():
            for (_, (_, tb)), saved in zip(pairs, backup, strict=True):
                tb.copy_(saved)
        raise
    return [(a, b) for (a, _), (b, _) in pairs]


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(n) for n in t.shape) if t.dim() else "a scalar"


# --- LeNet-5 as published in 1998 ----------------------------------------------------------------

#: The paper's squashing function f(a) = A tanh(S a), with A = 1.7159 and S = 2/3 (Appendix A).
SQUASH_A = 1.7159
SQUASH_S = 2.0 / 3.0


def squash(a: torch.Tensor) -> torch.Tensor:
    """f(a) = 1.7159 tanh(2a/3): f(1) = 1 and f(-1) = -1, with its steepest gain near 0."""
    return SQUASH_A * torch.tanh(SQUASH_S * a)


def _paper_init_(tensor: torch.Tensor, fan_in: int) -> None:
    """The paper's initialisation: uniform in [-2.4 / F_i, 2.4 / F_i], F_i = the unit's fan-in."""
    bound = 2.4 / fan_in
    with torch.no_grad():
        tensor.uniform_(-bound, bound)


class Subsampling(nn.Module):
    """S2/S4: each map sums its 2x2 inputs, times one trainable coefficient, plus a trainable bias.

    Two parameters per map (6 maps: 12 parameters; 16 maps: 32).  The squashing follows in
    :class:`LeNet5_1998`.  Section II-B of the paper says the four inputs are *added*; Section
    II-A, on subsampling in general, says *averaged*.  A factor of 4 tells them apart, and the
    trainable coefficient absorbs it; we follow II-B.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        _paper_init_(self.weight, 4)
        _paper_init_(self.bias, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = F.avg_pool2d(x, kernel_size=2, stride=2, divisor_override=1)  # sum of 2x2
        return total * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv2d(nn.Module):
    """C3: 16 maps of 5x5 convolutions, each reading only the S2 maps that ``table`` lists.

    The 60 connections of LeCun et al.'s Table I each own one 5x5 kernel (1,500 weights, plus 16
    biases: 1,516 parameters).  Every forward scatters them into a dense 16x6x5x5 kernel whose
    other entries are zero, so the layer is one ``conv2d`` call and its gradient flows only into
    the 1,500 real weights.
    """

    def __init__(
        self, table: tuple[tuple[int, ...], ...], in_channels: int, kernel_size: int = 5
    ) -> None:
        super().__init__()
        self.table = tuple(tuple(row) for row in table)
        self.in_channels = in_channels
        self.out_channels = len(self.table)
        self.kernel_size = kernel_size
        for j, row in enumerate(self.table):
            if not row or len(set(row)) != len(row) or not all(0 <= i < in_channels for i in row):
                raise ValueError(
                    f"table row {j} = {row!r} must list distinct input maps in 0..{in_channels - 1}"
                )
        # Flat index (out * in_channels + in) of each connection, in the order of the table.
        index = [j * in_channels + i for j, row in enumerate(self.table) for i in row]
        self.register_buffer("connection_index", torch.tensor(index), persistent=False)
        k = kernel_size
        self.weight = nn.Parameter(torch.empty(len(index), k, k))
        self.bias = nn.Parameter(torch.empty(self.out_channels))
        with torch.no_grad():  # the fan-in of map j is 25 times the number of maps it reads
            start = 0
            for j, row in enumerate(self.table):
                fan_in = len(row) * k * k
                _paper_init_(self.weight[start : start + len(row)], fan_in)
                _paper_init_(self.bias[j : j + 1], fan_in)
                start += len(row)

    def dense_weight(self) -> torch.Tensor:
        """The out x in x k x k kernel, with zeros where the table has no connection."""
        k = self.kernel_size
        dense = self.weight.new_zeros(self.out_channels * self.in_channels, k, k)
        dense = dense.index_copy(0, self.connection_index, self.weight)
        return dense.view(self.out_channels, self.in_channels, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size=({self.kernel_size},"
            f" {self.kernel_size}), connections={len(self.connection_index)}"
        )


#: 7x12 bitmaps of the ten digits ('#' = ink), drawn for this course in the spirit of the paper's
#: Fig. 3.  They give the fixed +1/-1 prototypes of the output RBF units (7 x 12 = 84 = F6's size).
DIGIT_BITMAPS: tuple[tuple[str, ...], ...] = (
    (".......", "..###..", ".#...#.", "#.....#", "#.....#", "#.....#",
     "#.....#", "#.....#", "#.....#", ".#...#.", "..###..", "......."),
    (".......", "...#...", "..##...", ".#.#...", "...#...", "...#...",
     "...#...", "...#...", "...#...", "...#...", ".#####.", "......."),
    (".......", "..###..", ".#...#.", "#.....#", "......#", ".....#.",
     "....#..", "...#...", "..#....", ".#.....", "#######", "......."),
    (".......", ".#####.", "#.....#", "......#", "......#", "..####.",
     "......#", "......#", "......#", "#.....#", ".#####.", "......."),
    (".......", "....#..", "...##..", "..#.#..", ".#..#..", "#...#..",
     "#######", "....#..", "....#..", "....#..", "....#..", "......."),
    (".......", "#######", "#......", "#......", "######.", "......#",
     "......#", "......#", "......#", "#.....#", ".#####.", "......."),
    (".......", "..####.", ".#.....", "#......", "#......", "######.",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#####.", "......."),
    (".......", "#######", "......#", ".....#.", "....#..", "...#...",
     "...#...", "..#....", "..#....", "..#....", "..#....", "......."),
    (".......", ".#####.", "#.....#", "#.....#", "#.....#", ".#####.",
     "#.....#", "#.....#", "#.....#", "#.....#", ".#####.", "......."),
    (".......", ".#####.", "#.....#", "#.....#", "#.....#", "#.....#",
     ".######", "......#", "......#", ".....#.", ".####..", "......."),
)  # fmt: skip


def digit_prototypes(bitmaps: tuple[tuple[str, ...], ...] = DIGIT_BITMAPS) -> torch.Tensor:
    """The 10 x 84 matrix of +1 (ink) / -1 (background) prototypes, read row by row from bitmaps."""
    rows = []
    for digit, bitmap in enumerate(bitmaps):
        if len(bitmap) != 12 or any(len(line) != 7 or set(line) - {"#", "."} for line in bitmap):
            raise ValueError(f"bitmap of {digit} must be 12 lines of 7 characters '#' or '.'")
        rows.append([1.0 if ch == "#" else -1.0 for line in bitmap for ch in line])
    return torch.tensor(rows)


class EuclideanRBF(nn.Module):
    """Output units y_i = sum_j (x_j - w_ij)^2: the squared distance to a fixed prototype.

    The prototypes are a buffer, not a parameter: the paper chose them by hand and kept them fixed.
    """

    def __init__(self, prototypes: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("prototypes", prototypes.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(1) - self.prototypes.unsqueeze(0)).pow(2).sum(dim=2)

    def extra_repr(self) -> str:
        return f"in_features={self.prototypes.shape[1]}, out_features={self.prototypes.shape[0]}"


#: The constant j of the MAP loss (see :meth:`LeNet5_1998.loss`); the paper does not give a value.
MAP_J = 10.0


class LeNet5_1998(nn.Module):  # noqa: N801 (the year is part of the name)
    """LeNet-5 as published by LeCun, Bottou, Bengio and Haffner (1998), Section II.

    32x32 input ("paper" normalisation: background -0.1, foreground 1.175); C1 6@5x5; S2 trainable
    subsampling; C3 16@5x5 with the partial connections of Table I (``arithmetic.C3_TABLE``); S4;
    C5 120@5x5; F6 84 units; every layer up to F6 followed by f(a) = 1.7159 tanh(2a/3); 10
    Euclidean RBF outputs with fixed +/-1 prototypes.  Trainable parameters per layer: 156, 12,
    1,516, 32, 48,120, 10,164 (60,000).  Weights start uniform in +/-2.4/F_i (F_i = the fan-in of
    the unit, biases included in the draw but not in F_i).

    ``forward`` returns the RBF penalties y_i (lower = more likely); :meth:`loss` is the paper's MAP
    criterion and :meth:`scores` turns penalties into scores (higher = more likely).

    What differs from the paper: its prototypes were stylised 7x12 images of characters of the
    printable ASCII set (its Fig. 3), which this module does not have; ours are 7x12 digits drawn
    in :data:`DIGIT_BITMAPS`.  The paper trained with a stochastic diagonal Levenberg-Marquardt
    method (a training choice, not part of this module); and it does not state the value of j.
    """

    def __init__(self, j: float = MAP_J) -> None:
        super().__init__()
        if not (isinstance(j, (int, float)) and math.isfinite(j) and j > 0):
            raise ValueError(f"j={j!r} must be a positive, finite number (the MAP loss constant)")
        self.j = float(j)
        self.config: dict[str, Any] = {"name": "lenet5-1998", "j": self.j}
        self.input_spec = InputSpec(channels=1, size=32, normalization="paper")
        self.c1 = nn.Conv2d(1, 6, kernel_size=5)  # 32x32 -> 6@28x28
        self.s2 = Subsampling(6)  # -> 6@14x14
        self.c3 = PartialConv2d(C3_TABLE, in_channels=6)  # -> 16@10x10
        self.s4 = Subsampling(16)  # -> 16@5x5
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)  # -> 120@1x1
        self.f6 = nn.Linear(120, 84)
        self.output = EuclideanRBF(digit_prototypes())
        for layer, fan_in in ((self.c1, 25), (self.c5, 400), (self.f6, 120)):
            _paper_init_(layer.weight, fan_in)
            _paper_init_(layer.bias, fan_in)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 84 F6 states, the point that the RBF units compare with their prototypes."""
        check_input(x, self.input_spec, type(self).__name__)
        x = squash(self.c1(x))
        x = squash(self.s2(x))
        x = squash(self.c3(x))
        x = squash(self.s4(x))
        x = squash(self.c5(x))
        return squash(self.f6(torch.flatten(x, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The penalties y_i, one per class: squared distances of F6's state to the prototypes."""
        return self.output(self.features(x))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The paper's MAP criterion (Section II.C), averaged over the batch.

        E(W) = mean_p [ y_{D_p} + log(exp(-j) + sum_i exp(-y_i)) ]: pull the correct class's
        penalty down and push the others up, but stop pushing penalties that are already well
        above j (exp(-j) acts as a "rubbish" class with a fixed penalty j).  Computed with
        ``logsumexp`` so that large penalties do not underflow.
        """
        correct = outputs.gather(1, targets.view(-1, 1)).squeeze(1)
        rubbish = outputs.new_full((outputs.shape[0], 1), self.j)
        competition = torch.logsumexp(-torch.cat([rubbish, outputs], dim=1), dim=1)
        return (correct + competition).mean()

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Higher = more likely: the negated penalties."""
        return -outputs


# --- building by name ----------------------------------------------------------------------------

_CLASSES: dict[str, type[nn.Module]] = {"v1": LeNet5v1, "v2": LeNet5v2, "v3": LeNet5v3}
_OPTIONS = ("activation", "pooling", "input_size", "num_classes")


def build_model(name: str, **options: Any) -> nn.Module:
    """Build a course model by name: "v1", "v2", "v3", "classic" or "lenet5-1998".

    Options of "v1"/"v2"/"v3": ``activation`` (relu/sigmoid/tanh), ``pooling`` (avg/max),
    ``input_size`` (28/32), ``num_classes``.  "classic" is d2l's LeNet (a flat ``LeNet5v2`` with
    sigmoid and average pooling, 28x28 padded) and takes the same options.  "lenet5-1998" takes
    ``j``.  ``build_model(**model.config)`` builds a fresh model of the same architecture.
    """
    if name in _CLASSES:
        return _CLASSES[name](**_known(name, options, _OPTIONS))
    if name == "classic":
        settings = {"activation": "sigmoid", "pooling": "avg", "input_size": 28}
        settings.update(_known(name, options, _OPTIONS))
        model = LeNet5v2(**settings)
        model.config["name"] = "classic"
        return model
    if name == "lenet5-1998":
        return LeNet5_1998(**_known(name, options, ("j",)))
    raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")


def _known(name: str, options: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; its options are"
            f" {allowed}"
        )
    return options
