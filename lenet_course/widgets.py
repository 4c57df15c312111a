"""ipywidgets explorers: thin wiring from sliders to pure functions.

Each explorer has two halves.  A pure function (:func:`explore_conv`, :func:`explore_pool`)
turns slider values into an :class:`ExplorerState`: the output size or the reason there is none,
and where the windows go.  The widget (:func:`conv_explorer`, :func:`pool_explorer`) only reads
its sliders, calls that function and shows the state: the text of :attr:`ExplorerState.output_text`
and the picture of :func:`lenet_course.plots.conv_windows_svg`.  So everything an explorer
shows is testable without a browser, and importing this module needs neither ipywidgets nor torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lenet_course.arithmetic import conv2d_output_size, pool2d_output_size

if TYPE_CHECKING:
    import ipywidgets

#: Slider descriptions, in order; tests and the browser test find the sliders by these names.
SLIDERS = ("input size", "kernel size", "stride", "padding", "dilation")


@dataclass(frozen=True)
class ExplorerState:
    """What the explorer shows for one square configuration (the same along height and width).

    Positions are in *padded* coordinates: 0 is the first pixel of the left padding, and
    ``padding`` is the first pixel of the input.
    """

    kind: str  # "conv" or "pool"
    size: int
    kernel_size: int
    stride: int
    padding: int
    dilation: int
    ceil_mode: bool
    output: int | None  # None when the configuration is impossible
    error: str | None  # PyTorch's objection, in words, when output is None

    @property
    def span(self) -> int:
        """Pixels one window covers, holes included: ``dilation * (kernel_size - 1) + 1``."""
        return self.dilation * (self.kernel_size - 1) + 1

    @property
    def padded(self) -> int:
        """Pixels of the padded input along one side."""
        return self.size + 2 * self.padding

    @property
    def starts(self) -> tuple[int, ...]:
        """Where each window position starts (its first tap), along one axis."""
        return tuple(i * self.stride for i in range(self.output or 0))

    def taps(self, start: int) -> tuple[int, ...]:
        """The pixels a window starting at ``start`` reads along one axis (holes skipped)."""
        return tuple(start + j * self.dilation for j in range(self.kernel_size))

    @property
    def output_text(self) -> str:
        """``output size: 14 x 14``, or ``output size: impossible``."""
        if self.output is None:
            return "output size: impossible"
        return f"output size: {self.output} x {self.output}"

    @property
    def formula(self) -> str:
        """The output-size formula with this state's numbers filled in."""
        top = f"{self.size} + 2*{self.padding} - {self.dilation}*({self.kernel_size} - 1) - 1"
        difference = self.padded - self.span
        if not self.ceil_mode:
            return f"floor(({top}) / {self.stride}) + 1 = {difference // self.stride + 1}"
        rounded_up = -(-difference // self.stride) + 1
        text = f"ceil(({top}) / {self.stride}) + 1 = {rounded_up}"
        if self.output is not None and self.output < rounded_up:
            text += f", less the window that would start in the right padding: {self.output}"
        return text


def explore_conv(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> ExplorerState:
    """The explorer's state for ``nn.Conv2d``: never raises for an impossible configuration,
    it carries the explanation instead."""
    try:
        output = conv2d_output_size(size, kernel_size, stride, padding, dilation)
        error = None
    except ValueError as exception:
        output, error = None, str(exception)
    assert output is None or isinstance(output, int)
    return ExplorerState("conv", size, kernel_size, stride, padding, dilation, False, output, error)


def explore_pool(
    size: int,
    kernel_size: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> ExplorerState:
    """The explorer's state for ``nn.MaxPool2d`` (``stride`` defaults to ``kernel_size``)."""
    stride = kernel_size if stride is None else stride
    try:
        output = pool2d_output_size(size, kernel_size, stride, padding, dilation, ceil_mode)
        error = None
    except ValueError as exception:
        output, error = None, str(exception)
    assert output is None or isinstance(output, int)
    return ExplorerState(
        "pool", size, kernel_size, stride, padding, dilation, ceil_mode, output, error
    )


def explanation_html(state: ExplorerState) -> str:
    """The text under the sliders: the filled-in formula, or why there is no output."""
    import html

    if state.error is not None:
        return f'<p style="color:#b00020"><b>Impossible:</b> {html.escape(state.error)}</p>'
    first, last = state.starts[0], state.starts[-1]
    return (
        f"<p><code>{html.escape(state.formula)}</code><br>"
        f"{state.output} window positions per side: the first starts at padded pixel {first}, "
        f"the last at {last} and covers up to pixel {last + state.span - 1} "
        f"(the padded input ends at {state.padded - 1}).</p>"
    )


# --- the widgets -------------------------------------------------------------------------------


class Explorer:
    """Sliders -> pure function -> label, explanation and picture.

    Displaying an ``Explorer`` in a notebook shows its widget (``.widget``, an ipywidgets
    ``VBox``); ``.sliders`` maps argument names to the sliders, ``.output`` is the label that
    reads ``output size: 28 x 28`` and ``.state`` the current :class:`ExplorerState`.
    """

    def __init__(self, explore: Any, sliders: dict[str, ipywidgets.ValueWidget]) -> None:
        import ipywidgets as w

        from lenet_course.plots import conv_windows_svg

        self._explore = explore
        self._svg = conv_windows_svg
        self.sliders = sliders
        self.output = w.Label(style={"font_weight": "bold"})
        self.explanation = w.HTML()
        self.picture = w.HTML()
        for slider in sliders.values():
            slider.observe(self._update, names="value")
        controls = list(sliders.values())
        self.widget = w.VBox(
            [w.HBox(controls[:3]), w.HBox(controls[3:]), self.output, self.explanation,
             self.picture]
        )  # fmt: skip
        self._update()

    def _update(self, change: Any = None) -> None:
        self.state: ExplorerState = self._explore(
            *(slider.value for slider in self.sliders.values())
        )
        self.output.value = self.state.output_text
        self.explanation.value = explanation_html(self.state)
        self.picture.value = self._svg(self.state)

    def __repr__(self) -> str:
        return f"{self.state.kind} explorer ({self.state.output_text})"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        return bundle


def _slider(description: str, value: int, low: int, high: int) -> ipywidgets.IntSlider:
    import ipywidgets as w

    return w.IntSlider(
        value=value,
        min=low,
        max=max(high, value),
        description=description,
        style={"description_width": "initial"},
        layout=w.Layout(width="260px"),
    )


def conv_explorer(
    size: int = 28, kernel_size: int = 5, stride: int = 1, padding: int = 2, dilation: int = 1
) -> Explorer:
    """Sliders for a convolution, with its output size and a drawing of its windows.

    The sliders are described ``input size``, ``kernel size``, ``stride``, ``padding`` and
    ``dilation`` (the names in :data:`SLIDERS`); the output size shows as
    ``output size: 28 x 28``, or ``output size: impossible`` with the reason underneath.
    """
    return Explorer(
        explore_conv,
        {
            "size": _slider("input size", size, 1, 32),
            "kernel_size": _slider("kernel size", kernel_size, 1, 11),
            "stride": _slider("stride", stride, 1, 6),
            "padding": _slider("padding", padding, 0, 6),
            "dilation": _slider("dilation", dilation, 1, 4),
        },
    )


def pool_explorer(
    size: int = 7,
    kernel_size: int = 2,
    stride: int = 2,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = True,
) -> Explorer:
    """Like :func:`conv_explorer`, for ``nn.MaxPool2d``, with a ``ceil_mode`` checkbox."""
    import ipywidgets as w

    return Explorer(
        explore_pool,
        {
            "size": _slider("input size", size, 1, 32),
            "kernel_size": _slider("kernel size", kernel_size, 1, 8),
            "stride": _slider("stride", stride, 1, 6),
            "padding": _slider("padding", padding, 0, 4),
            "dilation": _slider("dilation", dilation, 1, 4),
            "ceil_mode": w.Checkbox(value=ceil_mode, description="ceil_mode", indent=False),
        },
    )


# --- inspection ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureMapView:
    """What the feature-map explorer shows: one image and the maps of one stage for it."""

    index: int
    stage: str
    image: Any  #: the 28 x 28 uint8 test image
    label: str  #: its true class name
    maps: Any  #: the stage's maps for it, C x H x W (float)

    @property
    def caption(self) -> str:
        count, height, width = self.maps.shape
        return (
            f"test image {self.index} ({self.label}) through {self.stage}: {count} maps of "
            f"{height}x{width}, values {float(self.maps.min()):.2f} .. {float(self.maps.max()):.2f}"
        )


def feature_map_view(
    model: Any, data: Any, normalization: dict[str, Any], index: int, stage: str
) -> FeatureMapView:
    """The maps of ``stage`` ("C1", "S2", "C3", "S4") for image ``index`` of ``data`` (an
    ``ImageSet``): the pure function behind :func:`feature_map_explorer`."""
    from lenet_course.data import prepare_images
    from lenet_course.inspect_model import stage_maps

    count = len(data.labels)
    if not 0 <= index < count:
        raise ValueError(f"index={index}; choose an image in 0..{count - 1}")
    image = data.images[index].cpu()
    inputs = prepare_images(image[None], model.input_spec, normalization)
    device = next(model.parameters()).device
    maps = stage_maps(model, inputs.to(device), [stage])[stage][0].cpu()
    return FeatureMapView(index, stage, image, data.classes[int(data.labels[index])], maps)


def _figure_html(figure: Any, alt: str) -> str:
    """A matplotlib ``Figure`` as an ``<img>`` tag holding its PNG (for an ``HTML`` widget)."""
    import base64
    import html
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<div><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></div>'


def feature_map_explorer(
    model: Any,
    data: Any,
    normalization: dict[str, Any],
    *,
    index: int = 0,
    stages: tuple[str, ...] = ("C1", "S2", "C3", "S4"),
) -> Any:
    """A slider for the test image and a menu for the stage; draws :func:`feature_map_view`.

    The pictures go into an ``HTML`` widget as PNG images, not into an ``Output`` widget: a
    saved notebook then shows them without a kernel, and headless runners (papermill, nbclient)
    need not emulate an ``Output`` widget, which can stall them.
    """
    import ipywidgets as widgets

    from lenet_course.plots import show_feature_maps, show_images

    slider = widgets.IntSlider(
        value=index, min=0, max=len(data.labels) - 1, description="image", continuous_update=False
    )
    menu = widgets.Dropdown(options=list(stages), value=stages[0], description="layer")
    picture = widgets.HTML()

    def draw(change: Any = None) -> None:
        view = feature_map_view(model, data, normalization, slider.value, menu.value)
        picture.value = _figure_html(
            show_images(view.image[None], [view.label], size=1.5), f"test image: {view.label}"
        ) + _figure_html(show_feature_maps(view.maps, title=view.caption), view.caption)

    slider.observe(draw, names="value")
    menu.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([slider, menu]), picture])
