"""The Chinese site in a real browser (headless Chromium, a CJK font installed by
tools/ensure_chromium.sh): notebook 01's Chinese page offline, a quiz question answered in
Chinese, a solution opened, no literal ** left by the Markdown, and the link to the English page;
the Chinese Draw and watch page, whose pad speaks Chinese."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_browser import (  # noqa: F401 (fixtures)
    browser,
    built_book,
    new_page,
    notebook,
    open_solution_1,
    screenshot,
)
from test_browser_draw import ONE, draw, wait_for_top

REPO = Path(__file__).resolve().parent.parent
QUIZ = REPO / "i18n" / "zh" / "quizzes" / "01.json"
CJK = re.compile("[\u4e00-\u9fff]")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_chinese_page_offline(browser: Any, built_book: Path) -> None:  # noqa: F811
    page, blocked = new_page(browser, "file://")
    stem = notebook("01_").stem
    page.goto((built_book / "zh" / "notebooks" / f"{stem}.html").as_uri())
    page.wait_for_load_state("load")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    # the page's prose, code left out (Python has its own **)
    prose = page.evaluate(
        """() => { const main = document.querySelector("main").cloneNode(true);
                   main.querySelectorAll("pre, code, .cell_output").forEach((e) => e.remove());
                   return main.innerText; }"""
    )
    assert "**" not in prose, "Markdown left ** unparsed next to Chinese punctuation"
    if QUIZ.exists():
        first = json.loads(QUIZ.read_text(encoding="utf-8"))[0]
        right = next(a for a in first["answers"] if a.get("correct"))
        wrong = next(a for a in first["answers"] if not a.get("correct"))
        page.locator(".MCButton", has_text=wrong["answer"]).first.click()
        feedback = page.locator(".Quiz .Feedback").first
        assert wrong["feedback"] in feedback.inner_text()
        page.locator(".MCButton", has_text=right["answer"]).first.click()
        assert right["feedback"] in feedback.inner_text()
        assert "correct" in (feedback.get_attribute("class") or "").split()
    open_solution_1(page)  # the code cells, and so the solutions, are the English ones
    twin = page.locator(".lenet-twin a")
    assert twin.inner_text() == "English"
    screenshot(page, "book-zh-quiz-and-solution")
    twin.click()
    page.wait_for_load_state("load")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.url.endswith(f"/notebooks/{stem}.html")
    assert not blocked, f"the page asked the network for {blocked[:5]}"


def test_the_chinese_draw_page_speaks_chinese(browser: Any, built_book: Path) -> None:  # noqa: F811
    """The Chinese Draw and watch page mounts the pad with its Chinese words: every caption,
    the button and the centring switch, after a drawing is read; both tables have the same keys."""
    page, blocked = new_page(browser, "file://")
    page.goto((built_book / "zh" / "draw.html").as_uri())
    page.wait_for_function("window.LeNetPad && LeNetPad.instances.length === 1")
    text = page.evaluate("() => LeNetPad.TEXT")
    assert set(text["en"]) == set(text["zh"])
    assert all(CJK.search(words) for words in text["zh"].values())
    canvas = page.locator("canvas.draw")
    canvas.scroll_into_view_if_needed()
    draw(page, canvas, ONE)
    assert wait_for_top(page, "1") == "1"
    pad = page.locator(".lenet-pad")
    assert pad.locator("button.clear").inner_text() == text["zh"]["clear"]
    assert text["zh"]["centre"].strip() in pad.locator("label").inner_text()
    captions = pad.locator(".caption").all_inner_texts()
    shown = [caption for caption in captions if caption]  # the blank note is empty
    assert len(shown) == 9 and all(CJK.search(caption) for caption in shown), captions
    screenshot(page, "draw-zh")
    assert not blocked, f"the page asked the network for {blocked[:5]}"
