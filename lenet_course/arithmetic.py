"""Convolution arithmetic: how big a layer's output is, and what one output unit sees. Sizes and
refusals match PyTorch's (property tests check; :mod:`arguments` words the errors). Each size
argument is an int (height and width alike) or a pair (height, width); a result is an int when
every argument was. No torch here: the widgets start fast."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lenet_course import arguments

if TYPE_CHECKING:
    from torch import nn

IntOrPair = int | tuple[int, int]


def span(kernel_size: int, dilation: int = 1) -> int:
    """How many input pixels one window covers, holes included."""
    arguments.check_span(kernel_size, dilation)
    # kernel_size taps, with dilation - 1 skipped pixels between neighbours
    return dilation * (kernel_size - 1) + 1


def conv2d_output_size(size, kernel_size, stride=1, padding=0, dilation=1) -> IntOrPair:
    """The output height and width of ``nn.Conv2d``. ``padding`` may also be ``"valid"`` (none)
    or ``"same"`` (keep the size; stride 1)."""
    axes, as_pair = arguments.check_conv(size, kernel_size, stride, padding, dilation)
    if padding == "same":  # pads just enough to keep the size
        out = [axis.size for axis in axes]
    else:  # how many windows fit: floor((size + 2*padding - span) / stride) + 1
        out = [(axis.size + 2 * axis.padding - axis.span) // axis.stride + 1 for axis in axes]
    return tuple(out) if as_pair else out[0]


def pool2d_output_size(
    size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
) -> IntOrPair:
    """The output height and width of ``nn.MaxPool2d`` and ``nn.AvgPool2d`` (dilation 1).
    ``ceil_mode=True`` rounds up: a last window may overhang but not start in the right padding."""
    stride = kernel_size if stride is None else stride  # as in PyTorch
    axes, as_pair = arguments.check_pool(size, kernel_size, stride, padding, dilation, ceil_mode)
    out = []
    for axis in axes:
        room = axis.size + 2 * axis.padding - axis.span
        # floor(room / stride) + 1 as for a convolution, or ceil(room / stride) + 1 with ceil_mode
        fit = (room + (axis.stride - 1 if ceil_mode else 0)) // axis.stride + 1
        # ceil_mode drops a last window that would start in the right padding
        if ceil_mode and (fit - 1) * axis.stride >= axis.size + axis.padding:
            fit -= 1
        out.append(fit)
    return tuple(out) if as_pair else out[0]


def conv_transpose2d_output_size(
    size, kernel_size, stride=1, padding=0, output_padding=0, dilation=1
) -> IntOrPair:
    """The output size of ``nn.ConvTranspose2d``: an input size from which ``Conv2d`` with the
    same settings makes ``size`` (``output_padding`` picks which, as its floor forgets)."""
    settings = (size, kernel_size, stride, padding, output_padding, dilation)
    axes, as_pair = arguments.check_conv_transpose(*settings)
    out = []
    for axis in axes:  # Conv2d's formula solved for its input size
        grown = (axis.size - 1) * axis.stride - 2 * axis.padding + axis.span
        out.append(grown + axis.output_padding)
    return tuple(out) if as_pair else out[0]


# --- receptive field and jump --------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One sliding-window layer along one axis: a convolution or a pooling."""

    kernel_size: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    name: str = ""

    def __post_init__(self) -> None:  # what PyTorch refuses, on an input so large any window fits
        arguments.check_conv(2**31, self.kernel_size, self.stride, self.padding, self.dilation)


@dataclass(frozen=True)
class ReceptiveField:
    """What one unit sees of the input along one axis: ``size`` pixels, ``jump`` between units."""

    name: str
    size: int
    jump: int
    start: float  # the first unit's centre: 0 is the first pixel, negative is in the padding


def receptive_fields(layers: "Iterable[Window | tuple] | nn.Module") -> list[ReceptiveField]:
    """The receptive field after each of ``layers``: windows, tuples of their fields, or a model."""
    if hasattr(layers, "named_modules"):  # an nn.Module (nn.Sequential is iterable, too)
        layers = windows_of(layers)
    size, jump, start, fields = 1, 1, 0.0, []
    for index, layer in enumerate(layers):
        window = layer if isinstance(layer, Window) else Window(*layer)
        # a window widens the field by (span - 1) input jumps; the stride multiplies the jump
        widening = span(window.kernel_size, window.dilation) - 1
        size += widening * jump
        start += (widening / 2 - window.padding) * jump
        jump *= window.stride
        fields.append(ReceptiveField(window.name or f"layer {index}", size, jump, start))
    return fields


def windows_of(model: "nn.Module", axis: int = 0) -> list[Window]:
    """The convolutions and poolings of ``model`` along ``axis``, in registration order, up to
    the first ``Flatten`` or ``Linear`` (after which every unit sees the whole input)."""
    from torch import nn  # here, not at the top: importing this module must not load torch

    def pick(value: Any) -> int:
        return int(value[axis]) if isinstance(value, (tuple, list)) else int(value)

    windows = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Flatten, nn.Linear, nn.LazyLinear)):
            break
        if isinstance(module, nn.modules.conv._ConvNd):
            k, d, padding = pick(module.kernel_size), pick(module.dilation), module.padding
            padding = {"same": (span(k, d) - 1) // 2, "valid": 0}.get(padding, padding)
            windows.append(Window(k, pick(module.stride), pick(padding), d, name))
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.MaxPool1d, nn.AvgPool1d)):
            k, stride = module.kernel_size, module.stride or module.kernel_size
            d = getattr(module, "dilation", 1)
            windows.append(Window(pick(k), pick(stride), pick(module.padding), pick(d), name))
    return windows


# --- the explorer's state: what notebook 02's widgets show, testable without a browser ----------


@dataclass(frozen=True)
class ExplorerState:
    """One square configuration and its output size, or PyTorch's objection in words.
    Positions are in padded coordinates: 0 is the first pixel of the left padding."""

    kind: str  # "conv" or "pool"
    size: int
    kernel_size: int
    stride: int
    padding: int
    dilation: int
    ceil_mode: bool
    output: int | None  # None when the configuration is impossible
    error: str | None  # why, when output is None

    @property
    def span(self) -> int:
        return span(self.kernel_size, self.dilation)

    @property
    def padded(self) -> int:
        return self.size + 2 * self.padding

    @property
    def starts(self) -> tuple[int, ...]:  # where each window's first tap is
        return tuple(i * self.stride for i in range(self.output or 0))

    def taps(self, start: int) -> tuple[int, ...]:  # the pixels a window reads, holes skipped
        return tuple(start + j * self.dilation for j in range(self.kernel_size))

    @property
    def output_text(self) -> str:
        size = "impossible" if self.output is None else f"{self.output} x {self.output}"
        return f"output size: {size}"

    @property
    def formula(self) -> str:  # the output-size formula with these numbers
        top = f"{self.size} + 2*{self.padding} - {self.dilation}*({self.kernel_size} - 1) - 1"
        rounding, up = ("ceil", self.stride - 1) if self.ceil_mode else ("floor", 0)
        value = (self.padded - self.span + up) // self.stride + 1
        text = f"{rounding}(({top}) / {self.stride}) + 1 = {value}"
        if self.output is not None and self.output < value:  # only with ceil_mode
            text += f", less the window that would start in the right padding: {self.output}"
        return text


def explore_conv(size, kernel_size, stride=1, padding=0, dilation=1) -> ExplorerState:
    """The explorer's state for ``nn.Conv2d``."""
    return _explore("conv", size, kernel_size, stride, padding, dilation, False)


def explore_pool(
    size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
) -> ExplorerState:
    """The explorer's state for ``nn.MaxPool2d`` (``stride`` defaults to ``kernel_size``)."""
    stride = kernel_size if stride is None else stride
    return _explore("pool", size, kernel_size, stride, padding, dilation, ceil_mode)


def _explore(kind: str, *settings: Any) -> ExplorerState:
    """The state at ``settings``; an impossible configuration carries its error instead."""
    # the explorers draw every pixel: a huge layer is refused at once
    arguments.check_explorer(*settings[:5])
    try:
        if kind == "conv":
            output = conv2d_output_size(*settings[:5])
        else:
            output = pool2d_output_size(*settings)
    except ValueError as error:
        return ExplorerState(kind, *settings, output=None, error=str(error))
    return ExplorerState(kind, *settings, output=output, error=None)
