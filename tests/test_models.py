"""Tests of ``lenet_course.models``: three equivalent LeNets, transfer_weights, LeNet-5 (1998)."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lenet_course import arithmetic
from lenet_course.models import (
    ACTIVATIONS,
    DIGIT_BITMAPS,
    INPUT_SIZES,
    MODEL_NAMES,
    POOLINGS,
    InputSpec,
    LeNet5_1998,
    LeNet5v1,
    LeNet5v2,
    LeNet5v3,
    build_model,
    digit_prototypes,
    squash,
    transfer_weights,
)

torch.set_num_threads(1)  # the course's machines have 2 cores shared by several processes

COMBINATIONS = list(itertools.product(ACTIVATIONS, POOLINGS, INPUT_SIZES))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_unchanged(module: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = module.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), f"{key} was modified"


# --- the three modern LeNets ----------------------------------------------------------------------


@pytest.mark.parametrize("activation,pooling,input_size", COMBINATIONS)
def test_three_styles_are_the_same_network(activation: str, pooling: str, input_size: int) -> None:
    options = {"activation": activation, "pooling": pooling, "input_size": input_size}
    torch.manual_seed(0)
    v1 = LeNet5v1(**options)
    v2, v3 = LeNet5v2(**options), LeNet5v3(**options)  # different random weights ...
    transfer_weights(v1, v2)  # ... until the weights of v1 are copied in
    transfer_weights(v1, v3)
    x = torch.randn(8, 1, input_size, input_size)
    targets = torch.arange(8) % 10
    outputs, grads = [], []
    for model in (v1, v2, v3):
        assert n_params(model) == 61_706
        out = model(x)
        F.cross_entropy(out, targets).backward()
        outputs.append(out.detach())
        grads.append([p.grad for p in model.parameters()])
    for out, grad in zip(outputs[1:], grads[1:], strict=True):
        assert torch.equal(out, outputs[0])
        assert len(grad) == len(grads[0]) == 10
        for g, g0 in zip(grad, grads[0], strict=True):
            assert torch.equal(g, g0)


def test_same_seed_gives_same_weights_in_all_three_styles() -> None:
    states = []
    for cls in (LeNet5v1, LeNet5v2, LeNet5v3):
        torch.manual_seed(7)
        states.append([p.detach().clone() for p in cls().parameters()])
    for state in states[1:]:
        assert all(torch.equal(a, b) for a, b in zip(state, states[0], strict=True))


def test_structure_of_each_style() -> None:
    v1, v2, v3 = LeNet5v1(), LeNet5v2(), LeNet5v3()
    assert [name for name, _ in v1.named_children()] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert isinstance(v2, nn.Sequential) and len(v2) == 12
    assert all(not isinstance(m, nn.Sequential) for m in v2)
    assert isinstance(v3, nn.Sequential)
    assert list(v3._modules) == ["conv_block1", "conv_block2", "fc_block1", "fc_block2", "output"]
    assert v1.conv1.padding == (2, 2) and LeNet5v1(input_size=32).conv1.padding == (0, 0)
    assert isinstance(LeNet5v2(activation="tanh", pooling="max")[2], nn.MaxPool2d)
    assert isinstance(LeNet5v3(activation="sigmoid")[0][1], nn.Sigmoid)


@pytest.mark.parametrize("input_size", INPUT_SIZES)
def test_layer_shapes(input_size: int) -> None:
    v3 = LeNet5v3(input_size=input_size)
    x = torch.zeros(2, 1, input_size, input_size)
    shapes = []
    for block in v3:
        x = block(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(6, 14, 14), (16, 5, 5), (120,), (84,), (10,)]


def test_options_and_num_classes() -> None:
    model = build_model("v1", num_classes=5)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 5)
    assert n_params(model) == 61_706 - 5 * 85


# --- build_model, config and input_spec -----------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_build_model_round_trips_through_config(name: str) -> None:
    model = build_model(name)
    assert model.config["name"] == name
    config = json.loads(json.dumps(model.config))  # JSON-ready
    again = build_model(**config)
    assert type(again) is type(model) and again.config == model.config
    assert again.input_spec == model.input_spec
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]
    assert isinstance(model.input_spec, InputSpec)


def test_classic_is_d2l_sigmoid_avg_pool() -> None:
    model = build_model("classic")
    assert isinstance(model, LeNet5v2)
    assert model.config == {
        "name": "classic", "activation": "sigmoid", "pooling": "avg", "input_size": 28,
        "num_classes": 10,
    }  # fmt: skip
    assert model.input_spec == InputSpec(1, 28, "standardize")
    assert build_model("lenet5-1998").input_spec == InputSpec(1, 32, "paper")
    assert build_model("v2", input_size=32).input_spec.size == 32


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: build_model("lenet6"), "unknown model 'lenet6'; choose one of"),
        (lambda: build_model("v1", activation="gelu"), "activation='gelu' is unknown"),
        (lambda: build_model("v2", pooling="median"), "use one of ('avg', 'max')"),
        (lambda: build_model("v3", input_size=64), "input_size=64 is not supported"),
        (lambda: build_model("v1", dropout=0.5), "has no option 'dropout'"),
        (lambda: build_model("lenet5-1998", activation="relu"), "its options are ('j',)"),
        (lambda: build_model("lenet5-1998", j=-1), "j=-1 must be a positive"),
        (lambda: InputSpec(1, 30), "size=30 is not supported"),
        (lambda: InputSpec(1, 28, "minmax"), "normalization='minmax' is unknown"),
    ],
)
def test_bad_options_name_the_value_and_the_choices(call, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert fragment in str(info.value)


# --- input shape errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LeNet5v1, LeNet5v2, LeNet5v3])
def test_wrong_image_size_is_a_clear_error(cls: type[nn.Module]) -> None:
    model = cls()
    with pytest.raises(ValueError) as info:
        model(torch.zeros(4, 1, 32, 32))
    message = str(info.value)
    assert f"{cls.__name__} expects a batch of shape (N, 1, 28, 28); got (4, 1, 32, 32)" in message
    assert "input_size=32" in message
    with pytest.raises(ValueError, match=r"x\.unsqueeze\(0\)"):
        model(torch.zeros(1, 28, 28))
    with pytest.raises(ValueError, match=r"got \(2, 3, 28, 28\)"):
        model(torch.zeros(2, 3, 28, 28))


def test_1998_model_wants_32x32() -> None:
    with pytest.raises(ValueError) as info:
        LeNet5_1998()(torch.zeros(1, 1, 28, 28))
    assert "expects a batch of shape (N, 1, 32, 32); got (1, 1, 28, 28)" in str(info.value)
    assert "prepare_images" in str(info.value)


def test_without_the_check_pytorch_fails_at_the_flatten() -> None:
    """What the check saves the reader from: 28x28 without padding gives 16x4x4 = 256 features."""
    model = LeNet5v2(input_size=32)
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(1x256"):
        nn.Sequential.forward(model, torch.zeros(1, 1, 28, 28))


# --- transfer_weights -----------------------------------------------------------------------------


def handwritten_lenet() -> nn.Sequential:
    """A LeNet nested differently from all three course styles, as a user might write it."""
    return nn.Sequential(
        nn.Sequential(
            nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU()), nn.AvgPool2d(2),
            nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU()), nn.AvgPool2d(2),
        ),
        nn.Flatten(),
        nn.Sequential(nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU()),
        nn.Linear(84, 10),
    )  # fmt: skip


def test_transfer_between_differently_nested_modules() -> None:
    torch.manual_seed(1)
    hand, v1, v3 = handwritten_lenet(), LeNet5v1(), LeNet5v3()
    pairs = transfer_weights(hand, v3)
    assert pairs[0] == ("0.0.0.weight", "conv_block1.0.weight")
    assert pairs[-1] == ("3.bias", "output.bias")
    assert len(pairs) == 10
    transfer_weights(v3, v1)
    x = torch.randn(5, 1, 28, 28)
    assert torch.equal(hand(x), v3(x)) and torch.equal(hand(x), v1(x))
    v1.fc3.bias.data += 1  # a copy, not shared storage
    assert not torch.equal(v1(x), v3(x))


def test_transfer_copies_buffers_too() -> None:
    def with_bn() -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))

    def nested_bn() -> nn.Sequential:
        return nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3)), nn.Sequential(nn.BatchNorm2d(2)))

    src, dst = with_bn(), nested_bn()
    src(torch.randn(4, 1, 5, 5))  # training mode: updates the running statistics
    pairs = transfer_weights(src, dst)
    assert ("1.running_mean", "1.0.running_mean") in pairs
    assert ("1.num_batches_tracked", "1.0.num_batches_tracked") in pairs
    assert torch.equal(dst[1][0].running_var, src[1].running_var)


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


def test_shape_mismatch_names_both_layers_and_shapes_and_copies_nothing() -> None:
    src, dst = LeNet5v1(), LeNet5v3(num_classes=5)
    before = snapshot(dst)
    with pytest.raises(ValueError) as info:
        transfer_weights(src, dst)
    message = str(info.value)
    assert "LeNet5v1.fc3.weight is 10x84" in message
    assert "LeNet5v3.output.weight is 5x84" in message
    assert_unchanged(dst, before)  # the first 8 tensors matched, yet nothing was copied


def test_count_mismatch_names_the_extra_layer() -> None:
    src = LeNet5v1()
    dst = handwritten_lenet()[:3]  # no output layer
    before = snapshot(dst)
    with pytest.raises(ValueError) as info:
        transfer_weights(src, dst)
    message = str(info.value)
    assert "LeNet5v1 has 10 parameters and Sequential has 8" in message
    assert "LeNet5v1.fc3.weight 10x84 has no counterpart" in message
    assert_unchanged(dst, before)
    with pytest.raises(ValueError, match="Sequential has 0 buffers and Sequential has 3"):
        transfer_weights(nn.Sequential(nn.Linear(2, 2)), _linear_then_frozen_bn())


def _linear_then_frozen_bn() -> nn.Sequential:
    """Same parameters as a Linear(2, 2) alone, plus BatchNorm buffers (affine=False)."""
    return nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, affine=False))


def test_failure_while_copying_restores_what_was_copied() -> None:
    torch.manual_seed(0)
    src = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    src[1].to("meta")  # shapes match, but the copy of the second layer fails
    dst = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    before = snapshot(dst)
    with pytest.raises((NotImplementedError, RuntimeError)):
        transfer_weights(src, dst)
    assert_unchanged(dst, before)


def test_transfer_from_and_to_d2l_lenet() -> None:
    from d2l import torch as d2l

    torch.manual_seed(0)
    theirs = d2l.LeNet()
    ours = build_model("classic")
    with pytest.raises(ValueError) as info:  # Lazy layers have no shape before a forward pass
        transfer_weights(theirs, ours)
    assert "LeNet.net.0.weight is not initialised yet" in str(info.value)
    assert "run one forward pass first" in str(info.value)
    x = torch.randn(6, 1, 28, 28)
    theirs(x)
    pairs = transfer_weights(theirs, ours)
    assert pairs[0] == ("net.0.weight", "0.weight") and pairs[-1] == ("net.11.bias", "11.bias")
    assert torch.equal(theirs(x), ours(x))
    # d2l's layer numbers are the flat style's: its state_dict loads as it is, minus "net."
    flat = LeNet5v2(activation="sigmoid")
    flat.load_state_dict({k.removeprefix("net."): v for k, v in theirs.state_dict().items()})
    assert torch.equal(flat(x), ours(x))
    # ... and back, into a d2l LeNet written with the third style's blocks
    v3 = LeNet5v3(activation="sigmoid")
    transfer_weights(ours, v3)
    other = d2l.LeNet()
    other(x)
    transfer_weights(v3, other)
    assert torch.equal(other(x), theirs(x))


def test_relu_d2l_weights_in_a_sigmoid_model_are_a_different_network() -> None:
    """transfer_weights checks shapes, not activations: the reader must choose the right options."""
    torch.manual_seed(0)
    v1_relu, v1_sigmoid = LeNet5v1(), LeNet5v1(activation="sigmoid")
    transfer_weights(v1_relu, v1_sigmoid)
    x = torch.randn(2, 1, 28, 28)
    assert not torch.equal(v1_relu(x), v1_sigmoid(x))


# --- LeNet-5 (1998) -------------------------------------------------------------------------------

#: LeCun et al. (1998), Section II.B: trainable parameters and connections of each layer.
PAPER_PARAMETERS = {"c1": 156, "s2": 12, "c3": 1_516, "s4": 32, "c5": 48_120, "f6": 10_164}
PAPER_CONNECTIONS = {
    "c1": 122_304, "s2": 5_880, "c3": 151_600, "s4": 2_000, "c5": 48_120, "f6": 10_164,
}  # fmt: skip


def test_1998_parameter_counts_per_layer() -> None:
    model = LeNet5_1998()
    counts = {name: n_params(layer) for name, layer in model.named_children()}
    assert counts == {**PAPER_PARAMETERS, "output": 0}
    assert n_params(model) == sum(p.numel() for p in model.parameters()) == 60_000
    assert [name for name, _ in model.named_buffers()] == [
        "c3.connection_index", "output.prototypes"
    ]  # fmt: skip


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
        "c1": (6, 28, 28), "s2": (6, 14, 14), "c3": (16, 10, 10), "s4": (16, 5, 5),
        "c5": (120, 1, 1), "f6": (84,), "output": (10,),
    }  # fmt: skip
    connections = {}
    for name in ("c1", "c3", "c5", "f6"):  # every parameter is used at each output position
        positions = math.prod(out_shapes[name][1:]) if len(out_shapes[name]) == 3 else 1
        connections[name] = PAPER_PARAMETERS[name] * positions
    for name in ("s2", "s4"):  # each unit: 4 inputs and a bias
        connections[name] = math.prod(out_shapes[name]) * (4 + 1)
    assert connections == PAPER_CONNECTIONS


def test_1998_counts_agree_with_the_arithmetic_module() -> None:
    """The model's own numbers equal the paper's formulas in ``arithmetic.lenet5_1998_layers``."""
    model = LeNet5_1998()
    rows = {row.name.lower(): row for row in arithmetic.lenet5_1998_layers()}
    for name, layer in model.named_children():
        assert n_params(layer) == rows[name].parameters, name
    assert {name: rows[name].connections for name in PAPER_CONNECTIONS} == PAPER_CONNECTIONS
    assert rows["output"].fixed_parameters == model.output.prototypes.numel() == 840
    assert arithmetic.count_parameters(model) == 60_000


def test_c3_uses_the_arithmetic_table_and_its_pattern() -> None:
    from lenet_course import models

    assert models.C3_TABLE is arithmetic.C3_TABLE  # one source of truth
    table = LeNet5_1998().c3.table
    assert table == arithmetic.C3_TABLE and len(table) == 16

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
    for j, row in enumerate(arithmetic.C3_TABLE):
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
    for layer, fan_in in ((model.c1, 25), (model.s2, 4), (model.s4, 4), (model.c5, 400),
                          (model.f6, 120)):  # fmt: skip
        for p in layer.parameters():
            assert p.abs().max() <= 2.4 / fan_in
            if p.numel() >= 84:  # uses the whole range, not a smaller one
                assert p.abs().max() > 0.9 * 2.4 / fan_in
    start = 0
    for row in arithmetic.C3_TABLE:
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


@pytest.mark.parametrize("name", ["v1", "v2", "v3", "classic", "lenet5-1998"])
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_whole_models_pickle(name: str, pooling: str) -> None:
    """torch.save(model) works for every course model (the tutorials' pattern that notebook 06
    shows being refused by weights_only=True must first be possible)."""
    import io

    options = {} if name == "lenet5-1998" else {"pooling": pooling}
    model = build_model(name, **options)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)  # our own bytes, written just above
    x = torch.randn(2, *model.input_spec.shape)
    assert torch.equal(loaded(x), model(x))
