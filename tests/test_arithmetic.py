"""``lenet_course.arithmetic`` against PyTorch itself, and the explorer's state built on it.

The output-size functions must agree with ``nn.Conv2d`` / ``nn.MaxPool2d`` / ``nn.AvgPool2d`` on
every configuration, valid or not: torch raises <=> we raise ``ValueError``, and otherwise the
sizes are equal.  Hypothesis draws random configurations (about half of them invalid); a full
grid of small configurations is checked exhaustively as well.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import warnings
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

from lenet_course import arithmetic as A
from lenet_course.arithmetic import (
    conv2d_output_size,
    explore_conv,
    explore_pool,
    pool2d_output_size,
)

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- PyTorch as the reference -------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """Thousands of tiny layers run ten times faster on one thread than with threads spinning."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _hw(size: Any) -> tuple[int, int]:
    return tuple(size) if isinstance(size, (tuple, list)) else (size, size)  # type: ignore[return-value]


def _form(shape: torch.Size, *arguments: Any) -> Any:
    """PyTorch's (h, w) in the form our functions promise: an int if every argument was."""
    h, w = int(shape[-2]), int(shape[-1])
    return (h, w) if any(isinstance(a, (tuple, list)) for a in arguments) else h


def torch_conv(size: Any, kernel: Any, stride: Any, padding: Any, dilation: Any) -> Any:
    """What ``nn.Conv2d`` makes of the configuration, or None where it refuses it."""
    h, w = _hw(size)
    if h < 0 or w < 0:
        return None  # torch cannot even make such an input
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layer = nn.Conv2d(1, 1, kernel, stride, padding, dilation, bias=False)
            out = layer(torch.zeros(1, 1, h, w))
    except (RuntimeError, ValueError):
        return None
    return _form(out.shape, size, kernel, stride, padding, dilation)


def torch_pool(
    kind: type[nn.Module], size: Any, kernel: Any, stride: Any, padding: Any, dilation: Any,
    ceil_mode: bool,
) -> Any:
    """What ``nn.MaxPool2d`` / ``nn.AvgPool2d`` make of the configuration, or None."""
    h, w = _hw(size)
    if h < 0 or w < 0:
        return None
    arguments: dict[str, Any] = {"stride": stride, "padding": padding, "ceil_mode": ceil_mode}
    if kind is nn.MaxPool2d:
        arguments["dilation"] = dilation
    try:
        out = kind(kernel, **arguments)(torch.zeros(1, 1, h, w))
    except (RuntimeError, ValueError):
        return None
    return _form(out.shape, size, kernel, stride, padding, dilation)


def ours(function: Any, *arguments: Any, **keywords: Any) -> Any:
    try:
        return function(*arguments, **keywords)
    except ValueError as error:
        assert str(error), "a ValueError must say what is wrong"
        return None


def int_or_pair(low: int, high: int) -> st.SearchStrategy[Any]:
    one = st.integers(low, high)
    return st.one_of(one, st.tuples(one, one))


# --- conv2d_output_size ------------------------------------------------------------------------


@SETTINGS
@given(
    size=int_or_pair(0, 20),
    kernel=int_or_pair(-1, 9),
    stride=int_or_pair(-1, 5),
    padding=st.one_of(int_or_pair(-1, 5), st.sampled_from(["valid", "same"])),
    dilation=int_or_pair(-1, 4),
)
def test_conv2d_output_size_agrees_with_torch(
    size: Any, kernel: Any, stride: Any, padding: Any, dilation: Any
) -> None:
    expected = torch_conv(size, kernel, stride, padding, dilation)
    event("valid" if expected is not None else "rejected")
    assert ours(A.conv2d_output_size, size, kernel, stride, padding, dilation) == expected


@SETTINGS
@given(
    size=int_or_pair(1, 24),
    kernel=int_or_pair(1, 7),
    stride=int_or_pair(1, 4),
    padding=st.one_of(int_or_pair(0, 4), st.just("same")),
    dilation=int_or_pair(1, 3),
)
def test_conv2d_output_size_agrees_with_torch_mostly_valid(
    size: Any, kernel: Any, stride: Any, padding: Any, dilation: Any
) -> None:
    if padding == "same":
        stride = 1
    expected = torch_conv(size, kernel, stride, padding, dilation)
    event("valid" if expected is not None else "rejected")
    assert ours(A.conv2d_output_size, size, kernel, stride, padding, dilation) == expected


def test_conv2d_output_size_full_grid() -> None:
    checked = 0
    for size, kernel, stride, padding, dilation in itertools.product(
        range(1, 9), range(1, 6), range(1, 4), [*range(4), "valid", "same"], range(1, 4)
    ):
        expected = torch_conv(size, kernel, stride, padding, dilation)
        assert ours(A.conv2d_output_size, size, kernel, stride, padding, dilation) == expected, (
            size, kernel, stride, padding, dilation,
        )
        checked += 1
    assert checked == 8 * 5 * 3 * 6 * 3


# --- pool2d_output_size ------------------------------------------------------------------------


def assert_pool_agrees(kind: type[nn.Module], *configuration: Any) -> None:
    """pool2d_output_size(size, kernel, stride, padding, dilation, ceil_mode) says what the
    torch pooling layer ``kind`` does, refusals included (and Hypothesis counts which)."""
    expected = torch_pool(kind, *configuration)
    event("valid" if expected is not None else "rejected")
    assert ours(A.pool2d_output_size, *configuration) == expected


@SETTINGS
@given(
    size=int_or_pair(0, 16),
    kernel=int_or_pair(-1, 8),
    stride=st.one_of(st.none(), int_or_pair(-1, 5)),
    padding=int_or_pair(-1, 4),
    dilation=int_or_pair(-1, 3),
    ceil_mode=st.booleans(),
)
def test_maxpool2d_output_size_agrees_with_torch(
    size: Any, kernel: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool
) -> None:
    assert_pool_agrees(nn.MaxPool2d, size, kernel, stride, padding, dilation, ceil_mode)


@st.composite
def mostly_valid_pool(draw: st.DrawFn) -> tuple[Any, ...]:
    """A pooling configuration whose padding is at most one above kernel_size // 2."""
    kernel = draw(int_or_pair(1, 6))
    smallest = min(_hw(kernel))
    padding = draw(int_or_pair(0, smallest // 2 + 1))
    size = draw(int_or_pair(1, 16))
    stride = draw(st.one_of(st.none(), int_or_pair(1, 4)))
    return size, kernel, stride, padding, draw(int_or_pair(1, 3)), draw(st.booleans())


@SETTINGS
@given(mostly_valid_pool())
def test_maxpool2d_output_size_agrees_with_torch_mostly_valid(
    configuration: tuple[Any, ...],
) -> None:
    size, kernel, stride, padding, dilation, ceil_mode = configuration
    assert_pool_agrees(nn.MaxPool2d, size, kernel, stride, padding, dilation, ceil_mode)


@SETTINGS
@given(
    size=int_or_pair(0, 16),
    kernel=int_or_pair(-1, 8),
    stride=st.one_of(st.none(), int_or_pair(-1, 5)),
    padding=int_or_pair(-1, 4),
    ceil_mode=st.booleans(),
)
def test_avgpool2d_output_size_agrees_with_torch(
    size: Any, kernel: Any, stride: Any, padding: Any, ceil_mode: bool
) -> None:
    assert_pool_agrees(nn.AvgPool2d, size, kernel, stride, padding, 1, ceil_mode)


@pytest.mark.parametrize("kind", [nn.MaxPool2d, nn.AvgPool2d])
def test_pool2d_output_size_full_grid(kind: type[nn.Module]) -> None:
    dilations = range(1, 4) if kind is nn.MaxPool2d else [1]
    for size, kernel, stride, padding, dilation, ceil_mode in itertools.product(
        range(1, 9), range(1, 6), [None, 1, 2, 3], range(3), dilations, [False, True]
    ):
        expected = torch_pool(kind, size, kernel, stride, padding, dilation, ceil_mode)
        got = ours(A.pool2d_output_size, size, kernel, stride, padding, dilation, ceil_mode)
        assert got == expected, (kind.__name__, size, kernel, stride, padding, dilation, ceil_mode)


def test_ceil_mode_drops_a_window_that_would_start_in_the_right_padding() -> None:
    # 5 pixels, kernel 2, stride 2, padding 1: ceil((5 + 2 - 2) / 2) + 1 = 4 windows would
    # start at padded positions 0, 2, 4, 6; position 6 is the right padding, so PyTorch keeps 3.
    assert A.pool2d_output_size(5, 2, 2, padding=1, ceil_mode=True) == 3
    assert nn.MaxPool2d(2, 2, padding=1, ceil_mode=True)(torch.zeros(1, 1, 5, 5)).shape[-1] == 3
    # Without padding the 3rd window starts inside the input (pixel 4) and hangs over: kept.
    assert A.pool2d_output_size(5, 2, ceil_mode=True) == 3
    assert A.pool2d_output_size(5, 2, ceil_mode=False) == 2


# --- conv_transpose2d_output_size ----------------------------------------------------------------


def torch_conv_transpose(size: Any, kernel: Any, stride: Any, padding: Any, output_padding: Any,
                         dilation: Any) -> Any:
    """What ``nn.ConvTranspose2d`` makes of the configuration, or None where it refuses it."""
    h, w = _hw(size)
    if h < 0 or w < 0:
        return None
    try:
        layer = nn.ConvTranspose2d(1, 1, kernel, stride, padding, output_padding, dilation=dilation,
                                   bias=False)
        out = layer(torch.zeros(1, 1, h, w))
    except (RuntimeError, ValueError):
        return None
    if 0 in out.shape:  # an empty output: refused on most paths (size 1, kernel 2, padding 1), made
        return None  # on some (size 1, kernel 4, padding 2); our function refuses every one
    return _form(out.shape, size, kernel, stride, padding, output_padding, dilation)


@SETTINGS
@given(
    size=int_or_pair(0, 12),
    kernel=int_or_pair(0, 6),
    stride=int_or_pair(0, 4),
    padding=int_or_pair(-1, 6),
    output_padding=int_or_pair(-1, 4),
    dilation=int_or_pair(0, 3),
)
def test_conv_transpose2d_output_size_agrees_with_torch(
    size: Any, kernel: Any, stride: Any, padding: Any, output_padding: Any, dilation: Any
) -> None:
    configuration = (size, kernel, stride, padding, output_padding, dilation)
    expected = torch_conv_transpose(*configuration)
    event("valid" if expected is not None else "rejected")
    assert ours(A.conv_transpose2d_output_size, *configuration) == expected


@SETTINGS
@given(
    size=int_or_pair(1, 12),
    kernel=int_or_pair(1, 6),
    stride=int_or_pair(1, 4),
    padding=int_or_pair(0, 3),
    output_padding=int_or_pair(0, 2),
    dilation=int_or_pair(1, 3),
)
def test_conv_transpose2d_output_size_agrees_with_torch_mostly_valid(
    size: Any, kernel: Any, stride: Any, padding: Any, output_padding: Any, dilation: Any
) -> None:
    test_conv_transpose2d_output_size_agrees_with_torch.hypothesis.inner_test(
        size, kernel, stride, padding, output_padding, dilation
    )


@SETTINGS
@given(
    size=st.integers(1, 12), kernel=st.integers(1, 6), stride=st.integers(1, 4),
    padding=st.integers(0, 3), dilation=st.integers(1, 3), data=st.data(),
)
def test_conv_transpose2d_undoes_the_shape_of_conv2d(
    size: int, kernel: int, stride: int, padding: int, dilation: int, data: st.DataObject
) -> None:
    """Conv2d maps ``stride`` consecutive input sizes to ``size`` (its floor forgets which);
    the transposed conv gives the ``output_padding``-th of them, counting those below 1 pixel,
    which it refuses: Conv2d with the same settings maps its output back to ``size``."""
    extra = data.draw(st.integers(0, stride - 1))
    back = ours(A.conv_transpose2d_output_size, size, kernel, stride, padding, extra, dilation)
    bound = (size + 1) * stride + dilation * kernel
    preimage = [m for m in range(1, bound)
                if ours(A.conv2d_output_size, m, kernel, stride, padding, dilation) == size]
    missing = stride - len(preimage)  # the sizes of the run that fall below 1 pixel
    assert preimage == list(range(preimage[0], preimage[0] + len(preimage))) if preimage else True
    assert missing == 0 or preimage[:1] in ([], [1])  # a run cut short at 1 pixel
    if back is None:
        assert extra < missing
    else:
        assert extra >= missing and back == preimage[extra - missing]
        assert A.conv2d_output_size(back, kernel, stride, padding, dilation) == size


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((3, 3, 2, 0, 2), "output_padding=2 must be >= 0 and smaller than stride=2 or dilation=1"),
        ((3, 3, 1, 0, 1, 1), "use 0 <= output_padding < 1"),
        ((3, 3, (1, 2), 0, (1, 1)), "in height: output_padding[0]=1"),
        ((1, 3, 1, 2), "padding=2 leaves an output of -1 pixels; use padding <= 1"),
        ((3, 0), "kernel_size=0 is not positive"),
        ((3, 3, 1, -1), "padding=-1 is negative"),
    ],
)
def test_conv_transpose2d_errors_name_the_bad_value_and_a_fix(
    arguments: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        A.conv_transpose2d_output_size(*arguments)
    assert torch_conv_transpose(*(arguments + (1, 0, 0, 1)[len(arguments) - 2 :])) is None


def test_conv_transpose2d_suggested_padding_is_the_largest_that_works() -> None:
    for size, kernel, padding in itertools.product(range(1, 6), range(1, 5), range(0, 8)):
        try:
            A.conv_transpose2d_output_size(size, kernel, 1, padding)
        except ValueError as error:
            fix = int(re.search(r"padding <= (\d+)", str(error)).group(1))  # type: ignore[union-attr]
            assert A.conv_transpose2d_output_size(size, kernel, 1, fix) >= 1
            assert torch_conv_transpose(size, kernel, 1, fix + 1, 0, 1) is None


# --- forms and messages -------------------------------------------------------------------------


def test_int_in_int_out_and_pairs_in_pairs_out() -> None:
    assert A.conv2d_output_size(28, 5, padding=2) == 28
    assert A.conv2d_output_size((28, 32), 5) == (24, 28)
    assert A.conv2d_output_size(28, (5, 3)) == (24, 26)
    assert A.conv2d_output_size(28, 5, stride=[1, 2]) == (24, 12)
    assert A.conv2d_output_size(28, 5, padding="same") == 28
    assert A.conv2d_output_size(28, 5, padding="valid") == 24
    assert A.pool2d_output_size(28, 2) == 14
    assert A.pool2d_output_size((28, 10), 2) == (14, 5)


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        ((5, 7), ["kernel_size=7", "5 pixels", "padding >= 1", "kernel_size <= 5"]),
        ((5, 3, 1, 0, 3), ["kernel_size=3", "dilation 3", "7 pixels", "dilation <= 2"]),
        (((5, 9), (3, 11)), ["in width", "kernel_size[1]=11", "kernel_size <= 9"]),
        ((0, 3), ["size=0", "size >= 1"]),
        ((5, 3, 0), ["stride=0", "stride >= 1"]),
        ((5, 3, 1, -1), ["padding=-1", "padding >= 0"]),
        ((5, 3, 1, 0, 0), ["dilation=0", "dilation >= 1"]),
        ((5, 3, 2, "same"), ["padding='same'", "stride=2", "padding=1"]),
        ((5, 3, 1, "full"), ["padding='full'", "'valid', 'same'"]),
    ],
)
def test_conv_errors_name_the_bad_value_and_what_would_be_valid(
    arguments: tuple[Any, ...], fragments: list[str]
) -> None:
    with pytest.raises(ValueError) as caught:
        A.conv2d_output_size(*arguments)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("arguments", "keywords", "fragments"),
    [
        ((5, 3), {"padding": 2}, ["padding=2", "padding <= 1", "kernel_size // 2"]),
        ((5, 7), {}, ["kernel_size=7", "kernel_size <= 5", "ceil_mode=True"]),
        ((5, 3), {"dilation": 4, "ceil_mode": True}, ["ceil_mode=True", "stride >= 5"]),
        ((5, 2), {"stride": 0}, ["stride=0", "stride >= 1"]),
        ((5, 2), {"padding": "same"}, ["padding='same'", "convolutions"]),
    ],
)
def test_pool_errors_name_the_bad_value_and_what_would_be_valid(
    arguments: tuple[Any, ...], keywords: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(ValueError) as caught:
        A.pool2d_output_size(*arguments, **keywords)
    for fragment in fragments:
        assert fragment in str(caught.value)


@SETTINGS
@given(
    size=st.integers(1, 12),
    kernel=st.integers(1, 12),
    stride=st.integers(1, 3),
    padding=st.integers(0, 3),
    dilation=st.integers(1, 3),
    ceil_mode=st.booleans(),
)
def test_suggested_fixes_are_valid(
    size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool
) -> None:
    """Every ``name <= value`` / ``name >= value`` / ``name=value`` an error suggests works."""
    import re

    calls = [
        (A.conv2d_output_size, {"stride": stride, "padding": padding, "dilation": dilation}),
        (
            A.pool2d_output_size,
            {"stride": stride, "padding": min(padding, kernel // 2), "dilation": dilation,
             "ceil_mode": ceil_mode},
        ),
    ]
    for function, keywords in calls:
        try:
            function(size, kernel, **keywords)
        except ValueError as error:
            message = str(error)
            for name, value in re.findall(
                r"(\w+) (?:<=|>=|=) ?(\d+|True)", message.split("use ")[-1]
            ):
                fixed = {"kernel_size": kernel, **keywords}
                fixed[name] = True if value == "True" else int(value)
                function(size, **fixed)  # must not raise


def test_wrong_types_raise_type_error() -> None:
    for bad in (2.0, True, "3", None):
        with pytest.raises(TypeError):
            A.conv2d_output_size(28, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="3 values"):
        A.pool2d_output_size(28, (2, 2, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize("flag", ["no", "yes", 1, 0, None])
@pytest.mark.parametrize("kind", [nn.MaxPool2d, nn.AvgPool2d])
def test_ceil_mode_must_be_a_bool_as_in_torch(kind: type[nn.Module], flag: Any) -> None:
    """``ceil_mode="no"`` is truthy: counted as True it would give a wrong size."""
    with pytest.raises(TypeError, match="ceil_mode"):
        kind(2, ceil_mode=flag)(torch.zeros(1, 1, 5, 5))
    with pytest.raises(TypeError, match=f"ceil_mode={flag!r} is not a bool"):
        A.pool2d_output_size(5, 2, ceil_mode=flag)
    with pytest.raises(TypeError, match="ceil_mode"):
        explore_pool(5, 2, ceil_mode=flag)


@pytest.mark.parametrize(
    ("window", "error", "fragment"),
    [
        ((0,), ValueError, "kernel_size=0 is not positive"),
        ((-3, 1, 0, 2), ValueError, "kernel_size=-3"),
        ((5, 0), ValueError, "stride=0 is not positive; use stride >= 1"),
        ((5, 1, -2), ValueError, "padding=-2 is negative; use padding >= 0"),
        ((5, 1, 0, 0), ValueError, "dilation=0"),
        ((5.0,), TypeError, "kernel_size=5.0 is not an int"),
        ((True,), TypeError, "kernel_size=True"),
        ((5, "2"), TypeError, "stride='2'"),
    ],
)
def test_windows_refuse_what_torch_refuses(
    window: tuple[Any, ...], error: type, fragment: str
) -> None:
    with pytest.raises(error, match=re.escape(fragment)):
        A.Window(*window)
    with pytest.raises(error, match=re.escape(fragment)):
        A.receptive_fields([(5, 1, 2), window])


@pytest.mark.parametrize(("kernel", "dilation"), [(0, 1), (-3, 2), (3, 0), (3, -1)])
def test_span_refuses_what_torch_refuses(kernel: int, dilation: int) -> None:
    with pytest.raises(ValueError, match=f"kernel_size={kernel}, dilation={dilation}; use both"):
        A.span(kernel, dilation)


def test_importing_the_module_does_not_import_torch() -> None:
    code = "import sys, lenet_course.arithmetic as a; a.conv2d_output_size(28, 5); "
    code += "assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- receptive field ----------------------------------------------------------------------------


def test_lenet_receptive_field() -> None:
    windows = [A.Window(5, 1, 2, name="C1"), A.Window(2, 2), A.Window(5), A.Window(2, 2)]
    fields = A.receptive_fields(windows)
    assert [(f.size, f.jump) for f in fields] == [(5, 1), (6, 2), (14, 2), (16, 4)]
    assert fields[0].name == "C1" and fields[-1].start == 5.5


window = st.one_of(
    st.builds(
        lambda k, s, p, d: ("conv", k, s, p, d),
        st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(1, 3),
    ),
    st.integers(1, 3).flatmap(
        lambda k: st.builds(
            lambda s, p: ("pool", k, s, p, 1), st.integers(1, 3), st.integers(0, k // 2)
        )
    ),
)


@settings(SETTINGS, max_examples=150)
@given(st.lists(window, min_size=1, max_size=4))
def test_receptive_field_matches_the_gradient(layers: list[tuple[Any, ...]]) -> None:
    """The input pixels that move one output unit span exactly the computed field."""
    length = 100
    modules: list[nn.Module] = []
    for kind, k, s, p, d in layers:
        if kind == "conv":
            conv = nn.Conv1d(1, 1, k, s, p, d, bias=False, dtype=torch.float64)
            nn.init.ones_(conv.weight)
            modules.append(conv)
        else:
            modules.append(nn.AvgPool1d(k, s, p))
    model = nn.Sequential(*modules)
    x = torch.zeros(1, 1, length, dtype=torch.float64, requires_grad=True)
    try:
        y = model(x)
    except RuntimeError:
        return  # the stack does not fit in the input; sizes are tested above
    field = A.receptive_fields(A.windows_of(model))[-1]
    unit = y.shape[-1] // 2
    centre = field.start + unit * field.jump
    low, high = centre - (field.size - 1) / 2, centre + (field.size - 1) / 2
    if low < 0 or high > length - 1:
        return  # the field reaches into the padding; its visible part is clipped
    y[0, 0, unit].backward()
    touched = torch.nonzero(x.grad[0, 0]).flatten()
    assert (touched.min().item(), touched.max().item()) == (low, high)


def test_windows_of_reads_a_model_and_stops_at_flatten() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding="same"), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, (3, 5)),
        nn.Flatten(), nn.Linear(10, 10), nn.Conv2d(1, 1, 3),
    )
    assert A.windows_of(model) == [
        A.Window(5, 1, 2, 1, "0"), A.Window(2, 2, 0, 1, "2"), A.Window(3, 1, 0, 1, "3"),
    ]
    assert A.windows_of(model, axis=1)[-1].kernel_size == 5
    assert A.receptive_fields(model)[-1].size == 1 + 4 + 1 + 2 * 2


# --- the explorer's state ------------------------------------------------------------------------


def test_lenet_c1_with_and_without_stride() -> None:
    state = explore_conv(28, 5, stride=1, padding=2)
    assert state.output == 28 and state.error is None
    assert state.output_text == "output size: 28 x 28"
    assert state.starts == tuple(range(28)) and state.padded == 32 and state.span == 5
    assert state.formula == "floor((28 + 2*2 - 1*(5 - 1) - 1) / 1) + 1 = 28"
    strided = explore_conv(28, 5, stride=2, padding=2)
    assert strided.output_text == "output size: 14 x 14"
    assert strided.starts[-1] == 26  # the window at 28 would need pixels 28..32 of 0..31


def test_dilated_taps_skip_pixels() -> None:
    state = explore_conv(7, 3, stride=2, padding=1, dilation=2)
    assert state.span == 5 and state.taps(0) == (0, 2, 4) and state.taps(4) == (4, 6, 8)
    assert state.starts == (0, 2, 4) and state.output == 3


def test_impossible_configurations_explain_instead_of_raising() -> None:
    state = explore_conv(5, 7)
    assert state.output is None and state.starts == ()
    assert state.output_text == "output size: impossible"
    assert "kernel_size=7" in state.error and "padding >= 1" in state.error
    pool = explore_pool(5, 3, stride=1, padding=2)
    assert pool.output is None and "kernel_size // 2" in pool.error


def test_ceil_mode_formula_tells_when_a_window_is_dropped() -> None:
    overhang = explore_pool(7, 2, ceil_mode=True)
    assert overhang.output == 4 and overhang.starts[-1] + overhang.span - 1 == 7  # past pixel 6
    assert "ceil((7 + 2*0 - 1*(2 - 1) - 1) / 2) + 1 = 4" == overhang.formula
    dropped = explore_pool(5, 2, padding=1, ceil_mode=True)
    assert dropped.output == 3
    assert dropped.formula.endswith("less the window that would start in the right padding: 3")


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 32),
    kernel=st.integers(1, 11),
    stride=st.integers(1, 6),
    padding=st.integers(0, 6),
    dilation=st.integers(1, 4),
    ceil_mode=st.booleans(),
)
def test_states_agree_with_arithmetic_and_windows_obey_the_rules(
    size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool
) -> None:
    conv = explore_conv(size, kernel, stride, padding, dilation)
    try:
        assert conv.output == conv2d_output_size(size, kernel, stride, padding, dilation)
    except ValueError as error:
        assert conv.output is None and conv.error == str(error)
    else:
        # Every convolution window lies inside the padded input.
        assert conv.starts[-1] + conv.span <= conv.padded
        assert conv.starts[-1] + stride + conv.span > conv.padded  # and no further one would
    pool = explore_pool(size, kernel, stride, padding, dilation, ceil_mode)
    try:
        assert pool.output == pool2d_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    except ValueError as error:
        assert pool.output is None and pool.error == str(error)
    else:
        # A pooling window starts inside the input or the left padding, and with ceil_mode off
        # lies inside the padded input.
        assert pool.starts[-1] < size + padding
        if not ceil_mode:
            assert pool.starts[-1] + pool.span <= pool.padded


def test_every_slider_position_gives_a_state() -> None:
    """The sliders' whole range: no combination raises (kernel, stride, padding, dilation)."""
    for kernel, stride, padding, dilation in itertools.product(
        range(1, 12), range(1, 7), range(7), range(1, 5)
    ):
        for size in (1, 5, 28, 32):
            state = explore_conv(size, kernel, stride, padding, dilation)
            assert (state.output is None) != (state.error is None)
