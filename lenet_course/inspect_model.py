"""Look inside a trained LeNet: feature maps, learned filters, and where it goes wrong.

- :func:`feature_maps` records the output of any named submodule with forward hooks;
  :func:`stage_maps` gives the paper's C1, S2, C3 and S4 maps of any course model (and of any
  ``nn.Sequential``-style LeNet such as d2l's), and :func:`learned_filters` the kernels.
- :func:`evaluate_on` runs a model over a whole test set once; :func:`confusion_matrix`,
  :func:`per_class_accuracy`, :func:`most_confused_pairs` and :func:`most_confidently_wrong`
  read the result.  They are plain tensor functions, testable without a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: The feature-map layers of LeNet-5, named as in LeCun et al. (1998), Fig. 2.
STAGES: tuple[str, ...] = ("C1", "S2", "C3", "S4")

_ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SiLU)
_POOLINGS = (nn.AvgPool2d, nn.MaxPool2d)


# --- feature maps and filters -------------------------------------------------------------------


def layer_names(model: nn.Module) -> list[str]:
    """The names of every submodule of ``model``, in registration order (what hooks can see)."""
    return [name for name, _ in model.named_modules() if name]


def feature_maps(
    model: nn.Module, inputs: torch.Tensor, layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``inputs`` and return the outputs of the submodules named in ``layers``.

    A forward hook is a function PyTorch calls with a module's output each time the module runs;
    the hooks here copy that output and are removed again, even if the forward pass fails.  The
    model runs in eval mode without gradients.  Only modules can be hooked: an activation or
    pooling applied as a function inside ``forward`` (``F.relu``) has no name and no hook.
    """
    modules = dict(model.named_modules())
    unknown = [name for name in layers if name not in modules or not name]
    if unknown:
        raise ValueError(
            f"no layer named {unknown[0]!r} in {type(model).__name__}; its layers are "
            f"{layer_names(model)}"
        )
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            captured[name] = output.detach().clone()

        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    missing = [name for name in layers if name not in captured]
    if missing:
        raise ValueError(f"layer {missing[0]!r} did not run in {type(model).__name__}.forward")
    return {name: captured[name] for name in layers}


@dataclass(frozen=True)
class Stage:
    """Where a paper stage lives in a model: the hooked ``layer`` and what to apply after it."""

    layer: str
    then: Callable[[torch.Tensor], torch.Tensor] | None = None
    conv: str | None = None  #: the convolution whose kernels make this stage (C1, C3)


def _is_conv(module: nn.Module) -> bool:
    from lenet_course.models import PartialConv2d

    return isinstance(module, (nn.Conv2d, PartialConv2d))


def stages(model: nn.Module) -> dict[str, Stage]:
    """Where C1, S2, C3 and S4 are in ``model`` (see :func:`stage_maps`).

    ``LeNet5v1`` and ``LeNet5_1998`` apply their activations (and v1 its pooling) as functions,
    invisible to hooks: for them the hook catches the last module and the function is applied
    after it, as their ``forward`` does.  Other models must name their layers as modules, in the
    order convolution, activation, pooling (``LeNet5v2``, ``LeNet5v3``, "classic", d2l's LeNet).
    """
    from lenet_course.models import LeNet5_1998, LeNet5v1, squash

    if isinstance(model, LeNet5_1998):
        return {
            "C1": Stage("c1", squash, conv="c1"),
            "S2": Stage("s2", squash),
            "C3": Stage("c3", squash, conv="c3"),
            "S4": Stage("s4", squash),
        }
    if isinstance(model, LeNet5v1):
        act, pool = model.act, model.pool

        def pooled(x: torch.Tensor) -> torch.Tensor:
            return pool(act(x), kernel_size=2, stride=2)

        return {
            "C1": Stage("conv1", act, conv="conv1"),
            "S2": Stage("conv1", pooled),
            "C3": Stage("conv2", act, conv="conv2"),
            "S4": Stage("conv2", pooled),
        }
    leaves = [(name, m) for name, m in model.named_modules() if name and not list(m.children())]
    found: dict[str, Stage] = {}
    convs = [i for i, (_, m) in enumerate(leaves) if _is_conv(m)]
    for (c_name, s_name), i in zip((("C1", "S2"), ("C3", "S4")), convs, strict=False):
        after = leaves[i + 1 : i + 3]
        if (
            len(after) == 2
            and isinstance(after[0][1], _ACTIVATIONS)
            and isinstance(after[1][1], _POOLINGS)
        ):
            found[c_name] = Stage(after[0][0], conv=leaves[i][0])
            found[s_name] = Stage(after[1][0])
    if len(found) != len(STAGES):
        raise ValueError(
            f"cannot find C1, S2, C3, S4 in {type(model).__name__}: expected two blocks of "
            "convolution, activation and pooling modules. Pick layers yourself with "
            f"feature_maps(model, inputs, layers=[...]) from {layer_names(model)}"
        )
    return found


def stage_maps(
    model: nn.Module, inputs: torch.Tensor, names: Sequence[str] = STAGES
) -> dict[str, torch.Tensor]:
    """The feature maps C1, S2, C3, S4 (after the activation, as the paper draws them).

    ``inputs`` is a prepared batch (``data.prepare_images``); each map is N x maps x H x W.
    """
    where = stages(model)
    unknown = [name for name in names if name not in where]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r}; choose from {list(where)}")
    hooked = feature_maps(model, inputs, sorted({where[name].layer for name in names}))
    out = {}
    for name in names:
        stage = where[name]
        value = hooked[stage.layer]
        out[name] = stage.then(value) if stage.then is not None else value
    return out


def learned_filters(model: nn.Module, stage: str = "C1") -> torch.Tensor:
    """The kernels of the convolution that makes ``stage`` ("C1" or "C3"): out x in x k x k.

    For LeNet-5 (1998) C3, the kernels of connections absent from Table I are zeros.
    """
    where = stages(model)
    conv = where[stage].conv if stage in where else None
    if conv is None:
        convs = [name for name, s in where.items() if s.conv is not None]
        raise ValueError(f"stage {stage!r} has no kernels; choose one of {convs}")
    module = dict(model.named_modules())[conv]
    weight = module.dense_weight() if hasattr(module, "dense_weight") else module.weight
    return weight.detach().cpu().clone()


# --- where the model goes wrong -----------------------------------------------------------------


@dataclass
class Evaluation:
    """A model's answers on a labelled set: ``probabilities`` (N x K), ``labels`` (N)."""

    probabilities: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    @property
    def predictions(self) -> torch.Tensor:
        """The most likely class of each example (int64, N)."""
        return self.probabilities.argmax(dim=1)

    @property
    def accuracy(self) -> float:
        """The fraction of examples whose most likely class is the true one."""
        return float((self.predictions == self.labels).double().mean())

    @property
    def confusion(self) -> torch.Tensor:
        """The confusion matrix (rows: true class, columns: predicted class)."""
        return confusion_matrix(self.labels, self.predictions, len(self.classes))


def evaluate_on(
    model: nn.Module, data: Any, normalization: Mapping[str, Any], *, batch_size: int = 1000
) -> Evaluation:
    """Run ``model`` once over ``data`` (an ``ImageSet``) and keep the class probabilities."""
    from lenet_course.predict import class_probabilities

    probabilities = class_probabilities(model, data.images, normalization, batch_size=batch_size)
    return Evaluation(probabilities, data.labels.cpu(), tuple(data.classes))


def confusion_matrix(
    labels: torch.Tensor, predictions: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """K x K counts (int64): entry [t, p] is how many examples of class t were predicted as p."""
    labels, predictions = labels.cpu().long().flatten(), predictions.cpu().long().flatten()
    if labels.shape != predictions.shape:
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    for what, values in (("label", labels), ("prediction", predictions)):
        if len(values) and not (0 <= int(values.min()) and int(values.max()) < num_classes):
            bad = int(values.min()) if int(values.min()) < 0 else int(values.max())
            raise ValueError(f"{what} {bad} is not a class of 0..{num_classes - 1}")
    counts = torch.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    return counts.view(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """The fraction of each true class predicted correctly (float64; NaN for an absent class)."""
    totals = confusion.sum(dim=1).double()
    return confusion.diagonal().double() / totals


def most_confused_pairs(confusion: torch.Tensor, k: int = 5) -> list[tuple[int, int, int]]:
    """The ``k`` largest off-diagonal counts as (true class, predicted class, count), largest first.

    Ties are broken by class numbers, so the order is reproducible.
    """
    size = confusion.shape[0]
    pairs = [
        (int(confusion[t, p]), t, p)
        for t in range(size)
        for p in range(size)
        if t != p and int(confusion[t, p]) > 0
    ]
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [(t, p, count) for count, t, p in pairs[:k]]


def examples_of(
    labels: torch.Tensor, predictions: torch.Tensor, true: int, predicted: int, k: int = 8
) -> torch.Tensor:
    """Indices of the first ``k`` examples of class ``true`` predicted as ``predicted``."""
    where = torch.nonzero((labels.cpu() == true) & (predictions.cpu() == predicted)).flatten()
    return where[:k]


def most_confidently_wrong(
    probabilities: torch.Tensor, labels: torch.Tensor, k: int = 10
) -> torch.Tensor:
    """Indices of the ``k`` wrong predictions made with the highest probability, most sure first."""
    confidence, predictions = probabilities.max(dim=1)
    wrong = torch.nonzero(predictions != labels.to(predictions.device)).flatten()
    order = torch.argsort(confidence[wrong], descending=True, stable=True)
    return wrong[order][:k].cpu()
