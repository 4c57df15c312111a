"""Pictures: the explorer's windows as SVG, and matplotlib figures made without pyplot's state."""

import base64
import html
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.layout_engine import TightLayoutEngine
from matplotlib.patches import Rectangle

from lenet_course.arithmetic import ExplorerState

# The input, its padding and the pixel grid; the first, last and misfit window; the start ticks.
_INPUT, _PADDING, _GRID = "#ffffff", "#e3e3e3", "#b8b8b8"
_FIRST, _LAST, _BAD, _TICK = "#1f77b4", "#ff7f0e", "#d62728", "#555555"


def figure_html(figure: Figure, alt: str) -> str:
    """A figure as an ``<img>`` holding its PNG: an ``HTML`` widget shows it without a kernel."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<div><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></div>'


def _figure(width, height, nrows, ncols, title=None, pad=1.08, **options) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=100, layout=TightLayoutEngine(pad=pad))
    if title:
        fig.suptitle(title, fontsize=9)
    return fig, fig.subplots(nrows, ncols, **options)


def _square(x: int, y: int, side: int, fill: str = "none", extra: str = "") -> str:
    return f'<rect x="{x}" y="{y}" width="{side}" height="{side}" fill="{fill}"{extra}/>'


def _text(x: int, y: int, size: int, text: str, extra: str = "") -> str:
    return f'<text x="{x}" y="{y}" font-family="sans-serif" font-size="{size}"{extra}>{text}</text>'


def _window_svg(state: ExplorerState, start: int, colour: str, cell: int) -> tuple[str, str]:
    """One window as (its taps: kernel x kernel pixels, its outline: span x span pixels)."""
    taps = "".join(
        _square(cell * column + 1, cell * row + 1, cell - 2, colour, ' fill-opacity="0.45"')
        for row in state.taps(start)
        for column in state.taps(start)
    )
    dash = "" if state.output is not None else ' stroke-dasharray="5 3"'
    edge = f' stroke="{colour}" stroke-width="2.5"{dash}'
    return taps, _square(cell * start, cell * start, cell * state.span, extra=edge)


def conv_windows_svg(state: ExplorerState, max_width: int = 440) -> str:
    """The padded input, first window blue, last orange, ticks at window starts; a misfit red."""
    valid = state.output is not None
    last = state.starts[-1] if valid else 0
    # ceil_mode's last window may overhang the padded input, and a misfit always does
    extent = max(state.padded, last + state.span)
    cell = max(4, min(24, max_width // extent))
    margin, grid = 10, cell * extent  # the margin leaves room for the ticks
    width, height = max(grid + margin + 2, 480), grid + margin + 40
    pad, inner, outer = cell * state.padding, cell * state.size, cell * state.padded
    label = (
        f"{state.kind} on {state.size}x{state.size} input, kernel {state.kernel_size}, stride "
        f"{state.stride}, padding {state.padding}, dilation {state.dilation}: {state.output_text}"
    )
    windows = [(0, _FIRST if valid else _BAD)]
    if valid and last:
        windows.append((last, _LAST))
    drawn = [_window_svg(state, start, colour, cell) for start, colour in windows]
    lines = "".join(f"M{cell * i} 0V{outer}M0 {cell * i}H{outer}" for i in range(state.padded + 1))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}">',
        f'<g transform="translate({margin},{margin})">',
        _square(0, 0, outer, _PADDING),
        _square(pad, pad, inner, _INPUT),
        *(taps for taps, _ in drawn),
        f'<path d="{lines}" stroke="{_GRID}" stroke-width="1" fill="none"/>',
        _square(pad, pad, inner, extra=' stroke="#444" stroke-width="1.5"'),
    ]
    if extent > state.padded:
        parts.append(_square(0, 0, grid, extra=f' stroke="{_GRID}" stroke-dasharray="2 2"'))
    parts += [outline for _, outline in drawn]
    legend = [(_PADDING, "padding")]
    if valid:
        centres = [cell * start + cell // 2 for start in state.starts]
        ticks = "".join(f"M{c} -8V-2M-8 {c}H-2" for c in centres)
        parts.append(f'<path d="{ticks}" stroke="{_TICK}" stroke-width="2"/>')
        legend += [(_FIRST, "first window"), (_LAST, "last window")]
        legend.append((_TICK, f"{state.output} window starts per side"))
    else:
        legend.append((_BAD, "the first window does not fit"))
    parts.append("</g>")
    x, y = margin, grid + margin + 16
    for colour, text in legend:
        parts.append(_square(x, y - 9, 10, colour, ' stroke="#888"') + _text(x + 14, y, 11, text))
        x += 24 + 6 * len(text)
    parts.append(_text(margin, y + 18, 13, state.output_text, ' font-weight="bold"') + "</svg>")
    return "".join(parts)


def _grid(n, ncols, width, height, top=0.0, title=None) -> tuple[Figure, list[Any]]:
    """``n`` panels (axes off) in rows of ``ncols``, each ``width`` x ``height`` inches."""
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    size = (ncols * width, top + nrows * height)
    fig, axes = _figure(*size, nrows, ncols, title=title, pad=0.3, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, list(axes.flat)


def _three_dims(x, axis: int, what: str, expected: str):
    """``x`` on the CPU, without ``axis`` if that has size 1; refused unless that leaves 3-D."""
    x = x.detach().cpu()
    if x.ndim == 4 and x.shape[axis] == 1:
        x = x.squeeze(axis)
    if x.ndim != 3:
        raise ValueError(f"{what} of shape {tuple(x.shape)}; expected {expected}")
    return x


def show_images(images, titles=None, *, ncols=10, size=1.0, cmap="gray_r") -> Figure:
    """A grid of ``images``, ink dark, unsmoothed, with ``titles`` if given.  uint8 images share
    the scale 0..255 (so contrast compares); float images (averages, filters) get their own."""
    images = _three_dims(images, 1, "images", "N x H x W or N x 1 x H x W")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images; give one per image")
    if ncols < 1:
        raise ValueError(f"ncols={ncols}; expected at least 1")
    limits = {} if images.dtype.is_floating_point else {"vmin": 0, "vmax": 255}
    fig, axes = _grid(len(images), ncols, size, size * (1.25 if titles else 1.0))
    for i, (ax, image) in enumerate(zip(axes, images, strict=False)):
        ax.imshow(image.numpy(), cmap=cmap, interpolation="nearest", **limits)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    return fig


def show_feature_maps(maps, *, ncols=8, size=1.0, title=None) -> Figure:
    """One layer's maps for one image (C x H x W) on one shared scale: bright responds strongly."""
    maps = _three_dims(maps, 0, "maps", "C x H x W for one image").float()
    low, high = float(maps.min()), float(maps.max())
    fig, axes = _grid(maps.shape[0], ncols, size, size * 1.15, top=0.3, title=title)
    for i, (ax, feature_map) in enumerate(zip(axes, maps, strict=False)):
        ax.imshow(feature_map.numpy(), cmap="magma", vmin=low, vmax=max(high, low + 1e-6))
        ax.set_title(f"map {i}", fontsize=7)
    return fig


def show_training_curves(histories: Any, *, size: tuple[float, float] = (9.0, 3.2)) -> Figure:
    """Loss and accuracy per epoch (test solid, train dashed, validation dotted) of a history, or
    of several by label (a dict)."""
    runs = dict(histories) if isinstance(histories, Mapping) else {"": histories}
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
    fig, (loss_ax, acc_ax) = _figure(*size, 1, 2)
    for (label, history), color in zip(runs.items(), colors, strict=False):
        records = list(getattr(history, "epochs", history))
        if not records:
            raise ValueError(f"history {label!r} has no epochs to plot")
        epochs = [r["epoch"] for r in records]
        loss_ax.plot(epochs, [r["train_loss"] for r in records], color=color, label=label or None)
        for name, style in (("test", "-"), ("train", "--"), ("validation", ":")):
            values = [r.get(f"{name}_accuracy") for r in records]
            if all(v is not None for v in values):
                acc_ax.plot(epochs, values, style, color=color, label=f"{label} {name}".strip())
    for ax, ylabel, title in ((loss_ax, "training loss", "loss"), (acc_ax, "accuracy", "accuracy")):
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if any(runs):
        loss_ax.legend(fontsize=8)
    acc_ax.legend(fontsize=8)
    return fig


def show_kernel_view(view: Any) -> Figure:
    """The kernel explorer's picture (a ``widgets.KernelView``): the image with the window, the
    element-wise products (their sum is the output), and the output map filled in so far."""
    no_ticks = {"xticks": [], "yticks": []}
    fig, (left, middle, right) = _figure(8.4, 2.9, 1, 3, subplot_kw=no_ticks)
    kh, kw = view.kernel.shape
    left.imshow(view.image.numpy(), cmap="gray")
    left.add_patch(Rectangle((view.col - 0.5, view.row - 0.5), kw, kh, fill=False, color=_LAST))
    limit = float(view.products.abs().max()) or 1.0
    middle.imshow(view.products.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
    for (i, j), value in np.ndenumerate(view.products.numpy()):
        colour = "white" if abs(value) > 0.6 * limit else "black"
        # value + 0 writes -0.0 as 0.00
        middle.text(j, i, f"{value + 0:.2f}", ha="center", va="center", fontsize=7, color=colour)
    # NaN marks the positions the kernel has not reached yet: drawn in the padding's grey
    reach = float(view.output.nan_to_num().abs().max()) or 1.0
    unfilled = colormaps["RdBu_r"].with_extremes(bad=_PADDING)
    right.imshow(view.output.numpy(), cmap=unfilled, vmin=-reach, vmax=reach)
    right.add_patch(Rectangle((view.col - 0.5, view.row - 0.5), 1, 1, fill=False, color=_LAST))
    where = f"({view.row}, {view.col})"
    left.set_title(f"input, window at {where}", fontsize=9)
    middle.set_title("window x kernel", fontsize=9)
    right.set_title(f"output: {view.total:.3f} at {where}", fontsize=9)
    return fig
