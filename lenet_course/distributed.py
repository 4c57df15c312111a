"""Where training runs: one device, or several processes with PyTorch's DistributedDataParallel.

``torchrun --nproc_per_node=N -m lenet_course train ...`` starts N copies of the program (ranks)
and tells each its RANK, LOCAL_RANK and WORLD_SIZE; ``train.fit`` trains one model across all N:
each rank holds a replica of the model and the whole data set, trains on its own part of every
global batch (``batch_size`` examples a rank), and DDP averages the gradients during ``backward``,
so every replica takes the same step.  gloo carries the messages between CPUs, NCCL between GPUs.
Without torchrun these functions are no-ops."""

import atexit
import datetime
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from lenet_course import config

#: How long a rank waits for the others at any one exchange before failing (not hanging);
#: LENET_COURSE_DDP_TIMEOUT (seconds) changes it.
TIMEOUT = datetime.timedelta(seconds=120)


def rank() -> int:
    """This process's number, 0 to world size - 1 (0 without torchrun): rank 0 writes files."""
    return dist.get_rank() if dist.is_initialized() else config.env_number("RANK", 0)


def world_size() -> int:
    """How many processes train together (1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def restarted() -> bool:
    """Whether torchrun restarted this group after a failure (``--max-restarts``)."""
    return config.env_number("TORCHELASTIC_RESTART_COUNT", 0) > 0


def start(device: torch.device) -> torch.device:
    """Join the group that torchrun describes, once (gloo on CPUs, NCCL on GPUs), and return this
    rank's device: on CUDA, the GPU numbered LOCAL_RANK."""
    if not config.launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", config.env_number("LOCAL_RANK", 0))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        seconds = config.env_number("LENET_COURSE_DDP_TIMEOUT", 120, float, low=1)
        timeout = datetime.timedelta(seconds=seconds)
        try:
            store, rank_, size = next(dist.rendezvous("env://", timeout=timeout))  # torchrun's
        except dist.DistStoreError as error:  # the other ranks never came
            raise ValueError(config.missing_ranks(seconds)) from error
        # each attempt its own keys: the store holds those of a failed attempt (torch#135712)
        attempt = config.env_number("TORCHELASTIC_RESTART_COUNT", 0)
        store = dist.PrefixStore(f"lenet_course/attempt{attempt}", store)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=store, rank=rank_, world_size=size, timeout=timeout)
        atexit.register(dist.destroy_process_group)
    return device


def check_same(settings: dict[str, Any]) -> None:
    """Refuse, on every rank, to train with settings that differ between ranks: each would
    otherwise wait for the others' gradients of another model, or train another run."""
    if world_size() == 1:
        return
    everyone: list[Any] = [None] * world_size()
    dist.all_gather_object(everyone, settings)
    for other, theirs in enumerate(everyone):
        differ = sorted(k for k in {*settings, *theirs} if settings.get(k) != theirs.get(k))
        if differ:
            key = differ[0]
            raise ValueError(
                f"the {world_size()} processes were given different settings: rank {rank()} has "
                f"{key}={settings.get(key)!r}, rank {other} has {key}={theirs.get(key)!r} (all "
                f"that differ: {', '.join(differ)}); start every rank with the same command"
            )


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` as DDP runs it: rank 0's weights copied to every replica now, and the gradients
    averaged across ranks in every ``backward``."""
    if world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's part of a global batch (of example indices): equal parts in rank order."""
    return batch.tensor_split(world_size())[rank()] if world_size() > 1 else batch


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over the ranks, in place (one message for the whole tensor)."""
    if world_size() > 1:
        dist.all_reduce(values)
    return values


def barrier() -> None:
    """Wait until every rank is here."""
    if world_size() > 1:
        dist.barrier()
