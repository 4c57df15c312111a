"""``lenet_course.counting``: the formulas against ``numel()`` and the trace, the 1998 paper's
table, and ``count_parameters`` / ``trace_shapes`` on models written elsewhere."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lenet_course import counting as C
from lenet_course.paper import C3_TABLE

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def int_or_pair(low: int, high: int) -> st.SearchStrategy[Any]:
    one = st.integers(low, high)
    return st.one_of(one, st.tuples(one, one))


# --- parameter and connection counts ------------------------------------------------------------


def modern_lenet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10),
    )


def test_modern_lenet_counts() -> None:
    model = modern_lenet()
    assert C.count_parameters(model) == 61_706
    assert C.conv2d_parameters(1, 6, 5) + C.conv2d_parameters(6, 16, 5) == 156 + 2_416
    assert (
        C.linear_parameters(400, 120) + C.linear_parameters(120, 84) + C.linear_parameters(84, 10)
        == 48_120 + 10_164 + 850
    )
    trace = C.trace_shapes(model, (1, 1, 28, 28))
    assert trace.total_parameters == 61_706
    assert [row.multiply_adds for row in trace if row.multiply_adds] == [
        117_600, 240_000, 48_000, 10_080, 840,
    ]
    assert trace.total_multiply_adds == 416_520
    assert trace[-1].output_shape == (1, 10)


@SETTINGS
@given(
    groups=st.integers(1, 3),
    in_per_group=st.integers(1, 3),
    out_per_group=st.integers(1, 3),
    kernel=int_or_pair(1, 4),
    bias=st.booleans(),
)
def test_conv_formulas_match_numel_and_the_trace(
    groups: int, in_per_group: int, out_per_group: int, kernel: Any, bias: bool
) -> None:
    cin, cout = groups * in_per_group, groups * out_per_group
    conv = nn.Conv2d(cin, cout, kernel, groups=groups, bias=bias)
    assert C.conv2d_parameters(cin, cout, kernel, groups, bias) == C.count_parameters(conv)
    row = C.trace_shapes(conv, (1, cin, 9, 9))[0]
    output = row.output_shape[-2:]
    assert C.conv2d_multiply_adds(cin, cout, kernel, output, groups) == row.multiply_adds


def test_conv2d_parameters_rejects_groups_that_do_not_divide() -> None:
    with pytest.raises(ValueError, match="groups=4"):
        C.conv2d_parameters(6, 16, 5, groups=4)


def torch_refuses(build: Any, *inputs: Any) -> bool:
    """Whether PyTorch refuses to build a layer or to run it on zeros of shape ``inputs``, or
    runs it without computing it: with no input channels a convolution returns an empty tensor
    (0 channels, not out_channels) whatever its kernel."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zero-element parameters warn
            layer = build()
            output = layer(torch.zeros(*inputs))
    except (RuntimeError, ValueError, TypeError):
        return True
    channels = getattr(layer, "out_channels", None)
    return channels is not None and output.shape[1] != channels


def refused(function: Any, *arguments: Any, **keywords: Any) -> bool:
    try:
        function(*arguments, **keywords)
    except (ValueError, TypeError) as error:
        assert str(error) and "\n" not in str(error)
        return True
    return False


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@SETTINGS
@given(
    cin=st.integers(-2, 4),
    cout=st.integers(-2, 4),
    kernel=int_or_pair(-1, 4),
    groups=st.integers(-1, 3),
    bias=st.booleans(),
)
def test_conv_formulas_refuse_exactly_what_torch_refuses(
    cin: int, cout: int, kernel: Any, groups: int, bias: bool
) -> None:
    def build() -> nn.Conv2d:
        return nn.Conv2d(cin, cout, kernel, groups=groups, bias=bias)

    refuses = torch_refuses(build, 1, max(cin, 0), 9, 9)
    assert refused(C.conv2d_parameters, cin, cout, kernel, groups, bias) == refuses
    assert refused(C.conv2d_multiply_adds, cin, cout, kernel, 9, groups) == refuses
    if not refuses:
        assert C.conv2d_parameters(cin, cout, kernel, groups, bias) == C.count_parameters(build())


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@SETTINGS
@given(cin=st.integers(-2, 4), cout=st.integers(-2, 4), bias=st.booleans())
def test_linear_formulas_refuse_exactly_what_torch_refuses(cin: int, cout: int, bias: bool) -> None:
    def build() -> nn.Linear:
        return nn.Linear(cin, cout, bias=bias)

    refuses = torch_refuses(build, 2, max(cin, 0))
    assert refused(C.linear_parameters, cin, cout, bias) == refuses
    assert refused(C.linear_multiply_adds, cin, cout) == refuses
    if not refuses:
        assert C.linear_parameters(cin, cout, bias) == C.count_parameters(build())


@pytest.mark.parametrize(
    ("function", "arguments", "keywords", "error", "fragment"),
    [
        (C.conv2d_parameters, (1, 6, 5), {"bias": "yes"}, TypeError, "bias='yes' is not a bool"),
        (C.conv2d_parameters, (1, 6, 5), {"bias": "no"}, TypeError, "bias='no' is not a bool"),
        (C.conv2d_parameters, (1, 6, 5), {"bias": None}, TypeError, "bias=None is not a bool"),
        (C.conv2d_parameters, (-1, 6, 5), {}, ValueError, "in_channels=-1 is too small; use "
         "in_channels >= 1"),
        (C.conv2d_parameters, (1, -6, 5), {}, ValueError, "out_channels=-6"),
        (C.conv2d_parameters, (1, 0, 5), {}, ValueError, "out_channels >= 1"),
        (C.conv2d_parameters, (0, 6, 5), {}, ValueError, "in_channels >= 1"),
        (C.conv2d_parameters, (1, 6, 2.5), {}, TypeError, "kernel_size=2.5 is not an int or a"),
        (C.conv2d_parameters, (1, 6, (5, 0)), {}, ValueError, "kernel_size=(5, 0)"),
        (C.conv2d_parameters, (1, 6, (5, 5, 5)), {}, TypeError, "kernel_size=(5, 5, 5)"),
        (C.conv2d_parameters, (1, 6, "5"), {}, TypeError, "kernel_size='5'"),
        (C.conv2d_parameters, (6.0, 16, 5), {}, TypeError, "in_channels=6.0 is not an int"),
        (C.conv2d_parameters, (True, 6, 5), {}, TypeError, "in_channels=True is not an int"),
        (C.conv2d_parameters, (4, 8, 3), {"groups": 2.0}, TypeError, "groups=2.0"),
        (C.conv2d_parameters, (4, 8, 3), {"groups": 0}, ValueError, "groups >= 1"),
        (C.conv2d_parameters, (4, 8, 3), {"groups": 3}, ValueError, "groups=3 must divide"),
        (C.linear_parameters, (-5, 10), {}, ValueError, "in_features=-5"),
        (C.linear_parameters, (5, -10), {}, ValueError, "out_features=-10"),
        (C.linear_parameters, (2.5, 10), {}, TypeError, "in_features=2.5"),
        (C.linear_parameters, (-1, 10), {}, ValueError, "in_features >= 0"),
        (C.linear_parameters, (5, 10), {"bias": "no"}, TypeError, "bias='no'"),
        (C.subsampling_parameters, (-3,), {}, ValueError, "maps=-3"),
        (C.subsampling_parameters, (1.5,), {}, TypeError, "maps=1.5"),
        (C.sparse_conv2d_parameters, (C3_TABLE, 0), {}, ValueError, "kernel_size=0"),
        (C.sparse_conv2d_parameters, (C3_TABLE, 5), {"bias": "no"}, TypeError, "bias='no'"),
        (C.conv2d_multiply_adds, (1, 6, 5, -24), {}, ValueError, "output_size=-24"),
        (C.conv2d_multiply_adds, (1, 6, 5, 0), {}, ValueError, "output_size >= 1"),
        (C.conv2d_multiply_adds, (1, 6, 5, (24, 2.0)), {}, TypeError, "output_size=(24, 2.0)"),
        (C.conv2d_multiply_adds, (6, 16, 5, 10), {"groups": 4}, ValueError, "groups=4"),
        (C.linear_multiply_adds, (-1, 5), {}, ValueError, "in_features=-1"),
        (C.connections, (-10, 25), {}, ValueError, "units=-10"),
        (C.connections, (10, -84), {}, ValueError, "inputs_per_unit=-84"),
        (C.connections, (10, 84), {"bias": "no"}, TypeError, "bias='no'"),
    ],
)
def test_counts_refuse_what_pytorch_refuses_instead_of_returning_a_number(
    function: Any, arguments: tuple[Any, ...], keywords: dict[str, Any], error: type,
    fragment: str,
) -> None:
    with pytest.raises(error) as caught:
        function(*arguments, **keywords)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_the_1998_paper_table() -> None:
    layers = {layer.name: layer for layer in C.lenet5_1998_layers()}
    expected = {
        "C1": (6, 28, 156, 122_304),
        "S2": (6, 14, 12, 5_880),
        "C3": (16, 10, 1_516, 151_600),
        "S4": (16, 5, 32, 2_000),
        "C5": (120, 1, 48_120, 48_120),
        "F6": (84, 1, 10_164, 10_164),
        "OUTPUT": (10, 1, 0, 840),
    }
    for name, numbers in expected.items():
        layer = layers[name]
        assert (layer.maps, layer.map_size, layer.parameters, layer.connections) == numbers
    assert sum(layer.parameters for layer in layers.values()) == 60_000
    assert sum(layer.connections for layer in layers.values()) == 340_908
    assert layers["OUTPUT"].fixed_parameters == 840
    assert C.subsampling_parameters(6) == 12
    assert C.sparse_conv2d_parameters(C3_TABLE, 5) == 1_516
    # Without Table I (every C3 map reading all six S2 maps) C3 would be a plain convolution.
    assert C.sparse_conv2d_parameters([range(6)] * 16, 5) == C.conv2d_parameters(6, 16, 5)


def test_c3_table_is_the_papers() -> None:
    assert len(C3_TABLE) == 16
    assert [len(inputs) for inputs in C3_TABLE] == [3] * 6 + [4] * 9 + [6]
    # Table I, row 0 (S2 map 0) is read by these C3 maps:
    assert [j for j, inputs in enumerate(C3_TABLE) if 0 in inputs] == [
        0, 4, 5, 6, 9, 10, 11, 12, 14, 15,
    ]


# --- count_parameters and trace_shapes on models written elsewhere -----------------------------


def test_trace_shapes_on_d2l_lenet() -> None:
    d2l = pytest.importorskip("d2l.torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lazy modules warn that they are new
        model = d2l.LeNet()
    with pytest.raises(ValueError, match="forward pass"):
        C.count_parameters(model)
    model.train()
    trace = C.trace_shapes(model, (1, 1, 28, 28))
    assert model.training, "trace_shapes must put the model back in training mode"
    assert [row.name for row in trace][:3] == ["net.0", "net.1", "net.2"]
    assert [row.output_shape for row in trace if row.type in ("Conv2d", "AvgPool2d")] == [
        (1, 6, 28, 28), (1, 6, 14, 14), (1, 16, 10, 10), (1, 16, 5, 5),
    ]
    assert trace.total_parameters == C.count_parameters(model) == 61_706
    assert trace.total_multiply_adds == 416_520


class Block(nn.Module):
    """A nested module with a parameter of its own and a layer used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.body = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())
        self.shared = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x) * self.scale
        return self.shared(self.shared(x))


def test_trace_shapes_on_nested_modules_counts_each_parameter_once() -> None:
    model = nn.Sequential(Block(), nn.Flatten(), nn.BatchNorm1d(48))
    trace = C.trace_shapes(model, (2, 3, 4, 4))
    names = [row.name for row in trace]
    assert names == ["0.body.0", "0.body.1", "0.shared", "0.shared", "0", "1", "2"]
    assert trace.total_parameters == C.count_parameters(model)
    assert [row.parameters for row in trace][2:4] == [20, 0]
    assert trace[0].multiply_adds == 2 * 3 * 4 * 4 * 3 * 9
    assert trace[2].multiply_adds == 2 * 3 * 4 * 4 * 4
    assert trace[-1].multiply_adds is None and "?" in str(trace)
    flatten = trace[5]
    assert flatten.type == "Flatten" and not flatten.new_memory


def test_trace_shapes_tables_read_well() -> None:
    trace = C.trace_shapes(modern_lenet(), (1, 1, 28, 28))
    text = str(trace)
    assert text.splitlines()[0].split() == ["layer", "type", "output", "shape", "parameters",
                                            "multiply-adds"]
    assert "61,706" in text and "416,520" in text and "(1, 16, 5, 5)" in text
    html = trace._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == len(trace) + 3
    assert repr(trace) == text
    assert trace.activation_bytes == 4 * (4704 + 4704 + 1176 + 1600 + 1600 + 400 + 120 * 2
                                          + 84 * 2 + 10)


def test_count_parameters_trainable_only() -> None:
    model = modern_lenet()
    model[0].requires_grad_(False)
    assert C.count_parameters(model, trainable_only=True) == 61_706 - 156
