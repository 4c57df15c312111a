"""Data parallelism on one machine: training speed and all-reduce time, 1 process against N.

Run it as one process, or under torchrun for N; rank 0 appends one JSON line to --json:

    python benchmarks/bench_ddp.py --threads 2 --json ddp.jsonl
    torchrun --nproc_per_node=2 benchmarks/bench_ddp.py --threads 1 --json ddp.jsonl

The global batch is --batch (256) whatever N: each rank trains on batch / N examples a step, so
every run takes the same steps. Reported: examples per second over the last epoch (the first
warms up), the time of one global step, and the time of one all-reduce of all the gradients (what
DDP adds to every step; it overlaps part of it with the backward pass), measured on its own."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
import torch.distributed as dist

from lenet_course import distributed
from lenet_course.config import RECIPES
from lenet_course.data import load_dataset, random_subset
from lenet_course.models import build_model
from lenet_course.train import fit, seed_everything


def allreduce_ms(numel: int, device: torch.device, repeats: int = 200) -> float:
    """Milliseconds for one all-reduce of ``numel`` float32 values (0 for one process)."""
    if distributed.world_size() == 1:
        return 0.0
    flat = torch.zeros(numel, device=device)
    for _ in range(20):  # warm-up: connections and buffers
        dist.all_reduce(flat)
    distributed.barrier()
    start = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce(flat)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    parser.add_argument("--batch", type=int, default=256, help="global batch (all ranks)")
    parser.add_argument("--images", type=int, default=15_360, help="training images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--json", help="append the result as one JSON line to this file")
    args = parser.parse_args()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.batch % world:
        parser.error(f"--batch {args.batch} does not split into {world} equal parts")
    train = random_subset(load_dataset("fashion-mnist", "train"), args.images, seed=0)
    config = RECIPES["modern"].replace(epochs=args.epochs, batch_size=args.batch // world,
                                       threads=args.threads, device=args.device, progress=False)
    seed_everything(config.seed)
    model = build_model("v1", activation="relu", pooling="max")
    history = fit(model, train, config)
    device = next(model.parameters()).device
    rate = history.last["examples_per_second"]
    parameters = sum(p.numel() for p in model.parameters())
    result = {
        "processes": world, "threads": args.threads, "device": device.type,
        "global_batch": args.batch, "examples_per_second": round(rate),
        "step_ms": round(1000 * args.batch / rate, 2),
        "allreduce_ms": round(allreduce_ms(parameters, device), 3), "parameters": parameters,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
    }
    if distributed.rank() == 0:
        print(json.dumps(result))
        if args.json:
            with open(args.json, "a") as file:
                file.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
