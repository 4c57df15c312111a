"""Tests of ``lenet_course.lenet1998``: LeNet-5 as published in 1998, its initialisation, and the
variants of notebook 08's ablation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lenet_course import counting, lenet1998, paper
from lenet_course.lenet1998 import (
    DIGIT_BITMAPS,
    INIT_BOUNDS,
    LeNet5_1998,
    digit_prototypes,
    fan_ins,
    map_loss,
    reinitialise_,
    squash,
    squash_slope,
)
from lenet_course.models import build_model, transfer_weights

torch.set_num_threads(1)  # the course's machines have 2 cores shared by several processes


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_1998_model_wants_32x32() -> None:
    with pytest.raises(ValueError) as info:
        LeNet5_1998()(torch.zeros(1, 1, 28, 28))
    assert "expects a batch of shape (N, 1, 32, 32); got (1, 1, 28, 28)" in str(info.value)
    assert "prepare_images" in str(info.value)


def test_1998_model_transfers_into_itself_with_its_prototypes() -> None:
    torch.manual_seed(0)
    a = LeNet5_1998()
    b = LeNet5_1998()
    a.output.prototypes.mul_(-1)
    pairs = transfer_weights(a, b)
    assert pairs[-1] == ("output.prototypes", "output.prototypes")  # persistent buffer
    assert "c3.connection_index" not in dict(pairs)  # derived from C3_TABLE, not state
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(a(x), b(x))


#: LeCun et al. (1998), Section II.B: trainable parameters and connections of each layer.
PAPER_PARAMETERS = {"c1": 156, "s2": 12, "c3": 1_516, "s4": 32, "c5": 48_120, "f6": 10_164}
PAPER_CONNECTIONS = {
    "c1": 122_304,
    "s2": 5_880,
    "c3": 151_600,
    "s4": 2_000,
    "c5": 48_120,
    "f6": 10_164,
}


def test_1998_parameter_counts_per_layer() -> None:
    model = LeNet5_1998()
    counts = {name: n_params(layer) for name, layer in model.named_children()}
    assert counts == {**PAPER_PARAMETERS, "output": 0}
    assert n_params(model) == sum(p.numel() for p in model.parameters()) == 60_000
    buffers = [name for name, _ in model.named_buffers()]
    assert buffers == ["c3.connection_index", "output.prototypes"]


def test_1998_connection_counts_per_layer() -> None:
    """Connections = trainable weights used at every output position (weight sharing)."""
    model = LeNet5_1998()
    out_shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        layer.register_forward_hook(
            lambda m, i, o, name=name: out_shapes.__setitem__(name, tuple(o.shape[1:]))
        )
        for name, layer in model.named_children()
    ]
    model(torch.zeros(1, 1, 32, 32))
    for hook in hooks:
        hook.remove()
    assert out_shapes == {
        "c1": (6, 28, 28),
        "s2": (6, 14, 14),
        "c3": (16, 10, 10),
        "s4": (16, 5, 5),
        "c5": (120, 1, 1),
        "f6": (84,),
        "output": (10,),
    }
    connections = {}
    for name in ("c1", "c3", "c5", "f6"):  # every parameter is used at each output position
        positions = math.prod(out_shapes[name][1:]) if len(out_shapes[name]) == 3 else 1
        connections[name] = PAPER_PARAMETERS[name] * positions
    for name in ("s2", "s4"):  # each unit: 4 inputs and a bias
        connections[name] = math.prod(out_shapes[name]) * (4 + 1)
    assert connections == PAPER_CONNECTIONS


def test_1998_counts_agree_with_the_counting_module() -> None:
    """The model's own numbers equal the paper's formulas in ``counting.lenet5_1998_layers``."""
    model = LeNet5_1998()
    rows = {row.name.lower(): row for row in counting.lenet5_1998_layers()}
    for name, layer in model.named_children():
        assert n_params(layer) == rows[name].parameters, name
    assert {name: rows[name].connections for name in PAPER_CONNECTIONS} == PAPER_CONNECTIONS
    assert rows["output"].fixed_parameters == model.output.prototypes.numel() == 840
    assert counting.count_parameters(model) == 60_000


def test_c3_uses_the_paper_table_and_its_pattern() -> None:
    assert lenet1998.C3_TABLE is paper.C3_TABLE  # one source of truth
    table = LeNet5_1998().c3.table
    assert table == paper.C3_TABLE and len(table) == 16

    def contiguous(row: tuple[int, ...]) -> bool:
        return any(set(row) == {(s + k) % 6 for k in range(len(row))} for s in range(6))

    assert all(len(r) == 3 and contiguous(r) for r in table[0:6])
    assert all(len(r) == 4 and contiguous(r) for r in table[6:12])
    assert all(len(r) == 4 and not contiguous(r) for r in table[12:15])
    assert set(table[15]) == set(range(6))
    assert sum(len(r) for r in table) == 60


def test_c3_reads_only_its_connected_maps() -> None:
    torch.manual_seed(0)
    c3 = LeNet5_1998().c3
    dense = c3.dense_weight()
    assert dense.shape == (16, 6, 5, 5)
    connected = dense.abs().sum(dim=(2, 3)) != 0
    expected = torch.zeros(16, 6, dtype=torch.bool)
    for j, row in enumerate(paper.C3_TABLE):
        expected[j, list(row)] = True
    assert torch.equal(connected, expected)
    x = torch.randn(1, 6, 14, 14)
    y = c3(x)
    assert torch.allclose(y, F.conv2d(x, dense, c3.bias))
    y.sum().backward()  # the gradient reaches exactly the 1,500 real weights
    assert c3.weight.grad.shape == (60, 5, 5) and c3.weight.grad.abs().sum() > 0
    # changing S2 map 3 changes C3 map 0 (which reads maps 0, 1, 2) not at all
    x2 = x.clone()
    x2[:, 3] += 1
    with torch.no_grad():
        assert torch.equal(c3(x2)[:, 0], y[:, 0]) and not torch.equal(c3(x2)[:, 1], y[:, 1])


def test_subsampling_is_a_trainable_scaled_sum() -> None:
    s2 = LeNet5_1998().s2
    x = torch.randn(2, 6, 28, 28)
    expected = x.unfold(2, 2, 2).unfold(3, 2, 2).sum(dim=(-1, -2))
    expected = expected * s2.weight.view(1, 6, 1, 1) + s2.bias.view(1, 6, 1, 1)
    assert torch.allclose(s2(x), expected, atol=1e-6)


def test_squashing_function() -> None:
    a = torch.tensor([-1.0, 0.0, 1.0, 100.0])
    assert torch.allclose(squash(a), torch.tensor([-1.0, 0.0, 1.0, 1.7159]), atol=1e-4)


def test_paper_initialisation_bounds() -> None:
    torch.manual_seed(0)
    model = LeNet5_1998()
    layers = ((model.c1, 25), (model.s2, 4), (model.s4, 4), (model.c5, 400), (model.f6, 120))
    for layer, fan_in in layers:
        for p in layer.parameters():
            assert p.abs().max() <= 2.4 / fan_in
            if p.numel() >= 84:  # uses the whole range, not a smaller one
                assert p.abs().max() > 0.9 * 2.4 / fan_in
    start = 0
    for row in paper.C3_TABLE:
        block = model.c3.weight[start : start + len(row)]
        assert block.abs().max() <= 2.4 / (25 * len(row))
        start += len(row)


def test_prototypes_are_fixed_plus_minus_one_digit_bitmaps() -> None:
    model = LeNet5_1998()
    prototypes = model.output.prototypes
    assert prototypes.shape == (10, 84) and not prototypes.requires_grad
    assert set(prototypes.unique().tolist()) == {-1.0, 1.0}
    assert "output.prototypes" in model.state_dict()
    assert all(name != "output.prototypes" for name, _ in model.named_parameters())
    assert len(DIGIT_BITMAPS) == 10 and all(len(b) == 12 and len(b[0]) == 7 for b in DIGIT_BITMAPS)
    distances = torch.cdist(prototypes, prototypes).pow(2)
    assert distances[~torch.eye(10, dtype=torch.bool)].min() >= 16  # all digits clearly distinct
    with pytest.raises(ValueError, match="12 lines of 7 characters"):
        digit_prototypes(((".......",) * 11,) * 10)


def test_1998_outputs_are_rbf_penalties_and_scores_negate_them() -> None:
    torch.manual_seed(0)
    model = LeNet5_1998()
    x = torch.randn(4, 1, 32, 32)
    y = model(x)
    f6 = model.features(x)
    assert y.shape == (4, 10) and (y >= 0).all()
    assert f6.shape == (4, 84) and f6.abs().max() < 1.7159
    assert torch.allclose(y, ((f6[:, None, :] - model.output.prototypes) ** 2).sum(-1))
    assert torch.equal(model.scores(y), -y)


def test_map_loss_matches_the_paper_formula() -> None:
    torch.manual_seed(0)
    model = LeNet5_1998(j=2.0)
    y = torch.rand(5, 10) * 6
    targets = torch.tensor([0, 3, 9, 9, 1])
    naive = (
        y[torch.arange(5), targets] + torch.log(math.exp(-2.0) + torch.exp(-y).sum(dim=1))
    ).mean()
    assert torch.allclose(model.loss(y, targets), naive)
    # as j grows the rubbish term vanishes: the loss becomes cross-entropy on -y
    assert torch.allclose(LeNet5_1998(j=60.0).loss(y, targets), F.cross_entropy(-y, targets))
    # large penalties neither overflow nor underflow
    big = model.loss(y + 1e4, targets)  # every class far above j: only y_D - j is left
    assert torch.isfinite(big)
    assert torch.allclose(big, (y + 1e4)[torch.arange(5), targets].mean() - 2.0)


def test_map_loss_trains() -> None:
    """A few steps on a small, learnable problem bring the right penalty below the others."""
    torch.manual_seed(0)
    model = LeNet5_1998()
    targets = torch.arange(20) % 10
    x = torch.randn(10, 1, 32, 32)[targets] + 0.1 * torch.randn(20, 1, 32, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.loss(model(x), targets).item()
    for _ in range(70):  # a plateau near the prototypes' centre first, then a fast drop
        loss = model.loss(model(x), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 2
    assert (model.scores(model(x)).argmax(1) == targets).float().mean() >= 0.9


# --- initialisation (Appendix A) --------------------------------------------------------------


def test_fan_ins_are_the_constructors() -> None:
    """The constructor draws within +/-2.4/F_i with the F_i that fan_ins reports, and uses it."""
    torch.manual_seed(0)
    model = LeNet5_1998()
    parameters = dict(model.named_parameters())
    fans = fan_ins(model)
    assert sorted(fans) == sorted(parameters)
    assert [fan for _, fan in fans["c3.bias"]] == [25 * len(row) for row in paper.C3_TABLE]
    for name, pieces in fans.items():
        covered = sum(parameters[name][part].shape[0] for part, _ in pieces)
        assert covered == parameters[name].shape[0], name  # every unit has its fan-in
        for part, fan_in in pieces:
            values = parameters[name][part]
            assert values.abs().max() <= 2.4 / fan_in, name
            if values.numel() >= 100:
                assert values.abs().max() > 0.9 * 2.4 / fan_in, name  # the whole range is drawn


@pytest.mark.parametrize("rule", sorted(INIT_BOUNDS))
def test_reinitialise_draws_each_unit_within_its_bound(rule: str) -> None:
    model = LeNet5_1998()
    prototypes = model.output.prototypes.clone()
    returned = reinitialise_(model, rule, generator=torch.Generator().manual_seed(1))
    assert returned is model
    parameters = dict(model.named_parameters())
    for name, pieces in fan_ins(model).items():
        for part, fan_in in pieces:
            values, bound = parameters[name][part], INIT_BOUNDS[rule](fan_in)
            assert values.abs().max() <= bound, name
            if values.numel() >= 100:
                assert values.abs().max() > 0.9 * bound, name
    assert torch.equal(model.output.prototypes, prototypes)  # fixed, not a parameter


def test_efficient_backprop_rule_has_deviation_one_over_sqrt_fan_in() -> None:
    model = reinitialise_(
        LeNet5_1998(), "efficient-backprop", generator=torch.Generator().manual_seed(2)
    )
    assert model.c5.weight.std().item() == pytest.approx(1 / 400**0.5, rel=0.02)
    assert model.f6.weight.std().item() == pytest.approx(1 / 120**0.5, rel=0.05)
    all_six = model.c3.weight[-6:]  # the last C3 map reads all 6 S2 maps: F_i = 150
    assert all_six.std().item() == pytest.approx(1 / 150**0.5, rel=0.1)


def test_reinitialise_is_reproducible_and_rejects_bad_input() -> None:
    a = reinitialise_(LeNet5_1998(), "paper", generator=torch.Generator().manual_seed(3))
    b = reinitialise_(LeNet5_1998(), "paper", generator=torch.Generator().manual_seed(3))
    for (name, x), (_, y) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(x, y), name
    with pytest.raises(ValueError, match="rule='glorot' is unknown; use one of"):
        reinitialise_(LeNet5_1998(), "glorot")
    with pytest.raises(TypeError, match="LeNet5_1998; got LeNet5v1"):
        reinitialise_(build_model("v1"))


def test_squash_slope_is_the_derivative_of_squash() -> None:
    a = torch.linspace(-4, 4, 41, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(squash(a).sum(), a)
    torch.testing.assert_close(squash_slope(a.detach()), grad)


def test_c3_maps_give_each_maps_kernels_and_fan_in() -> None:
    c3 = LeNet5_1998().c3
    maps = list(c3.maps())
    assert [j for j, _, _ in maps] == list(range(16))
    assert [fan for _, _, fan in maps] == [25 * len(row) for row in paper.C3_TABLE]
    assert [kernels.stop - kernels.start for _, kernels, _ in maps] == [3] * 6 + [4] * 9 + [6]
    assert maps[-1][1].stop == c3.weight.shape[0] == 60


def test_map_loss_is_the_1998_networks_loss() -> None:
    y = torch.rand(4, 10) * 5
    targets = torch.tensor([1, 0, 7, 7])
    assert torch.equal(LeNet5_1998(j=3.0).loss(y, targets), map_loss(y, targets, 3.0))
    assert torch.equal(map_loss(y, targets), map_loss(y, targets, lenet1998.MAP_J))
