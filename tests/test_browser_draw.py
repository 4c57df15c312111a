"""Draw and watch in a real browser (headless Chromium under Playwright).

- The book's page (book/_build/html/draw.html), opened from disk with every other URL refused:
  its forward pass (lenet_course/web/lenet.js) against PyTorch on 100 test images of each data
  set; a "1" and then a "0" drawn with the mouse change the top class to 1 and then to 0; every
  feature map is drawn; the 28 x 28 image the page shows is predict.py's conversion of the pad's
  own pixels, and its scores are PyTorch's for that image.
- JupyterLab: the pad as a widget (lenet_course.draw.DrawPad), drawn on with the mouse; the
  kernel's model reads it, and `predict` on the saved drawing agrees.
"""

import json
import time
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import torch
import web_weights
from conftest import Lab
from PIL import Image
from test_browser import browser, built_book, new_page, screenshot  # noqa: F401 (fixtures)

from lenet_course.data import load_dataset, prepare_images
from lenet_course.predict import convert_image

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SIZE = 224  # pad.js's canvas
# Each stroke as points on the 224 x 224 canvas: a "1", and a "0" as an ellipse.
ONE = [(118 - 0.07 * t, 30 + t) for t in range(0, 165, 8)]
ZERO = [(112 + 50 * np.sin(a), 112 - 76 * np.cos(a)) for a in np.linspace(0, 2 * np.pi, 41)]
# The maps the page draws: C1's 6 kernels, C1 6, S2 6, C3 16, S4 16, F5 and F6.
MAPS = {"kernel": 6, "c1": 6, "s2": 6, "c3": 16, "s4": 16, "f5": 1, "f6": 1}
SCORE_TOLERANCE = 1e-4


def draw(page: Any, canvas: Any, points: list[tuple[float, float]]) -> None:
    """One stroke with the mouse through ``points`` (canvas pixels)."""
    box = canvas.bounding_box()
    scale = box["width"] / SIZE
    x, y = points[0]
    page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=2)
    page.mouse.up()


def top_class(page: Any) -> str:
    return page.locator(".lenet-pad .top1").first.inner_text()


def wait_for_top(page: Any, expected: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while top_class(page) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return top_class(page)


def pytorch_scores(dataset: str, pixels: torch.Tensor) -> torch.Tensor:
    """The shipped network's class scores, in PyTorch, for uint8 images N x 28 x 28."""
    net = web_weights.model(dataset)
    normalization = web_weights.payload(dataset)["normalization"]
    with torch.no_grad():
        return net(prepare_images(pixels, net.input_spec, normalization))


@pytest.fixture(scope="module")
def draw_page(browser: Any, built_book: Path) -> Any:  # noqa: F811
    """draw.html from disk, nothing else reachable; fails on any script error."""
    page, blocked = new_page(browser, (built_book / "_static").as_uri().rsplit("/", 1)[0])
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((built_book / "draw.html").as_uri())
    page.wait_for_function("window.LeNetPad && LeNetPad.instances.length === 1")
    yield page
    # Jupyter Book 1 puts sphinx-thebe's settings on every page twice (`const THEBE_JS_URL`): the
    # second copy fails on every page of the site, and concerns launch buttons, not this page
    errors = [error for error in errors if "THEBE_JS_URL" not in error]
    assert not errors, f"the page's scripts failed: {errors}"
    assert not blocked, f"the page asked for the network: {blocked[:5]}"
    page.close()


@pytest.mark.parametrize("dataset", web_weights.DATASETS)
def test_the_page_forward_pass_is_pytorchs(draw_page: Any, dataset: str, real_data_root: Path):
    test = load_dataset(dataset, "test", root=real_data_root, download=False)
    images = test.images[:100]
    scores = draw_page.evaluate(
        """([dataset, images]) => images.map(
            (pixels) => Array.from(LeNet.forward(LeNetWeights[dataset], pixels).scores))""",
        [dataset, images.reshape(100, -1).tolist()],
    )
    difference = (torch.tensor(scores) - pytorch_scores(dataset, images)).abs().max().item()
    assert difference <= SCORE_TOLERANCE, f"largest difference from PyTorch: {difference:.2e}"


def pad_state(page: Any) -> dict:
    return page.evaluate(
        """() => { const pad = LeNetPad.instances[0];
            return { gray: Array.from(pad.gray), pixels: Array.from(pad.record.pixels),
                     scores: Array.from(pad.record.scores), dataset: pad.dataset,
                     centre: pad.centre, latencies: pad.latencies }; }"""
    )


def ink(state: dict) -> int:
    """How many of the pad's pixels the strokes covered."""
    return sum(value > 127 for value in state["gray"])


def check_against_python(state: dict) -> None:
    """The page's 28 x 28 image is predict.py's conversion; its scores are PyTorch's."""
    gray = np.array(state["gray"], dtype=np.uint8).reshape(SIZE, SIZE)
    expected = convert_image(gray, dataset=state["dataset"]).pixels
    shown = torch.tensor(state["pixels"], dtype=torch.uint8).reshape(28, 28)
    assert torch.equal(shown, expected), f"{(shown.int() - expected.int()).abs().max()} apart"
    scores = pytorch_scores(state["dataset"], expected[None])[0]
    difference = (torch.tensor(state["scores"]) - scores).abs().max().item()
    assert difference <= SCORE_TOLERANCE, f"largest difference from PyTorch: {difference:.2e}"


def test_drawing_a_one_then_a_zero(draw_page: Any):
    page = draw_page
    canvas = page.locator("canvas.draw")
    canvas.scroll_into_view_if_needed()
    draw(page, canvas, ONE)
    assert wait_for_top(page, "1") == "1"
    # a blank pad reads as a 1 too: the drawing must be there
    assert ink(pad_state(page)) > 100
    check_against_python(pad_state(page))
    screenshot(page, "draw-one")
    page.locator(".lenet-pad button.clear").click()
    draw(page, canvas, ZERO)
    assert wait_for_top(page, "0") == "0"
    state = pad_state(page)
    check_against_python(state)
    screenshot(page, "draw-zero")
    counts = {key: page.locator(f".lenet-pad canvas.map.{key}").count() for key in MAPS}
    assert counts == MAPS
    # every picture was painted: no canvas is left at its default 300 x 150
    sizes = page.evaluate(
        "() => [...document.querySelectorAll('.lenet-pad canvas.map')].map(c => c.width)"
    )
    assert 300 not in sizes and len(sizes) == sum(MAPS.values()) + 1  # + the 28 x 28 image
    assert len(state["latencies"]) == 2 and all(0 < ms < 10_000 for ms in state["latencies"])


def test_the_centring_switch_and_the_data_set_switch(draw_page: Any):
    page = draw_page
    page.locator(".lenet-pad button.clear").click()
    draw(page, page.locator("canvas.draw"), [(x / 3 + 10, y / 3 + 10) for x, y in ONE])
    page.locator(".lenet-pad input.centre").uncheck()
    state = pad_state(page)
    assert state["centre"] is False
    gray = Image.fromarray(np.array(state["gray"], dtype=np.uint8).reshape(SIZE, SIZE))
    shrunk = gray.resize((28, SIZE), Image.Resampling.LANCZOS)
    shrunk = shrunk.resize((28, 28), Image.Resampling.LANCZOS)
    assert state["pixels"] == np.asarray(shrunk).flatten().tolist()
    page.locator(".lenet-pad input.centre").check()
    check_against_python(pad_state(page))
    page.locator(".lenet-pad select.dataset").select_option("fashion-mnist")
    state = pad_state(page)
    assert state["dataset"] == "fashion-mnist"
    check_against_python(state)
    names = web_weights.payload("fashion-mnist")["class_names"]
    assert top_class(page) in names
    accuracies = page.locator(".lenet-accuracy").all_inner_texts()
    assert all(text.endswith("%") for text in accuracies) and len(accuracies) == 2


WIDGET_NOTEBOOK = """\
import json
from pathlib import Path
from lenet_course.draw import DrawPad
from lenet_course.predict import predict_files

CHECKPOINT = {checkpoint!r}
pad = DrawPad(CHECKPOINT)

def report(change):
    # what the kernel's model says, and what `predict` says of the saved drawing
    saved = predict_files(CHECKPOINT, pad.save("drawing.png"))[0]
    top = pad.top(1)[0][0]
    ink = int((pad.gray > 127).sum())
    Path("pad-report.json").write_text(json.dumps([ink, top, saved.top[0][0]]))

pad.observe(report, names="record")
pad
"""


def test_the_pad_widget_in_jupyterlab(browser: Any, jupyterlab: Lab, tmp_path: Path):  # noqa: F811
    checkpoint = web_weights.checkpoint("mnist", tmp_path / "checkpoint.pt")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    notebook.cells = [nbformat.v4.new_code_cell(WIDGET_NOTEBOOK.format(checkpoint=str(checkpoint)))]
    path = jupyterlab.root / "draw-widget.ipynb"
    nbformat.write(notebook, path)
    page, blocked = new_page(browser, jupyterlab.url)
    page.goto(f"{jupyterlab.url}/lab/tree/{path.name}?reset&token={jupyterlab.token}")
    kernel = page.locator(".jp-StatusBar-TextItem[title^='Change kernel']")
    kernel.filter(has_text="Idle").wait_for(timeout=120_000)
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
    page.keyboard.press("Shift+Enter")
    canvas = page.locator(".jp-OutputArea canvas.draw")
    canvas.wait_for(timeout=60_000)
    canvas.scroll_into_view_if_needed()
    report = jupyterlab.root / "pad-report.json"
    for digit, stroke in (("1", ONE), ("0", ZERO)):
        if digit == "0":
            page.locator(".jp-OutputArea .lenet-pad button.clear").click()
        report.unlink(missing_ok=True)
        draw(page, canvas, stroke)
        assert wait_for_top(page, digit) == digit
        # the kernel writes its report for each drawing it reads; wait for the last stroke's
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if report.exists() and json.loads(report.read_text())[1] == digit:
                break
            time.sleep(0.2)
        ink, kernel_top, predicted = json.loads(report.read_text())
        assert kernel_top == predicted == digit
        assert ink > 100, "the kernel read a blank pad (which reads as a 1 too)"
    screenshot(page, "draw-widget")
    assert not [url for url in blocked if "jsdelivr" not in url], blocked[:5]


def test_touch_and_pen_draw_too(browser: Any, built_book: Path):  # noqa: F811
    """A finger (touch events) and a pen (pointerType "pen"), sent through Chromium's input
    pipeline as a device would send them, draw on the pad as the mouse does."""
    context = browser.new_context(has_touch=True, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto((built_book / "draw.html").as_uri())
    page.wait_for_function("window.LeNetPad && LeNetPad.instances.length === 1")
    canvas = page.locator("canvas.draw")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    scale = box["width"] / SIZE
    cdp = context.new_cdp_session(page)

    def at(x: float, y: float) -> dict:
        return {"x": box["x"] + x * scale, "y": box["y"] + y * scale}

    points = [at(x, y) for x, y in ONE]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [points[0]]})
    for point in points[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    assert wait_for_top(page, "1") == "1", "a finger did not draw"
    assert page.evaluate("() => LeNetPad.instances[0].gray.some((v) => v > 127)"), "no ink"
    page.locator(".lenet-pad button.clear").click()
    pen = {"pointerType": "pen", "button": "left", "force": 0.5}
    points = [at(x, y) for x, y in ZERO]
    cdp.send(
        "Input.dispatchMouseEvent", {"type": "mousePressed", **points[0], **pen, "clickCount": 1}
    )
    for point in points[1:]:
        cdp.send("Input.dispatchMouseEvent", {"type": "mouseMoved", **point, **pen, "buttons": 1})
    cdp.send(
        "Input.dispatchMouseEvent", {"type": "mouseReleased", **points[-1], **pen, "clickCount": 1}
    )
    assert wait_for_top(page, "0") == "0", "a pen did not draw"
    context.close()
