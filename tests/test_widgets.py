"""The convolution explorer without a browser: its pure functions, its drawing and its wiring."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lenet_course.arithmetic import conv2d_output_size, pool2d_output_size
from lenet_course.plots import conv_windows_svg
from lenet_course.widgets import (
    SLIDERS,
    ExplorerState,
    conv_explorer,
    explanation_html,
    explore_conv,
    explore_pool,
    pool_explorer,
)

# --- the pure functions -------------------------------------------------------------------------


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
    assert "Impossible" in explanation_html(state) and "padding &gt;= 1" in explanation_html(state)
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


# --- the drawing ------------------------------------------------------------------------------


def _svg(state: ExplorerState) -> ET.Element:
    return ET.fromstring(conv_windows_svg(state))


NS = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    "state",
    [
        explore_conv(28, 5, 1, 2, 1),
        explore_conv(7, 3, 2, 1, 2),
        explore_conv(32, 11, 3, 6, 4),
        explore_pool(7, 2, ceil_mode=True),
        explore_conv(5, 1),
    ],
    ids=["lenet-c1", "dilated", "largest", "ceil", "one-pixel-kernel"],
)
def test_drawing_shows_first_and_last_window_and_every_start(state: ExplorerState) -> None:
    root = _svg(state)
    assert root.tag == f"{NS}svg" and state.output_text in root.get("aria-label", "")
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert state.output_text in texts
    taps = [r for r in root.iter(f"{NS}rect") if r.get("fill-opacity") == "0.45"]
    windows = 1 if state.starts[-1] == 0 else 2
    assert len(taps) == windows * state.kernel_size**2
    ticks = [p for p in root.iter(f"{NS}path") if p.get("stroke") == "#555555"]
    assert len(re.findall("M", ticks[0].get("d"))) == 2 * state.output  # top and left edges


def test_drawing_of_an_impossible_configuration() -> None:
    root = _svg(explore_conv(5, 7))
    outlines = [r for r in root.iter(f"{NS}rect") if r.get("stroke-dasharray") == "5 3"]
    assert len(outlines) == 1 and outlines[0].get("width") == outlines[0].get("height")
    assert "the first window does not fit" in [t.text for t in root.iter(f"{NS}text")]


def test_drawing_is_deterministic() -> None:
    state = explore_conv(28, 5, 2, 2, 1)
    assert conv_windows_svg(state) == conv_windows_svg(explore_conv(28, 5, 2, 2, 1))


# --- the wiring ---------------------------------------------------------------------------------


def test_conv_explorer_sliders_and_output_text() -> None:
    explorer = conv_explorer()
    sliders = explorer.sliders
    assert tuple(slider.description for slider in sliders.values()) == SLIDERS
    assert [slider.value for slider in sliders.values()] == [28, 5, 1, 2, 1]
    assert explorer.output.value == "output size: 28 x 28"
    sliders["stride"].value = 2
    assert explorer.output.value == "output size: 14 x 14"
    assert explorer.state == explore_conv(28, 5, 2, 2, 1)
    assert explorer.picture.value == conv_windows_svg(explorer.state)
    assert "floor((28 + 2*2 - 1*(5 - 1) - 1) / 2) + 1 = 14" in explorer.explanation.value
    sliders["stride"].value = 3
    assert explorer.output.value == "output size: 10 x 10"


def test_conv_explorer_survives_an_impossible_configuration() -> None:
    explorer = conv_explorer()
    explorer.sliders["padding"].value = 0
    explorer.sliders["size"].value = 5
    explorer.sliders["kernel_size"].value = 11
    assert explorer.output.value == "output size: impossible"
    assert "Impossible" in explorer.explanation.value
    assert "does not fit" in explorer.picture.value
    explorer.sliders["kernel_size"].value = 3
    assert explorer.output.value == "output size: 3 x 3"


def test_explorer_displays_as_its_widget_with_a_short_text() -> None:
    explorer = conv_explorer()
    bundle = explorer._repr_mimebundle_()
    assert bundle["text/plain"] == "conv explorer (output size: 28 x 28)"
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == explorer.widget.model_id


def test_pool_explorer_ceil_mode_checkbox() -> None:
    explorer = pool_explorer(size=7, kernel_size=2, stride=2, ceil_mode=True)
    assert explorer.output.value == "output size: 4 x 4"
    explorer.sliders["ceil_mode"].value = False
    assert explorer.output.value == "output size: 3 x 3"
    assert repr(explorer) == "pool explorer (output size: 3 x 3)"
