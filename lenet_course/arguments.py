"""Argument checks, so that the modules that teach read like their ideas. For :mod:`arithmetic` and
:mod:`counting`, errors name the value PyTorch refuses and what would be valid (a TypeError for a
wrong type); :func:`choose` looks a name up in a table; for :mod:`cli`, number types and a parser
whose errors are one line."""

import argparse
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Axis:
    """A layer's settings along height (index 0) or width (1), and the names given as pairs."""

    index: int
    pairs: frozenset[str]
    size: int
    kernel_size: int
    stride: int
    padding: int
    dilation: int
    output_padding: int = 0

    @property
    def span(self) -> int:  # as arithmetic.span, which this module comes before
        return self.dilation * (self.kernel_size - 1) + 1

    def error(self, argument: str, why: str) -> ValueError:
        """The error for ``argument``, named as it was given: kernel_size, or kernel_size[1]."""
        where = f"in {('height', 'width')[self.index]}: " if self.pairs else ""
        name = f"{argument}[{self.index}]" if argument in self.pairs else argument
        return ValueError(f"{where}{name}={getattr(self, argument)} {why}")


#: What a size check returns: the settings along height and along width, and whether any was a pair
Axes = tuple[list[Axis], bool]


def check_span(kernel_size: int, dilation: int) -> None:
    if kernel_size < 1 or dilation < 1:  # what PyTorch refuses
        raise ValueError(f"kernel_size={kernel_size}, dilation={dilation}; use both >= 1")


def check_conv(size, kernel_size, stride, padding, dilation) -> Axes:
    if isinstance(padding, str) and padding not in ("valid", "same"):
        raise ValueError(f"padding={padding!r} is unknown; use 'valid', 'same' or an int >= 0")
    same = padding == "same"
    pixels = 0 if isinstance(padding, str) else padding  # the axes count "same" padding as 0
    axes, as_pair = _per_axis(size, kernel_size, stride, pixels, dilation)
    for axis in axes:
        _check_window(axis, fit=not same)  # "same" pads just enough
    if same and any(axis.stride != 1 for axis in axes):
        half = [(axis.span - 1) // 2 for axis in axes]
        fix = f"an int padding, e.g. padding={tuple(half) if as_pair else half[0]}"
        raise ValueError(f"padding='same' needs stride=1, not stride={stride!r}; use {fix}")
    return axes, as_pair


def check_pool(size, kernel_size, stride, padding, dilation, ceil_mode) -> Axes:
    if not isinstance(ceil_mode, bool):  # PyTorch refuses it too; "no" would round up
        raise TypeError(f"ceil_mode={ceil_mode!r} is not a bool; use ceil_mode=True or False")
    if isinstance(padding, str):
        raise ValueError(f"padding={padding!r} is for convolutions; pooling takes an int or a pair")
    axes, as_pair = _per_axis(size, kernel_size, stride, padding, dilation)
    for axis in axes:
        _check_window(axis, pool=True, ceil_mode=ceil_mode)
    return axes, as_pair


def check_conv_transpose(size, kernel_size, stride, padding, output_padding, dilation) -> Axes:
    axes, as_pair = _per_axis(size, kernel_size, stride, padding, dilation, output_padding)
    for axis in axes:
        _check_window(axis, fit=False)  # each input pixel spreads over one window
        # output_padding picks one of the sizes that Conv2d's floor maps to one: fewer than stride
        largest = max(axis.stride, axis.dilation)
        if not 0 <= axis.output_padding < largest:
            why = f"must be >= 0 and smaller than stride={axis.stride} or dilation={axis.dilation}"
            raise axis.error("output_padding", f"{why}; use 0 <= output_padding < {largest}")
        length = (axis.size - 1) * axis.stride - 2 * axis.padding + axis.span + axis.output_padding
        if length < 1:
            fix = f"use padding <= {axis.padding + (length - 1) // 2}"
            raise axis.error("padding", f"leaves an output of {length} pixels; {fix}")
    return axes, as_pair


_SETTINGS = ("size", "kernel_size", "stride", "padding", "dilation", "output_padding")


def _per_axis(*values: Any) -> Axes:
    """The settings, in the order of _SETTINGS, along height and along width."""
    settings = dict(zip(_SETTINGS, values, strict=False))  # output_padding: transposed only
    pairs = frozenset(name for name, v in settings.items() if isinstance(v, (tuple, list)))
    height, width = {}, {}
    for name, value in settings.items():
        both = tuple(value) if name in pairs else (value, value)
        if len(both) != 2:
            raise ValueError(f"{name}={both!r} has {len(both)} values; give an int or a pair")
        if any(isinstance(v, bool) or not hasattr(v, "__index__") for v in both):
            raise TypeError(f"{name}={value!r} is not an int or a pair of ints")
        height[name], width[name] = operator.index(both[0]), operator.index(both[1])
    return [Axis(0, pairs, **height), Axis(1, pairs, **width)], bool(pairs)


def _check_window(axis: Axis, pool=False, ceil_mode=False, fit=True) -> None:
    """Refuse what PyTorch refuses along one axis of a convolution or a pooling."""
    for argument in ("size", "kernel_size", "stride", "dilation"):
        if getattr(axis, argument) < 1:
            raise axis.error(argument, f"is not positive; use {argument} >= 1")
    kernel, padding = axis.kernel_size, axis.padding
    if padding < 0:
        raise axis.error("padding", "is negative; use padding >= 0")
    if pool and padding > kernel // 2:
        why = f"is more than half of kernel_size={kernel}; pooling allows padding <= {kernel // 2}"
        why += " (kernel_size // 2), so that every window covers some of the input"
        raise axis.error("padding", why)
    padded = axis.size + 2 * padding
    room = padded + (axis.stride - 1 if ceil_mode else 0)  # ceil_mode lets the last window overhang
    if not fit or axis.span <= room:
        return
    dilated = f" (kernel {kernel}, dilation {axis.dilation})" if axis.dilation > 1 else ""
    pixels = f"{padded} pixel{'s' if padded > 1 else ''}"
    overhang = " even with ceil_mode=True" if ceil_mode else ""
    where = f"the padded input of {pixels} (size {axis.size} and padding {padding} on each side)"
    why = f"is a window of {axis.span} pixels{dilated}, which does not fit in {where}{overhang}"
    raise axis.error("kernel_size", f"{why}; use {_fixes(axis, room, pool, ceil_mode)}")


def _fixes(axis: Axis, room: int, pool: bool, ceil_mode: bool) -> str:
    """Each value that alone makes the window fit in ``room``, as "a, b or c"."""
    kernel, dilation = axis.kernel_size, axis.dilation
    padding = axis.padding - (room - axis.span) // 2  # the least padding that fits the window
    largest_kernel = (room - 1) // dilation + 1
    fixes = []
    if not pool:
        fixes.append(f"padding >= {padding}")
    elif padding <= kernel // 2:  # pooling allows padding <= kernel_size // 2
        top = kernel // 2
        fixes.append(f"padding={top}" if padding == top else f"padding from {padding} to {top}")
    if not pool or axis.padding <= largest_kernel // 2:
        fixes.append(f"kernel_size <= {largest_kernel}")
    if dilation > 1 and room >= kernel > 1:
        fixes.append(f"dilation <= {(room - 1) // (kernel - 1)}")
    if pool and ceil_mode:
        fixes.append(f"stride >= {axis.span - axis.size - 2 * axis.padding + 1}")
    elif pool and axis.span <= room + axis.stride - 1:
        fixes.append("ceil_mode=True")
    if not fixes:
        return "a smaller kernel_size or dilation, with more padding"
    return fixes[0] if len(fixes) == 1 else ", ".join(fixes[:-1]) + " or " + fixes[-1]


#: The explorers draw every pixel of the padded input; the output-size functions take any size.
EXPLORER_LIMIT = 256


def check_explorer(*values: Any) -> None:
    """Refuse settings (ordered as _SETTINGS) the explorers cannot draw: not one int, or huge."""
    for name, value in zip(_SETTINGS, values, strict=False):
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise TypeError(f"{name}={value!r} is not an int; the explorers show square layers")
        if abs(value) > EXPLORER_LIMIT:
            why = f"is beyond what the explorers draw (-{EXPLORER_LIMIT}..{EXPLORER_LIMIT}); "
            why += "conv2d_output_size and pool2d_output_size take any size"
            raise ValueError(f"{name}={value} {why}")


# --- counts --------------------------------------------------------------------------------------

_POSITIVE = ("in_channels", "out_channels", "kernel_size", "output_size", "groups")  # others >= 0


def check_counts(bias: Any = True, **values: Any) -> None:
    """Refuse what PyTorch refuses, and a bias that is no bool (PyTorch takes "no" for True)."""
    if not isinstance(bias, bool):
        raise TypeError(f"bias={bias!r} is not a bool; use bias=True or bias=False")
    for name, value in values.items():
        size = name.endswith("size")  # kernel and output sizes may be pairs (height, width)
        both = tuple(value) if size and isinstance(value, (tuple, list)) else (value, value)
        if len(both) != 2 or any(isinstance(v, bool) or not hasattr(v, "__index__") for v in both):
            raise TypeError(f"{name}={value!r} is not an int" + (" or a pair" if size else ""))
        low = 1 if name in _POSITIVE else 0
        if min(both) < low:
            raise ValueError(f"{name}={value!r} is too small; use {name} >= {low}")
    # a grouped convolution splits both its inputs and its outputs into groups
    cin, cout, groups = (values.get(name, 1) for name in ("in_channels", "out_channels", "groups"))
    if cin % groups or cout % groups:
        raise ValueError(f"groups={groups} must divide in_channels={cin} and out_channels={cout}")


def check_shapes_known(model: Any) -> None:
    """Refuse a lazy layer that has not run yet: its parameters have no shape to count."""
    from torch.nn.parameter import UninitializedParameter  # here: arithmetic must not load torch

    for name, parameter in model.named_parameters():
        if isinstance(parameter, UninitializedParameter):
            why = "run one forward pass first, e.g. trace_shapes(model, (1, 1, 28, 28))"
            raise ValueError(f"parameter {name!r} of a lazy layer has no shape yet; {why}")


def choose(table: dict, key: Any, problem: str) -> Any:
    """``table[key]``, or a ValueError that says ``problem`` and what to choose from."""
    if key not in table:
        raise ValueError(f"{problem}; choose one of {list(table)}")
    return table[key]


# --- the command line's arguments ------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump) and exit with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def number(
    kind: type, low: float, high: float | None = None, *, low_open: bool = False
) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` in [low, high) (or (low, high) if ``low_open``)."""
    high = 2**63 if high is None and kind is int else high  # what a seed or an index holds

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not -float("inf") < value < float("inf"):  # inf or NaN
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if (value <= low if low_open else value < low) or (high is not None and value >= high):
            bound = f"> {low}" if low_open else f">= {low}"
            bound += "" if high is None else f" and < {high}"
            raise argparse.ArgumentTypeError(f"{value} must be {bound}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
