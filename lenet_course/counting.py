"""Counting a network (notebook 03): parameters, multiply-adds and the 1998 paper's connections,
by formula layer by layer, and on a real model (:func:`count_parameters`, :func:`trace_shapes`)."""

import html
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lenet_course.arguments import check_counts, check_shapes_known
from lenet_course.arithmetic import IntOrPair, conv2d_output_size, pool2d_output_size
from lenet_course.models import eval_mode
from lenet_course.paper import C3_TABLE


def _area(value: IntOrPair) -> int:
    return value[0] * value[1] if isinstance(value, (tuple, list)) else value * value


def conv2d_parameters(in_channels, out_channels, kernel_size, groups=1, bias=True) -> int:
    """Weights and biases of ``nn.Conv2d``."""
    check_counts(bias, in_channels=in_channels, out_channels=out_channels, groups=groups)
    check_counts(kernel_size=kernel_size)
    # each output map has its bias and a kernel over each of its in / groups input maps
    return out_channels * ((in_channels // groups) * _area(kernel_size) + (1 if bias else 0))


def linear_parameters(in_features, out_features, bias=True) -> int:
    """Weights and biases of ``nn.Linear``."""
    check_counts(bias, in_features=in_features, out_features=out_features)
    return in_features * out_features + (out_features if bias else 0)


def subsampling_parameters(maps) -> int:
    """The 1998 paper's subsampling (S2, S4): one coefficient and one bias per map."""
    check_counts(maps=maps)
    return 2 * maps


def sparse_conv2d_parameters(table, kernel_size, bias=True) -> int:
    """Parameters of a convolution whose map ``j`` reads only the maps ``table[j]`` (C3: 1,516)."""
    check_counts(bias, kernel_size=kernel_size)
    return sum(len(inputs) * _area(kernel_size) + (1 if bias else 0) for inputs in table)


def conv2d_multiply_adds(in_channels, out_channels, kernel_size, output_size, groups=1) -> int:
    """Multiply-adds of ``nn.Conv2d`` on one image."""
    weights = conv2d_parameters(in_channels, out_channels, kernel_size, groups, bias=False)
    check_counts(output_size=output_size)
    # each weight multiplies one input pixel for each output pixel of its map
    return weights * _area(output_size)


def linear_multiply_adds(in_features, out_features) -> int:
    """Multiply-adds of ``nn.Linear`` on one example: one per weight."""
    check_counts(in_features=in_features, out_features=out_features)
    return in_features * out_features


def connections(units, inputs_per_unit, bias=True) -> int:
    """The 1998 paper's connections: one per input each unit reads, plus its bias. Weight sharing
    sets them apart from parameters: C1 has 156 parameters but 6*28*28*(25 + 1) connections."""
    check_counts(bias, units=units, inputs_per_unit=inputs_per_unit)
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


def lenet5_1998_layers(table: Sequence[Sequence[int]] = C3_TABLE) -> list[PaperLayer]:
    """LeNet-5's layers by formula: 60,000 trainable parameters, 340,908 connections in all."""
    c1 = conv2d_output_size(32, 5)  # every size is an int: the arguments are
    s2 = pool2d_output_size(c1, 2)
    c3 = conv2d_output_size(s2, 5)
    s4 = pool2d_output_size(c3, 2)
    c5 = conv2d_output_size(s4, 5)

    def layer(name: str, kind: str, maps: int, size: Any, weights: int, inputs: int) -> PaperLayer:
        return PaperLayer(name, kind, maps, size, weights, connections(maps * size**2, inputs))

    # C3's maps read different numbers of S2's maps (Table I), and the RBF units have no bias
    c3_weights = sparse_conv2d_parameters(table, 5)
    c3_connections = sum(connections(c3 * c3, len(inputs) * 25) for inputs in table)
    rbf_connections = connections(10, 84, bias=False)
    return [
        layer("C1", "convolution 5x5", 6, c1, conv2d_parameters(1, 6, 5), 25),
        layer("S2", "subsampling 2x2", 6, s2, subsampling_parameters(6), 4),
        PaperLayer("C3", "convolution 5x5 (Table I)", len(table), c3, c3_weights, c3_connections),
        layer("S4", "subsampling 2x2", 16, s4, subsampling_parameters(16), 4),
        layer("C5", "convolution 5x5", 120, c5, conv2d_parameters(16, 120, 5), 16 * 25),
        layer("F6", "full", 84, 1, linear_parameters(120, 84), 120),
        PaperLayer("OUTPUT", "Euclidean RBF", 10, 1, 0, rbf_connections, fixed_parameters=840),
    ]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """How many numbers ``model`` learns (shared parameters count once)."""
    check_shapes_known(model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


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


class ShapeTrace(list[LayerRow]):
    """The rows of :func:`trace_shapes`, with totals; prints as a table."""

    def __init__(self, rows: list[LayerRow], input_shape: tuple[int, ...]) -> None:
        super().__init__(rows)
        self.input_shape = input_shape
        self.total_parameters = sum(row.parameters for row in rows)
        self.total_multiply_adds = sum(row.multiply_adds or 0 for row in rows)  # "?" counts as 0
        self.activation_bytes = sum(r.output_bytes for r in rows if r.new_memory)  # views are free

    def _table(self) -> list[tuple[str, ...]]:
        def text(value: int | None | tuple[int, ...]) -> str:  # 1,234 or ? or (1, 6, 28, 28)
            if isinstance(value, tuple):
                return "(" + ", ".join(map(str, value)) + ")"
            return "?" if value is None else f"{value:,}"

        rows = [
            (r.name, r.type, text(r.output_shape), text(r.parameters), text(r.multiply_adds))
            for r in self
        ]
        total = ("total", "", "", text(self.total_parameters), text(self.total_multiply_adds))
        headers = ("layer", "type", "output shape", "parameters", "multiply-adds")
        return [headers, ("input", "", text(self.input_shape), "", ""), *rows, total]

    def __repr__(self) -> str:  # str() shows it too
        table = self._table()
        widths = [max(len(line[column]) for line in table) for column in range(5)]
        align = (str.ljust,) * 3 + (str.rjust,) * 2  # names and shapes left, numbers right
        lines = []
        for line in table:
            cells = [pad(cell, w) for pad, cell, w in zip(align, line, widths, strict=True)]
            lines.append("  ".join(cells).rstrip())
        rule = "  ".join("-" * width for width in widths)
        return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])

    def _repr_html_(self) -> str:  # names and shapes to the left, numbers to the right
        head, *body = self._table()
        header = "".join(f"<th>{html.escape(cell)}</th>" for cell in head)
        rows = ""
        for line in body:
            cells = [
                f'<td style="text-align:{side}">{html.escape(cell)}</td>'
                for side, cell in zip(("left",) * 3 + ("right",) * 2, line, strict=True)
            ]
            rows += "<tr>" + "".join(cells) + "</tr>"
        return f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"


def _multiply_adds(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int | None:
    if isinstance(module, nn.modules.conv._ConvTransposeNd):  # each input spreads over weight[0]
        return inputs[0].numel() * module.weight[0].numel()
    if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):  # a sum over weight[0] per output
        return output.numel() * module.weight[0].numel()
    weighted = next(module.parameters(recurse=False), None) is not None
    return None if weighted else 0  # activations, pooling, flatten, dropout: no weighted sums


def trace_shapes(model: nn.Module, input_shape: Sequence[int]) -> ShapeTrace:
    """Run ``model`` once on zeros (eval mode, no gradients), a row per call of a leaf module or of
    one with parameters; shared ones count once. Multiply-adds: whole batch, ``?`` if unknown."""
    first = next(iter(model.parameters()), torch.zeros(()))  # the model's device and dtype
    dtype = first.dtype if first.dtype.is_floating_point else torch.float32
    x = torch.zeros(tuple(input_shape), dtype=dtype, device=first.device)
    rows, counted = [], set()  # counted: ids of the parameters counted so far
    names = {module: name for name, module in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        while isinstance(output, (tuple, list)) and output:
            output = output[0]
        parameters = [p for p in module.parameters(recurse=False) if id(p) not in counted]
        counted.update(id(p) for p in parameters)
        shape, nbytes, new_memory = (), 0, True
        if isinstance(output, torch.Tensor):
            shape, nbytes = tuple(output.shape), output.numel() * output.element_size()
            shared = {i.untyped_storage().data_ptr() for i in inputs if isinstance(i, torch.Tensor)}
            new_memory = output.untyped_storage().data_ptr() not in shared
        kind, count = type(module).__name__, sum(p.numel() for p in parameters)
        adds = _multiply_adds(module, inputs, output)
        name = names.get(module) or kind  # the model itself has no name
        rows.append(LayerRow(name, kind, shape, count, adds, nbytes, new_memory))

    with ExitStack() as hooks, eval_mode(model), torch.no_grad():  # the hooks go when it ends
        for module in model.modules():  # leaves, and modules with parameters of their own
            leaf = next(module.children(), None) is None
            if leaf or next(module.parameters(recurse=False), None) is not None:
                hooks.enter_context(module.register_forward_hook(hook))
        model(x)
    return ShapeTrace(rows, tuple(x.shape))
