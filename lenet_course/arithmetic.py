"""Convolution arithmetic: output sizes, receptive fields, parameter and multiply-add counts.

Pure Python: nothing here needs torch except the functions that take an ``nn.Module``
(:func:`count_parameters`, :func:`trace_shapes`, :func:`windows_of`), which import it when called.

The output-size functions return exactly what PyTorch's ``nn.Conv2d``, ``nn.MaxPool2d`` and
``nn.AvgPool2d`` produce, and raise ``ValueError`` for exactly the configurations PyTorch rejects
(checked against torch itself by property tests in ``tests/test_arithmetic.py``).  Wrong *types*
(a float, a bool, a triple) raise ``TypeError``/``ValueError`` as PyTorch does, without a promise
of matching its wording.
"""

from __future__ import annotations

import html
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

#: LeCun et al. (1998), Table I: which S2 feature maps (rows 0-5) each C3 map (0-15) reads.
#: Maps 0-5 read 3 contiguous S2 maps, 6-11 read 4 contiguous, 12-14 read 4 non-contiguous,
#: and 15 reads all 6.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip

#: An int (the same for height and width) or a pair ``(height, width)``.
IntOrPair = int | tuple[int, int]

_AXES = ("height", "width")


# --- output sizes --------------------------------------------------------------------------------


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name}={value!r} is a bool; give an int")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name}={value!r} is not an int or a pair of ints (height, width)"
        ) from None


def _pair(value: Any, name: str) -> tuple[tuple[int, int], bool]:
    """``value`` as ``(height, width)``, and whether it was given as a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{name}={tuple(value)!r} has {len(value)} values; give one int or a pair "
                "(height, width)"
            )
        return (_as_int(value[0], name), _as_int(value[1], name)), True
    number = _as_int(value, name)
    return (number, number), False


def _span(kernel_size: int, dilation: int) -> int:
    """How many input pixels one window covers, holes included: ``dilation*(kernel_size-1)+1``."""
    return dilation * (kernel_size - 1) + 1


class _Axis:
    """One axis (height or width) of a configuration, for reading and for error messages."""

    def __init__(self, axis: int, two_d: bool, given_as_pair: dict[str, bool]) -> None:
        self.axis = axis
        self.two_d = two_d
        self.given_as_pair = given_as_pair

    def name(self, argument: str) -> str:
        """``kernel_size`` or, for an argument given as a pair, ``kernel_size[0]``."""
        return f"{argument}[{self.axis}]" if self.given_as_pair.get(argument) else argument

    @property
    def where(self) -> str:
        return f"in {_AXES[self.axis]}: " if self.two_d else ""


def _check_positive(axis: _Axis, argument: str, value: int, meaning: str) -> None:
    if value < 1:
        raise ValueError(
            f"{axis.where}{axis.name(argument)}={value} is not positive; "
            f"use {argument} >= 1 ({meaning})"
        )


def _conv_length(n: int, k: int, s: int, pad_left: int, pad_right: int, d: int) -> int:
    """Output length of a convolution whose configuration is known to be valid."""
    return (n + pad_left + pad_right - _span(k, d)) // s + 1


def _pool_length(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's ``pooling_output_shape``; may return < 1 for a window that does not fit."""
    numerator = n + 2 * p - _span(k, d) + (s - 1 if ceil_mode else 0)
    out = numerator // s + 1  # // rounds towards minus infinity, as PyTorch's div_rtn
    # ceil_mode rule: the last window must start inside the input or the left padding.
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _pool_fits(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> bool:
    return (
        0 <= p <= k // 2
        and k >= 1
        and s >= 1
        and d >= 1
        and _pool_length(n, k, s, p, d, ceil_mode) >= 1
    )


def _first(candidates: Iterable[int], works: Callable[[int], bool]) -> int | None:
    return next((value for value in candidates if works(value)), None)


def _or_list(options: list[str]) -> str:
    if len(options) <= 1:
        return "".join(options)
    return ", ".join(options[:-1]) + " or " + options[-1]


def _pixels(count: int) -> str:
    return f"{count} pixel" if count == 1 else f"{count} pixels"


def _window_words(k: int, d: int) -> str:
    if d == 1:
        return f"a window of {_pixels(k)}"
    return f"a window spanning {_pixels(_span(k, d))} (kernel {k} with dilation {d})"


def _padded_words(n: int, pad_left: int, pad_right: int) -> str:
    if pad_left == pad_right:
        return f"size {n} and padding {pad_left} on each side"
    return f"size {n}, padding {pad_left} before and {pad_right} after"


def _conv_axis(
    axis: _Axis, n: int, k: int, s: int, padding: int | str, d: int, padding_is_same: bool
) -> int:
    _check_positive(axis, "size", n, "an input needs at least one pixel")
    _check_positive(axis, "kernel_size", k, "a window needs at least one pixel")
    _check_positive(axis, "stride", s, "the step between windows")
    _check_positive(axis, "dilation", d, "1 means no holes")
    if padding_is_same:
        total = d * (k - 1)  # PyTorch puts the odd pixel of an even total on the right
        pad_left, pad_right = total // 2, total - total // 2
    else:
        assert isinstance(padding, int)
        if padding < 0:
            raise ValueError(
                f"{axis.where}{axis.name('padding')}={padding} is negative; use padding >= 0"
            )
        pad_left = pad_right = padding
    padded = n + pad_left + pad_right
    span = _span(k, d)
    if span > padded:
        options = [f"padding >= {-(-(span - n) // 2)}"]
        options.append(f"kernel_size <= {(padded - 1) // d + 1}")
        if d > 1 and k > 1 and (padded - 1) // (k - 1) >= 1:
            options.append(f"dilation <= {(padded - 1) // (k - 1)}")
        raise ValueError(
            f"{axis.where}{axis.name('kernel_size')}={k} is {_window_words(k, d)}, which does "
            f"not fit in the padded input of {_pixels(padded)} "
            f"({_padded_words(n, pad_left, pad_right)}); use {_or_list(options)}"
        )
    return _conv_length(n, k, s, pad_left, pad_right, d)


def conv2d_output_size(
    size: IntOrPair,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair | str = 0,
    dilation: IntOrPair = 1,
) -> IntOrPair:
    """The output height and width of ``nn.Conv2d`` on an input of ``size``.

    ``out = floor((size + 2*padding - dilation*(kernel_size - 1) - 1) / stride) + 1``.
    Every argument is an int or a pair ``(height, width)``; the result is an int when every
    argument is an int, else a pair.  ``padding`` may also be ``"valid"`` (no padding) or
    ``"same"`` (output as large as the input; PyTorch allows it only with stride 1).

    Raises ``ValueError`` naming the bad value and what would be valid, wherever ``nn.Conv2d``
    rejects the configuration: a size, kernel, stride or dilation below 1, negative padding,
    ``"same"`` with a stride, or a (dilated) kernel larger than the padded input.
    """
    padding_is_same = False
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(
                f"padding={padding!r} is not a padding PyTorch knows; use 'valid', 'same' or "
                "an int >= 0 (or a pair of them)"
            )
        padding_is_same = padding == "same"
        padding_pair: tuple[int, int] = (0, 0)
        padding_given_as_pair = False
    else:
        padding_pair, padding_given_as_pair = _pair(padding, "padding")
    sizes, size_pair = _pair(size, "size")
    kernels, kernel_pair = _pair(kernel_size, "kernel_size")
    strides, stride_pair = _pair(stride, "stride")
    dilations, dilation_pair = _pair(dilation, "dilation")
    given_as_pair = {
        "size": size_pair,
        "kernel_size": kernel_pair,
        "stride": stride_pair,
        "padding": padding_given_as_pair,
        "dilation": dilation_pair,
    }
    two_d = any(given_as_pair.values())
    if padding_is_same and strides != (1, 1):
        half = tuple((_span(k, d) - 1) // 2 for k, d in zip(kernels, dilations, strict=True))
        raise ValueError(
            f"padding='same' needs stride=1, but stride={stride!r}: a strided convolution "
            "cannot keep the input's size (PyTorch rejects it); give an int padding instead, "
            f"e.g. padding={half if two_d else half[0]}"
        )
    out = tuple(
        _conv_axis(
            _Axis(axis, two_d, given_as_pair),
            sizes[axis],
            kernels[axis],
            strides[axis],
            padding_pair[axis],
            dilations[axis],
            padding_is_same,
        )
        for axis in (0, 1)
    )
    return out if two_d else out[0]  # type: ignore[return-value]


def _pool_axis(axis: _Axis, n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    _check_positive(axis, "size", n, "an input needs at least one pixel")
    _check_positive(axis, "kernel_size", k, "a window needs at least one pixel")
    _check_positive(axis, "stride", s, "the step between windows")
    _check_positive(axis, "dilation", d, "1 means no holes")
    if p < 0:
        raise ValueError(f"{axis.where}{axis.name('padding')}={p} is negative; use padding >= 0")
    if p > k // 2:
        raise ValueError(
            f"{axis.where}{axis.name('padding')}={p} is more than half of kernel_size={k}; "
            f"pooling allows padding <= {k // 2} (kernel_size // 2), so that every window "
            "covers some of the input"
        )
    out = _pool_length(n, k, s, p, d, ceil_mode)
    if out >= 1:
        return out
    # Nothing fits: suggest the nearest values that would (each on its own, others unchanged).
    options = []
    padding_fix = _first(range(p + 1, k // 2 + 1), lambda q: _pool_fits(n, k, s, q, d, ceil_mode))
    if padding_fix is not None:
        options.append(
            f"padding={padding_fix}"
            if padding_fix == k // 2
            else f"padding from {padding_fix} to {k // 2}"
        )
    kernel_fix = _first(range(k - 1, 0, -1), lambda q: _pool_fits(n, q, s, p, d, ceil_mode))
    if kernel_fix is not None:
        options.append(f"kernel_size <= {kernel_fix}")
    if d > 1:
        dilation_fix = _first(range(d - 1, 0, -1), lambda q: _pool_fits(n, k, s, p, q, ceil_mode))
        if dilation_fix is not None:
            options.append(f"dilation <= {dilation_fix}")
    if not ceil_mode and _pool_fits(n, k, s, p, d, True):
        options.append("ceil_mode=True")
    if ceil_mode:
        stride_fix = _first(
            range(s + 1, _span(k, d) + 2), lambda q: _pool_fits(n, k, q, p, d, True)
        )
        if stride_fix is not None:
            options.append(f"stride >= {stride_fix}")
    padded = n + 2 * p
    if ceil_mode:
        problem = (
            f"even with ceil_mode=True it overhangs the padded input of {_pixels(padded)} "
            f"({_padded_words(n, p, p)}) by {_span(k, d) - padded}, more than stride - 1 = "
            f"{_pixels(s - 1)}"
        )
    else:
        problem = (
            f"which does not fit in the padded input of {_pixels(padded)} "
            f"({_padded_words(n, p, p)})"
        )
    raise ValueError(
        f"{axis.where}{axis.name('kernel_size')}={k} is {_window_words(k, d)}, {problem}; "
        f"use {_or_list(options)}"
    )


def pool2d_output_size(
    size: IntOrPair,
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    ceil_mode: bool = False,
) -> IntOrPair:
    """The output height and width of ``nn.MaxPool2d`` (and ``nn.AvgPool2d``) on ``size``.

    ``stride`` defaults to ``kernel_size``, as in PyTorch.  With ``ceil_mode=True`` the division
    rounds up, so a last, partial window may hang over the right edge, but PyTorch drops it
    when it would *start* in the right padding or beyond: the last window must start inside the
    input or the left padding.  Arguments are ints or pairs ``(height, width)``; the result is
    an int when every argument is an int, else a pair.

    ``nn.AvgPool2d`` has no dilation: its output size is this function's with ``dilation=1``
    (sizes, errors and ``ceil_mode`` agree with ``nn.MaxPool2d`` there; the tests check both).

    Raises ``ValueError`` where PyTorch rejects the configuration: a size, kernel, stride or
    dilation below 1, padding below 0 or above ``kernel_size // 2``, or a window that does not
    fit (an output of fewer than 1 pixel).
    """
    if isinstance(padding, str):
        raise ValueError(
            f"padding={padding!r}: pooling takes no 'same' or 'valid' (those are for "
            "convolutions); give an int or a pair between 0 and kernel_size // 2"
        )
    sizes, size_pair = _pair(size, "size")
    kernels, kernel_pair = _pair(kernel_size, "kernel_size")
    if stride is None:
        strides, stride_pair = kernels, False
    else:
        strides, stride_pair = _pair(stride, "stride")
    paddings, padding_pair = _pair(padding, "padding")
    dilations, dilation_pair = _pair(dilation, "dilation")
    given_as_pair = {
        "size": size_pair,
        "kernel_size": kernel_pair,
        "stride": stride_pair,
        "padding": padding_pair,
        "dilation": dilation_pair,
    }
    two_d = any(given_as_pair.values())
    out = tuple(
        _pool_axis(
            _Axis(axis, two_d, given_as_pair),
            sizes[axis],
            kernels[axis],
            strides[axis],
            paddings[axis],
            dilations[axis],
            bool(ceil_mode),
        )
        for axis in (0, 1)
    )
    return out if two_d else out[0]  # type: ignore[return-value]


# --- receptive field and jump --------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One sliding-window layer along one axis: a convolution or a pooling."""

    kernel_size: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    name: str = ""


@dataclass(frozen=True)
class ReceptiveField:
    """What one output unit of a layer sees of the network's input, along one axis.

    ``size``: how many input pixels can affect the unit (holes of dilation included).
    ``jump``: input pixels between neighbouring units (the product of the strides so far).
    ``start``: centre of the first unit's field, in input pixel coordinates (0 = first pixel;
    negative means the field reaches into the padding).
    """

    name: str
    size: int
    jump: int
    start: float


def receptive_fields(
    layers: Iterable[Window | tuple[int, ...]] | nn.Module,
) -> list[ReceptiveField]:
    """Receptive field, jump and start after each layer of a stack of windows.

    ``layers`` holds :class:`Window` s (or tuples ``(kernel_size, stride, padding, dilation)``)
    or is an ``nn.Module``, read with :func:`windows_of`.  Each layer widens the field by
    ``(span - 1) * jump`` and multiplies the jump by its stride, where
    ``span = dilation * (kernel_size - 1) + 1``.
    """
    if hasattr(layers, "named_modules"):  # an nn.Module (nn.Sequential is iterable, too)
        layers = windows_of(layers)  # type: ignore[arg-type]
    size, jump, start = 1, 1, 0.0
    fields = []
    for index, layer in enumerate(layers):
        window = layer if isinstance(layer, Window) else Window(*layer)
        span = _span(window.kernel_size, window.dilation)
        size += (span - 1) * jump
        start += ((span - 1) / 2 - window.padding) * jump
        jump *= window.stride
        fields.append(ReceptiveField(window.name or f"layer {index}", size, jump, start))
    return fields


def windows_of(model: nn.Module, axis: int = 0) -> list[Window]:
    """The convolutions and poolings of ``model``, in registration order, along ``axis``.

    Layers that act on each pixel alone (activations, normalisation, dropout) do not change
    the receptive field and are skipped; reading stops at the first ``Flatten`` or ``Linear``,
    after which every unit sees the whole input.  Registration order is the order of the
    forward pass for ``nn.Sequential`` and for most models written in the usual way.
    """
    from torch import nn

    def pick(value: Any) -> int:
        return int(value[axis]) if isinstance(value, (tuple, list)) else int(value)

    windows = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Flatten, nn.Linear, nn.LazyLinear)):
            break
        if isinstance(module, nn.modules.conv._ConvNd):
            padding = module.padding
            if padding == "same":
                span = _span(pick(module.kernel_size), pick(module.dilation))
                padding = (span - 1) // 2
            elif padding == "valid":
                padding = 0
            windows.append(
                Window(
                    pick(module.kernel_size),
                    pick(module.stride),
                    pick(padding),
                    pick(module.dilation),
                    name,
                )
            )
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d, nn.MaxPool1d, nn.AvgPool1d)):
            stride = module.stride if module.stride is not None else module.kernel_size
            dilation = getattr(module, "dilation", 1)
            windows.append(
                Window(
                    pick(module.kernel_size),
                    pick(stride),
                    pick(module.padding),
                    pick(dilation),
                    name,
                )
            )
    return windows


# --- parameters, multiply-adds and connections by formula ---------------------------------------


def conv2d_parameters(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    groups: int = 1,
    bias: bool = True,
) -> int:
    """Weights and biases of ``nn.Conv2d``: ``out * (in / groups) * kh * kw (+ out)``.

    Each output channel sees only the ``in_channels / groups`` input channels of its group.
    """
    (kh, kw), _ = _pair(kernel_size, "kernel_size")
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must be >= 1 and divide both in_channels={in_channels} and "
            f"out_channels={out_channels}"
        )
    return out_channels * (in_channels // groups) * kh * kw + (out_channels if bias else 0)


def linear_parameters(in_features: int, out_features: int, bias: bool = True) -> int:
    """Weights and biases of ``nn.Linear``: ``in * out (+ out)``."""
    return in_features * out_features + (out_features if bias else 0)


def subsampling_parameters(maps: int) -> int:
    """The 1998 paper's trainable subsampling (S2, S4): one coefficient and one bias per map.

    Each unit adds its 2x2 inputs, multiplies the sum by the map's coefficient, adds the map's
    bias and applies a sigmoid, so a layer has ``2 * maps`` parameters, whatever its size.
    """
    return 2 * maps


def sparse_conv2d_parameters(
    table: Sequence[Sequence[int]], kernel_size: IntOrPair, bias: bool = True
) -> int:
    """Parameters of a convolution whose output map ``j`` reads only input maps ``table[j]``.

    The paper's C3 (:data:`C3_TABLE`): ``sum(len(inputs) * 25 + 1) = 1,516``.
    """
    (kh, kw), _ = _pair(kernel_size, "kernel_size")
    return sum(len(inputs) * kh * kw + (1 if bias else 0) for inputs in table)


def conv2d_multiply_adds(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    output_size: IntOrPair,
    groups: int = 1,
) -> int:
    """Multiply-adds of one ``nn.Conv2d`` on one image: each output value is a dot product
    of ``(in_channels / groups) * kh * kw`` terms.  (The bias add is not counted.)"""
    (kh, kw), _ = _pair(kernel_size, "kernel_size")
    (oh, ow), _ = _pair(output_size, "output_size")
    return out_channels * oh * ow * (in_channels // groups) * kh * kw


def linear_multiply_adds(in_features: int, out_features: int) -> int:
    """Multiply-adds of one ``nn.Linear`` on one example: ``in * out``."""
    return in_features * out_features


def connections(units: int, inputs_per_unit: int, bias: bool = True) -> int:
    """The 1998 paper's *connections*: for every unit, one per input it reads, plus its bias.

    Weight sharing makes connections and parameters differ: C1 has 156 parameters but
    ``6 * 28 * 28 * (25 + 1) = 122,304`` connections.
    """
    return units * (inputs_per_unit + (1 if bias else 0))


@dataclass(frozen=True)
class PaperLayer:
    """One layer of LeNet-5 as described in LeCun et al. (1998), Section II.B."""

    name: str
    kind: str
    maps: int
    map_size: int
    parameters: int
    connections: int
    fixed_parameters: int = 0

    @property
    def units(self) -> int:
        return self.maps * self.map_size * self.map_size


def lenet5_1998_layers(table: Sequence[Sequence[int]] = C3_TABLE) -> list[PaperLayer]:
    """LeNet-5's layers, sizes, trainable parameters and connections, all by formula.

    The paper's numbers: C1 156 / 122,304, S2 12 / 5,880, C3 1,516 / 151,600, S4 32 / 2,000,
    C5 48,120 / 48,120, F6 10,164 / 10,164; 60,000 trainable parameters and, with the output
    layer's 10 x 84 = 840 connections (Euclidean RBF units, no bias, parameters fixed by hand),
    340,908 connections.
    """
    c1 = conv2d_output_size(32, 5)
    s2 = pool2d_output_size(c1, 2)
    c3 = conv2d_output_size(s2, 5)
    s4 = pool2d_output_size(c3, 2)
    c5 = conv2d_output_size(s4, 5)
    assert isinstance(c1, int) and isinstance(s2, int) and isinstance(c3, int)
    assert isinstance(s4, int) and isinstance(c5, int)
    c3_parameters = sparse_conv2d_parameters(table, 5)
    c3_connections = sum(connections(c3 * c3, len(inputs) * 25) for inputs in table)
    return [
        PaperLayer("C1", "convolution 5x5", 6, c1, conv2d_parameters(1, 6, 5),
                   connections(6 * c1 * c1, 25)),
        PaperLayer("S2", "subsampling 2x2", 6, s2, subsampling_parameters(6),
                   connections(6 * s2 * s2, 4)),
        PaperLayer("C3", "convolution 5x5 (Table I)", len(table), c3, c3_parameters,
                   c3_connections),
        PaperLayer("S4", "subsampling 2x2", 16, s4, subsampling_parameters(16),
                   connections(16 * s4 * s4, 4)),
        PaperLayer("C5", "convolution 5x5", 120, c5, conv2d_parameters(16, 120, 5),
                   connections(120 * c5 * c5, 16 * 25)),
        PaperLayer("F6", "full", 84, 1, linear_parameters(120, 84), connections(84, 120)),
        PaperLayer("OUTPUT", "Euclidean RBF", 10, 1, 0, connections(10, 84, bias=False),
                   fixed_parameters=10 * 84),
    ]  # fmt: skip


# --- counting a real model -----------------------------------------------------------------------


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """How many numbers ``model`` learns: the sum of ``numel()`` over its parameters.

    Shared parameters count once.  Lazy layers (``nn.LazyConv2d`` ...) must have run once.
    """
    from torch.nn.parameter import UninitializedParameter

    total = 0
    for name, parameter in model.named_parameters():
        if isinstance(parameter, UninitializedParameter):
            raise ValueError(
                f"parameter {name!r} of a lazy layer has no shape yet; run one forward pass "
                "first, e.g. trace_shapes(model, (1, 1, 28, 28))"
            )
        if parameter.requires_grad or not trainable_only:
            total += parameter.numel()
    return total


@dataclass(frozen=True)
class LayerRow:
    """One call of one layer during :func:`trace_shapes`."""

    name: str
    type: str
    output_shape: tuple[int, ...]
    parameters: int
    multiply_adds: int | None  # None: a layer with weights whose arithmetic is not known here
    output_bytes: int
    new_memory: bool  # False when the output shares the input's memory (a view, in place)


def _fmt(number: int | None) -> str:
    return "?" if number is None else f"{number:,}"


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


class ShapeTrace(Sequence[LayerRow]):
    """The layer-by-layer table of :func:`trace_shapes`: a sequence of :class:`LayerRow`."""

    HEADERS = ("layer", "type", "output shape", "parameters", "multiply-adds")

    def __init__(self, rows: list[LayerRow], input_shape: tuple[int, ...]) -> None:
        self.rows = rows
        self.input_shape = input_shape

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]
        return self.rows[index]

    def __iter__(self) -> Iterator[LayerRow]:
        return iter(self.rows)

    @property
    def total_parameters(self) -> int:
        return sum(row.parameters for row in self.rows)

    @property
    def total_multiply_adds(self) -> int:
        """Multiply-adds of the whole forward pass (rows marked ``?`` count as 0)."""
        return sum(row.multiply_adds or 0 for row in self.rows)

    @property
    def activation_bytes(self) -> int:
        """Bytes of all layer outputs that got memory of their own (views are free)."""
        return sum(row.output_bytes for row in self.rows if row.new_memory)

    def _table(self) -> list[tuple[str, ...]]:
        body = [
            (row.name, row.type, _fmt_shape(row.output_shape), _fmt(row.parameters),
             _fmt(row.multiply_adds))
            for row in self.rows
        ]  # fmt: skip
        total = ("total", "", "", _fmt(self.total_parameters), _fmt(self.total_multiply_adds))
        return [("input", "", _fmt_shape(self.input_shape), "", ""), *body, total]

    def __str__(self) -> str:
        table = [self.HEADERS, *self._table()]
        widths = [max(len(line[column]) for line in table) for column in range(5)]
        lines = []
        for number, line in enumerate(table):
            cells = [
                cell.ljust(width) if column < 3 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(line, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
            if number == 0 or number == len(table) - 2:
                lines.append("  ".join("-" * width for width in widths))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.HEADERS)
        body = []
        for line in self._table():
            cells = "".join(
                f'<td style="text-align:{"left" if i < 3 else "right"}">{html.escape(c)}</td>'
                for i, c in enumerate(line)
            )
            body.append(f"<tr>{cells}</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _multiply_adds(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int | None:
    from torch import nn

    if isinstance(module, nn.modules.conv._ConvNd):
        per_value = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        if module.transposed:  # every input value is spread over a kernel-sized patch
            per_input = (module.out_channels // module.groups) * math.prod(module.kernel_size)
            return inputs[0].numel() * per_input
        return output.numel() * per_value
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    if next(module.parameters(recurse=False), None) is None:
        return 0  # activations, pooling, flatten, dropout: no weighted sums
    return None


def trace_shapes(
    model: nn.Module, input_shape: Sequence[int], dtype: Any = None, device: Any = None
) -> ShapeTrace:
    """Run ``model`` once on zeros of ``input_shape`` and tabulate every layer it calls.

    One row per call of a leaf module (and of any module holding parameters of its own), in
    call order: its qualified name, type, output shape, parameters (each counted at its first
    use, so the total equals :func:`count_parameters`), and multiply-adds for the whole input
    batch (conv and linear layers; 0 for layers without weights; ``None``, shown ``?``, for
    other layers with weights).  Works on any ``nn.Module`` (nested modules, ``nn.Sequential``,
    d2l's ``LeNet`` with its lazy layers).  The model runs in eval mode without gradients and
    is put back in its previous mode.
    """
    import torch

    first = next(iter(model.parameters()), None)
    if device is None:
        device = first.device if first is not None else "cpu"
    if dtype is None:
        dtype = first.dtype if first is not None and first.dtype.is_floating_point else None
    x = torch.zeros(tuple(input_shape), dtype=dtype or torch.float32, device=device)

    rows: list[LayerRow] = []
    counted: set[int] = set()
    names = {module: name for name, module in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        tensor = output
        while isinstance(tensor, (tuple, list)) and tensor:
            tensor = tensor[0]
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else ()
        parameters = 0
        for parameter in module.parameters(recurse=False):
            if id(parameter) not in counted:
                counted.add(id(parameter))
                parameters += parameter.numel()
        new_memory, nbytes = True, 0
        if isinstance(tensor, torch.Tensor):
            nbytes = tensor.numel() * tensor.element_size()
            storage = tensor.untyped_storage().data_ptr()
            new_memory = not any(
                isinstance(i, torch.Tensor) and i.untyped_storage().data_ptr() == storage
                for i in inputs
            )
        rows.append(
            LayerRow(
                names.get(module) or type(module).__name__,
                type(module).__name__,
                shape,
                parameters,
                _multiply_adds(module, inputs, tensor),
                nbytes,
                new_memory,
            )
        )

    handles = [
        module.register_forward_hook(hook)
        for module in model.modules()
        if next(module.children(), None) is None
        or next(module.parameters(recurse=False), None) is not None
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return ShapeTrace(rows, tuple(x.shape))
