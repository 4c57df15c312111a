"""Explorers: ipywidgets wired to pure functions (``arithmetic.explore_conv``, ``explore_pool``,
:func:`kernel_view`, :func:`feature_map_view`) that hold all the logic, testable headless."""

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import torch
import torch.nn.functional as F

from lenet_course import plots
from lenet_course.arithmetic import ExplorerState, explore_conv, explore_pool
from lenet_course.data import prepare_images
from lenet_course.inspect_model import STAGES, stage_maps

#: Slider descriptions, in order; tests and the browser test find the sliders by these names.
SLIDERS = ("input size", "kernel size", "stride", "padding", "dilation")


def explanation_html(state: ExplorerState) -> str:
    """The text under the sliders: the filled-in formula, or why there is no output."""
    if state.error is not None:
        return f'<p style="color:#b00020"><b>Impossible:</b> {html.escape(state.error)}</p>'
    first, last = state.starts[0], state.starts[-1]
    return (
        f"<p><code>{html.escape(state.formula)}</code><br>"
        f"{state.output} window positions per side: the first starts at padded pixel {first}, "
        f"the last at {last} and covers up to pixel {last + state.span - 1} "
        f"(the padded input ends at {state.padded - 1}).</p>"
    )


class Explorer:
    """Sliders -> pure function -> label, explanation and picture; displays as its ``.widget``.
    ``.sliders`` maps argument names to sliders, ``.state`` is the current state."""

    def __init__(self, explore: Callable[..., ExplorerState], sliders: dict[str, Any]) -> None:
        self._explore = explore
        self.sliders = sliders
        self.output = widgets.Label(style={"font_weight": "bold"})
        self.explanation, self.picture = widgets.HTML(), widgets.HTML()
        controls = list(sliders.values())
        shown = (self.output, self.explanation, self.picture)
        self.widget = _panel(self._update, [controls[:3], controls[3:]], *shown)

    def _update(self, change: Any = None) -> None:
        self.state = self._explore(*(slider.value for slider in self.sliders.values()))
        self.output.value = self.state.output_text
        self.explanation.value = explanation_html(self.state)
        self.picture.value = plots.conv_windows_svg(self.state)

    def __repr__(self) -> str:
        return f"{self.state.kind} explorer ({self.state.output_text})"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return {**self.widget._repr_mimebundle_(**kwargs), "text/plain": repr(self)}


def _panel(draw: Callable[..., None], rows: list[list[Any]], *shown: Any) -> widgets.VBox:
    """Rows of controls above ``shown``, which ``draw`` fills in now and at every change."""
    for row in rows:
        for control in row:
            control.observe(draw, names="value")
    draw()
    return widgets.VBox([*map(widgets.HBox, rows), *shown])


def _sliders(values: tuple[int, ...], kernel_max: int, padding_max: int) -> dict[str, Any]:
    """The sliders of :data:`SLIDERS` at ``values``, by argument name."""
    names = ("size", "kernel_size", "stride", "padding", "dilation")
    ranges = ((1, 32), (1, kernel_max), (1, 6), (0, padding_max), (1, 4))
    sliders = {}
    for name, label, value, (low, high) in zip(names, SLIDERS, values, ranges, strict=True):
        # a value beyond the usual range stretches it (explore_conv refuses a huge one)
        low, high = min(low, value), max(high, value)
        slider = widgets.IntSlider(value=value, min=low, max=high, description=label)
        slider.style.description_width = "initial"
        slider.layout.width = "260px"
        sliders[name] = slider
    return sliders


def conv_explorer(size=28, kernel_size=5, stride=1, padding=2, dilation=1):
    """Sliders for a convolution, its output size (or why it is impossible) and its windows."""
    values = (size, kernel_size, stride, padding, dilation)
    explore_conv(*values)  # refuses what no slider should hold, before the sliders are made
    return Explorer(explore_conv, _sliders(values, kernel_max=11, padding_max=6))


def pool_explorer(size=7, kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=True):
    """Like :func:`conv_explorer`, for ``nn.MaxPool2d``, with a ``ceil_mode`` checkbox."""
    values = (size, kernel_size, stride, padding, dilation)
    explore_pool(*values, ceil_mode)  # refuses what no slider or checkbox should hold
    sliders = _sliders(values, kernel_max=8, padding_max=4)
    sliders["ceil_mode"] = widgets.Checkbox(value=ceil_mode, description="ceil_mode", indent=False)
    return Explorer(explore_pool, sliders)


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
    image, kernel = _grid("image", image), _grid("kernel", kernel)
    (height, width), (kh, kw) = image.shape, kernel.shape
    if kh > height or kw > width:
        why = f"a {kh}x{kw} kernel has no positions on a {height}x{width} image"
        raise ValueError(f"{why}; use a kernel at most as large as the image")
    rows, cols = height - kh + 1, width - kw + 1
    whole = all(hasattr(i, "__index__") and not isinstance(i, bool) for i in (row, col))
    if not (whole and 0 <= row < rows and 0 <= col < cols):
        positions = f"positions 0..{rows - 1} x 0..{cols - 1} (whole numbers)"
        where = f"a {kh}x{kw} kernel on a {height}x{width} image has {positions}"
        raise ValueError(f"row={row!r}, col={col!r}: {where}")
    row, col = int(row), int(col)
    products = image[row : row + kh, col : col + kw] * kernel
    full = F.conv2d(image[None, None], kernel[None, None])[0, 0]
    # the output so far: every position up to (row, col) in reading order
    done = torch.arange(rows * cols).view(rows, cols) <= row * cols + col
    output = full.masked_fill(~done, float("nan"))
    return KernelView(image, kernel, row, col, products, float(products.sum()), output)


def _grid(name: str, value: Any) -> torch.Tensor:
    """``value`` (a tensor, an array or a list of rows) as a 2-D float tensor, or a clear error."""
    try:
        grid = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        grid = None  # text, a ragged list, a dict: not a grid of numbers
    if grid is None or grid.dim() != 2 or grid.numel() == 0:
        what = "is not a grid of numbers" if grid is None else f"has shape {tuple(grid.shape)}"
        how = "a tensor, an array or a list of equal-length rows"
        raise ValueError(f"{name} {what}; use 2-D numbers, at least 1x1 ({how})")
    return grid


def kernel_explorer(image, kernels: dict[str, Any], row=0, col=0) -> widgets.VBox:
    """Sliders move a kernel, chosen from ``kernels``, over ``image``; draws :func:`kernel_view`."""
    if not isinstance(kernels, Mapping) or not kernels:
        got = "empty" if isinstance(kernels, Mapping) else f"a {type(kernels).__name__}"
        example = "{'edges': [[1, 0, -1]] * 3}"
        raise ValueError(f"kernels is {got}; give a dict of names to kernels, e.g. {example}")
    # the sliders move over one output map: the kernels must all have one shape
    shapes = {name: _grid(f"kernel {name!r}", kernel).shape for name, kernel in kernels.items()}
    if len(set(shapes.values())) > 1:
        found = ", ".join(f"{name}: {'x'.join(map(str, s))}" for name, s in shapes.items())
        raise ValueError(f"kernels of different sizes ({found}); give kernels of one size")
    rows, cols = kernel_view(image, next(iter(kernels.values())), row, col).output.shape
    down = widgets.IntSlider(value=row, min=0, max=rows - 1, description="row")
    across = widgets.IntSlider(value=col, min=0, max=cols - 1, description="column")
    menu = widgets.Dropdown(options=list(kernels), description="kernel")
    label, picture = widgets.Label(style={"font_weight": "bold"}), widgets.HTML()

    def draw(change: Any = None) -> None:
        view = kernel_view(image, kernels[menu.value], down.value, across.value)
        label.value = view.caption
        picture.value = plots.figure_html(plots.show_kernel_view(view), view.caption)

    return _panel(draw, [[down, across, menu]], label, picture)


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
        maps = f"{count} maps of {height}x{width}, values {low:.2f} .. {high:.2f}"
        return f"test image {self.index} ({self.label}) through {self.stage}: {maps}"


def feature_map_view(model, data, normalization, index: int, stage: str) -> FeatureMapView:
    """The pure function behind :func:`feature_map_explorer`: ``stage``'s maps of test image
    ``index`` (``data`` is an ``ImageSet``)."""
    if not (hasattr(model, "input_spec") and hasattr(data, "labels")):
        got = f"model: {type(model).__name__}, data: {type(data).__name__}"
        raise TypeError(f"{got}; pass a course model (build_model) and an ImageSet (load_dataset)")
    count = len(data.labels)
    whole = hasattr(index, "__index__") and not isinstance(index, bool)
    if not (whole and 0 <= index < count):
        raise ValueError(f"index={index!r}; choose an image in 0..{count - 1} (a whole number)")
    image = data.images[index].cpu()
    inputs = prepare_images(image[None], model.input_spec, normalization)
    device = next(model.parameters()).device
    maps = stage_maps(model, inputs.to(device), [stage])[stage][0].cpu()
    return FeatureMapView(index, stage, image, data.classes[int(data.labels[index])], maps)


def feature_map_explorer(model, data, normalization, *, index=0, stages=STAGES) -> widgets.VBox:
    """A slider for the test image and a menu for the stage, drawing :func:`feature_map_view`."""
    stages = [stages] if isinstance(stages, str) else list(stages)
    if not stages:
        raise ValueError(f"stages is empty; choose some of {STAGES}")
    for stage in stages:  # a bad index or stage is refused here, before the slider clamps it
        feature_map_view(model, data, normalization, index, stage)
    slider = widgets.IntSlider(value=index, min=0, max=len(data.labels) - 1, description="image")
    slider.continuous_update = False
    menu = widgets.Dropdown(options=list(stages), value=stages[0], description="layer")
    # PNGs in an HTML widget, not an Output widget (which can stall papermill): notebooks save them
    picture = widgets.HTML()

    def draw(change: Any = None) -> None:
        view = feature_map_view(model, data, normalization, slider.value, menu.value)
        image = plots.show_images(view.image[None], [view.label], size=1.5)
        maps = plots.show_feature_maps(view.maps, title=view.caption)
        alt = f"test image: {view.label}"
        picture.value = plots.figure_html(image, alt) + plots.figure_html(maps, view.caption)

    return _panel(draw, [[slider, menu]], picture)
