"""Explorers: ipywidgets wired to pure functions (``arithmetic.explore_conv``, ``explore_pool``,
:func:`kernel_view`, :func:`feature_map_view`) that hold all the logic, testable headless."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import torch
import torch.nn.functional as F

from lenet_course import arithmetic
from lenet_course.data import prepare_images
from lenet_course.inspect_model import stage_maps
from lenet_course.plots import (
    conv_windows_svg,
    figure_html,
    show_feature_maps,
    show_images,
    show_kernel_view,
)

#: Slider descriptions, in order; tests and the browser test find the sliders by these names.
SLIDERS = ("input size", "kernel size", "stride", "padding", "dilation")


def explanation_html(state: arithmetic.ExplorerState) -> str:
    """The text under the sliders: the filled-in formula, or why there is no output."""
    if state.error is not None:
        return f'<p style="color:#b00020"><b>Impossible:</b> {html.escape(state.error)}</p>'
    first, last = state.starts[0], state.starts[-1]
    return (f"<p><code>{html.escape(state.formula)}</code><br>"
            f"{state.output} window positions per side: the first starts at padded pixel {first}, "
            f"the last at {last} and covers up to pixel {last + state.span - 1} "
            f"(the padded input ends at {state.padded - 1}).</p>")


class Explorer:
    """Sliders -> pure function -> label, explanation and picture; displays as its ``.widget``.
    ``.sliders`` maps argument names to sliders, ``.state`` is the current state."""

    def __init__(self, explore: Callable[..., arithmetic.ExplorerState],
                 sliders: dict[str, Any]) -> None:
        self._explore = explore
        self.sliders = sliders
        self.output = widgets.Label(style={"font_weight": "bold"})
        self.explanation, self.picture = widgets.HTML(), widgets.HTML()
        for slider in sliders.values():
            slider.observe(self._update, names="value")
        controls = list(sliders.values())
        rows = [widgets.HBox(controls[:3]), widgets.HBox(controls[3:])]
        self.widget = widgets.VBox([*rows, self.output, self.explanation, self.picture])
        self._update()

    def _update(self, change: Any = None) -> None:
        self.state = self._explore(*(slider.value for slider in self.sliders.values()))
        self.output.value = self.state.output_text
        self.explanation.value = explanation_html(self.state)
        self.picture.value = conv_windows_svg(self.state)

    def __repr__(self) -> str:
        return f"{self.state.kind} explorer ({self.state.output_text})"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return {**self.widget._repr_mimebundle_(**kwargs), "text/plain": repr(self)}


def _sliders(values: tuple[int, ...], kernel_max: int, padding_max: int) -> dict[str, Any]:
    """The sliders of :data:`SLIDERS` at ``values``, by argument name (a maximum grows to fit)."""
    names = ("size", "kernel_size", "stride", "padding", "dilation")
    ranges = ((1, 32), (1, kernel_max), (1, 6), (0, padding_max), (1, 4))
    return {name: widgets.IntSlider(value=value, min=low, max=max(high, value), description=label,
                                    style={"description_width": "initial"},
                                    layout=widgets.Layout(width="260px"))
            for name, label, value, (low, high) in zip(names, SLIDERS, values, ranges, strict=True)}


def conv_explorer(size: int = 28, kernel_size: int = 5, stride: int = 1, padding: int = 2,
                  dilation: int = 1) -> Explorer:
    """Sliders for a convolution, its output size (or why it is impossible) and its windows."""
    values = (size, kernel_size, stride, padding, dilation)
    return Explorer(arithmetic.explore_conv, _sliders(values, kernel_max=11, padding_max=6))


def pool_explorer(size: int = 7, kernel_size: int = 2, stride: int = 2, padding: int = 0,
                  dilation: int = 1, ceil_mode: bool = True) -> Explorer:
    """Like :func:`conv_explorer`, for ``nn.MaxPool2d``, with a ``ceil_mode`` checkbox."""
    values = (size, kernel_size, stride, padding, dilation)
    sliders = _sliders(values, kernel_max=8, padding_max=4)
    sliders["ceil_mode"] = widgets.Checkbox(value=ceil_mode, description="ceil_mode", indent=False)
    return Explorer(arithmetic.explore_pool, sliders)


@dataclass(frozen=True)
class KernelView:
    """What the kernel explorer draws: the window under the kernel at (``row``, ``col``), its
    products with the kernel, their sum, and the output map filled in up to there (NaN after)."""

    image: torch.Tensor
    kernel: torch.Tensor
    row: int
    col: int
    products: torch.Tensor
    total: float
    output: torch.Tensor

    @property
    def caption(self) -> str:
        return f"output[{self.row}, {self.col}] = sum of the products = {self.total:.3f}"


def kernel_view(image: Any, kernel: Any, row: int, col: int) -> KernelView:
    """The pure function behind :func:`kernel_explorer`: one step of a cross-correlation (no
    padding, stride 1) of a 2-D ``image`` with a 2-D ``kernel``, as ``F.conv2d`` computes it."""
    image, kernel = torch.as_tensor(image).float(), torch.as_tensor(kernel).float()
    if image.dim() != 2 or kernel.dim() != 2:
        raise ValueError(f"image {tuple(image.shape)}, kernel {tuple(kernel.shape)}: use 2-D")
    (height, width), (kh, kw) = image.shape, kernel.shape
    rows, cols = height - kh + 1, width - kw + 1
    if rows < 1 or cols < 1 or not (0 <= row < rows and 0 <= col < cols):
        raise ValueError(f"row={row}, col={col}: a {kh}x{kw} kernel on a {height}x{width} "
                         f"image has positions 0..{rows - 1} x 0..{cols - 1}")
    products = image[row:row + kh, col:col + kw] * kernel
    full = F.conv2d(image[None, None], kernel[None, None])[0, 0]
    done = torch.arange(rows * cols).view(rows, cols) <= row * cols + col
    output = torch.where(done, full, torch.full_like(full, float("nan")))
    return KernelView(image, kernel, row, col, products, float(products.sum()), output)


def kernel_explorer(image: Any, kernels: dict[str, Any], row: int = 0,
                    col: int = 0) -> widgets.VBox:
    """Sliders move a kernel (chosen from ``kernels``) over ``image``; the picture shows the
    window, the products, their sum and the output map filling in (:func:`kernel_view`)."""
    first = kernel_view(image, next(iter(kernels.values())), row, col)
    rows, cols = first.output.shape
    sliders = [widgets.IntSlider(value=value, min=0, max=top - 1, description=name)
               for name, value, top in (("row", row, rows), ("column", col, cols))]
    menu = widgets.Dropdown(options=list(kernels), description="kernel")
    label, picture = widgets.Label(style={"font_weight": "bold"}), widgets.HTML()

    def draw(change: Any = None) -> None:
        view = kernel_view(image, kernels[menu.value], sliders[0].value, sliders[1].value)
        label.value = view.caption
        picture.value = figure_html(show_kernel_view(view), view.caption)

    for control in (*sliders, menu):
        control.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([*sliders, menu]), label, picture])


@dataclass(frozen=True)
class FeatureMapView:
    """What the feature-map explorer shows: one test image and the maps of one stage for it."""

    index: int
    stage: str
    image: Any  #: the 28 x 28 uint8 test image
    label: str  #: its true class name
    maps: Any  #: the stage's maps for it, C x H x W (float)

    @property
    def caption(self) -> str:
        count, height, width = self.maps.shape
        low, high = float(self.maps.min()), float(self.maps.max())
        return (f"test image {self.index} ({self.label}) through {self.stage}: {count} maps of "
                f"{height}x{width}, values {low:.2f} .. {high:.2f}")


def feature_map_view(model: Any, data: Any, normalization: dict[str, Any], index: int,
                     stage: str) -> FeatureMapView:
    """The maps of ``stage`` ("C1", "S2", "C3", "S4") for image ``index`` of ``data`` (an
    ``ImageSet``): the pure function behind :func:`feature_map_explorer`."""
    count = len(data.labels)
    if not 0 <= index < count:
        raise ValueError(f"index={index}; choose an image in 0..{count - 1}")
    image = data.images[index].cpu()
    inputs = prepare_images(image[None], model.input_spec, normalization)
    device = next(model.parameters()).device
    maps = stage_maps(model, inputs.to(device), [stage])[stage][0].cpu()
    return FeatureMapView(index, stage, image, data.classes[int(data.labels[index])], maps)


def feature_map_explorer(model: Any, data: Any, normalization: dict[str, Any], *, index: int = 0,
                         stages: tuple[str, ...] = ("C1", "S2", "C3", "S4")) -> widgets.VBox:
    """A slider for the test image and a menu for the stage, drawing :func:`feature_map_view`.  PNGs
    in an ``HTML`` widget, not an ``Output`` (it can stall papermill): saved notebooks show them."""
    slider = widgets.IntSlider(value=index, min=0, max=len(data.labels) - 1, description="image",
                               continuous_update=False)
    menu = widgets.Dropdown(options=list(stages), value=stages[0], description="layer")
    picture = widgets.HTML()

    def draw(change: Any = None) -> None:
        view = feature_map_view(model, data, normalization, slider.value, menu.value)
        image = figure_html(show_images(view.image[None], [view.label], size=1.5),
                            f"test image: {view.label}")
        maps = figure_html(show_feature_maps(view.maps, title=view.caption), view.caption)
        picture.value = image + maps

    slider.observe(draw, names="value")
    menu.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([slider, menu]), picture])
