"""The convolution explorer without a browser: its drawing and its wiring (its pure functions,
``arithmetic.explore_conv`` / ``explore_pool``, are tested in test_arithmetic.py)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lenet_course.arithmetic import ExplorerState, explore_conv, explore_pool
from lenet_course.plots import conv_windows_svg
from lenet_course.widgets import (
    SLIDERS,
    conv_explorer,
    explanation_html,
    kernel_explorer,
    kernel_view,
    pool_explorer,
)

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


def test_explanation_of_an_impossible_configuration() -> None:
    state = explore_conv(5, 7)
    assert "Impossible" in explanation_html(state) and "padding &gt;= 1" in explanation_html(state)


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


# --- the kernel explorer (notebook 01): one step of a cross-correlation -------------------------


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 9), width=st.integers(1, 9), kh=st.integers(1, 4),
       kw=st.integers(1, 4), data=st.data())
def test_kernel_view_is_one_step_of_conv2d(height: int, width: int, kh: int, kw: int,
                                           data: st.DataObject) -> None:
    assume(kh <= height and kw <= width)
    generator = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    image, kernel = torch.randn(height, width, generator=generator), torch.randn(kh, kw)
    row, col = data.draw(st.integers(0, height - kh)), data.draw(st.integers(0, width - kw))
    view = kernel_view(image, kernel, row, col)
    expected = torch.nn.functional.conv2d(image[None, None], kernel[None, None])[0, 0]
    # the sum, computed by hand from the window, is what PyTorch puts at (row, col)
    window = image[row:row + kh, col:col + kw]
    assert view.total == pytest.approx(float((window * kernel).sum()), abs=1e-5)
    assert view.total == pytest.approx(float(expected[row, col]), abs=1e-4)
    # the output fills in row by row: every position up to (row, col) and none after
    filled = ~view.output.isnan()
    assert int(filled.sum()) == row * expected.shape[1] + col + 1
    assert torch.allclose(view.output[filled], expected[filled], atol=1e-5)
    assert bool(filled[row, col]) and not bool(filled.view(-1)[int(filled.sum()):].any())


def test_kernel_view_caption_and_refusals() -> None:
    image = torch.arange(16.0).view(4, 4)
    view = kernel_view(image, [[1.0, 0.0], [0.0, -1.0]], 1, 2)
    assert view.total == 6.0 - 11.0  # image[1, 2] - image[2, 3]
    assert view.caption == "output[1, 2] = sum of the products = -5.000"
    with pytest.raises(ValueError, match=r"positions 0\.\.2 x 0\.\.2"):
        kernel_view(image, torch.ones(2, 2), 3, 0)
    with pytest.raises(ValueError, match="positions"):
        kernel_view(image, torch.ones(5, 5), 0, 0)
    with pytest.raises(ValueError, match="use 2-D"):
        kernel_view(image[None], torch.ones(2, 2), 0, 0)


def test_kernel_explorer_sliders_move_the_window() -> None:
    image = torch.arange(36.0).view(6, 6)
    explorer = kernel_explorer(image, {"identity": torch.eye(3), "box": torch.ones(3, 3)})
    (row, col, menu), label, picture = explorer.children[0].children, *explorer.children[1:]
    assert (row.max, col.max) == (3, 3) and menu.options == ("identity", "box")
    assert label.value == "output[0, 0] = sum of the products = 21.000"  # 0 + 7 + 14
    col.value, menu.value = 2, "box"
    assert label.value == "output[0, 2] = sum of the products = 81.000"  # 9 + 27 + 45
    assert picture.value.startswith("<div><img") and "output[0, 2]" in picture.value
