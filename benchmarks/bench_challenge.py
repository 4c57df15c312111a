"""The accuracy challenge (notebook 10): from the classic recipe to the "challenge" recipe, one
ingredient at a time, each row trained on all 60,000 Fashion-MNIST training images with 3 seeds
and its test accuracy measured once, after the last epoch.

    python benchmarks/bench_challenge.py --jobs 2   # every (row, seed) not yet measured
    python benchmarks/bench_challenge.py --time     # seconds per epoch, each row alone
    python benchmarks/bench_challenge.py --table    # the Markdown table, and challenge.json

Each run appends one JSON line to --results (benchmarks/challenge_runs.jsonl), so an interrupted
benchmark continues where it stopped.  The test set is never used to choose anything: the choices
were made on a validation split (5,000 training images held out; see RESULTS.md), and during
training no test image is seen.  --table writes the summary that notebook 10 shows."""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

from lenet_course.config import RECIPES
from lenet_course.data import load_dataset, normalization_for
from lenet_course.models import build_model
from lenet_course.train import evaluate, fit, seed_everything

HERE = Path(__file__).resolve().parent
SEEDS = (0, 1, 2)
CHALLENGE = RECIPES["challenge"]
MODERN = RECIPES["modern"]


def classic_model() -> nn.Module:
    model = build_model("classic")
    for layer in model.modules():  # d2l's train_ch6 starts from Xavier-uniform weights
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
    return model


#: name -> (what the row adds, model, recipe).  "+ test-time flips" evaluates the models of
#: "+ 40 epochs" (the challenge recipe itself) with flips: it trains nothing of its own.
ROWS = {
    "classic": ("d2l's LeNet and recipe: sigmoid, average pooling, SGD lr 0.9, 10 epochs",
                classic_model, RECIPES["classic"]),
    "modern": ("ReLU, max pooling, Nesterov momentum, one-cycle, label smoothing, 12 epochs",
               lambda: build_model("v1", activation="relu", pooling="max"), MODERN),
    "+ batch norm": ("batch normalisation after every layer but the last (LeNet's widths)",
                     lambda: build_model("lenet-bn", widths=(6, 16, 120, 84)), MODERN),
    "+ widths": ("convolutions of 16 and 32 channels, linear layers of 56 and 48 units",
                 lambda: build_model("lenet-bn"), MODERN),
    "+ random crops": ("each training image shifted by up to 2 pixels each way",
                       lambda: build_model("lenet-bn"), MODERN.replace(crop=2)),
    "+ flips": ("each training image mirrored left-right with probability 1/2",
                lambda: build_model("lenet-bn"), MODERN.replace(crop=2, flip=True)),
    "+ 40 epochs": ("40 epochs instead of 12 (the challenge recipe)",
                    lambda: build_model("lenet-bn"), CHALLENGE),
}
FLIPPED = "+ test-time flips"
#: Outside the chain, to separate two of its steps: the longer training without augmentation.
ASIDES = {
    "40 epochs, no crops or flips": ("the \"+ widths\" step trained for 40 epochs",
                                     lambda: build_model("lenet-bn"), MODERN.replace(epochs=40)),
}


def run_one(row: str, seed: int, root: str | None) -> dict:
    """Train ``row`` with ``seed`` on all 60,000 training images; test once at the end."""
    _, make, recipe = {**ROWS, **ASIDES}[row]
    train = load_dataset("fashion-mnist", "train", root=root)
    test = load_dataset("fashion-mnist", "test", root=root)
    seed_everything(seed)
    model = make()
    config = recipe.replace(seed=seed, threads=1, progress=False)
    history = fit(model, train, config)  # no test or validation set: nothing is seen but train
    norm = normalization_for(model.input_spec, train.images)
    return {
        "row": row, "seed": seed, "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": config.epochs, "test_accuracy": evaluate(model, test, norm),
        "test_accuracy_flipped": evaluate(model, test, norm, flip=True),
        "seconds_per_epoch": statistics.mean(r["seconds"] for r in history.epochs),
        "train_accuracy": history.last["train_accuracy"], "threads": 1,
        "torch": torch.__version__, "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def measured(results: Path) -> list[dict]:
    lines = results.read_text().splitlines() if results.exists() else []
    return [json.loads(line) for line in lines]


def run_missing(args: argparse.Namespace) -> None:
    """Each (row, seed) not in --results, longest first, --jobs at a time (one thread each)."""
    done = {(r["row"], r["seed"]) for r in measured(args.results)}
    narrow = ("classic", "modern", "+ batch norm")  # an epoch of the wider rows costs about 3x
    cost = {row: recipe.epochs * (1 if row in narrow else 3) for row, (*_, recipe) in ROWS.items()}
    todo = sorted(((row, s) for row in ROWS for s in SEEDS if (row, s) not in done),
                  key=lambda job: -cost[job[0]])

    def launch(job: tuple[str, int]) -> None:
        command = [sys.executable, __file__, "--row", job[0], "--seed", str(job[1]),
                   "--results", str(args.results)] + (["--root", args.root] if args.root else [])
        subprocess.run(command, check=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(launch, todo))


def summary(results: Path, timings: Path) -> dict:
    """Per row: mean, smallest and largest test accuracy over the seeds, and seconds per epoch
    (``seconds_per_epoch``: measured alone, by --time; ``_shared``: during the 3-seed runs)."""
    runs, rows = measured(results), {}
    for row in [*ROWS, FLIPPED, *ASIDES]:
        source = "+ 40 epochs" if row == FLIPPED else row
        mine = sorted((r for r in runs if r["row"] == source), key=lambda r: r["seed"])
        if not mine:
            continue
        key = "test_accuracy_flipped" if row == FLIPPED else "test_accuracy"
        accuracies = [r[key] for r in mine]
        rows[row] = {
            "adds": {**ROWS, **ASIDES}[source][0] if row != FLIPPED else
                    "each test image and its mirror image",
            "parameters": mine[0]["parameters"], "epochs": mine[0]["epochs"],
            "seeds": [r["seed"] for r in mine], "test_accuracy": accuracies,
            "mean": statistics.mean(accuracies), "min": min(accuracies), "max": max(accuracies),
            "mean_with_test_time_flips": statistics.mean(r["test_accuracy_flipped"] for r in mine),
            "train_accuracy": statistics.mean(r["train_accuracy"] for r in mine),
            "seconds_per_epoch_shared": statistics.mean(r["seconds_per_epoch"] for r in mine),
        }
        alone = json.loads(timings.read_text())["seconds_per_epoch"] if timings.exists() else {}
        if source in alone:  # measured alone: the time a learner's machine takes
            rows[row]["seconds_per_epoch"] = alone[source]
    return rows


def time_rows(root: str | None, timings: Path) -> None:
    """Seconds per epoch of each row: the faster of two one-epoch runs on all 60,000 images with
    one thread, one after another. Run it on an otherwise idle machine (the 3-seed runs share the
    cores; the faster of two runs is the one less disturbed by anything else)."""
    train = load_dataset("fashion-mnist", "train", root=root)
    seconds: dict[str, float] = {}
    for repeat in range(2):
        for row, (_, make, recipe) in ROWS.items():
            seed_everything(0)
            history = fit(make(), train, recipe.replace(epochs=1, threads=1, progress=False))
            seconds[row] = min(seconds.get(row, math.inf), history.last["seconds"])
            print(f"{row}, run {repeat + 1}: {history.last['seconds']:.1f} s", flush=True)
    timings.write_text(json.dumps({"seconds_per_epoch": seconds, "threads": 1,
                                   "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1) + "\n")


def table(rows: dict) -> str:
    lines = ["| step | adds | parameters | epochs | seeds | test accuracy, mean (min-max) | "
             "s/epoch alone | s/epoch shared |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        alone = f"{r['seconds_per_epoch']:.1f}" if "seconds_per_epoch" in r else "-"
        spread = f"{r['mean']:.4f} ({r['min']:.4f}-{r['max']:.4f})"
        lines.append(f"| {name} | {r['adds']} | {r['parameters']:,} | {r['epochs']} | "
                     f"{len(r['seeds'])} | {spread} | {alone} | "
                     f"{r['seconds_per_epoch_shared']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--row", choices=sorted({**ROWS, **ASIDES}),
                        help="run this row once, with --seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    parser.add_argument("--root", help="data root (default: $LENET_COURSE_DATA, else data/)")
    parser.add_argument("--results", type=Path, default=HERE / "challenge_runs.jsonl")
    parser.add_argument("--time", action="store_true", help="time one epoch of each row alone")
    parser.add_argument("--timings", type=Path, default=HERE / "challenge_timings.json")
    parser.add_argument("--table", action="store_true", help="print the table; write --summary")
    parser.add_argument("--summary", type=Path, default=HERE / "challenge.json")
    args = parser.parse_args()
    if args.time:
        time_rows(args.root, args.timings)
    elif args.table:
        rows = summary(args.results, args.timings)
        chain = {name: row for name, row in rows.items() if name not in ASIDES}
        asides = {name: row for name, row in rows.items() if name in ASIDES}
        args.summary.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                            "rows": chain, "asides": asides}, indent=1) + "\n")
        print(table(rows))
    elif args.row:
        record = run_one(args.row, args.seed, args.root)
        with args.results.open("a") as out:  # one write per line: parallel runs do not mix
            out.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    else:
        run_missing(args)


if __name__ == "__main__":
    main()
