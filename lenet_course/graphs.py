"""The CUDA-graph fast path of ``fit(cuda_graphs=True)``: the training step, recorded once as a
CUDA graph and replayed for every batch, so each step is one launch instead of dozens.

A graph replays fixed kernels on fixed memory, so everything a step reads must already sit in
device tensors that the graph recorded: the epoch's order, a step counter, every step's learning
rate.  The step itself is the trainer's (``train.train_step``), passed in as ``step``."""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lenet_course.data import epoch_permutation

Step = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class GraphedSteps:
    """The training set's steps as CUDA graphs (one per batch size: full, and a shorter last),
    with the device tensors they read and write."""

    def __init__(
        self, step: Step, x: Tensor, y: Tensor, batch_size: int, steps: int, seed: int, lrs: list
    ) -> None:
        self.step, self.x, self.y, self.batch_size, self.seed = step, x, y, batch_size, seed
        self.steps = steps  # as the plain loop takes them (Batches.steps: maybe no last one)
        device = y.device
        self.order = torch.arange(len(y), device=device)  # the epoch's permutation
        # a one-element tensor, so that indexing with it stays on the device; each replay adds 1
        self.counter = torch.zeros(1, dtype=torch.long, device=device)
        self.lrs = torch.tensor(lrs, device=device)  # every step's rate, copied into lr
        self.lr = torch.zeros((), device=device)  # what the optimiser reads
        # per step, overwritten by the next epoch's replays
        self.losses = torch.zeros(self.steps, device=device)
        self.correct = torch.zeros(self.steps, dtype=torch.long, device=device)
        self.graphs: dict[int, Any] = {}  # batch size -> its graph

    def recorded_step(self, size: int) -> None:
        """What a graph records: the batch at the step counter, its rate, the step, its results
        written by index.  Device tensors only, so nothing waits for the host."""
        within = self.counter % self.steps
        index = self.order[within * self.batch_size + torch.arange(size, device=self.y.device)]
        self.lr.copy_(self.lrs[self.counter][0])
        loss, correct = self.step(self.x[index], self.y[index])
        self.losses.index_copy_(0, within, loss.float().view(1))
        self.correct.index_copy_(0, within, correct.view(1))
        self.counter += 1

    def epoch(self, epoch: int, on_step: Callable[[], Any]) -> tuple[Tensor, Tensor]:
        """``train.train_epoch`` as replays: returns (loss per step, correct count)."""
        n = len(self.y)
        self.order.copy_(epoch_permutation(n, self.seed, epoch))
        self.counter.fill_(epoch * self.steps)
        for step in range(self.steps):
            self.graphs[min(self.batch_size, n - step * self.batch_size)].replay()
            on_step()
        return self.losses, self.correct.sum()

    def capture(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Record the step by PyTorch's recipe: warm up on a side stream, then capture with the
        gradients set to None and the rate read from a tensor (fused SGD, capturable Adam).  The
        warm-up's changes to the weights and the optimiser are undone in place."""
        flag = "fused" if isinstance(optimizer, torch.optim.SGD) else "capturable"
        plain = optimizer.param_groups
        optimizer.param_groups = [{**group, "lr": self.lr, flag: True} for group in plain]
        for state in optimizer.state.values():  # a resumed Adam's step count is on the CPU
            state.update({k: v.to(self.y.device) for k, v in state.items()})
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        saved = {(id(p), k): v.clone() for p, s in optimizer.state.items() for k, v in s.items()}
        n = len(self.y)
        last = min(self.batch_size, n - (self.steps - 1) * self.batch_size)
        sizes = dict.fromkeys((min(self.batch_size, n), last))  # an ordered set: full, last
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        # twice each: the first creates the optimiser's state, the second steps with it
        with torch.cuda.stream(side):  # cuDNN, cuBLAS and the optimiser state start outside
            for size in [*sizes, *sizes]:
                self.counter.zero_()
                self.recorded_step(size)
        torch.cuda.current_stream().wait_stream(side)
        for size in sizes:
            optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graphs.setdefault(size, torch.cuda.CUDAGraph())):
                self.recorded_step(size)
        # the graphs keep what they read; checkpoints get the plain settings
        optimizer.param_groups = plain
        model.load_state_dict(weights)  # in place: the graphs read these tensors
        for p, state in optimizer.state.items():  # zeros: an optimiser that has not stepped
            for k, v in state.items():
                v.copy_(saved.get((id(p), k), torch.zeros_like(v)))
