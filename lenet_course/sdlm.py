"""The optimiser of LeCun et al. (1998, Appendix C): stochastic diagonal Levenberg-Marquardt.

The update rule alone: each weight w_k moves by lr / (mu + h_kk) times its gradient, h_kk being
the curvature the model supplies. ``lenet1998.diagonal_hessian`` computes it for LeNet-5, and
``LeNet5_1998.configure_optimizer`` builds the paper's optimiser from the two."""

from collections.abc import Callable, Iterable

import torch

from lenet_course.paper import PAPER_MU, PAPER_SCHEDULE


class SDLM(torch.optim.Optimizer):
    """w_k -= lr / (mu + h_kk) * gradient; ``curvature()`` gives ``{parameter: h}`` before the
    first step and every ``refresh_every`` steps.  A step follows the mean loss of ``batch_size``
    examples (the paper's: one), so the gradient is scaled by ``batch_size``: one step moves as far
    as that many of the paper's."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        curvature: Callable[[], dict[torch.Tensor, torch.Tensor]],
        *,
        lr: float = PAPER_SCHEDULE[0][1],
        mu: float = PAPER_MU,
        batch_size: int = 1,
        refresh_every: int = 1,
    ) -> None:
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
        rates = []
        for group in self.param_groups:
            for p in group["params"]:
                if "h" in self.state[p]:
                    rates.append((group["lr"] / (self.state[p]["h"] + group["mu"])).flatten())
        return torch.cat(rates)
