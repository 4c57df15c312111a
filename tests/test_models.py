"""Tests of ``lenet_course.models``: three equivalent LeNets, build_model, transfer_weights,
eval_mode and class_scores."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lenet_course.data import INPUT_SIZES, InputSpec
from lenet_course.lenet1998 import LeNet5_1998
from lenet_course.models import (
    ACTIVATIONS,
    MODEL_NAMES,
    POOLINGS,
    LeNet5v1,
    LeNet5v2,
    LeNet5v3,
    build_model,
    class_scores,
    eval_mode,
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
        "name": "classic",
        "activation": "sigmoid",
        "pooling": "avg",
        "input_size": 28,
        "num_classes": 10,
    }
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


def test_without_the_check_pytorch_fails_at_the_flatten() -> None:
    """What the check saves the reader from: 28x28 without padding gives 16x4x4 = 256 features."""
    model = LeNet5v2(input_size=32)
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(1x256"):
        nn.Sequential.forward(model, torch.zeros(1, 1, 28, 28))


# --- transfer_weights -----------------------------------------------------------------------------


def handwritten_lenet() -> nn.Sequential:
    """A LeNet nested differently from all three course styles, as a user might write it."""
    conv1 = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU())
    conv2 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU())
    return nn.Sequential(
        nn.Sequential(conv1, nn.AvgPool2d(2), conv2, nn.AvgPool2d(2)),
        nn.Flatten(),
        nn.Sequential(nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU()),
        nn.Linear(84, 10),
    )


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


@pytest.mark.parametrize("name", ["v1", "v2", "v3", "classic", "lenet5-1998"])
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_whole_models_pickle(name: str, pooling: str) -> None:
    """torch.save(model) works for every course model (the tutorials' pattern that notebook 07
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


# --- eval_mode and class_scores -------------------------------------------------------------------


def test_eval_mode_restores_each_modules_mode() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2))
    model[2].eval()  # a frozen batch norm inside a model that trains
    with eval_mode(model) as inside:
        assert inside is model
        assert not any(m.training for m in model.modules())
    assert model.training and model[1].training and not model[2].training
    model.eval()
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("restored even when the block fails")
    assert not any(m.training for m in model.modules())


def test_class_scores_runs_batches_in_eval_mode_without_gradients() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.9))
    x = torch.randn(7, 1, 2, 2)
    scores = class_scores(model, x, batch_size=3)  # batches of 3, 3 and 1
    assert scores.shape == (7, 3) and not scores.requires_grad
    assert model.training  # back in training mode
    with torch.no_grad():
        expected = model[1](x.flatten(1))  # dropout off
    torch.testing.assert_close(scores, expected)


def test_class_scores_uses_the_models_scores() -> None:
    torch.manual_seed(0)
    model = LeNet5_1998()
    x = torch.randn(5, 1, 32, 32)
    with torch.no_grad():
        penalties = model(x)
    scores = class_scores(model, x, batch_size=2)  # batches may round differently: not bitwise
    torch.testing.assert_close(scores, -penalties)  # higher = more likely
    assert torch.equal(class_scores(model, x), -penalties)  # one batch: exactly the same
