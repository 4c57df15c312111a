"""LeNet-5 as published by LeCun et al. (1998), piece by piece (notebook 08 builds its variants),
with the curvature of Appendix C that its optimiser, SDLM (sdlm.py), steps by."""

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lenet_course.data import InputSpec, check_input
from lenet_course.paper import C3_TABLE, PAPER_HESSIAN_SAMPLES, PAPER_MU, PAPER_SCHEDULE
from lenet_course.sdlm import SDLM

SQUASH_A, SQUASH_S = 1.7159, 2.0 / 3.0  #: f(a) = A tanh(S a), the squashing of Appendix A


def squash(a: torch.Tensor) -> torch.Tensor:
    """f(a) = 1.7159 tanh(2a/3): f(1) = 1 and f(-1) = -1, with its steepest gain near 0."""
    return SQUASH_A * torch.tanh(SQUASH_S * a)


def squash_slope(a: torch.Tensor) -> torch.Tensor:
    """f'(a) for f(a) = A tanh(S a)."""
    return SQUASH_A * SQUASH_S * (1 - torch.tanh(SQUASH_S * a) ** 2)


#: b of U(-b, b) for fan-in F_i (bias not counted): Appendix A, and "Efficient BackProp"'s std
INIT_BOUNDS: dict[str, Callable[[int], float]] = {
    "paper": lambda fan_in: 2.4 / fan_in,
    "efficient-backprop": lambda fan_in: math.sqrt(3.0 / fan_in),
}
_FAN_INS = {"c1": 25, "s2": 4, "s4": 4, "c5": 400, "f6": 120}  # C3's F_i depends on the map


@torch.no_grad()
def uniform_(tensors: Iterable, fan_in: int, bound: Callable = INIT_BOUNDS["paper"]) -> None:
    """Draw every tensor uniformly in +/-``bound(fan_in)`` (the paper's rule by default)."""
    for tensor in tensors:
        tensor.uniform_(-bound(fan_in), bound(fan_in))


class Subsampling(nn.Module):
    """S2/S4: each 2x2 sum (II-A's average up to a factor 4) times a coefficient plus a bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        uniform_(self.parameters(), 4)  # F_i: 2x2 inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = F.avg_pool2d(x, kernel_size=2, stride=2, divisor_override=1)  # sum of 2x2
        return total * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv2d(nn.Module):
    """C3: output map j convolves only the input maps ``table[j]`` (Table I: 60 5x5 kernels).  The
    kernels are scattered into a dense one, zeros elsewhere: gradients reach only real weights."""

    def __init__(self, table: Sequence[Sequence], in_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.table = tuple(tuple(row) for row in table)
        self.in_channels, self.out_channels = in_channels, len(self.table)
        self.kernel_size = kernel_size
        for j, row in enumerate(self.table):
            if not row or len(set(row)) != len(row) or not set(row) <= set(range(in_channels)):
                raise ValueError(f"table row {j}={row!r}; use distinct maps 0..{in_channels - 1}")
        index = [j * in_channels + i for j, row in enumerate(self.table) for i in row]
        self.register_buffer("connection_index", torch.tensor(index), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(index), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(self.out_channels))
        for j, kernels, fan_in in self.maps():
            uniform_((self.weight[kernels], self.bias[j : j + 1]), fan_in)

    def maps(self) -> Iterator[tuple[int, slice, int]]:
        """For each output map j: (j, the slice of ``weight`` holding its kernels, its fan-in)."""
        start = 0
        for j, row in enumerate(self.table):
            yield j, slice(start, start + len(row)), len(row) * self.kernel_size**2
            start += len(row)

    def dense_weight(self) -> torch.Tensor:
        """The out x in x k x k kernel, with zeros where the table has no connection."""
        k = self.kernel_size
        dense = self.weight.new_zeros(self.out_channels, self.in_channels, k, k)
        return dense.flatten(0, 1).index_copy(0, self.connection_index, self.weight).view_as(dense)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)

    def extra_repr(self) -> str:
        k, n = self.kernel_size, len(self.connection_index)
        return f"{self.in_channels}, {self.out_channels}, kernel_size=({k}, {k}), connections={n}"


#: The ten digits as 7x12 bitmaps ('#' = ink), side by side; drawn for this course after the
#: paper's Fig. 3.  They give the output units' fixed +1/-1 prototypes (7 x 12 = 84 = F6's size).
_DIGITS = """
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
..###.. ...#... ..###.. .#####. ....#.. ####### ..####. ####### .#####. .#####.
.#...#. ..##... .#...#. #.....# ...##.. #...... .#..... ......# #.....# #.....#
#.....# .#.#... #.....# ......# ..#.#.. #...... #...... .....#. #.....# #.....#
#.....# ...#... ......# ......# .#..#.. ######. #...... ....#.. #.....# #.....#
#.....# ...#... .....#. ..####. #...#.. ......# ######. ...#... .#####. #.....#
#.....# ...#... ....#.. ......# ####### ......# #.....# ...#... #.....# .######
#.....# ...#... ...#... ......# ....#.. ......# #.....# ..#.... #.....# ......#
#.....# ...#... ..#.... ......# ....#.. ......# #.....# ..#.... #.....# ......#
.#...#. ...#... .#..... #.....# ....#.. #.....# #.....# ..#.... #.....# .....#.
..###.. .#####. ####### .#####. ....#.. .#####. .#####. ..#.... .#####. .####..
....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""
DIGIT_BITMAPS = tuple(zip(*(row.split() for row in _DIGITS.strip().splitlines()), strict=True))


def digit_prototypes(bitmaps: tuple[tuple[str, ...], ...] = DIGIT_BITMAPS) -> torch.Tensor:
    """The 10 x 84 matrix of +1 (ink) / -1 (background) prototypes, read row by row from bitmaps."""
    rows = []
    for digit, bitmap in enumerate(bitmaps):
        if len(bitmap) != 12 or any(len(line) != 7 or set(line) - {"#", "."} for line in bitmap):
            raise ValueError(f"bitmap of {digit} must be 12 lines of 7 characters '#' or '.'")
        rows.append([1.0 if ch == "#" else -1.0 for line in bitmap for ch in line])
    return torch.tensor(rows)


class EuclideanRBF(nn.Module):
    """y_i = sum_j (x_j - w_ij)^2, the squared distance to prototype i (a buffer: kept fixed)."""

    def __init__(self, prototypes: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("prototypes", prototypes.clone())
        self.out_features = prototypes.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(1) - self.prototypes.unsqueeze(0)).pow(2).sum(dim=2)

    def extra_repr(self) -> str:
        return f"in_features={self.prototypes.shape[1]}, out_features={self.out_features}"


MAP_J = 10.0  #: the constant j of the MAP loss; the paper does not give its value


def map_loss(outputs: torch.Tensor, targets: torch.Tensor, j: float = MAP_J) -> torch.Tensor:
    """The paper's MAP criterion (Section II-C), E = mean_p [y_{D_p} + log(exp(-j) + sum_i
    exp(-y_i))]: the correct penalty goes down, the others up until they pass j ("rubbish")."""
    correct = outputs.gather(1, targets.view(-1, 1)).squeeze(1)
    rubbish = outputs.new_full((outputs.shape[0], 1), j)
    return (correct + torch.logsumexp(-torch.cat([rubbish, outputs], dim=1), dim=1)).mean()


class LeNet5_1998(nn.Module):  # noqa: N801 (the year is part of the name)
    """LeNet-5 as published (Section II), weights drawn as Appendix A prints (60,000 parameters).
    Not the paper's: the digit prototypes (its were stylised ASCII) and j."""

    def __init__(self, j: float = MAP_J) -> None:
        super().__init__()
        if not (isinstance(j, (int, float)) and math.isfinite(j) and j > 0):
            raise ValueError(f"j={j!r} must be a positive, finite number (the MAP loss constant)")
        self.j = float(j)
        self.config: dict[str, Any] = {"name": "lenet5-1998", "j": self.j}
        self.input_spec = InputSpec(channels=1, size=32, normalization="paper")
        self.c1 = nn.Conv2d(1, 6, kernel_size=5)  # 32x32 -> 6@28x28
        self.s2 = Subsampling(6)  # -> 6@14x14
        self.c3 = PartialConv2d(C3_TABLE, in_channels=6)  # -> 16@10x10
        self.s4 = Subsampling(16)  # -> 16@5x5
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)  # -> 120@1x1
        self.f6 = nn.Linear(120, 84)
        self.output = EuclideanRBF(digit_prototypes())
        for name in ("c1", "c5", "f6"):  # redraw PyTorch's default by the paper's rule
            uniform_(getattr(self, name).parameters(), _FAN_INS[name])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 84 F6 states, the point that the RBF units compare with their prototypes."""
        check_input(x, self.input_spec, type(self).__name__)
        x = squash(self.s2(squash(self.c1(x))))
        x = squash(self.s4(squash(self.c3(x))))
        return squash(self.f6(squash(self.c5(x)).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The penalties y_i, one per class: squared distances of F6's state to the prototypes."""
        return self.output(self.features(x))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The MAP criterion, :func:`map_loss`, with this network's j."""
        return map_loss(outputs, targets, self.j)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Higher = more likely: the negated penalties."""
        return -outputs

    def configure_optimizer(
        self, config: Any, train_images: torch.Tensor, steps_per_pass: int
    ) -> SDLM | None:
        """SDLM, the paper's optimiser, when ``config.optimizer == "sdlm"``, its curvature estimated
        on 500 training images before each pass; else None (the trainer builds the config's)."""
        if config.optimizer != "sdlm":
            return None
        samples = min(PAPER_HESSIAN_SAMPLES, len(train_images))
        return sdlm_for(
            self,
            train_images,
            batch_size=config.batch_size,
            steps_per_pass=steps_per_pass,
            lr=config.lr,
            seed=config.seed,
            samples=samples,
        )


def fan_ins(model: LeNet5_1998) -> dict[str, list[tuple[slice, int]]]:
    """For every parameter of ``model``: (slice of its first dimension, fan-in F_i) pairs."""
    if not isinstance(model, LeNet5_1998):
        raise TypeError(f"fan_ins follows the layers of LeNet5_1998; got {type(model).__name__}")
    fans = {}
    for layer, fan in _FAN_INS.items():
        for kind in ("weight", "bias"):
            fans[f"{layer}.{kind}"] = [(slice(None), fan)]
    fans["c3.weight"] = [(kernels, fan) for _, kernels, fan in model.c3.maps()]
    fans["c3.bias"] = [(slice(j, j + 1), fan) for j, _, fan in model.c3.maps()]
    return fans


@torch.no_grad()
def reinitialise_(
    model: LeNet5_1998, rule: str = "paper", generator: torch.Generator | None = None
) -> LeNet5_1998:
    """Redraw every parameter of ``model`` uniformly in +/-``INIT_BOUNDS[rule](F_i)``; return it."""
    if rule not in INIT_BOUNDS:
        raise ValueError(f"rule={rule!r} is unknown; use one of {tuple(INIT_BOUNDS)}")
    for name, pieces in fan_ins(model).items():
        for part, fan_in in pieces:
            bound = INIT_BOUNDS[rule](fan_in)
            model.get_parameter(name)[part].uniform_(-bound, bound, generator=generator)
    return model


# --- the curvature of Appendix C, and the paper's optimiser built from it -------------------------

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
def diagonal_hessian(
    model: LeNet5_1998, images: torch.Tensor, output_curvature: float = 2.0
) -> dict[str, torch.Tensor]:
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


def sdlm_for(
    model: LeNet5_1998,
    train_images: torch.Tensor,
    *,
    batch_size: int,
    steps_per_pass: int,
    samples: int = PAPER_HESSIAN_SAMPLES,
    lr: float = PAPER_SCHEDULE[0][1],
    mu: float = PAPER_MU,
    seed: int = 0,
) -> SDLM:
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

    params = model.parameters()
    return SDLM(
        params, curvature, lr=lr, mu=mu, batch_size=batch_size, refresh_every=steps_per_pass
    )
