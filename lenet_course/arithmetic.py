"""Convolution arithmetic: how big a layer's output is, and what one output unit sees.

Along one side, ``out = (size + 2*padding - span) // stride + 1``, where a window spans
``dilation * (kernel_size - 1) + 1`` pixels. Sizes and errors match PyTorch's (property tests
check); the explorer shows the errors, so they name a fix. No torch: the widgets start fast."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

IntOrPair = int | tuple[int, int]  # one int for both height and width, or a pair (height, width)


def span(kernel_size: int, dilation: int = 1) -> int:
    """How many input pixels one window covers, holes included."""
    if kernel_size < 1 or dilation < 1:  # what PyTorch refuses
        raise ValueError(f"kernel_size={kernel_size}, dilation={dilation}; use both >= 1")
    return dilation * (kernel_size - 1) + 1


def conv2d_output_size(size: IntOrPair, kernel_size: IntOrPair, stride: IntOrPair = 1,
                       padding: IntOrPair | str = 0, dilation: IntOrPair = 1) -> IntOrPair:
    """The output height and width of ``nn.Conv2d`` on an input of ``size``. Arguments are ints
    or pairs ``(height, width)`` (the result is an int when all are ints); ``padding`` may also
    be ``"valid"`` (none) or ``"same"`` (keep the size; stride 1 only)."""
    axes, as_pair = _checked(False, size, kernel_size, stride, padding, dilation)
    out = [n if padding == "same" else (n + 2 * p - span(k, d)) // s + 1 for n, k, s, p, d in axes]
    return (out[0], out[1]) if as_pair else out[0]


def pool2d_output_size(size: IntOrPair, kernel_size: IntOrPair, stride: IntOrPair | None = None,
                       padding: IntOrPair = 0, dilation: IntOrPair = 1,
                       ceil_mode: bool = False) -> IntOrPair:
    """The output height and width of ``nn.MaxPool2d`` (and ``nn.AvgPool2d``: dilation 1).
    ``stride`` defaults to ``kernel_size``, as in PyTorch. ``ceil_mode=True`` rounds up, so a
    last window may hang over the edge, as long as it starts inside the input or left padding."""
    stride = kernel_size if stride is None else stride
    axes, as_pair = _checked(True, size, kernel_size, stride, padding, dilation, ceil_mode)
    out = []
    for n, k, s, p, d in axes:
        length = (n + 2 * p - span(k, d) + (s - 1 if ceil_mode else 0)) // s + 1
        # ceil_mode drops a last window that would start in the right padding
        out.append(length - 1 if ceil_mode and (length - 1) * s >= n + p else length)
    return (out[0], out[1]) if as_pair else out[0]


def conv_transpose2d_output_size(size: IntOrPair, kernel_size: IntOrPair, stride: IntOrPair = 1,
                                 padding: IntOrPair = 0, output_padding: IntOrPair = 0,
                                 dilation: IntOrPair = 1) -> IntOrPair:
    """The output size of ``nn.ConvTranspose2d``: ``(size - 1)*stride - 2*padding + span +
    output_padding``, an input size from which ``Conv2d`` with the same settings makes ``size``."""
    axes, as_pair = _pairs(size=size, kernel_size=kernel_size, stride=stride, padding=padding,
                           output_padding=output_padding, dilation=dilation)
    out = []
    for axis, (n, k, s, p, extra, d) in enumerate(axes):
        problem = _problem(n, k, s, p, d, False, False, same=True)  # no window has to fit
        length = (n - 1) * s - 2 * p + d * (k - 1) + 1 + extra
        if problem is None and not 0 <= extra < max(s, d):  # the floor it undoes loses < stride
            problem = ("output_padding", extra, f"must be >= 0 and smaller than stride={s} or "
                       f"dilation={d}; use 0 <= output_padding < {max(s, d)}")
        elif problem is None and length < 1:
            problem = ("padding", p, f"leaves an output of {length} pixels; use padding <= "
                       f"{p + (length - 1) // 2}")
        _refuse(problem, axis, as_pair)
        out.append(length)
    return (out[0], out[1]) if as_pair else out[0]


# --- checks: a ValueError wherever PyTorch refuses, naming the value and a fix -------------------


def _pairs(**arguments: Any) -> tuple[list[tuple[int, ...]], set[str]]:
    """The arguments (in order) along height and along width, and which were given as pairs."""
    as_pair = {name for name, v in arguments.items() if isinstance(v, (tuple, list))}
    pairs = []
    for name, value in arguments.items():
        values = tuple(value) if name in as_pair else (value, value)
        if len(values) != 2:
            raise ValueError(f"{name}={values!r} has {len(values)} values; give one int or a pair "
                             "(height, width)")
        if any(isinstance(v, bool) or not hasattr(v, "__index__") for v in values):
            raise TypeError(f"{name}={value!r} is not an int or a pair of ints")
        pairs.append(tuple(operator.index(v) for v in values))
    return list(zip(*pairs, strict=True)), as_pair


def _checked(pool: bool, size: Any, kernel: Any, stride: Any, padding: Any, dilation: Any,
             ceil_mode: bool = False) -> tuple[list[tuple[int, ...]], set[str]]:
    """:func:`_pairs`, once they pass every check PyTorch makes."""
    if not isinstance(ceil_mode, bool):  # PyTorch refuses it too; "no" would round up
        raise TypeError(f"ceil_mode={ceil_mode!r} is not a bool; use ceil_mode=True or False")
    if isinstance(padding, str) and pool:
        raise ValueError(f"padding={padding!r}: pooling takes no 'same' or 'valid' (those are for "
                         "convolutions); give an int or a pair between 0 and kernel_size // 2")
    if isinstance(padding, str) and padding not in ("valid", "same"):
        raise ValueError(f"padding={padding!r} is not a padding PyTorch knows; use 'valid', "
                         "'same' or an int >= 0 (or a pair of them)")
    axes, as_pair = _pairs(size=size, kernel_size=kernel, stride=stride,
                           padding=0 if isinstance(padding, str) else padding, dilation=dilation)
    if padding == "same" and any(s != 1 for _, _, s, _, _ in axes):
        half = [(span(k, d) - 1) // 2 for _, k, _, _, d in axes]
        raise ValueError(f"padding='same' needs stride=1, but stride={stride!r}; give an int "
                         f"padding instead, e.g. padding={tuple(half) if as_pair else half[0]}")
    for axis, values in enumerate(axes):
        _refuse(_problem(*values, pool, ceil_mode, same=padding == "same"), axis, as_pair)
    return axes, as_pair


def _refuse(problem: tuple[str, int, str] | None, axis: int, as_pair: set[str]) -> None:
    """Raise the problem, naming the argument as given: kernel_size, or kernel_size[1]."""
    if problem is not None:
        argument, value, why = problem
        where = f"in {('height', 'width')[axis]}: " if as_pair else ""
        name = f"{argument}[{axis}]" if argument in as_pair else argument
        raise ValueError(f"{where}{name}={value} {why}")


def _problem(n: int, k: int, s: int, p: int, d: int, pool: bool, ceil_mode: bool,
             same: bool) -> tuple[str, int, str] | None:
    """What PyTorch refuses along one axis: the argument, and why (with what would be valid)."""
    for argument, value in (("size", n), ("kernel_size", k), ("stride", s), ("dilation", d)):
        if value < 1:
            return argument, value, f"is not positive; use {argument} >= 1"
    if p < 0:
        return "padding", p, "is negative; use padding >= 0"
    if pool and p > k // 2:
        return "padding", p, (f"is more than half of kernel_size={k}; pooling allows padding "
                              f"<= {k // 2} (kernel_size // 2), so that every window covers some "
                              "of the input")
    room = n + 2 * p + (s - 1 if ceil_mode else 0)  # ceil_mode lets the last window overhang
    if same or span(k, d) <= room:  # "same" pads just enough
        return None
    window = f"{k} pixels" if d == 1 else f"{span(k, d)} pixels (kernel {k}, dilation {d})"
    padded = f"{n + 2 * p} pixel" + ("s" if n + 2 * p > 1 else "")
    why = " even with ceil_mode=True" if ceil_mode else ""
    return "kernel_size", k, (
        f"is a window of {window}, which does not fit in the padded input of {padded} (size {n} "
        f"and padding {p} on each side){why}; use {_fixes(n, k, s, p, d, pool, ceil_mode, room)}")


def _fixes(n: int, k: int, s: int, p: int, d: int, pool: bool, ceil_mode: bool, room: int) -> str:
    """Each value that alone makes the window fit in ``room`` (``n + 2p``, ``+ s - 1`` if ceil)."""
    padding, kernel = p - (room - span(k, d)) // 2, (room - 1) // d + 1
    fixes = []
    if not pool:
        fixes.append(f"padding >= {padding}")
    elif padding <= k // 2:  # pooling allows padding <= kernel_size // 2
        top = k // 2
        fixes.append(f"padding={top}" if padding == top else f"padding from {padding} to {top}")
    if not pool or p <= kernel // 2:
        fixes.append(f"kernel_size <= {kernel}")
    if d > 1 and room >= k > 1:
        fixes.append(f"dilation <= {(room - 1) // (k - 1)}")
    if pool and ceil_mode:
        fixes.append(f"stride >= {span(k, d) - n - 2 * p + 1}")
    elif pool and span(k, d) <= room + s - 1:
        fixes.append("ceil_mode=True")
    fixes = fixes or ["a smaller kernel_size or dilation, with more padding"]
    return ", ".join(fixes[:-1]) + " or " + fixes[-1] if len(fixes) > 1 else fixes[0]


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
        _checked(False, 2**31, self.kernel_size, self.stride, self.padding, self.dilation)


@dataclass(frozen=True)
class ReceptiveField:
    """What one unit sees of the input along one axis: ``size`` pixels, ``jump`` between units."""

    name: str
    size: int
    jump: int
    start: float  # the first unit's centre: 0 is the first pixel, negative is in the padding


def receptive_fields(
    layers: Iterable[Window | tuple[int, ...]] | nn.Module,
) -> list[ReceptiveField]:
    """The receptive field after each layer: it widens by ``(span - 1) * jump``, and the jump
    grows by the stride. ``layers``: windows, tuples of their fields, or a model."""
    if hasattr(layers, "named_modules"):  # an nn.Module (nn.Sequential is iterable, too)
        layers = windows_of(layers)  # type: ignore[arg-type]
    size, jump, start, fields = 1, 1, 0.0, []
    for index, layer in enumerate(layers):
        window = layer if isinstance(layer, Window) else Window(*layer)
        widening = span(window.kernel_size, window.dilation) - 1
        size += widening * jump
        start += (widening / 2 - window.padding) * jump
        jump *= window.stride
        fields.append(ReceptiveField(window.name or f"layer {index}", size, jump, start))
    return fields


def windows_of(model: nn.Module, axis: int = 0) -> list[Window]:
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
    def starts(self) -> tuple[int, ...]:
        """Where each window starts (its first tap), along one axis."""
        return tuple(i * self.stride for i in range(self.output or 0))

    def taps(self, start: int) -> tuple[int, ...]:
        """The pixels a window starting at ``start`` reads along one axis (holes skipped)."""
        return tuple(start + j * self.dilation for j in range(self.kernel_size))

    @property
    def output_text(self) -> str:
        size = "impossible" if self.output is None else f"{self.output} x {self.output}"
        return f"output size: {size}"

    @property
    def formula(self) -> str:
        """The output-size formula with this state's numbers filled in."""
        top = f"{self.size} + 2*{self.padding} - {self.dilation}*({self.kernel_size} - 1) - 1"
        rounding, up = ("ceil", self.stride - 1) if self.ceil_mode else ("floor", 0)
        value = (self.padded - self.span + up) // self.stride + 1
        text = f"{rounding}(({top}) / {self.stride}) + 1 = {value}"
        if self.output is not None and self.output < value:  # only with ceil_mode
            text += f", less the window that would start in the right padding: {self.output}"
        return text


def explore_conv(size: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1) -> ExplorerState:
    """The explorer's state for ``nn.Conv2d``; an impossible configuration carries its error."""
    return _explore("conv", conv2d_output_size, size, kernel_size, stride, padding, dilation)


def explore_pool(size: int, kernel_size: int, stride: int | None = None, padding: int = 0,
                 dilation: int = 1, ceil_mode: bool = False) -> ExplorerState:
    """The explorer's state for ``nn.MaxPool2d`` (``stride`` defaults to ``kernel_size``)."""
    stride = kernel_size if stride is None else stride
    return _explore("pool", pool2d_output_size, size, kernel_size, stride, padding, dilation,
                    ceil_mode)


def _explore(kind: str, output_size: Any, *configuration: Any) -> ExplorerState:
    try:
        output, error = output_size(*configuration), None
    except ValueError as exception:
        output, error = None, str(exception)
    ceil_mode = configuration[5] if kind == "pool" else False
    return ExplorerState(kind, *configuration[:5], ceil_mode, output, error)
