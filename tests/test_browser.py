"""Real browser tests: headless Chromium (Debian's package) driven by Playwright.

- JupyterLab, the session's one `make lab` (conftest.jupyterlab) on a free local port with a
  token, serving a copy of notebooks/: notebooks 01 and 02 run top to bottom, then moving 02's
  explorer's stride slider changes the output size it displays to what
  ``lenet_course.arithmetic.conv2d_output_size`` says.
- The built book (book/_build/html, built by tools/build_book.py): the index page shows the
  title and the table of contents; the training chapter (05) shows its title and a figure.

Screenshots go to test-artifacts/browser/. If Chromium is missing or cannot start, the tests
fail with the reason (run tools/ensure_chromium.sh); they never skip.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from conftest import Lab

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
HTML = REPO / "book" / "_build" / "html"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("LENET_COURSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT_SIZE = re.compile(r"output size:\s*(\d+)\s*x\s*(\d+)")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def notebook(prefix: str) -> Path:
    """The notebook whose name starts with ``prefix`` (fails when there is none)."""
    found = sorted(NOTEBOOKS.glob(f"{prefix}*.ipynb"))
    if not found:
        pytest.fail(f"no notebooks/{prefix}*.ipynb: the browser test needs it")
    return found[0]


# jupyterquiz finds JupyterLab's MathJax without a typeset() and asks a CDN for its own; offline
# the request fails and the quiz works without it (the book pages, tested offline, ask nothing).
QUIZ_MATHJAX = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg.js"


def lab_network_requests(blocked: list[str]) -> list[str]:
    """What JupyterLab tried to fetch from the network, jupyterquiz's MathJax left out."""
    return [url for url in blocked if url != QUIZ_MATHJAX]


def screenshot(page: Any, name: str) -> None:
    """Save a full-page screenshot as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless system Chromium under Playwright; fails (never skips) when it cannot start."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run tools/ensure_chromium.sh "
            "(apt-get install -y chromium), or set LENET_COURSE_CHROMIUM to its path"
        )
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
        except Error as error:
            pytest.fail(f"Chromium at {CHROMIUM} does not start under Playwright: {error}")
        yield chromium
        chromium.close()


def new_page(browser: Any, allowed: str) -> tuple[Any, list[str]]:
    """A page that may load only URLs starting with ``allowed``; returns it and the blocked URLs.

    Blocking proves the page needs no network, and keeps a test from waiting on one.
    """
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    blocked: list[str] = []

    def route(request_route: Any) -> None:
        url = request_route.request.url
        if url.startswith((allowed, "data:", "blob:")):
            request_route.continue_()
        else:
            blocked.append(url)
            request_route.abort()

    page.route("**/*", route)
    return page, blocked


def run_all_cells(page: Any, cells: int, timeout_s: float) -> list[str]:
    """Clear every output, run all cells from the menu and wait; return the input prompts."""
    page.get_by_role("menuitem", name="Edit", exact=True).click()
    page.get_by_role("menuitem", name="Clear Outputs of All Cells", exact=True).click()
    prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt")
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
              .every(p => !/\\d/.test(p.textContent))"""
    )
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    dialog = page.locator(".jp-Dialog")
    if dialog.count():  # "Select Kernel": the kernel was not attached yet after all
        dialog.locator(".jp-mod-accept").click()
    indicator = page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator")
    start = time.monotonic()
    idle_since = None
    while True:
        # a cell whose source is collapsed (the tests' cells) has an empty prompt: it is skipped
        texts = [text for text in prompts.all_text_contents() if text.strip()]
        idle = indicator.get_attribute("data-status") == "idle"
        if idle and all(re.search(r"\[\d+\]", text) for text in texts):
            return texts
        started = any(re.search(r"\[[\d*]+\]", text) for text in texts)
        # Run All stops at the first error: idle, with cells left unexecuted, for a while.
        idle_since = (idle_since or time.monotonic()) if idle else None
        waited = time.monotonic() - start
        if (idle_since and time.monotonic() - idle_since > 15) or waited > timeout_s:
            screenshot(page, "run-failed")
            errors = page.locator('[data-mime-type="application/vnd.jupyter.stderr"]')
            reason = "stopped early" if started else "never started"
            if waited > timeout_s:
                reason = f"did not finish within {timeout_s} s"
            pytest.fail(
                f"Run All Cells {reason} (prompts {texts}); stderr outputs:\n"
                + "\n---\n".join(errors.all_inner_texts())[-3000:]
            )
        time.sleep(0.5)


def slider_values(box: Any) -> dict[str, int]:
    """The explorer's slider values by description, e.g. {'stride': 1, ...}."""
    values = {}
    for slider in box.locator(".widget-slider").all():
        label = slider.locator(".widget-label").inner_text().strip().rstrip(":").lower()
        values[label] = int(slider.locator(".widget-readout").inner_text().strip())
    return values


def expected_output_size(values: dict[str, int]) -> tuple[int, int]:
    """What ``conv2d_output_size`` says for the slider values (matched by their descriptions)."""
    from lenet_course.arithmetic import conv2d_output_size

    def pick(pattern: str, default: int | None = None) -> int:
        found = [value for label, value in values.items() if re.search(pattern, label)]
        if not found and default is None:
            pytest.fail(f"no slider matching {pattern!r} among {sorted(values)}")
        return found[0] if found else default

    size = conv2d_output_size(
        pick(r"input|^size|image"),
        pick(r"kernel"),
        stride=pick(r"stride"),
        padding=pick(r"pad", 0),
        dilation=pick(r"dilat", 1),
    )
    return (size, size) if isinstance(size, int) else tuple(size)


def conv_explorer(page: Any) -> tuple[Any, Any]:
    """The convolution explorer's widget box and its stride slider.

    The box is the nearest widget box around a slider described "stride" that also shows the
    output size; the pooling explorer (it has a ceil_mode checkbox) is passed over.
    """
    label = page.locator(".widget-label", has_text=re.compile(r"^\s*stride\s*$", re.I))
    sliders = page.locator(".widget-slider", has=label)
    assert sliders.count() >= 1, "no slider described 'stride' in the notebook's outputs"
    nearest_box = (
        "xpath=ancestor::div[contains(concat(' ', @class, ' '), ' widget-box ')]"
        "[.//*[contains(text(), 'output size:')]][1]"
    )
    for slider in sliders.all():
        box = slider.locator(nearest_box)
        if box.count() == 1 and box.locator(".widget-checkbox").count() == 0:
            return box, slider
    pytest.fail("no convolution explorer (stride slider next to 'output size: H x W')")


def open_and_run_all(page: Any, lab: Lab, path: Path) -> None:
    """Open ``path`` in JupyterLab, run all its cells and check they ran in order."""
    cells = len(nbformat.read(path, as_version=4).cells)
    # ?reset: a fresh workspace, so the notebook a previous test opened on this server is closed
    page.goto(f"{lab.url}/lab/tree/{path.name}?reset&token={lab.token}")
    # The kernel is started and connected (clicking Run All before that asks for a kernel).
    kernel = page.locator(".jp-StatusBar-TextItem[title^='Change kernel']")
    kernel.filter(has_text=re.compile(r"\|\s*Idle")).wait_for(timeout=120_000)
    page.wait_for_function(
        f"document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length == {cells}"
    )
    prompts = run_all_cells(page, cells, timeout_s=900)
    counts = [int(re.search(r"\d+", text).group()) for text in prompts]
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    collapsed = [c for c in code if c.metadata.get("jupyter", {}).get("source_hidden")]
    assert counts == sorted(set(counts)) and counts[-1] <= len(code), f"not in order: {prompts}"
    assert len(counts) + len(collapsed) == len(code), f"{len(code)} cells, prompts {prompts}"
    screenshot(page, f"{path.stem[:2]}-ran-all")


def test_explorer_in_jupyterlab(browser: Any, jupyterlab: Lab) -> None:
    """Notebook 02 runs in JupyterLab; the stride slider changes the displayed output size."""
    page, blocked = new_page(browser, jupyterlab.url)
    open_and_run_all(page, jupyterlab, notebook("02_"))

    box, stride = conv_explorer(page)
    stride.scroll_into_view_if_needed()
    shown = box.locator(".widget-label, .widget-html-content, .jp-OutputArea-output").filter(
        has_text=OUTPUT_SIZE
    )

    def displayed() -> tuple[int, int]:
        match = OUTPUT_SIZE.search(shown.last.inner_text())
        assert match, f"no 'output size: H x W' in {shown.last.inner_text()!r}"
        return int(match.group(1)), int(match.group(2))

    before = slider_values(box)
    assert displayed() == expected_output_size(before), f"before moving: sliders {before}"
    handle = stride.locator(".noUi-handle")
    at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
    handle.press("ArrowLeft" if at_max else "ArrowRight")  # one step, as a user would
    deadline = time.monotonic() + 30
    after = slider_values(box)
    while after == before and time.monotonic() < deadline:
        time.sleep(0.2)
        after = slider_values(box)
    assert after != before, "the stride slider did not move"
    expected = expected_output_size(after)
    deadline = time.monotonic() + 30
    while displayed() != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    screenshot(page, "02-stride-moved")
    assert displayed() == expected, f"sliders {after}: shows {displayed()}, expected {expected}"
    assert expected != expected_output_size(before), "the move did not change the output size"
    assert not lab_network_requests(blocked), f"JupyterLab tried the network: {blocked[:5]}"


@pytest.fixture(scope="module")
def built_book(book_build) -> Path:
    """book/_build/html, from the session's one build of the book (conftest.book_build)."""
    assert book_build.returncode == 0, f"the book does not build:\n{book_build.log[-6000:]}"
    return HTML


@pytest.mark.slow
def test_book_in_browser(browser: Any, built_book: Path) -> None:
    """The index shows the title and the TOC; the training chapter shows its title and a figure."""
    title = yaml.safe_load((REPO / "book" / "_config.yml").read_text())["title"]
    chapters = sorted(NOTEBOOKS.glob("*.ipynb"))
    training = notebook("06_")
    page, blocked = new_page(browser, "file://")
    page.goto((built_book / "index.html").as_uri())
    page.wait_for_url(re.compile(r"/intro\.html$"))  # index.html redirects to the first page
    page.wait_for_load_state()
    assert title in page.title()
    assert page.locator("main h1").first.inner_text().strip().startswith(title)
    toc = page.locator("nav.bd-docs-nav")
    assert toc.is_visible(), "no table of contents in the sidebar"
    links = toc.locator("a[href^='notebooks/']")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert hrefs == [f"notebooks/{p.stem}.html" for p in chapters], "TOC out of order or incomplete"
    screenshot(page, "book-index")

    toc.locator(f"a[href='notebooks/{training.stem}.html']").click()  # navigate as a reader
    page.wait_for_url(re.compile(re.escape(training.stem) + r"\.html$"))
    page.wait_for_load_state()
    heading = page.locator("main h1").first.inner_text()
    title_cell = nbformat.read(training, as_version=4).cells[0].source
    first_heading = next(line for line in title_cell.splitlines() if line.startswith("# "))
    expected = re.sub(r"[^a-z0-9]+", "", first_heading[2:].lower())
    assert re.sub(r"[^a-z0-9]+", "", heading.lower()) == expected, f"heading {heading!r}"
    assert page.locator("nav.bd-docs-nav").is_visible(), "no table of contents on the chapter"
    figures = page.locator("main img")
    assert figures.count() >= 1, "the training chapter shows no figure"
    figures.first.scroll_into_view_if_needed()
    loaded = page.evaluate(
        "[...document.querySelectorAll('main img')]"
        ".filter(image => image.complete && image.naturalWidth > 0).length"
    )
    assert loaded >= 1, "no figure of the training chapter loaded"
    screenshot(page, "book-training-chapter")
    assert not blocked, f"the book fetched from the network: {blocked[:5]}"


def test_book_widgets_and_maths_work_offline(browser: Any, built_book: Path) -> None:
    """Notebook 02's page, with every network request refused: the explorer's stored sliders
    show the saved values, its picture is drawn, and MathJax typesets the formulas."""
    arithmetic = notebook("02_")
    page, blocked = new_page(browser, "file://")
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto((built_book / "notebooks" / f"{arithmetic.stem}.html").as_uri())
    page.wait_for_load_state("load")
    sliders = page.locator(".widget-slider")
    sliders.first.wait_for(state="visible", timeout=30_000)  # the widget manager ran
    names = [sliders.nth(i).locator(".widget-label").inner_text() for i in range(5)]
    values = [sliders.nth(i).locator(".widget-readout").inner_text() for i in range(5)]
    assert names == ["input size", "kernel size", "stride", "padding", "dilation"]
    assert values == ["28", "5", "1", "2", "1"]  # the explorer's stored first state
    assert OUTPUT_SIZE.search(page.locator("main").inner_text()), "no output size shown"
    page.locator("mjx-container").first.wait_for(timeout=30_000)  # MathJax typeset the maths
    assert page.locator("mjx-container").count() == page.locator(".math").count()
    sliders.first.scroll_into_view_if_needed()
    screenshot(page, "book-explorer-offline")
    assert not blocked, f"the page asked the network for {blocked[:5]}"
    assert not failed, f"files missing from the site: {failed[:5]}"


def stored_sliders(path: Path) -> int:
    """How many slider models the notebook's stored widget state holds (each drawn once)."""
    state = nbformat.read(path, as_version=4).metadata["widgets"]
    models = state["application/vnd.jupyter.widget-state+json"]["state"].values()
    return sum(model["model_name"].endswith("SliderModel") for model in models)


def test_each_widget_is_drawn_once(browser: Any, built_book: Path) -> None:
    """Every slider of the stored state appears once on the page, not once per copy of the widget
    manager, and every file the page asks for (the widgets' icon fonts included) is there."""
    for path in (notebook("01_"), notebook("02_")):
        page, blocked = new_page(browser, "file://")
        failed: list[str] = []
        page.on("requestfailed", lambda request, failed=failed: failed.append(request.url))
        page.goto((built_book / "notebooks" / f"{path.stem}.html").as_uri())
        page.wait_for_load_state("load")
        page.locator(".widget-slider").first.wait_for(state="visible", timeout=30_000)
        page.wait_for_timeout(2_000)  # a second widget manager would draw by now
        assert page.locator(".widget-slider").count() == stored_sliders(path), path.name
        assert not failed, f"{path.name}: files missing from the site: {failed[:5]}"
        assert not blocked, f"{path.name} asked the network for {blocked[:5]}"
        page.close()


KERNEL_SUM = re.compile(r"output\[(\d+), (\d+)\] = sum of the products = (-?\d+\.\d+)")


def expected_kernel_sum(row: int, col: int) -> float:
    """What ``widgets.kernel_view`` computes for notebook 01's first image and first kernel."""
    from lenet_course.data import load_dataset
    from lenet_course.widgets import kernel_view

    image = load_dataset("fashion-mnist", "test").images[0].float() / 255
    sobel = [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]  # the notebook's first kernel
    return kernel_view(image, sobel, row, col).total


def test_kernel_explorer_in_jupyterlab(browser: Any, jupyterlab: Lab) -> None:
    """Notebook 01 runs in JupyterLab; moving the column slider moves the kernel, and the sum
    shown is the sum of the window's products at the new position."""
    page, blocked = new_page(browser, jupyterlab.url)
    open_and_run_all(page, jupyterlab, notebook("01_"))
    # the cells that exist for the tests (tagged remove-cell) show collapsed, as placeholders
    hidden = [c for c in nbformat.read(notebook("01_"), as_version=4).cells
              if c.metadata.get("jupyter", {}).get("source_hidden")]
    assert hidden and page.locator(".jp-InputPlaceholder").count() == len(hidden)
    label = page.locator(".widget-label", has_text=re.compile(r"^\s*column\s*$"))
    column = page.locator(".widget-slider", has=label).last
    column.scroll_into_view_if_needed()
    shown = page.locator(".widget-label").filter(has_text=KERNEL_SUM)

    def displayed() -> tuple[int, int, float]:
        match = KERNEL_SUM.search(shown.last.inner_text())
        assert match, "no 'output[r, c] = sum of the products = x' shown"
        return int(match.group(1)), int(match.group(2)), float(match.group(3))

    row, col, total = displayed()
    assert total == pytest.approx(expected_kernel_sum(row, col), abs=1e-3)
    column.locator(".noUi-handle").press("ArrowRight")  # one step, as a user would
    deadline = time.monotonic() + 30
    while displayed()[1] == col and time.monotonic() < deadline:
        time.sleep(0.2)
    screenshot(page, "01-column-moved")
    moved = displayed()
    assert moved[:2] == (row, col + 1), f"the kernel did not move one column: {moved}"
    assert moved[2] == pytest.approx(expected_kernel_sum(row, col + 1), abs=1e-3)
    assert moved[2] != pytest.approx(total, abs=1e-3), "the move did not change the sum"
    choice = page.locator(".MCButton", has_text="9 pixels and the 9 weights")
    choice.scroll_into_view_if_needed()
    choice.click()  # the quiz answers in JupyterLab too
    assert "Right: one output sees" in page.locator(".Quiz .Feedback").first.inner_text()
    assert not lab_network_requests(blocked), f"JupyterLab tried the network: {blocked[:5]}"


def test_book_kernel_explorer_offline(browser: Any, built_book: Path) -> None:
    """Notebook 01's page, offline: the kernel explorer's stored sliders and its sum are shown."""
    page, blocked = new_page(browser, "file://")
    page.goto((built_book / "notebooks" / f"{notebook('01_').stem}.html").as_uri())
    page.wait_for_load_state("load")
    sliders = page.locator(".widget-slider")
    sliders.first.wait_for(state="visible", timeout=30_000)  # the widget manager ran
    names = [sliders.nth(i).locator(".widget-label").inner_text() for i in range(2)]
    values = [int(sliders.nth(i).locator(".widget-readout").inner_text()) for i in range(2)]
    assert names == ["row", "column"] and values == [14, 9]  # the explorer's stored state
    match = KERNEL_SUM.search(page.locator("main").inner_text())
    assert match and (int(match.group(1)), int(match.group(2))) == (14, 9)
    assert float(match.group(3)) == pytest.approx(expected_kernel_sum(14, 9), abs=1e-3)
    assert page.locator("main img[alt^='output[14, 9]']").count() >= 1, "no explorer picture"
    screenshot(page, "book-kernel-explorer-offline")
    assert not blocked, f"the page asked the network for {blocked[:5]}"


def open_solution_1(page: Any) -> None:
    """Notebook 01's hidden solution 1 is closed until the reader opens it; open it."""
    solution = page.locator("main details", has_text="Solution 1").first
    code = solution.locator("pre", has_text="shift_right")
    assert not code.is_visible(), "solution 1 is shown before the reader asks for it"
    solution.locator("summary").click()
    code.wait_for(state="visible", timeout=5_000)


def test_book_quiz_and_solutions_work_offline(browser: Any, built_book: Path) -> None:
    """On notebook 01's static page, with no kernel and no network: a quiz question answers a
    click with its feedback, and a hidden solution opens when the reader asks for it."""
    page, blocked = new_page(browser, "file://")
    page.goto((built_book / "notebooks" / f"{notebook('01_').stem}.html").as_uri())
    page.wait_for_load_state("load")
    choice = page.locator(".MCButton", has_text="9 pixels and the 9 weights")
    choice.wait_for(state="visible", timeout=30_000)  # the quiz's script ran on the static page
    wrong = page.locator(".MCButton", has_text="all 784 pixels")
    wrong.click()
    feedback = page.locator(".Quiz .Feedback").first
    assert "That is a dense layer" in feedback.inner_text()
    choice.click()
    assert "Right: one output sees one 3 x 3 window." in feedback.inner_text()
    assert "correct" in (feedback.get_attribute("class") or "").split()

    open_solution_1(page)
    screenshot(page, "book-quiz-and-solution")
    assert not blocked, f"the page asked the network for {blocked[:5]}"
