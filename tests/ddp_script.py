"""A training script for torchrun, as a learner writes one: ``fit`` on 1,024 Fashion-MNIST images.

tests/test_distributed.py starts it with ``torchrun --nproc_per_node=2 tests/ddp_script.py OUT``.
``--kill-after E`` makes rank 1 kill itself (SIGKILL, as a crashed machine would) after epoch E on
torchrun's first attempt; ``LR_RANK<r>`` gives rank r another learning rate (a misconfigured rank).
Rank 0 writes OUT/done.json: the restarts torchrun made and the epoch the run resumed from."""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

from lenet_course import distributed
from lenet_course.checkpoint import load_checkpoint
from lenet_course.config import RECIPES
from lenet_course.data import load_dataset, random_subset
from lenet_course.models import build_model
from lenet_course.train import fit, seed_everything


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--kill-after", type=int, default=0)
    args = parser.parse_args()
    rank = distributed.rank()
    lr = float(os.environ.get(f"LR_RANK{rank}", "0.05"))
    config = RECIPES["modern"].replace(epochs=args.epochs, batch_size=64, lr=lr, progress=False)
    train = random_subset(load_dataset("fashion-mnist", "train"), 1024, seed=0)
    checkpoint = args.out / "checkpoint.pt"
    resumed_from = load_checkpoint(checkpoint)["epoch"] if checkpoint.is_file() else 0

    def crash(record: dict) -> None:
        if record["epoch"] == args.kill_after and rank == 1 and not distributed.restarted():
            os.kill(os.getpid(), signal.SIGKILL)

    seed_everything(config.seed)  # the same initial weights in every run
    fit(build_model("v1"), train, config, checkpoint=checkpoint, resume=resumed_from > 0,
        on_epoch_end=crash)
    if rank == 0:
        restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        done = {"restarts": restarts, "resumed_from": resumed_from}
        (args.out / "done.json").write_text(json.dumps(done))


if __name__ == "__main__":
    main()
