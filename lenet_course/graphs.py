"""The CUDA-graph fast path of ``fit(cuda_graphs=True)``: the whole training step (the batch taken
from the permutation, forward, loss, backward, optimiser step) recorded once as a CUDA graph and
replayed for every batch: one launch per step instead of dozens.  ``run`` is ``train._Run``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lenet_course.data import epoch_permutation


class Graphed:
    """The fast path's CUDA graphs and the device tensors that they read and write."""

    def __init__(self, run: Any) -> None:
        lrs, device = [run.lr_at(step) for step in range(run.config.epochs * run.steps)], run.device
        self.order = torch.arange(len(run.y), device=device)  # the epoch's permutation
        self.step = torch.zeros(1, dtype=torch.long, device=device)  # each replay adds 1
        self.lrs = torch.tensor(lrs, device=device)  # every step's rate, copied into lr
        self.lr, self.losses = torch.zeros((), device=device), torch.zeros(run.steps, device=device)
        self.correct = torch.zeros(run.steps, dtype=torch.long, device=device)  # per step
        self.graphs: dict[int, Any] = {}  # batch size -> the graph of graph_step


def graph_step(run: Any, size: int) -> None:
    """The step a CUDA graph records: device tensors only, read at the step counter (no sync)."""
    g = run.graphed
    within = g.step % run.steps
    index = g.order[within * run.config.batch_size + torch.arange(size, device=run.device)]
    xb, yb = run.x[index], run.y[index]
    g.lr.copy_(g.lrs[g.step][0])
    with run.autocast():
        outputs = run.model(xb)
        loss = run.loss(outputs, yb)
    loss.backward()
    run.optimizer.step()
    g.losses.index_copy_(0, within, loss.detach().float().view(1))
    g.correct.index_copy_(0, within, (run.scores(outputs.detach()).argmax(1) == yb).sum().view(1))
    g.step += 1


def replay_epoch(run: Any, epoch: int, on_step: Callable[[], Any]) -> tuple[torch.Tensor, ...]:
    """:func:`train_epoch` on the fast path: a replay of the recorded step per batch."""
    g, n, batch = run.graphed, len(run.y), run.config.batch_size
    g.order.copy_(epoch_permutation(n, run.config.seed, epoch))
    g.step.fill_(epoch * run.steps)
    for step in range(run.steps):
        g.graphs[min(batch, n - step * batch)].replay()
        on_step()
    return g.losses, g.correct.sum()


def capture(run: Any) -> None:
    """Record the step as CUDA graphs (one per batch size: full, last) by PyTorch's recipe: warm up
    on a side stream, capture with the gradients set to None, the rate read from a tensor (fused
    SGD, capturable Adam).  The warm-up's changes to weights and optimiser are undone in place."""
    g, opt, n, batch = Graphed(run), run.optimizer, len(run.y), run.config.batch_size
    flag, plain = "fused" if run.config.optimizer == "sgd" else "capturable", opt.param_groups
    opt.param_groups = [{**group, "lr": g.lr, flag: True} for group in plain]  # while capturing
    for state in opt.state.values():  # a resumed Adam's step count is on the CPU
        state.update({k: v.to(run.device) for k, v in state.items()})
    weights = {k: v.clone() for k, v in run.model.state_dict().items()}
    saved = {(id(p), k): v.clone() for p, s in opt.state.items() for k, v in s.items()}
    sizes, run.graphed = dict.fromkeys((min(batch, n), n - (run.steps - 1) * batch)), g
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # cuDNN, cuBLAS and the optimiser state start outside a graph
        for size in [*sizes, *sizes]:
            g.step.zero_()
            graph_step(run, size)
    torch.cuda.current_stream().wait_stream(side)
    for size in sizes:
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(g.graphs.setdefault(size, torch.cuda.CUDAGraph())):
            graph_step(run, size)
    opt.param_groups = plain  # the graphs keep what they read; checkpoints get the plain settings
    run.model.load_state_dict(weights)  # in place: the graphs read these tensors
    for p, state in opt.state.items():  # zeros: the state of an optimiser that has not stepped
        for k, v in state.items():
            v.copy_(saved.get((id(p), k), torch.zeros_like(v)))
