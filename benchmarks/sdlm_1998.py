"""The paper's whole training recipe for LeNet-5 (1998) on MNIST, from the command line.

LeCun, Bottou, Bengio and Haffner (1998), Section III-B: 20 passes through the 60,000 training
images, the global learning-rate schedule 0.0005 (2 passes), 0.0002 (3), 0.0001 (3), 0.00005 (4),
0.00001 (the rest), stochastic diagonal Levenberg-Marquardt with mu = 0.02 and the curvature
re-estimated on 500 images before each pass, one example at a time; the MAP loss, the 32 x 32
input with background -0.1 and ink 1.175.  The weights start from ``--init``:
``efficient-backprop`` (standard deviation 1/sqrt(F_i), LeCun et al., "Efficient BackProp",
1998; the default, from which SDLM trains) or ``paper`` (+/-2.4/F_i as Appendix A prints it,
from which it does not; notebook 08, section 4).

It prints one line per pass and, at the end, a markdown table for ``RESULTS.md``.  On one
2-core CPU thread a pass takes 2-3 minutes, so the 20 passes take about an hour.

    python benchmarks/sdlm_1998.py                      # the whole recipe
    python benchmarks/sdlm_1998.py --passes 2 --train-subset 2000
"""

from __future__ import annotations

import argparse
import platform
import sys

import torch

from lenet_course.config import RECIPES
from lenet_course.data import data_root, load_dataset, random_subset
from lenet_course.lenet1998 import INIT_BOUNDS, reinitialise_
from lenet_course.models import build_model
from lenet_course.paper import error_percent
from lenet_course.train import fit, seed_everything

RECIPE = RECIPES["sdlm-1998"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=RECIPE.epochs)
    parser.add_argument("--init", choices=sorted(INIT_BOUNDS), default="efficient-backprop")
    parser.add_argument("--batch-size", type=int, default=RECIPE.batch_size, help="1: the paper's")
    parser.add_argument("--train-subset", type=int, default=None, help="N training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default=None, help="data root (default: the course's rule)")
    args = parser.parse_args(argv)

    root = data_root(args.root)
    train = random_subset(
        load_dataset("mnist", "train", root=root, download=False), args.train_subset, args.seed
    )
    test = load_dataset("mnist", "test", root=root, download=False)
    seed_everything(args.seed)
    model = reinitialise_(build_model("lenet5-1998"), args.init)
    cpu = platform.processor() or platform.machine()
    print(f"LeNet5_1998, init {args.init}, {len(train.labels):,} training images, "
          f"batch {args.batch_size}, {args.passes} passes, torch {torch.__version__}, "
          f"{args.threads} thread(s), {cpu}", flush=True)

    def show(record: dict) -> None:
        print(f"pass {record['epoch']:2d}: eta {record['lr']:.0e}, MAP loss "
              f"{record['train_loss']:.4f}, test error "
              f"{error_percent(record['test_accuracy']):.2f}% ({record['seconds']:.0f} s)",
              flush=True)

    config = RECIPE.replace(epochs=args.passes, batch_size=args.batch_size, seed=args.seed,
                            threads=args.threads, device="cpu", progress=False)
    history = fit(model, train, config, test=test, on_epoch_end=show)
    print("\n| pass | eta | MAP loss | test error | seconds |\n|---:|---:|---:|---:|---:|")
    for r in history.epochs:
        print(f"| {r['epoch']} | {r['lr']:.0e} | {r['train_loss']:.4f} | "
              f"{error_percent(r['test_accuracy']):.2f}% | {r['seconds']:.0f} |")
    final = error_percent(history.last["test_accuracy"])
    print(f"\n{history.seconds / 60:.0f} minutes; final test error {final:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
