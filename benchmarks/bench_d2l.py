"""d2l's ``train_ch6`` against ``lenet_course.train.fit``: the same LeNet, the same data, one run.

Both sides train d2l's own classic LeNet (``d2l.torch.LeNet``: sigmoid, average pooling, 28x28
input padded by 2) with Xavier-uniform weights, plain SGD at lr 0.9, batch 256, the same number
of epochs, and evaluate on the 10,000 test images after every epoch:

- d2l: ``d2l.load_data_fashion_mnist(256)`` (its own DataLoader with 4 worker processes,
  ``ToTensor()`` per image) and ``d2l.train_ch6`` (d2l 1.0.3, unmodified);
- ours: ``lenet_course.data.load_dataset`` and ``lenet_course.train.fit`` with the same pixel
  scaling as ``ToTensor()`` (x / 255: "standardize" with mean 0 and std 1).

Both use the GPU when there is one (``d2l.try_gpu()``; ``fit(device="auto")``), else the CPU.

The examples/s compared are wall clock over whole epochs: the time of the ``train_ch6`` call
(including its data loading, its workers' start-up and its test evaluation) and of the ``fit``
call (including moving the data to the device and normalising it, and its test evaluation).
d2l's own printed examples/sec times only the steps and leaves its data loading out; it is
shown too.  Reading the files into memory (``load``) is timed separately for both.

d2l's ``Animator`` redraws a matplotlib figure five times per epoch; it is replaced by a no-op
for the timed run, so d2l is not charged for plotting (this favours d2l).  The main process of
both sides uses ``--threads`` torch threads (default 1; d2l's loader workers keep their own
default).  Test accuracy is measured afterwards for both with the same function, outside the
timing.

Usage (offline: the data root is $LENET_COURSE_DATA or --root, read without downloading)::

    python benchmarks/bench_d2l.py --epochs 10
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from lenet_course.config import RECIPES
from lenet_course.data import data_root, idx_path, load_dataset
from lenet_course.train import available_cores, cpu_threads, evaluate, fit

#: ``ToTensor()`` scales pixels to x / 255 and nothing else: "standardize" with mean 0, std 1.
TO_TENSOR = {"kind": "standardize", "mean": 0.0, "std": 1.0}


def d2l_lenet(seed: int) -> torch.nn.Module:
    """d2l's LeNet with shapes (one forward through its lazy layers) and Xavier-uniform weights.

    ``train_ch6`` applies the same initialisation itself; ours is applied here.
    """
    import d2l.torch as d2l

    torch.manual_seed(seed)
    net = d2l.LeNet()
    net(torch.zeros(1, 1, 28, 28))  # lazy layers get their shapes

    def init_weights(m: torch.nn.Module) -> None:  # as in d2l.train_ch6
        if type(m) in (torch.nn.Linear, torch.nn.Conv2d):
            torch.nn.init.xavier_uniform_(m.weight)

    net.apply(init_weights)
    return net


@contextlib.contextmanager
def d2l_working_dir(root: Path) -> Iterator[None]:
    """Run the block where d2l's hard-coded data root ``"../data"`` is our ``root``.

    ``d2l.load_data_fashion_mnist`` reads ``../data`` relative to the working folder (in a
    notebook under ``notebooks/``, that is the repository's ``data/``).  Elsewhere we work in a
    temporary folder whose ``../data`` links to ``root``.  torchvision then finds the files and
    downloads nothing.
    """
    missing = [
        stem
        for stem in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
        if not (root / "FashionMNIST" / "raw" / stem).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"d2l's loader (torchvision) needs the uncompressed IDX files in "
            f"{root / 'FashionMNIST' / 'raw'}; missing {missing}. "
            "Run `python -m lenet_course data`."
        )
    previous = Path.cwd()
    if (previous.parent / "data").resolve() == root.resolve():
        yield
        return
    with tempfile.TemporaryDirectory(prefix="bench_d2l_") as temporary:
        (Path(temporary) / "data").symlink_to(root.resolve(), target_is_directory=True)
        (Path(temporary) / "work").mkdir()
        os.chdir(Path(temporary) / "work")
        try:
            yield
        finally:
            os.chdir(previous)


class _NoAnimator:
    """Stands in for ``d2l.Animator`` during the timed run: draws nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add(self, *args: Any, **kwargs: Any) -> None:
        pass


def run_d2l(epochs: int, *, root: Path, seed: int = 0, lr: float = 0.9, batch_size: int = 256,
            test: Any = None) -> dict[str, Any]:
    """Train d2l's LeNet with d2l's loader and ``train_ch6``; return timings and accuracy."""
    import d2l.torch as d2l

    start = time.perf_counter()
    with d2l_working_dir(root), warnings.catch_warnings():
        # "This DataLoader will create 4 worker processes ... suggested max number ... is 2":
        # d2l's default on a 2-core machine; we keep it, without the warning.
        warnings.filterwarnings("ignore", message=".*worker processes in total.*")
        train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size)
        load_seconds = time.perf_counter() - start
        net = d2l_lenet(seed)
        torch.manual_seed(seed)  # d2l's shuffle draws from the global generator
        output = io.StringIO()
        animator, d2l.Animator = d2l.Animator, _NoAnimator
        try:
            with contextlib.redirect_stdout(output):
                start = time.perf_counter()
                d2l.train_ch6(net, train_iter, test_iter, epochs, lr, d2l.try_gpu())
                train_seconds = time.perf_counter() - start
        finally:
            d2l.Animator = animator
    text = output.getvalue()
    reported = re.search(r"([\d.]+) examples/sec", text)
    n = len(train_iter.dataset)
    return {
        "name": "d2l train_ch6",
        "load_seconds": load_seconds,
        "train_seconds": train_seconds,
        "examples_per_second": epochs * n / train_seconds,
        "reported_examples_per_second": float(reported.group(1)) if reported else None,
        "test_accuracy": _test_accuracy(net, test, root),
        "output": text.strip(),
    }


def run_ours(epochs: int, *, root: Path, seed: int = 0, lr: float = 0.9, batch_size: int = 256,
             threads: int | None = 1, device: str = "auto") -> dict[str, Any]:
    """Train the same network with ``lenet_course.train.fit``; return timings and accuracy."""
    start = time.perf_counter()
    train = load_dataset("fashion-mnist", "train", root=root, download=False)
    test = load_dataset("fashion-mnist", "test", root=root, download=False)
    load_seconds = time.perf_counter() - start
    net = d2l_lenet(seed)
    start = time.perf_counter()
    config = RECIPES["classic"].replace(
        epochs=epochs, lr=lr, batch_size=batch_size, normalization=TO_TENSOR, device=device,
        seed=seed, threads=threads, progress=False,
    )
    history = fit(net, train, config, test=test)
    train_seconds = time.perf_counter() - start
    return {
        "name": "lenet_course fit",
        "load_seconds": load_seconds,
        "train_seconds": train_seconds,
        "examples_per_second": epochs * len(train.labels) / train_seconds,
        "reported_examples_per_second": history.examples_per_second,
        "test_accuracy": _test_accuracy(net, test, root),
        "history": history,
    }


def _test_accuracy(net: torch.nn.Module, test: Any, root: Path) -> float:
    """Test accuracy of a trained net, measured the same way for both sides (on the CPU)."""
    if test is None:
        test = load_dataset("fashion-mnist", "test", root=root, download=False)
    return evaluate(net.cpu(), test, TO_TENSOR, device="cpu")


def machine() -> str:
    """CPU model and core count (from /proc/cpuinfo where there is one)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def compare(epochs: int, *, root: Path, seed: int = 0, threads: int | None = 1,
            order: str = "d2l-first") -> list[dict[str, Any]]:
    """Run both sides one after the other in this process; return their results (d2l first).

    ``threads``: torch threads of both main processes; ``None`` gives each side its default
    (d2l: torch's, one per core; ours: ``lenet_course.train.cpu_threads``).
    """
    previous = torch.get_num_threads()
    d2l_threads = threads if threads is not None else available_cores()
    runs = {
        "d2l": lambda: run_d2l(epochs, root=root, seed=seed),
        "ours": lambda: run_ours(epochs, root=root, seed=seed, threads=threads),
    }
    names = ["d2l", "ours"] if order == "d2l-first" else ["ours", "d2l"]
    results = []
    try:
        for name in names:
            torch.set_num_threads(d2l_threads if name == "d2l" else previous)
            load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            result = runs[name]()
            result["load_average_before"] = load_before
            result["threads"] = d2l_threads if name == "d2l" else cpu_threads(threads) or previous
            results.append(result)
    finally:
        torch.set_num_threads(previous)
    return sorted(results, key=lambda r: r["name"])


def table(results: list[dict[str, Any]]) -> str:
    """A markdown table of the results, with the speed ratio."""
    d2l, ours = results
    lines = [
        "| trainer | threads | load (s) | train wall (s) | examples/s (wall) "
        "| own report (ex/s) | test accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        own = r["reported_examples_per_second"]
        lines.append(
            f"| {r['name']} | {r.get('threads') or '-'} | {r['load_seconds']:.2f} | "
            f"{r['train_seconds']:.1f} | "
            f"{r['examples_per_second']:,.0f} | {own:,.0f} | {r['test_accuracy']:.4f} |"
        )
    ratio = ours["examples_per_second"] / d2l["examples_per_second"]
    lines.append("")
    lines.append(f"speed-up (wall clock, whole epochs): {ratio:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", default="1",
        help="torch threads of both main processes, or 'default' for each side's own default "
        "(d2l: one per core; ours: lenet_course.train.cpu_threads) (default: 1)",
    )
    parser.add_argument("--order", choices=["d2l-first", "ours-first"], default="d2l-first")
    parser.add_argument("--root", help="data root (default: $LENET_COURSE_DATA, else data/)")
    args = parser.parse_args(argv)
    import d2l

    threads = None if args.threads == "default" else int(args.threads)
    root = data_root(args.root)
    if idx_path("fashion-mnist", "train-images-idx3-ubyte", root) is None:
        parser.error(f"no Fashion-MNIST under {root}; run `python -m lenet_course data`")
    print(
        f"machine: {machine()}; python {platform.python_version()}; torch {torch.__version__}; "
        f"d2l {d2l.__version__}; epochs {args.epochs}; threads {args.threads}; "
        f"order {args.order}"
    )
    results = compare(args.epochs, root=root, seed=args.seed, threads=threads,
                      order=args.order)
    print(table(results))
    for r in results:
        print(f"{r['name']}: {r['threads']} thread(s); load average before: "
              f"{r['load_average_before']:.2f}")
    print("d2l's own output:", " | ".join(results[0]["output"].splitlines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
