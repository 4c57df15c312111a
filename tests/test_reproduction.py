"""``lenet_course.paper``: the 1998 recipe, SDLM, the ablation variants, and the command line
that reproduces notebook 07's number."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lenet_course import arithmetic, paper
from lenet_course.models import SQUASH_A, SQUASH_S, LeNet5_1998, build_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # 2-core machines shared by several test runs
    yield
    torch.set_num_threads(previous)


# --- the paper's numbers ------------------------------------------------------------------------


def test_paper_schedule_is_section_iii_b() -> None:
    rates = [paper.paper_learning_rate(p) for p in range(paper.PAPER_PASSES)]
    assert rates == [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
    assert paper.paper_learning_rate(100) == 1e-5
    assert paper.PAPER_MU == 0.02 and paper.PAPER_HESSIAN_SAMPLES == 500


@pytest.mark.parametrize("bad", [-1, 1.5, True, "0"])
def test_paper_schedule_rejects_bad_passes(bad) -> None:
    with pytest.raises(ValueError, match="epoch="):
        paper.paper_learning_rate(bad)


def test_printed_layer_counts_agree_with_the_formulas() -> None:
    by_formula = {layer.name: layer for layer in arithmetic.lenet5_1998_layers()}
    for name, (parameters, connections) in paper.PAPER_LAYER_COUNTS.items():
        assert (by_formula[name].parameters, by_formula[name].connections) == (
            parameters,
            connections,
        )
    assert sum(p for p, _ in paper.PAPER_LAYER_COUNTS.values()) == 60_000


def test_published_figures() -> None:
    errors = [row["test_error_percent"] for row in paper.PUBLISHED]
    assert errors == [0.95, 0.8, 2.72, 1.25, None]  # d2l: Fashion-MNIST, not comparable
    assert paper.error_percent(0.9905) == 0.95
    with pytest.raises(ValueError, match="accuracy="):
        paper.error_percent(1.5)


# --- stochastic diagonal Levenberg-Marquardt ---------------------------------------------------


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
    ours = paper.diagonal_hessian(model, x)
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
    torch.testing.assert_close(paper.diagonal_hessian(model, x)["f6.bias"], expected)


def _c5_output(model: LeNet5_1998, x: torch.Tensor) -> torch.Tensor:
    from lenet_course.models import squash

    x = squash(model.s2(squash(model.c1(x))))
    x = squash(model.s4(squash(model.c3(x))))
    return squash(model.c5(x))


def test_diagonal_hessian_needs_the_1998_network() -> None:
    with pytest.raises(TypeError, match="LeNet5_1998"):
        paper.diagonal_hessian(build_model("v1"), torch.zeros(1, 1, 28, 28))


def test_sdlm_step_and_refresh() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    h = {layer.weight: torch.full((2, 3), 0.5), layer.bias: torch.tensor([0.0, 1.5])}
    calls = []

    def curvature():
        calls.append(1)
        return h

    opt = paper.SDLM(layer.parameters(), curvature, lr=0.1, mu=0.5, batch_size=4, refresh_every=2)
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
        paper.SDLM(nn.Linear(2, 2).parameters(), dict, **options)


def test_sdlm_for_estimates_on_the_given_images() -> None:
    torch.manual_seed(0)
    model = LeNet5_1998()
    images = torch.rand(20, 1, 32, 32) * 1.275 - 0.1
    opt = paper.sdlm_for(model, images, batch_size=2, steps_per_pass=10, samples=20)
    opt.refresh()
    expected = paper.diagonal_hessian(model, images)
    for name, p in model.named_parameters():
        torch.testing.assert_close(opt.state[p]["h"], expected[name], rtol=1e-4, atol=1e-9)
    with pytest.raises(ValueError, match="samples="):
        paper.sdlm_for(model, images, batch_size=2, steps_per_pass=10, samples=21)


# --- initialisation ------------------------------------------------------------------------------


def test_fan_ins_are_the_constructors() -> None:
    """The constructor draws within +/-2.4/F_i with the F_i that fan_ins reports, and uses it."""
    torch.manual_seed(0)
    model = LeNet5_1998()
    parameters = dict(model.named_parameters())
    fans = paper.fan_ins(model)
    assert sorted(fans) == sorted(parameters)
    assert [fan for _, fan in fans["c3.bias"]] == [25 * len(row) for row in arithmetic.C3_TABLE]
    for name, pieces in fans.items():
        covered = sum(parameters[name][part].shape[0] for part, _ in pieces)
        assert covered == parameters[name].shape[0], name  # every unit has its fan-in
        for part, fan_in in pieces:
            values = parameters[name][part]
            assert values.abs().max() <= 2.4 / fan_in, name
            if values.numel() >= 100:
                assert values.abs().max() > 0.9 * 2.4 / fan_in, name  # the whole range is drawn


@pytest.mark.parametrize("rule", sorted(paper.INIT_BOUNDS))
def test_reinitialise_draws_each_unit_within_its_bound(rule: str) -> None:
    model = LeNet5_1998()
    prototypes = model.output.prototypes.clone()
    returned = paper.reinitialise_(model, rule, generator=torch.Generator().manual_seed(1))
    assert returned is model
    parameters = dict(model.named_parameters())
    for name, pieces in paper.fan_ins(model).items():
        for part, fan_in in pieces:
            values, bound = parameters[name][part], paper.INIT_BOUNDS[rule](fan_in)
            assert values.abs().max() <= bound, name
            if values.numel() >= 100:
                assert values.abs().max() > 0.9 * bound, name
    assert torch.equal(model.output.prototypes, prototypes)  # fixed, not a parameter


def test_efficient_backprop_rule_has_deviation_one_over_sqrt_fan_in() -> None:
    model = paper.reinitialise_(
        LeNet5_1998(), "efficient-backprop", generator=torch.Generator().manual_seed(2)
    )
    assert model.c5.weight.std().item() == pytest.approx(1 / 400**0.5, rel=0.02)
    assert model.f6.weight.std().item() == pytest.approx(1 / 120**0.5, rel=0.05)
    all_six = model.c3.weight[-6:]  # the last C3 map reads all 6 S2 maps: F_i = 150
    assert all_six.std().item() == pytest.approx(1 / 150**0.5, rel=0.1)


def test_reinitialise_is_reproducible_and_rejects_bad_input() -> None:
    a = paper.reinitialise_(LeNet5_1998(), "paper", generator=torch.Generator().manual_seed(3))
    b = paper.reinitialise_(LeNet5_1998(), "paper", generator=torch.Generator().manual_seed(3))
    for (name, x), (_, y) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(x, y), name
    with pytest.raises(ValueError, match="rule='glorot' is unknown; use one of"):
        paper.reinitialise_(LeNet5_1998(), "glorot")
    with pytest.raises(TypeError, match="LeNet5_1998; got LeNet5v1"):
        paper.reinitialise_(build_model("v1"))


@pytest.mark.slow
def test_sdlm_trains_from_efficient_backprop_weights_not_from_the_printed_ones(
    real_data_root: Path,
) -> None:
    """Notebook 07, section 4: the paper's update, one example at a time, on real digits."""
    from lenet_course.data import load_dataset, normalization_for, prepare_images

    train = load_dataset("mnist", "train", root=real_data_root)
    losses = {}
    for rule in ("paper", "efficient-backprop"):
        torch.manual_seed(0)
        model = paper.reinitialise_(LeNet5_1998(), rule)
        spec = model.input_spec
        x = prepare_images(train.images[:800], spec, normalization_for(spec, train.images))
        y = train.labels[:800]
        probe_x, probe_y = x[:300], y[:300]
        optimizer = paper.sdlm_for(
            model, probe_x, batch_size=1, steps_per_pass=60_000, samples=300
        )
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


@pytest.mark.slow
def test_train_sdlm_follows_the_paper_schedule(real_data_root: Path) -> None:
    train, test = _mnist(real_data_root, 600, 500)
    torch.manual_seed(0)
    model = paper.reinitialise_(LeNet5_1998(), "efficient-backprop")
    seen = []
    history = paper.train_sdlm(
        model, train, test, passes=3, samples=300, progress=False, on_pass_end=seen.append
    )
    assert seen == history and [r["pass"] for r in history] == [1, 2, 3]
    assert [r["lr"] for r in history] == [paper.paper_learning_rate(i) for i in range(3)]
    losses = [r["train_loss"] for r in history]
    assert losses[0] > losses[1] > losses[2]  # it learns, pass after pass
    assert history[-1]["test_error_percent"] < 40  # 600 digits, 3 passes; chance is 90%
    assert all(r["seconds"] > 0 for r in history)
    # The same seed gives the same run (the order of the examples and the curvature samples).
    torch.manual_seed(0)
    again = paper.reinitialise_(LeNet5_1998(), "efficient-backprop")
    repeat = paper.train_sdlm(again, train, test, passes=3, samples=300, progress=False)
    assert [r["train_loss"] for r in repeat] == losses


def test_train_sdlm_refuses_bad_settings_and_stops_on_nan(real_data_root: Path) -> None:
    from lenet_course.train import TrainingDivergedError

    train, _ = _mnist(real_data_root, 50, 10)
    for bad in ({"passes": 0}, {"passes": 2.5}, {"batch_size": 0}, {"batch_size": 51}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            paper.train_sdlm(LeNet5_1998(), train, progress=False, **bad)
    model = LeNet5_1998()
    with torch.no_grad():
        model.c1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="SDLM pass 1, step 1: the MAP loss is nan"):
        paper.train_sdlm(model, train, passes=1, samples=50, progress=False)


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


# --- the ablation variants ---------------------------------------------------------------------


def test_variant_with_defaults_is_the_1998_network() -> None:
    x = torch.rand(5, 1, 32, 32) * 1.275 - 0.1
    y = torch.tensor([0, 1, 2, 3, 4])
    torch.manual_seed(3)
    reference = LeNet5_1998()
    torch.manual_seed(3)
    variant = paper.LeNetVariant()
    assert torch.equal(variant(x), reference(x))
    assert torch.equal(variant.loss(variant(x), y), reference.loss(reference(x), y))
    assert sum(p.numel() for p in variant.parameters()) == 60_000


def test_variant_options() -> None:
    x = torch.rand(2, 1, 32, 32)
    linear = paper.LeNetVariant(output="linear")
    assert sum(p.numel() for p in linear.parameters()) == 60_000 + 850
    out = linear(x)
    assert out.shape == (2, 10) and torch.equal(linear.scores(out), out)
    y = torch.tensor([1, 2])
    torch.testing.assert_close(linear.loss(out, y), F.cross_entropy(out, y))
    pooled = paper.LeNetVariant(pooling="max", activation="relu")
    assert sum(p.numel() for p in pooled.parameters()) == 60_000 - 12 - 32
    assert pooled(x).shape == (2, 10)
    torch.manual_seed(0)
    wide = paper.LeNetVariant(init="pytorch")
    assert wide.c1.weight.abs().max() > 2.4 / 25  # wider than the paper's +/-2.4/F_i
    assert wide.c3.weight[:3].abs().max() <= 1 / 75**0.5
    with pytest.raises(ValueError, match="pooling='avg'"):
        paper.LeNetVariant(pooling="avg")


# --- the command line --------------------------------------------------------------------------


def test_reproduction_command_parses() -> None:
    from lenet_course.cli import build_parser

    command = paper.reproduction_command(20, seed=3, train_subset=500, out="somewhere")
    assert command[:4] == ["python", "-m", "lenet_course", "train"]
    args = build_parser().parse_args(command[3:])
    recipe = paper.REPRODUCTION
    assert (args.model, args.dataset, args.optimizer) == ("lenet5-1998", "mnist", "adam")
    assert (args.lr, args.batch_size, args.schedule) == (
        recipe["lr"],
        recipe["batch_size"],
        recipe["schedule"],
    )
    assert (args.weight_decay, args.epochs, args.seed, args.train_subset) == (0.0, 20, 3, 500)


def test_random_subset_is_the_cli_draw() -> None:
    from lenet_course.cli import _random_subset
    from lenet_course.data import ImageSet

    data = ImageSet(
        torch.arange(50, dtype=torch.uint8).view(50, 1, 1).expand(50, 28, 28).contiguous(),
        torch.arange(50) % 10,
        tuple(str(i) for i in range(10)),
    )
    ours, theirs = paper.random_subset(data, 7, 4), _random_subset(data, 7, 4)
    assert torch.equal(ours.labels, theirs.labels) and torch.equal(ours.images, theirs.images)
    assert paper.random_subset(data, None, 4) is data


@pytest.mark.slow
def test_cli_reproduces_fit(real_data_root: Path, tmp_path: Path) -> None:
    """`python -m lenet_course train` with the recipe's flags gives fit's test error exactly."""
    from lenet_course.data import load_dataset
    from lenet_course.train import fit, seed_everything

    epochs, seed, subset = 1, 0, 10_000
    out = tmp_path / "run"
    command = paper.reproduction_command(epochs, seed, subset, out=str(out))
    command = [sys.executable, *command[1:], "--root", str(real_data_root), "--threads", "1"]
    command.append("--no-progress")
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == epochs and metrics["model"]["name"] == "lenet5-1998"

    train = paper.random_subset(load_dataset("mnist", "train", root=real_data_root), subset, seed)
    test = load_dataset("mnist", "test", root=real_data_root)
    seed_everything(seed)
    model = build_model("lenet5-1998")
    history = fit(
        model,
        train,
        test=test,
        epochs=epochs,
        seed=seed,
        threads=1,
        progress=False,
        **paper.REPRODUCTION,
    )
    assert metrics["test_accuracy"] == history.last["test_accuracy"]
    assert paper.error_percent(metrics["test_accuracy"]) < 50  # it learned (chance: 90%)

    # `evaluate` recomputes the number from the checkpoint (paper normalisation included).
    evaluate = [sys.executable, "-m", "lenet_course", "evaluate", "--checkpoint"]
    evaluate += [str(out / "checkpoint.pt"), "--root", str(real_data_root), "--threads", "1"]
    done = subprocess.run(evaluate, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in done.stdout


def test_cli_defaults_for_lenet5_1998_are_the_notebooks_recipe() -> None:
    """`train --model lenet5-1998 --dataset mnist` alone runs notebook 07's reproduction."""
    from lenet_course.cli import _apply_model_defaults, build_parser
    from lenet_course.paper import REPRODUCTION, REPRODUCTION_PASSES

    args = build_parser().parse_args(["train", "--model", "lenet5-1998", "--dataset", "mnist"])
    _apply_model_defaults(args)
    for name, value in REPRODUCTION.items():
        assert getattr(args, name) == value, name
    assert args.epochs == REPRODUCTION_PASSES
    notebook = json.loads((REPO / "notebooks" / "07_lenet5_1998_on_mnist.ipynb").read_text())
    (parameters,) = [
        "".join(cell["source"])
        for cell in notebook["cells"]
        if "parameters" in cell.get("metadata", {}).get("tags", [])
    ]
    assert f"passes = {REPRODUCTION_PASSES} " in parameters
    modern = build_parser().parse_args(["train"])
    _apply_model_defaults(modern)
    assert (modern.optimizer, modern.schedule, modern.epochs) == ("sgd", "onecycle", 10)
