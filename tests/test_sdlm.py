"""Tests of ``lenet_course.sdlm``: the diagonal Hessian, the SDLM optimiser, and the paper's
recipe run through ``train.fit``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lenet_course.lenet1998 import (
    SQUASH_A,
    SQUASH_S,
    LeNet5_1998,
    diagonal_hessian,
    reinitialise_,
    sdlm_for,
    squash,
)
from lenet_course.models import build_model
from lenet_course.paper import error_percent, paper_learning_rate
from lenet_course.sdlm import SDLM

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # 2-core machines shared by several test runs
    yield
    torch.set_num_threads(previous)


# --- the diagonal Hessian and the optimiser ---------------------------------------------------


def _slope_squared(a: torch.Tensor) -> torch.Tensor:
    return (SQUASH_A * SQUASH_S * (1 - torch.tanh(SQUASH_S * a) ** 2)) ** 2


def _reference_hessian(model: LeNet5_1998, x: torch.Tensor, curvature: float = 2.0) -> dict:
    """The same Gauss-Newton recursion, by autograd through a "squared" copy of the network.

    Forward values are the squared inputs of each layer; gradients flow back through squared
    weights and squared slopes (the ``t - t.detach()`` terms add 0 forward but carry gradients).
    """
    m = model
    with torch.no_grad():
        a1 = m.c1(x)
        x1 = SQUASH_A * torch.tanh(SQUASH_S * a1)
        a2 = m.s2(x1)
        x2 = SQUASH_A * torch.tanh(SQUASH_S * a2)
        a3 = m.c3(x2)
        x3 = SQUASH_A * torch.tanh(SQUASH_S * a3)
        a4 = m.s4(x3)
        x4 = SQUASH_A * torch.tanh(SQUASH_S * a4)
        a5 = m.c5(x4)
        x5 = SQUASH_A * torch.tanh(SQUASH_S * a5)
        a6 = m.f6(x5.flatten(1))
    v = {n: p.detach().pow(2).requires_grad_(True) for n, p in m.named_parameters()}

    def chain(value: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return value + (t - t.detach())

    def sub(inp: torch.Tensor, name: str) -> torch.Tensor:
        total = F.avg_pool2d(inp, 2, 2, divisor_override=1)
        return total * v[f"{name}.weight"].view(1, -1, 1, 1) + v[f"{name}.bias"].view(1, -1, 1, 1)

    s1 = F.conv2d(x * x, v["c1.weight"], v["c1.bias"])
    s2 = sub(chain(x1 * x1, _slope_squared(a1) * s1), "s2")
    dense = torch.zeros(16 * 6, 5, 5).index_copy(0, m.c3.connection_index, v["c3.weight"])
    s3 = F.conv2d(chain(x2 * x2, _slope_squared(a2) * s2), dense.view(16, 6, 5, 5), v["c3.bias"])
    s4 = sub(chain(x3 * x3, _slope_squared(a3) * s3), "s4")
    s5 = F.conv2d(chain(x4 * x4, _slope_squared(a4) * s4), v["c5.weight"], v["c5.bias"])
    inp6 = chain(x5 * x5, _slope_squared(a5) * s5).flatten(1)
    s6 = F.linear(inp6, v["f6.weight"], v["f6.bias"])
    total = (curvature * _slope_squared(a6) * s6).sum()
    grads = torch.autograd.grad(total, list(v.values()))
    return {name: g / len(x) for name, g in zip(v, grads, strict=True)}


def test_diagonal_hessian_matches_an_autograd_reference() -> None:
    torch.manual_seed(0)
    model = LeNet5_1998()
    with torch.no_grad():  # wider weights than the paper's, so that every layer matters
        for p in model.parameters():
            p.mul_(8.0)
    x = torch.rand(6, 1, 32, 32) * 1.275 - 0.1
    ours = diagonal_hessian(model, x)
    reference = _reference_hessian(model, x)
    assert list(ours) == [name for name, _ in model.named_parameters()]
    for name, value in reference.items():
        assert ours[name].shape == value.shape, name
        torch.testing.assert_close(ours[name], value, rtol=1e-4, atol=1e-10, msg=name)
    assert all((h >= 0).all() for h in ours.values())


def test_diagonal_hessian_top_layer_is_exact() -> None:
    """At F6's biases the diagonal approximation drops nothing: h = 2 f'(a)^2, averaged."""
    torch.manual_seed(1)
    model = LeNet5_1998()
    x = torch.rand(4, 1, 32, 32) * 1.275 - 0.1
    with torch.no_grad():
        a6 = model.f6(torch.flatten(_c5_output(model, x), 1))
    expected = (2.0 * _slope_squared(a6)).mean(0)
    torch.testing.assert_close(diagonal_hessian(model, x)["f6.bias"], expected)


def _c5_output(model: LeNet5_1998, x: torch.Tensor) -> torch.Tensor:
    x = squash(model.s2(squash(model.c1(x))))
    x = squash(model.s4(squash(model.c3(x))))
    return squash(model.c5(x))


def test_diagonal_hessian_needs_the_1998_network() -> None:
    with pytest.raises(TypeError, match="LeNet5_1998"):
        diagonal_hessian(build_model("v1"), torch.zeros(1, 1, 28, 28))


def test_sdlm_step_and_refresh() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    h = {layer.weight: torch.full((2, 3), 0.5), layer.bias: torch.tensor([0.0, 1.5])}
    calls = []

    def curvature():
        calls.append(1)
        return h

    opt = SDLM(layer.parameters(), curvature, lr=0.1, mu=0.5, batch_size=4, refresh_every=2)
    x = torch.randn(4, 3)
    before = [p.detach().clone() for p in layer.parameters()]
    layer(x).pow(2).mean().backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    opt.step()
    for p, old, g, hh in zip(layer.parameters(), before, grads, h.values(), strict=True):
        torch.testing.assert_close(p.detach(), old - 0.1 * 4 * g / (0.5 + hh))
    for _ in range(4):
        opt.zero_grad()
        layer(x).sum().backward()
        opt.step()
    assert len(calls) == 3  # before steps 1, 3 and 5
    rates = opt.effective_learning_rates()
    torch.testing.assert_close(rates.max(), torch.tensor(0.1 / 0.5))
    torch.testing.assert_close(rates.min(), torch.tensor(0.1 / 2.0))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": 0.0}, "lr="),
        ({"mu": -1.0}, "mu="),
        ({"batch_size": 0}, "batch_size="),
        ({"refresh_every": 0}, "refresh_every="),
    ],
)
def test_sdlm_rejects_bad_settings(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        SDLM(nn.Linear(2, 2).parameters(), dict, **options)


def test_sdlm_for_estimates_on_the_given_images() -> None:
    torch.manual_seed(0)
    model = LeNet5_1998()
    images = torch.rand(20, 1, 32, 32) * 1.275 - 0.1
    opt = sdlm_for(model, images, batch_size=2, steps_per_pass=10, samples=20)
    opt.refresh()
    expected = diagonal_hessian(model, images)
    for name, p in model.named_parameters():
        torch.testing.assert_close(opt.state[p]["h"], expected[name], rtol=1e-4, atol=1e-9)
    with pytest.raises(ValueError, match="samples="):
        sdlm_for(model, images, batch_size=2, steps_per_pass=10, samples=21)
    with pytest.raises(ValueError, match="batch_size=21 is larger than the 20 training images"):
        sdlm_for(model, images, batch_size=21, steps_per_pass=1, samples=20)


# --- the paper's recipe on real digits ---------------------------------------------------------


@pytest.mark.slow
def test_sdlm_trains_from_efficient_backprop_weights_not_from_the_printed_ones(
    real_data_root: Path,
) -> None:
    """Notebook 08, section 4: the paper's update, one example at a time, on real digits."""
    from lenet_course.data import load_dataset, normalization_for, prepare_images

    train = load_dataset("mnist", "train", root=real_data_root)
    losses = {}
    for rule in ("paper", "efficient-backprop"):
        torch.manual_seed(0)
        model = reinitialise_(LeNet5_1998(), rule)
        spec = model.input_spec
        x = prepare_images(train.images[:800], spec, normalization_for(spec, train.images))
        y = train.labels[:800]
        probe_x, probe_y = x[:300], y[:300]
        optimizer = sdlm_for(model, probe_x, batch_size=1, steps_per_pass=60_000, samples=300)
        with torch.no_grad():
            before = model.loss(model(probe_x), probe_y).item()
        for i in range(300, 800):
            loss = model.loss(model(x[i : i + 1]), y[i : i + 1])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            losses[rule] = (before, model.loss(model(probe_x), probe_y).item())
    printed, efficient = losses["paper"], losses["efficient-backprop"]
    assert printed[1] > printed[0], losses  # the printed bounds: the loss grows
    assert efficient[1] < efficient[0] / 3, losses  # 1/sqrt(F_i): it falls


def _mnist(root: Path, train_size: int, test_size: int):
    from lenet_course.data import load_dataset

    train = load_dataset("mnist", "train", root=root).subset(slice(0, train_size))
    return train, load_dataset("mnist", "test", root=root).subset(slice(0, test_size))


def _paper_recipe(**changes):
    """TrainConfig for Section III-B's recipe: SDLM, the paper's schedule, one example a step."""
    from lenet_course.train import TrainConfig

    settings = {"optimizer": "sdlm", "schedule": "paper", "batch_size": 1, "seed": 0}
    return TrainConfig(**{**settings, "device": "cpu", "threads": 1, "progress": False, **changes})


@pytest.mark.slow
def test_fit_with_sdlm_follows_the_paper_schedule(real_data_root: Path) -> None:
    from lenet_course.train import fit

    train, test = _mnist(real_data_root, 600, 500)
    torch.manual_seed(0)
    model = reinitialise_(LeNet5_1998(), "efficient-backprop")
    seen = []
    history = fit(model, train, _paper_recipe(epochs=3), test=test, on_epoch_end=seen.append)
    records = history.epochs
    assert seen == records and [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["lr"] for r in records] == [paper_learning_rate(i) for i in range(3)]
    losses = [r["train_loss"] for r in records]
    assert losses[0] > losses[1] > losses[2]  # it learns, pass after pass
    assert error_percent(records[-1]["test_accuracy"]) < 40  # 600 digits, 3 passes; chance: 90%
    assert all(r["seconds"] > 0 for r in records)
    # The same seed gives the same run (the order of the examples and the curvature samples).
    torch.manual_seed(0)
    again = reinitialise_(LeNet5_1998(), "efficient-backprop")
    repeat = fit(again, train, _paper_recipe(epochs=3), test=test)
    assert [r["train_loss"] for r in repeat.epochs] == losses


def test_fit_with_sdlm_refuses_bad_settings_and_stops_on_nan(real_data_root: Path) -> None:
    from lenet_course.train import TrainingDivergedError, fit

    train, _ = _mnist(real_data_root, 50, 10)
    for bad in ({"epochs": 0}, {"epochs": 2.5}, {"batch_size": 0}, {"batch_size": 51}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            fit(LeNet5_1998(), train, _paper_recipe(**bad))
    model = LeNet5_1998()
    with torch.no_grad():
        model.c1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 1 .*nan"):
        fit(model, train, _paper_recipe(epochs=1))


@pytest.mark.slow
def test_sdlm_benchmark_script_runs_the_recipe(real_data_root: Path) -> None:
    """benchmarks/sdlm_1998.py, short: one pass over 300 images, and its table."""
    command = [sys.executable, str(REPO / "benchmarks" / "sdlm_1998.py"), "--passes", "1"]
    command += ["--train-subset", "300", "--root", str(real_data_root)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "init efficient-backprop, 300 training images, batch 1, 1 passes" in done.stdout
    assert "| pass | eta | MAP loss | test error | seconds |" in done.stdout
    error = float(re.search(r"final test error ([\d.]+)%", done.stdout).group(1))
    assert 0 < error < 60  # 300 digits, one pass; chance is 90%
