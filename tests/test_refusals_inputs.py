"""Issue 25, parts 4 (types), 5 (predict agrees with the run) and 8 (explorers and the checker):
each case replays a bad input and asserts the exact outcome, an exception type or exit status and
the words that name the argument or file at fault and say what is valid."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lenet_course import check
from lenet_course.arithmetic import explore_conv, explore_pool
from lenet_course.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from lenet_course.cli import main
from lenet_course.data import CLASS_NAMES, ImageSet
from lenet_course.models import build_model
from lenet_course.predict import ImageFileError, class_probabilities, convert_image, predict_files
from lenet_course.widgets import (
    conv_explorer,
    feature_map_explorer,
    feature_map_view,
    kernel_explorer,
    kernel_view,
    pool_explorer,
)

torch.set_num_threads(1)  # the test machines have 2 cores shared by several jobs

CLASSES = list(CLASS_NAMES["fashion-mnist"])
NORMALIZATION = {"kind": "standardize", "mean": 0.286, "std": 0.353}


def write_checkpoint(path: Path, normalization=NORMALIZATION, test_flip=False) -> Path:
    """An untrained v1 with Fashion-MNIST's classes: what predict and evaluate read."""
    torch.manual_seed(0)
    save_checkpoint(path, build_model("v1"), history=[], class_names=CLASSES,
                    dataset="fashion-mnist", normalization=normalization,
                    train_config={"test_flip": test_flip})
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint, a challenge checkpoint (test-time flips) and pictures, written once."""
    folder = tmp_path_factory.mktemp("refusals")
    write_checkpoint(folder / "plain.pt")
    write_checkpoint(folder / "challenge.pt", test_flip=True)
    # an 'L': not its own mirror image, so that a flip changes what the model sees
    picture = np.zeros((28, 28), dtype=np.uint8)
    picture[4:24, 6:10], picture[20:24, 6:22] = 230, 230
    Image.fromarray(picture).save(folder / "shoe.png")
    for name, bad in [("nan", np.nan), ("inf", np.inf), ("minus-inf", -np.inf)]:
        values = picture.astype(np.float32)
        values[3, 3] = bad
        Image.fromarray(values, mode="F").save(folder / f"{name}.tiff")
    Image.fromarray(picture.astype(np.float32), mode="F").save(folder / "finite.tiff")
    return folder


# --- part 4: predict_files and load_checkpoint check their arguments where they enter ----------


@pytest.mark.parametrize("wrap", [str, Path], ids=["str", "Path"])
def test_one_path_is_a_list_of_one_not_of_its_characters(folder, wrap):
    (prediction,) = predict_files(folder / "plain.pt", wrap(folder / "shoe.png"))
    assert prediction.error is None and prediction.path == str(folder / "shoe.png")


PATHS = {
    "bytes": (b"shoe.png", "paths: got bytes; give an image file's path or a list"),
    "an int": (5, "paths: got int; give an image file's path or a list"),
    "None": (None, "paths: got NoneType; give an image file's path or a list"),
    "a dict": ({"shoe.png": 1}, "paths: got dict; give an image file's path or a list"),
    "an int in the list": (["{shoe}", 5], "paths[1]: got int, not a file path (a str)"),
    "None in the list": ([None], "paths[0]: got NoneType, not a file path (a str)"),
    "an array in the list": (["{shoe}", np.zeros((2, 2))], "paths[1]: got ndarray, not a file"),
}


@pytest.mark.parametrize("paths, message", PATHS.values(), ids=list(PATHS))
def test_paths_that_are_not_paths_are_refused(folder, paths, message):
    if isinstance(paths, list):
        paths = [str(folder / "shoe.png") if isinstance(p, str) else p for p in paths]
    with pytest.raises(TypeError) as caught:
        predict_files(folder / "plain.pt", paths)
    assert message in str(caught.value)


OPTIONS = {
    "top_k a text": ({"top_k": "3"}, ValueError, "top_k='3'; use a whole number from 1 to 10"),
    "top_k a float": ({"top_k": 2.5}, ValueError, "top_k=2.5; use a whole number from 1 to 10"),
    "top_k a bool": ({"top_k": True}, ValueError, "top_k=True; use a whole number"),
    "top_k 0": ({"top_k": 0}, ValueError, "top_k=0; use a whole number from 1 to 10"),
    "top_k 11": ({"top_k": 11}, ValueError, "top_k=11; use a whole number from 1 to 10"),
    "invert a text": ({"invert": "no"}, TypeError, "invert='no'; use None (invert a light"),
    "invert a number": ({"invert": 0.5}, TypeError, "invert=0.5; use None"),
    "model a name": ({"model": "v1"}, TypeError, "model is a str, not an nn.Module; pass"),
    "model a dict": ({"model": {}}, TypeError, "model_from_checkpoint(checkpoint) or leave it"),
}


@pytest.mark.parametrize("options, error, message", OPTIONS.values(), ids=list(OPTIONS))
def test_predict_files_options_are_checked(folder, options, error, message):
    with pytest.raises(error) as caught:
        predict_files(folder / "plain.pt", [folder / "shoe.png"], **options)
    assert message in str(caught.value)


def test_top_k_as_a_numpy_int_and_invert_as_a_numpy_bool_are_fine(folder):
    (prediction,) = predict_files(
        folder / "plain.pt", [folder / "shoe.png"], top_k=np.int64(2), invert=np.bool_(False)
    )
    assert len(prediction.top) == 2 and not prediction.inverted


@pytest.mark.parametrize(
    "path, loaded",
    [(5, False), (None, False), (3.5, False), ([1], False), (b"checkpoint.pt", False),
     ({}, True), ("loaded", True)],
    ids=["int", "None", "float", "list", "bytes", "empty dict", "a loaded checkpoint"],
)
def test_load_checkpoint_says_it_takes_a_path(folder, path, loaded):
    if path == "loaded":
        path = load_checkpoint(folder / "plain.pt")
    with pytest.raises(TypeError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"load_checkpoint(path): got type {type(path).__name__}; give")
    assert "a checkpoint.pt's path (a str or a Path)" in message
    assert ("a checkpoint dict is loaded already" in message) == loaded


EDITS = {
    "no format": (lambda s: s.pop("format"), "the checkpoint dict is not a lenet_course"),
    "no class names": (lambda s: s.pop("class_names"), "lacks ['class_names']"),
    "text class names": (lambda s: s.update(class_names="abc"), "its 'class_names' is 'abc'"),
    "NaN weights": (lambda s: s["state_dict"]["conv1.weight"].fill_(float("nan")),
                    "holds NaN or infinite weights (conv1.weight)"),
    "a damaged normalization": (lambda s: s.update(normalization={"kind": "standardize"}),
                                "its 'normalization' is"),
}


@pytest.mark.parametrize("edit, message", EDITS.values(), ids=list(EDITS))
@pytest.mark.parametrize("use", ["predict_files", "model_from_checkpoint"])
def test_a_loaded_checkpoint_is_checked_as_a_file_is(folder, edit, message, use):
    state = load_checkpoint(folder / "plain.pt")
    edit(state)
    with pytest.raises(CheckpointError) as caught:
        if use == "predict_files":
            predict_files(state, [folder / "shoe.png"])
        else:
            model_from_checkpoint(state)
    assert message in str(caught.value)


# --- part 5: predict agrees with the run and evaluate --------------------------------------------


def test_predict_uses_a_challenge_checkpoints_test_time_flips(folder):
    shoe = folder / "shoe.png"
    (flipped,) = predict_files(folder / "challenge.pt", [shoe], top_k=10)
    (plain,) = predict_files(folder / "plain.pt", [shoe], top_k=10)
    model, pixels = model_from_checkpoint(folder / "plain.pt"), convert_image(shoe).pixels[None]
    with_flips = class_probabilities(model, pixels, NORMALIZATION, flip=True)[0]
    without = class_probabilities(model, pixels, NORMALIZATION)[0]
    # the two checkpoints hold the same weights: only the flips differ
    assert dict(flipped.top) == pytest.approx(dict(zip(CLASSES, with_flips.tolist(), strict=True)))
    assert dict(plain.top) == pytest.approx(dict(zip(CLASSES, without.tolist(), strict=True)))
    assert not torch.allclose(with_flips, without)


PROBABILITY_OPTIONS = {
    "batch_size 0": ({"batch_size": 0}, ValueError, "batch_size=0; it must be a whole number"),
    "batch_size a text": ({"batch_size": "10"}, ValueError, "batch_size='10'; it must be a"),
    "batch_size 2.5": ({"batch_size": 2.5}, ValueError, "batch_size=2.5; it must be a whole"),
    "batch_size True": ({"batch_size": True}, ValueError, "batch_size=True; it must be a whole"),
    "flip a text": ({"flip": "no"}, TypeError, "flip='no'; use True (test-time flips) or False"),
    "flip 1": ({"flip": 1}, TypeError, "flip=1; use True (test-time flips) or False"),
    "flip None": ({"flip": None}, TypeError, "flip=None; use True"),
}


@pytest.mark.parametrize(
    "options, error, message", PROBABILITY_OPTIONS.values(), ids=list(PROBABILITY_OPTIONS)
)
def test_class_probabilities_options_are_checked(folder, options, error, message):
    model = model_from_checkpoint(folder / "plain.pt")
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    with pytest.raises(error) as caught:
        class_probabilities(model, images, NORMALIZATION, **options)
    assert message in str(caught.value)


def test_flipped_probabilities_are_the_mean_over_each_image_and_its_mirror(folder):
    model = model_from_checkpoint(folder / "plain.pt")
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    both = class_probabilities(model, images, NORMALIZATION, flip=True)
    plain = class_probabilities(model, images, NORMALIZATION)
    mirrored = class_probabilities(model, images.flip(2), NORMALIZATION)
    torch.testing.assert_close(both, (plain + mirrored) / 2)
    torch.testing.assert_close(both.sum(1), torch.ones(5))


def test_the_command_line_prints_what_predict_files_returns_with_flips(folder, capsys):
    (library,) = predict_files(folder / "challenge.pt", [folder / "shoe.png"])
    argv = ["predict", "--checkpoint", str(folder / "challenge.pt"), str(folder / "shoe.png")]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(library)


@pytest.mark.parametrize("name", ["nan", "inf", "minus-inf"])
def test_a_float_tiff_with_nan_or_inf_pixels_is_refused_naming_the_file(folder, name, capsys):
    path = folder / f"{name}.tiff"
    (prediction,) = predict_files(folder / "plain.pt", [path])
    assert prediction.error == f"{path}: has NaN or infinite pixels; save it without them"
    assert main(["predict", "--checkpoint", str(folder / "plain.pt"), str(path)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {path}: has NaN or infinite pixels; save it without them\n"


def test_a_finite_float_tiff_is_still_predicted(folder):
    (prediction,) = predict_files(folder / "plain.pt", [folder / "finite.tiff"])
    assert prediction.error is None and len(prediction.top) == 3


def test_an_in_memory_float_image_with_nan_is_refused(folder):
    values = np.zeros((28, 28), dtype=np.float32)
    values[0, 0] = np.nan
    with pytest.raises(ValueError, match="the image has NaN or infinite pixels; replace them"):
        convert_image(Image.fromarray(values, mode="F"))
    with pytest.raises(ImageFileError, match="has NaN or infinite pixels"):
        convert_image(folder / "nan.tiff")


NORMALIZATIONS = {
    "std 1e-300": {"kind": "standardize", "mean": 0.3, "std": 1e-300},
    "std 1e-9": {"kind": "standardize", "mean": 0.3, "std": 1e-9},
    "std 1e300": {"kind": "standardize", "mean": 0.3, "std": 1e300},
    "std 5": {"kind": "standardize", "mean": 0.3, "std": 5.0},
    "std negative": {"kind": "standardize", "mean": 0.3, "std": -0.35},
    "std inf": {"kind": "standardize", "mean": 0.3, "std": float("inf")},
    "std a bool": {"kind": "standardize", "mean": 0.3, "std": True},
    "std a text": {"kind": "standardize", "mean": 0.3, "std": "0.35"},
    "mean 1e300": {"kind": "standardize", "mean": 1e300, "std": 0.35},
    "mean negative": {"kind": "standardize", "mean": -0.5, "std": 0.35},
    "mean NaN": {"kind": "standardize", "mean": float("nan"), "std": 0.35},
    "mean missing": {"kind": "standardize", "std": 0.35},
}


@pytest.mark.parametrize("normalization", NORMALIZATIONS.values(), ids=list(NORMALIZATIONS))
def test_a_normalization_that_would_blow_pixels_up_is_refused_on_load(tmp_path, normalization):
    path = write_checkpoint(tmp_path / "checkpoint.pt", normalization)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path} is damaged: its 'normalization' is {{'kind': 'standardize'")
    assert "a mean in 0..1 and a std in 1e-6..1; train again or use an intact copy" in message


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_the_command_line_refuses_a_std_of_1e_300_with_one_line(tmp_path, command, capsys):
    path = write_checkpoint(tmp_path / "checkpoint.pt", {**NORMALIZATION, "std": 1e-300})
    argv = [command, "--checkpoint", str(path)] + (["shoe.png"] if command == "predict" else [])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} is damaged: its 'normalization'") and "1e-300" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("mean, std", [(0.0, 1e-6), (1.0, 1.0), (0.286, 0.353), (0, 1)])
def test_the_statistics_of_real_pixels_still_load(tmp_path, mean, std):
    normalization = {"kind": "standardize", "mean": mean, "std": std}
    path = write_checkpoint(tmp_path / "checkpoint.pt", normalization)
    assert load_checkpoint(path)["normalization"] == normalization


# --- part 8: the explorers get values in range --------------------------------------------------


HUGE = {
    "explore_conv size 10**9": (lambda: explore_conv(size=10**9, kernel_size=3), "size=1000000000"),
    "explore_conv padding 10**9": (lambda: explore_conv(5, 3, padding=10**9), "padding=1000000000"),
    "explore_conv stride 10**6": (lambda: explore_conv(5, 3, stride=10**6), "stride=1000000"),
    "explore_conv dilation 257": (lambda: explore_conv(5, 3, dilation=257), "dilation=257"),
    "explore_conv kernel 10**9": (lambda: explore_conv(5, 10**9), "kernel_size=1000000000"),
    "explore_conv size -10**9": (lambda: explore_conv(-(10**9), 3), "size=-1000000000"),
    "explore_pool size 10**9": (lambda: explore_pool(10**9, 2), "size=1000000000"),
    "explore_pool stride 10**9": (lambda: explore_pool(7, 2, stride=10**9), "stride=1000000000"),
    "conv_explorer size 10**9": (lambda: conv_explorer(size=10**9), "size=1000000000"),
    "pool_explorer padding 10**6": (lambda: pool_explorer(padding=10**6), "padding=1000000"),
}


@pytest.mark.parametrize("call, name", HUGE.values(), ids=list(HUGE))
def test_a_layer_too_large_to_draw_is_refused_at_once(call, name):
    with pytest.raises(ValueError) as caught:
        call()
    assert str(caught.value) == (
        f"{name} is beyond what the explorers draw (-256..256); conv2d_output_size and "
        "pool2d_output_size take any size"
    )


NOT_INTS = {
    "explore_conv size 1.5": (lambda: explore_conv(1.5, 3), "size=1.5"),
    "explore_conv size a text": (lambda: explore_conv("28", 3), "size='28'"),
    "explore_conv size a pair": (lambda: explore_conv((28, 28), 3), "size=(28, 28)"),
    "explore_conv stride True": (lambda: explore_conv(28, 3, stride=True), "stride=True"),
    "explore_pool kernel None": (lambda: explore_pool(7, None), "kernel_size=None"),
    "conv_explorer padding a text": (lambda: conv_explorer(padding="same"), "padding='same'"),
    "pool_explorer size a float": (lambda: pool_explorer(size=7.0), "size=7.0"),
}


@pytest.mark.parametrize("call, name", NOT_INTS.values(), ids=list(NOT_INTS))
def test_an_explorer_setting_that_is_not_an_int_is_refused(call, name):
    with pytest.raises(TypeError) as caught:
        call()
    assert str(caught.value) == f"{name} is not an int; the explorers show square layers"


@pytest.mark.parametrize("flag", ["no", 1, None])
def test_pool_explorer_refuses_a_ceil_mode_that_is_not_a_bool(flag):
    with pytest.raises(TypeError, match=f"ceil_mode={flag!r} is not a bool; use ceil_mode=True"):
        pool_explorer(ceil_mode=flag)


@pytest.mark.parametrize(
    "setting, value", [("size", 0), ("size", -3), ("padding", -1), ("stride", 0)]
)
def test_a_value_below_the_slider_explains_itself_instead_of_being_clamped(setting, value):
    explorer = conv_explorer(**{setting: value})
    assert explorer.sliders[setting].value == value  # not moved into the slider's range
    assert explorer.output.value == "output size: impossible"
    assert f"{setting}={value}" in explorer.explanation.value


def test_the_largest_drawable_layer_is_drawn():
    explorer = conv_explorer(size=256, kernel_size=3, padding=0)
    assert explorer.output.value == "output size: 254 x 254"
    assert explorer.sliders["size"].max == 256


IMAGE = torch.arange(16.0).view(4, 4)
KERNEL = torch.ones(2, 2)
KERNEL_VIEWS = {
    "row 1.5": ((IMAGE, KERNEL, 1.5, 0), "row=1.5, col=0: a 2x2 kernel on a 4x4 image has "
                                         "positions 0..2 x 0..2 (whole numbers)"),
    "col a text": ((IMAGE, KERNEL, 0, "1"), "row=0, col='1': a 2x2 kernel"),
    "row True": ((IMAGE, KERNEL, True, 0), "row=True, col=0: a 2x2 kernel"),
    "row None": ((IMAGE, KERNEL, None, 0), "row=None, col=0: a 2x2 kernel"),
    "row -1": ((IMAGE, KERNEL, -1, 0), "has positions 0..2 x 0..2"),
    "a text image": (("abc", KERNEL, 0, 0), "image is not a grid of numbers; use 2-D numbers"),
    "a ragged image": (([[1, 2], [3]], KERNEL, 0, 0), "image is not a grid of numbers"),
    "a dict image": (({}, KERNEL, 0, 0), "image is not a grid of numbers"),
    "a list of texts": ((["ab", "cd"], KERNEL, 0, 0), "image is not a grid of numbers"),
    "a 3-D image": ((IMAGE[None], KERNEL, 0, 0), "image has shape (1, 4, 4); use 2-D numbers"),
    "a 1-D kernel": ((IMAGE, [1.0, 2.0], 0, 0), "kernel has shape (2,); use 2-D numbers"),
    "an empty kernel": ((IMAGE, [[]], 0, 0), "kernel has shape (1, 0); use 2-D numbers, at least"),
    "a text kernel": ((IMAGE, "edge", 0, 0), "kernel is not a grid of numbers"),
    "a kernel larger than the image": (
        (IMAGE, torch.ones(5, 5), 0, 0),
        "a 5x5 kernel has no positions on a 4x4 image; use a kernel at most as large as the image",
    ),
}


@pytest.mark.parametrize("arguments, message", KERNEL_VIEWS.values(), ids=list(KERNEL_VIEWS))
def test_kernel_view_refuses_with_one_clear_message(arguments, message):
    with pytest.raises(ValueError) as caught:
        kernel_view(*arguments)
    assert message in str(caught.value)


def test_kernel_view_takes_lists_and_numpy_positions():
    view = kernel_view(IMAGE.tolist(), [[1, 0], [0, -1]], np.int64(1), torch.tensor(2))
    assert (view.row, view.col, view.total) == (1, 2, -5.0)


KERNEL_EXPLORERS = {
    "no kernels": ({}, {}, "kernels is empty; give a dict of names to kernels, e.g. {'edges'"),
    "a list of kernels": ([KERNEL], {}, "kernels is a list; give a dict of names to kernels"),
    "one kernel, not a dict": (KERNEL, {}, "kernels is a Tensor; give a dict of names"),
    "kernels of two sizes": ({"a": KERNEL, "b": torch.ones(3, 3)}, {},
                             "kernels of different sizes (a: 2x2, b: 3x3); give kernels of one"),
    "a text kernel": ({"a": "edge"}, {}, "kernel 'a' is not a grid of numbers; use 2-D"),
    "row out of range": ({"a": KERNEL}, {"row": 3}, "row=3, col=0: a 2x2 kernel"),
    "col 1.5": ({"a": KERNEL}, {"col": 1.5}, "row=0, col=1.5: a 2x2 kernel"),
}


@pytest.mark.parametrize(
    "kernels, position, message", KERNEL_EXPLORERS.values(), ids=list(KERNEL_EXPLORERS)
)
def test_kernel_explorer_refuses_with_one_clear_message(kernels, position, message):
    with pytest.raises(ValueError) as caught:
        kernel_explorer(IMAGE, kernels, **position)
    assert message in str(caught.value)


@pytest.fixture(scope="module")
def tiny():
    """A v1 model and three test images: what the feature-map explorer reads."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    return build_model("v1"), ImageSet(images, torch.tensor([0, 1, 2]), CLASSES)


FEATURE_MAPS = {
    "index 1.5": ({"index": 1.5}, ValueError, "index=1.5; choose an image in 0..2 (a whole"),
    "index -1": ({"index": -1}, ValueError, "index=-1; choose an image in 0..2"),
    "index 10**6": ({"index": 10**6}, ValueError, "index=1000000; choose an image in 0..2"),
    "index True": ({"index": True}, ValueError, "index=True; choose an image in 0..2"),
    "index a text": ({"index": "0"}, ValueError, "index='0'; choose an image"),
    "stage C9": ({"stage": "C9"}, ValueError, "unknown stage 'C9'; choose one of"),
    "model a name": ({"model": "v1"}, TypeError, "model: str, data: ImageSet; pass a course"),
    "data a tensor": ({"data": torch.zeros(3)}, TypeError, "and an ImageSet (load_dataset)"),
}


@pytest.mark.parametrize("change, error, message", FEATURE_MAPS.values(), ids=list(FEATURE_MAPS))
def test_feature_map_view_refuses_with_one_clear_message(tiny, change, error, message):
    model, data = tiny
    arguments = {"model": model, "data": data, "index": 0, "stage": "C1", **change}
    with pytest.raises(error) as caught:
        feature_map_view(arguments["model"], arguments["data"], NORMALIZATION,
                         arguments["index"], arguments["stage"])
    assert message in str(caught.value)


EXPLORER_OPTIONS = {
    "index beyond the slider": ({"index": 10**6}, "index=1000000; choose an image in 0..2"),
    "index negative": ({"index": -5}, "index=-5; choose an image in 0..2"),
    "no stages": ({"stages": ()}, "stages is empty; choose some of ('C1', 'S2', 'C3', 'S4')"),
    "an unknown stage": ({"stages": ("C1", "F6")}, "unknown stage 'F6'"),
}


@pytest.mark.parametrize("options, message", EXPLORER_OPTIONS.values(), ids=list(EXPLORER_OPTIONS))
def test_feature_map_explorer_refuses_instead_of_clamping(tiny, options, message):
    model, data = tiny
    with pytest.raises(ValueError) as caught:
        feature_map_explorer(model, data, NORMALIZATION, **options)
    assert message in str(caught.value)


def test_feature_map_explorer_takes_one_stage_as_a_text(tiny):
    model, data = tiny
    panel = feature_map_explorer(model, data, NORMALIZATION, index=2, stages="S2")
    slider, menu = panel.children[0].children
    assert (slider.value, menu.options) == (2, ("S2",))


# --- part 8: the checker answers any value with a verdict ------------------------------------


class Loop(list):
    """A list that holds itself."""


LOOP = Loop()
LOOP.append(LOOP)
ANSWERS = {
    "10**400": 10**400,
    "10**5000": 10**5000,
    "-(10**5000)": -(10**5000),
    "a fraction too large for a float": Fraction(10**400, 3),
    "a float inf": float("inf"),
    "a float NaN": float("nan"),
    "numpy inf": np.float64("inf"),
    "a huge tensor value": torch.tensor(3.0e38) * 10,
    "a list holding itself": LOOP,
    "[10**5000, 1]": [10**5000, 1],
    "a Decimal": Decimal("1e400"),
    "a complex": 2 + 1j,
    "a dict": {"size": 112},
    "an object": object(),
    "bytes": b"112",
    "an empty list": [],
}


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=list(ANSWERS))
def test_any_answer_gets_a_verdict(answer, capsys):
    check.exercise("02-1", answer)
    out = capsys.readouterr().out
    assert out.startswith("Exercise 02-1: not ") and ". Hint: " in out and out.count("\n") == 1


@pytest.mark.parametrize("key", [5, None, ["02-1"], "2-1", ""], ids=repr)
def test_an_unknown_key_says_what_keys_look_like(key):
    with pytest.raises(KeyError, match=r"keys look like '02-3' \(notebook 02, exercise 3\)"):
        check.exercise(key, 1)


@pytest.fixture
def answers_file(tmp_path, monkeypatch):
    """Point the checker at a file of the test's own (its cached table forgotten before and
    after)."""
    path = tmp_path / "answers.json"
    monkeypatch.setattr(check, "ANSWERS", path)
    check.answers.cache_clear()
    yield path
    check.answers.cache_clear()


DAMAGED = {
    "empty": b"",
    "cut short": b'{"02-1": {"digest": "abc',
    "not JSON": b"<html>404</html>",
    "not UTF-8": b"\xff\xfe\x00garbage",
    "a list": b"[]",
    "null": b"null",
    "an entry without a hint": json.dumps({"02-1": {"digest": "abc"}}).encode(),
    "an entry that is a text": json.dumps({"02-1": "abc"}).encode(),
    "missing": None,
}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=list(DAMAGED))
def test_a_damaged_answers_file_is_named_with_what_to_do(answers_file, content):
    if content is not None:
        answers_file.write_bytes(content)
    with pytest.raises(RuntimeError) as caught:
        check.exercise("02-1", 1)
    message = str(caught.value)
    assert message.startswith(f"{answers_file} is damaged (") and "\n" not in message
    assert message.endswith("restore it: git checkout lenet_course/answers.json, or reinstall "
                            "the course")


def test_an_intact_answers_file_still_checks(answers_file, capsys):
    answers_file.write_text(json.dumps({"02-1": {"digest": check.digest(7), "hint": "h"}}))
    check.exercise("02-1", 7)
    assert capsys.readouterr().out == "Exercise 02-1: right!\n"
