"""How long loading and preparing a whole data set takes (run on demand; results in RESULTS.md).

    python benchmarks/bench_data.py [--dataset fashion-mnist] [--repeats 5]

Times :func:`lenet_course.data.load_dataset` (both splits, page cache warm, plain IDX files and
their ``.gz`` twins) and :func:`lenet_course.data.prepare_images` on the training split, and
prints the best of ``--repeats`` runs of each.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch

from lenet_course.data import (
    DATASETS,
    InputSpec,
    load_dataset,
    normalization_for,
    prepare_images,
    raw_folder,
    read_idx,
)


def best_of(repeats: int, work: Callable[[], object]) -> float:
    """The shortest wall-clock time of ``repeats`` calls of ``work``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="fashion-mnist")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = load_dataset(args.dataset, "train")  # warms the page cache
    folder = raw_folder(args.dataset)
    spec = InputSpec()
    norm = normalization_for(spec, train.images)
    rows = {
        "load_dataset train + test": lambda: (
            load_dataset(args.dataset, "train"),
            load_dataset(args.dataset, "test"),
        ),
        "read_idx train images (.gz)": lambda: read_idx(folder / "train-images-idx3-ubyte.gz"),
        "normalization_for (train)": lambda: normalization_for(spec, train.images),
        "prepare_images (train, 28x28)": lambda: prepare_images(train.images, spec, norm),
        "prepare_images (train, 32x32 paper)": lambda: prepare_images(
            train.images, InputSpec(size=32, normalization="paper"), {"kind": "paper"}
        ),
    }
    print(f"{args.dataset}: {len(train.labels):,} training images; best of {args.repeats}")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread")
    for name, work in rows.items():
        print(f"  {name:<38} {best_of(args.repeats, work):8.3f} s")


if __name__ == "__main__":
    main()
