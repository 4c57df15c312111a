"""Draw and watch: how long after a stroke ends the page shows its last updated picture.

    python benchmarks/bench_draw.py [--strokes 40] [--html book/_build/html]

Opens the built book's draw.html from disk in headless Chromium (Debian's, as the browser tests
do; build the book first with `make book`), draws ``--strokes`` strokes with the mouse (digits on
the MNIST pad, then garments on the Fashion-MNIST one, clearing between drawings) and reads the
page's own measurements: for each stroke, ``performance.now()`` from its ``pointerup`` to the end
of the update it starts (preparing the 28 x 28 image, LeNet's forward pass in lenet.js, and
drawing the 28 x 28 image, the top 3 and all 52 pictures). Prints a Markdown table for
benchmarks/RESULTS.md; the goal is under 50 ms on the course's 2-core machine.
"""

import argparse
import math
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("LENET_COURSE_CHROMIUM", "/usr/bin/chromium"))
SIZE = 224  # pad.js's canvas


def strokes(count: int):
    """(data set, points) for each stroke: vertical bars, loops and zigzags of varied sizes."""
    for i in range(count):
        dataset = "mnist" if i < count // 2 else "fashion-mnist"
        r = 40 + 7 * (i % 6)
        if i % 3 == 0:
            points = [(112 + 3 * (i % 5), 30 + t) for t in range(0, 165, 8)]
        elif i % 3 == 1:
            angles = [2 * math.pi * k / 40 for k in range(41)]
            points = [(112 + r * math.sin(a), 112 - 1.5 * r * math.cos(a)) for a in angles]
        else:
            points = [(40 + 12 * k, 60 + (k % 2) * 90) for k in range(13)]
        yield dataset, points


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=40)
    parser.add_argument("--html", type=Path, default=REPO / "book" / "_build" / "html")
    args = parser.parse_args()
    page_path = args.html / "draw.html"
    if not page_path.is_file():
        raise SystemExit(f"{page_path} is missing: build the book first (make book)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(page_path.as_uri())
        page.wait_for_function("window.LeNetPad && LeNetPad.instances.length === 1")
        canvas = page.locator("canvas.draw")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        scale = box["width"] / SIZE
        for dataset, points in strokes(args.strokes):
            page.locator(".lenet-pad select.dataset").select_option(dataset)
            page.locator(".lenet-pad button.clear").click()
            x, y = points[0]
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
            page.mouse.down()
            for x, y in points[1:]:
                page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=2)
            page.mouse.up()
            time.sleep(0.05)
        latencies = page.evaluate("() => LeNetPad.instances[0].latencies")
        version = browser.version
        browser.close()
    ordered = sorted(latencies)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    load = os.getloadavg()[0]
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, cwd=REPO, capture_output=True, text=True).stdout.strip()
    print(f"- Machine: {cpu_name()}, {os.cpu_count()} cores; Chromium {version}, headless")
    print(f"- Commit {commit}; 1-minute load average after the run: {load:.2f}")
    print(f"- `python benchmarks/bench_draw.py --strokes {args.strokes}`\n")
    print("| strokes | median (ms) | 90th percentile (ms) | slowest (ms) | goal |")
    print("|---:|---:|---:|---:|---|")
    median = statistics.median(latencies)
    print(f"| {len(latencies)} | {median:.1f} | {p90:.1f} | {max(latencies):.1f} | under 50 ms |")


if __name__ == "__main__":
    main()
