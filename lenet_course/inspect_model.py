"""Look inside a trained LeNet: its feature maps and filters, by forward hooks."""

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lenet_course.arguments import choose
from lenet_course.lenet1998 import LeNet5_1998, PartialConv2d, squash
from lenet_course.models import LeNet5v1, eval_mode

STAGES: tuple[str, ...] = ("C1", "S2", "C3", "S4")  #: LeNet-5's feature maps (LeCun 1998, Fig. 2)
# The modules that make a stage in a model of any other class: conv, then activation and pooling.
_CONVS = (nn.Conv2d, PartialConv2d)
_ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SiLU)
_POOLINGS = (nn.AvgPool2d, nn.MaxPool2d)


def feature_maps(model: nn.Module, inputs: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """Outputs of the submodules ``layers`` on ``inputs`` in eval mode (hooks see no ``F.relu``)."""
    named = {name: module for name, module in model.named_modules() if name}
    owner = type(model).__name__
    # every name is checked before the first hook goes in
    modules = {name: choose(named, name, f"no layer named {name!r} in {owner}") for name in layers}
    captured: dict[str, Tensor] = {}

    def keep(name: str, module: nn.Module, args: tuple, output: Tensor) -> None:
        captured[name] = output.detach().clone()

    with ExitStack() as hooks, eval_mode(model), torch.no_grad():  # the hooks go when it ends
        for name, module in modules.items():
            hooks.enter_context(module.register_forward_hook(partial(keep, name)))
        model(inputs)
    missing = [name for name in layers if name not in captured]
    assert not missing, f"layer {missing[0]!r} did not run in {owner}.forward"
    return {name: captured[name] for name in layers}


class Stage(NamedTuple):
    """Where a paper stage lives in a model: the hooked ``layer`` and what to apply after it."""

    layer: str
    then: Callable[[Tensor], Tensor] | None = None
    conv: str | None = None  #: the convolution whose kernels make this stage (C1, C3)


def stages(model: nn.Module) -> dict[str, Stage]:
    """Where C1, S2, C3, S4 are in ``model``: the module to hook, what ``forward`` applies after."""
    if isinstance(model, LeNet5_1998):
        return {
            "C1": Stage("c1", squash, conv="c1"),
            "S2": Stage("s2", squash),
            "C3": Stage("c3", squash, conv="c3"),
            "S4": Stage("s4", squash),
        }
    if isinstance(model, LeNet5v1):
        # forward applies the activation and pooling as functions, which no hook sees
        def act_and_pool(x: Tensor) -> Tensor:
            return model.pool(model.act(x), kernel_size=2, stride=2)

        return {
            "C1": Stage("conv1", model.act, conv="conv1"),
            "S2": Stage("conv1", act_and_pool),
            "C3": Stage("conv2", model.act, conv="conv2"),
            "S4": Stage("conv2", act_and_pool),
        }
    # Any other model: the first two convolutions, each if an activation and a pooling follow it
    leaves = [(name, m) for name, m in model.named_modules() if name and not list(m.children())]
    leaves += [("", None), ("", None)]
    convs = [i for i, (_, m) in enumerate(leaves) if isinstance(m, _CONVS)]
    found: dict[str, Stage] = {}
    for (c_name, s_name), i in zip((("C1", "S2"), ("C3", "S4")), convs, strict=False):
        (conv, _), (act, act_module), (pool, pool_module) = leaves[i : i + 3]
        if isinstance(act_module, _ACTIVATIONS) and isinstance(pool_module, _POOLINGS):
            found[c_name], found[s_name] = Stage(act, conv=conv), Stage(pool)
    if len(found) != len(STAGES):
        layers = [name for name, _ in model.named_modules() if name]
        blocks = "no two blocks of convolution, activation, pooling"
        where = f"cannot find C1, S2, C3, S4 in {type(model).__name__} ({blocks})"
        raise ValueError(f"{where}; pick layers for feature_maps from {layers}")
    return found


def stage_maps(model: nn.Module, inputs: Tensor, names=STAGES) -> dict[str, Tensor]:
    """The maps C1, S2, C3, S4 (N x maps x H x W, after the activation) of prepared ``inputs``."""
    where = stages(model)
    chosen = {name: choose(where, name, f"unknown stage {name!r}") for name in names}
    hooked = feature_maps(model, inputs, sorted({stage.layer for stage in chosen.values()}))
    maps = {}
    for name, (layer, then, _) in chosen.items():
        maps[name] = hooked[layer] if then is None else then(hooked[layer])
    return maps


def learned_filters(model: nn.Module, stage: str = "C1") -> Tensor:
    """The kernels making ``stage`` ("C1" or "C3"): out x in x k x k (0 where C3 has no link)."""
    convs = {name: s.conv for name, s in stages(model).items() if s.conv is not None}
    module = model.get_submodule(choose(convs, stage, f"stage {stage!r} has no kernels"))
    weight = module.dense_weight() if isinstance(module, PartialConv2d) else module.weight
    return weight.detach().cpu().clone()
