"""The optimiser of LeCun et al. (1998, Appendix C): stochastic diagonal Levenberg-Marquardt."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from lenet_course.lenet1998 import LeNet5_1998, PartialConv2d, Subsampling, squash, squash_slope
from lenet_course.paper import PAPER_HESSIAN_SAMPLES, PAPER_MU, PAPER_SCHEDULE

_LAYERS = ("c1", "s2", "c3", "s4", "c5", "f6")


def _backward(layer: nn.Module, x: torch.Tensor, h_a: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(h of weight, h of bias, h of input x) of ``layer`` from h_a = d2E/da^2 at its outputs a:
    back-propagation as for gradients, with the weights and x squared."""
    if isinstance(layer, nn.Linear):
        return h_a.t() @ (x * x), h_a.sum(0), h_a @ layer.weight.pow(2)
    if isinstance(layer, Subsampling):  # a = w * (sum of 2x2 inputs) + b
        sum_sq = F.avg_pool2d(x * x, kernel_size=2, stride=2, divisor_override=1)
        h_x = F.interpolate(h_a * layer.weight.view(1, -1, 1, 1) ** 2, scale_factor=2)  # nearest
        return (h_a * sum_sq).sum(dim=(0, 2, 3)), h_a.sum(dim=(0, 2, 3)), h_x
    dense = layer.dense_weight() if isinstance(layer, PartialConv2d) else layer.weight
    h_w = torch.nn.grad.conv2d_weight(x * x, dense.shape, h_a)
    if isinstance(layer, PartialConv2d):  # only the real kernels of C3 have a curvature
        h_w = h_w.flatten(0, 1).index_select(0, layer.connection_index)
    return h_w, h_a.sum(dim=(0, 2, 3)), torch.nn.grad.conv2d_input(x.shape, dense.pow(2), h_a)


@torch.no_grad()
def diagonal_hessian(model: LeNet5_1998, images: torch.Tensor,
                     output_curvature: float = 2.0) -> dict[str, torch.Tensor]:
    """Gauss-Newton h_kk = d2E/dw_k^2 (App. C) of each parameter by name, averaged over prepared
    ``images``: back-propagated like gradients, squaring weights and slopes f'(a)^2.  At F6,
    d2E/dx^2 = ``output_curvature`` (2: the correct class's penalty; no labels, no MAP term)."""
    if not isinstance(model, LeNet5_1998):
        raise TypeError(f"diagonal_hessian needs a LeNet5_1998; got {type(model).__name__}")
    inputs, pre = [], []  # every layer's input x and pre-activation a
    x = images
    for name in _LAYERS:
        inputs.append(x.flatten(1) if name == "f6" else x)
        pre.append(getattr(model, name)(inputs[-1]))
        x = squash(pre[-1])
    h: dict[str, torch.Tensor] = {}
    h_x = torch.full_like(pre[-1], output_curvature)  # d2E/dx^2 at F6's outputs
    for name, x, a in reversed(list(zip(_LAYERS, inputs, pre, strict=True))):
        h_a = squash_slope(a) ** 2 * h_x.view_as(a)
        h[f"{name}.weight"], h[f"{name}.bias"], h_x = _backward(getattr(model, name), x, h_a)
    return {name: h[name] / len(images) for name, _ in model.named_parameters()}


class SDLM(torch.optim.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt: w_k -= lr / (mu + h_kk) * gradient.  ``curvature()``
    gives ``{parameter: h}`` before the first step and every ``refresh_every`` steps.  A step
    follows the mean loss of ``batch_size`` examples (the paper's: one), so the gradient is scaled
    by ``batch_size``: one step moves as far as that many of the paper's."""

    def __init__(self, params: Iterable[torch.Tensor],
                 curvature: Callable[[], dict[torch.Tensor, torch.Tensor]], *,
                 lr: float = PAPER_SCHEDULE[0][1], mu: float = PAPER_MU, batch_size: int = 1,
                 refresh_every: int = 1) -> None:
        counts = {"batch_size": batch_size, "refresh_every": refresh_every}
        for name, value in {"lr": lr, "mu": mu, **counts}.items():
            if not value > 0 or (name in counts and not isinstance(value, int)):
                raise ValueError(f"{name}={value!r} must be positive (a whole number for a count)")
        super().__init__(params, {"lr": lr, "mu": mu})
        self.curvature, self.batch_size, self.refresh_every = curvature, batch_size, refresh_every
        self.steps = 0

    @torch.no_grad()
    def refresh(self) -> None:
        """Re-estimate h_kk for every parameter (the paper: before each pass)."""
        estimates = self.curvature()
        for group in self.param_groups:
            for p in group["params"]:
                if p not in estimates:
                    raise KeyError(f"curvature() gave no h for the parameter of {tuple(p.shape)}")
                self.state[p]["h"] = estimates[p].detach().to(p.device, p.dtype).clamp_min(0)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.steps % self.refresh_every == 0:
            self.refresh()
        self.steps += 1
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    step = group["lr"] * self.batch_size
                    p.addcdiv_(p.grad, self.state[p]["h"] + group["mu"], value=-step)
        return loss

    def effective_learning_rates(self) -> torch.Tensor:
        """All eps_k = lr / (mu + h_kk) of the current estimate, as one flat tensor."""
        return torch.cat([
            group["lr"] / (self.state[p]["h"] + group["mu"]).flatten()
            for group in self.param_groups for p in group["params"] if "h" in self.state[p]
        ])


def sdlm_for(model: LeNet5_1998, train_images: torch.Tensor, *, batch_size: int,
             steps_per_pass: int, samples: int = PAPER_HESSIAN_SAMPLES,
             lr: float = PAPER_SCHEDULE[0][1], mu: float = PAPER_MU, seed: int = 0) -> SDLM:
    """An :class:`SDLM` for ``model`` that re-estimates h once per pass on ``samples`` random
    images of ``train_images`` (prepared, on the model's device)."""
    n = len(train_images)
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} training images")
    if not 0 < samples <= n:
        raise ValueError(f"samples={samples!r}; expected 1..{n} training images")
    generator = torch.Generator().manual_seed(seed)
    by_name = dict(model.named_parameters())

    def curvature() -> dict[torch.Tensor, torch.Tensor]:
        pick = torch.randperm(n, generator=generator)[:samples].to(train_images.device)
        return {by_name[k]: h for k, h in diagonal_hessian(model, train_images[pick]).items()}

    return SDLM(model.parameters(), curvature, lr=lr, mu=mu, batch_size=batch_size,
                refresh_every=steps_per_pass)
