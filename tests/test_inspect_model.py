"""Feature maps and filters (``lenet_course.inspect_model``), their plots and
the feature-map explorer's pure function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lenet_course.data import ImageSet, prepare_images
from lenet_course.inspect_model import (
    STAGES,
    feature_maps,
    learned_filters,
    stage_maps,
    stages,
)
from lenet_course.lenet1998 import squash
from lenet_course.models import build_model, transfer_weights
from lenet_course.paper import C3_TABLE

torch.set_num_threads(1)  # the test machines have 2 cores shared by several jobs

MODELS = [
    ("v1", {}),
    ("v2", {}),
    ("v3", {}),
    ("classic", {}),
    ("lenet5-1998", {}),
    ("v1", {"input_size": 32, "pooling": "max"}),
    ("v3", {"input_size": 32, "activation": "tanh"}),
]
SHAPES = {"C1": (6, 28, 28), "S2": (6, 14, 14), "C3": (16, 10, 10), "S4": (16, 5, 5)}


def batch_for(model: nn.Module, n: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
    normalization = (
        {"kind": "paper"}
        if model.input_spec.normalization == "paper"
        else {"kind": "standardize", "mean": 0.3, "std": 0.35}
    )
    return prepare_images(images, model.input_spec, normalization)


def model_id(item: tuple[str, dict]) -> str:
    name, options = item
    return name + "".join(f"-{k}={v}" for k, v in options.items())


# --- feature maps -------------------------------------------------------------------------------


@pytest.mark.parametrize("item", MODELS, ids=model_id)
def test_stage_maps_have_the_paper_shapes_for_every_model(item):
    name, options = item
    torch.manual_seed(0)
    model = build_model(name, **options)
    maps = stage_maps(model, batch_for(model, n=3))
    assert list(maps) == list(STAGES)
    for stage, value in maps.items():
        assert tuple(value.shape) == (3, *SHAPES[stage]), stage


@pytest.mark.parametrize("item", MODELS, ids=model_id)
def test_filters_have_conv_shapes_for_every_model(item):
    name, options = item
    model = build_model(name, **options)
    assert tuple(learned_filters(model, "C1").shape) == (6, 1, 5, 5)
    assert tuple(learned_filters(model, "C3").shape) == (16, 6, 5, 5)
    with pytest.raises(ValueError, match="'S2' has no kernels; choose one of \\['C1', 'C3'\\]"):
        learned_filters(model, "S2")


def test_lenet5_1998_c3_filters_are_zero_where_table_i_has_no_connection():
    model = build_model("lenet5-1998")
    kernels = learned_filters(model, "C3")
    connected = kernels.abs().flatten(2).amax(dim=2) > 0  # 16 x 6
    expected = torch.zeros(16, 6, dtype=torch.bool)
    for j, row in enumerate(C3_TABLE):
        expected[j, list(row)] = True
    assert torch.equal(connected, expected)
    assert int(connected.sum()) == 60


def test_lenet5_1998_maps_are_squashed_module_outputs():
    torch.manual_seed(1)
    model = build_model("lenet5-1998")
    x = batch_for(model)
    maps = stage_maps(model, x)
    c1 = squash(model.c1(x))
    s2 = squash(model.s2(c1))
    torch.testing.assert_close(maps["C1"], c1.detach())
    torch.testing.assert_close(maps["S2"], s2.detach())
    assert float(maps["C3"].abs().max()) <= 1.7159 + 1e-6  # the squashing's amplitude A


def test_the_three_written_ways_give_the_same_maps_with_the_same_weights():
    torch.manual_seed(2)
    v1 = build_model("v1", pooling="max")
    v2, v3 = build_model("v2", pooling="max"), build_model("v3", pooling="max")
    transfer_weights(v1, v2)
    transfer_weights(v1, v3)
    x = batch_for(v1)
    reference = stage_maps(v1, x)
    for other in (v2, v3):
        for stage, value in stage_maps(other, x).items():
            torch.testing.assert_close(value, reference[stage], rtol=0, atol=0)


def test_stage_maps_match_a_forward_written_by_hand():
    torch.manual_seed(3)
    model = build_model("v2", activation="relu", pooling="max")
    x = batch_for(model)
    c1 = torch.relu(model[0](x))
    s2 = nn.functional.max_pool2d(c1, 2)
    maps = stage_maps(model, x, ["C1", "S2"])
    torch.testing.assert_close(maps["C1"], c1.detach())
    torch.testing.assert_close(maps["S2"], s2.detach())


def test_a_d2l_style_sequential_with_lazy_layers_is_found():
    """d2l's ``LeNet.net``: LazyConv2d, Sigmoid, AvgPool2d twice, then the dense layers."""
    net = nn.Sequential(
        nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Flatten(), nn.LazyLinear(120), nn.Sigmoid(), nn.LazyLinear(84), nn.Sigmoid(),
        nn.LazyLinear(10),
    )
    net(torch.zeros(1, 1, 28, 28))
    assert {k: v.layer for k, v in stages(net).items()} == {
        "C1": "1", "S2": "2", "C3": "4", "S4": "5",
    }
    maps = stage_maps(net, torch.zeros(2, 1, 28, 28))
    assert {k: tuple(v.shape[1:]) for k, v in maps.items()} == SHAPES


def test_a_model_without_conv_blocks_gets_a_helpful_error():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(ValueError, match=r"cannot find C1, S2, C3, S4 in Sequential.*\['0', '1'\]"):
        stage_maps(mlp, torch.zeros(1, 1, 28, 28))


def test_feature_maps_by_layer_name_and_hooks_are_removed():
    torch.manual_seed(4)
    model = build_model("v3")
    x = batch_for(model, n=2)
    maps = feature_maps(model, x, ["conv_block1.0", "conv_block2", "fc_block1"])
    assert tuple(maps["conv_block1.0"].shape) == (2, 6, 28, 28)
    assert tuple(maps["conv_block2"].shape) == (2, 16, 5, 5)
    assert tuple(maps["fc_block1"].shape) == (2, 120)
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training  # restored after the eval-mode pass


def test_hooks_are_removed_when_the_forward_pass_fails():
    model = build_model("v2")
    with pytest.raises(ValueError, match="expects a batch of shape"):
        feature_maps(model, torch.zeros(1, 1, 20, 20), ["0"])
    assert all(not m._forward_hooks for m in model.modules())


def test_an_unknown_layer_name_lists_the_valid_ones():
    model = build_model("v1")
    with pytest.raises(ValueError, match=r"no layer named 'conv3' in LeNet5v1.*'conv1', 'conv2'"):
        feature_maps(model, torch.zeros(1, 1, 28, 28), ["conv3"])
    with pytest.raises(ValueError, match=r"unknown stage 'C5'"):
        stage_maps(model, torch.zeros(1, 1, 28, 28), ["C5"])


# --- error analysis -----------------------------------------------------------------------------


# (The error analysis of notebook 07, its confusion matrix and its most confident mistakes, is
# written out in the notebook and checked in its hidden cells.)


# --- plots and the explorer ---------------------------------------------------------------------


def test_feature_maps_are_drawn_one_panel_per_map():
    """(The figures that only notebook 07 draws are checked in its hidden cells.)"""
    from lenet_course.plots import show_feature_maps

    model = build_model("lenet5-1998")
    maps = stage_maps(model, batch_for(model, n=1))
    assert len(show_feature_maps(maps["C3"][0]).axes) == 16


def test_feature_map_view_and_explorer():
    from lenet_course.widgets import feature_map_explorer, feature_map_view

    torch.manual_seed(7)
    model = build_model("v2")
    data = ImageSet(
        torch.zeros(4, 28, 28, dtype=torch.uint8), torch.tensor([3, 1, 2, 0]), tuple("abcd")
    )
    normalization = {"kind": "standardize", "mean": 0.3, "std": 0.35}
    view = feature_map_view(model, data, normalization, index=0, stage="S4")
    assert tuple(view.maps.shape) == (16, 5, 5) and view.label == "d"
    assert view.caption.startswith("test image 0 (d) through S4: 16 maps of 5x5, values ")
    with pytest.raises(ValueError, match="index=4; choose an image in 0..3"):
        feature_map_view(model, data, normalization, index=4, stage="C1")
    explorer = feature_map_explorer(model, data, normalization, index=2)
    (slider, menu), picture = explorer.children[0].children, explorer.children[1]
    assert (slider.value, slider.max, menu.options) == (2, 3, ("C1", "S2", "C3", "S4"))
    assert picture.value.count('src="data:image/png;base64,') == 2  # the image and its maps
    assert "through C1: 6 maps of 28x28" in picture.value
    menu.value = "C3"  # redraws through the pure function
    assert "through C3: 16 maps of 10x10" in picture.value
    slider.value = 0
    assert 'alt="test image: d"' in picture.value
    # No Output widget anywhere: headless runners would have to emulate it (and can stall).
    import ipywidgets

    def tree(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from tree(child)

    assert not any(isinstance(w, ipywidgets.Output) for w in tree(explorer))
