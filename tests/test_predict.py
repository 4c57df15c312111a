"""Using a trained LeNet: safe checkpoints from the user's side, image files -> predictions, and
the ``predict`` command."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lenet_course.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from lenet_course.cli import main
from lenet_course.data import CLASS_NAMES, ImageSet, prepare_images
from lenet_course.models import build_model
from lenet_course.predict import (
    ImageFileError,
    Prediction,
    background_level,
    class_probabilities,
    convert_image,
    load_image,
    predict_files,
    top_classes,
)
from lenet_course.train import TrainConfig, fit

torch.set_num_threads(1)  # the test machines have 2 cores shared by several jobs

REPO = Path(__file__).resolve().parent.parent
CLASSES = list(CLASS_NAMES["fashion-mnist"])


def glyph(
    height: int = 28, width: int = 28, dark_background: bool = True, margin: bool = True
) -> np.ndarray:
    """A uint8 picture of a bright 'T' (a T-shirt seen from far) on a plain background, with an
    empty margin of about 1/8 of the picture on every side (none at top and bottom when
    ``margin`` is false, so that the T spans the whole height)."""
    my = max(1, height // 8) if margin else 0
    mx = max(1, width // 8)
    bar, stem = max(1, (height - 2 * my) // 4), max(1, (width - 2 * mx) // 4)
    ink = np.zeros((height, width), dtype=np.uint8)
    ink[my : my + bar, mx : width - mx] = 230
    left = (width - stem) // 2
    ink[my : height - my, left : left + stem] = 230
    return ink if dark_background else 255 - ink


def save_checkpoint_of(model: torch.nn.Module, path: Path) -> Path:
    """Train ``model`` for one epoch on 20 random images with Fashion-MNIST's classes; the
    checkpoint that fit writes is what a user of predict has.  The model keeps its memory format
    (no channels_last), so that it and a model rebuilt from the file compute bitwise alike."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8, generator=generator)
    data = ImageSet(images, torch.arange(20) % 10, CLASS_NAMES["fashion-mnist"])
    config = TrainConfig(epochs=1, batch_size=10, lr=1e-3, progress=False, device="cpu", threads=1)
    fit(model, data, config.replace(channels_last=False), checkpoint=path)
    return path


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint_of(build_model("v1", pooling="max"), tmp_path / "checkpoint.pt")


# --- checkpoints, seen by their user -----------------------------------------------------------


@pytest.mark.parametrize("name", ["v1", "v3", "classic", "lenet5-1998"])
def test_round_trip_save_load_predict(tmp_path, name):
    torch.manual_seed(1)
    model = build_model(name)
    path = save_checkpoint_of(model, tmp_path / "run" / "checkpoint.pt")
    raw = torch.load(path, weights_only=True)  # safe types only: plain torch.load can read it
    assert raw["format"] == "lenet_course.checkpoint/1" and raw["model"] == model.config
    loaded = load_checkpoint(path)
    rebuilt = model_from_checkpoint(loaded)
    assert not rebuilt.training and rebuilt.config == model.config
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    normalization = loaded["normalization"]
    expected = class_probabilities(model, images, normalization)
    torch.testing.assert_close(class_probabilities(rebuilt, images, normalization), expected)
    picture = tmp_path / "picture.png"
    Image.fromarray(images[0].numpy()).save(picture)
    (prediction,) = predict_files(path, [picture], top_k=10)
    converted = convert_image(picture).pixels
    top = top_classes(class_probabilities(model, converted[None], normalization), CLASSES, 10)
    assert prediction.error is None and prediction.top == top[0]
    assert sum(p for _, p in prediction.top) == pytest.approx(1.0, abs=1e-5)


def test_lenet5_1998_probabilities_come_from_its_scores():
    torch.manual_seed(2)
    model = build_model("lenet5-1998").eval()
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    probabilities = class_probabilities(model, images, {"kind": "paper"})
    with torch.no_grad():
        penalties = model(prepare_images(images, model.input_spec, {"kind": "paper"}))
    torch.testing.assert_close(probabilities, torch.softmax(-penalties, dim=1))
    assert torch.equal(probabilities.argmax(1), penalties.argmin(1))  # lowest penalty wins


def test_wrong_architecture_names_the_first_mismatched_layer_and_both_shapes(checkpoint):
    loaded = load_checkpoint(checkpoint)
    loaded["model"] = {**loaded["model"], "num_classes": 5}  # fc3 is 10 x 84 in the file
    with pytest.raises(ValueError) as caught:
        model_from_checkpoint(loaded)
    assert "layer fc3.weight is 10x84 in the checkpoint but 5x84 in the model" in str(caught.value)
    loaded["model"] = {**loaded["model"], "name": "v3", "num_classes": 10}  # other layer names
    with pytest.raises(ValueError, match=r"no weights for layer conv_block1\.0\.weight \(6x1x5x5"):
        model_from_checkpoint(loaded)


def test_a_truncated_checkpoint_fails_clearly(checkpoint, tmp_path):
    data = checkpoint.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_checkpoint(cut)


@pytest.mark.parametrize(
    "content",
    [b"not a checkpoint at all\n", b"", b"PK\x03\x04 a zip that is not one"],
    ids=["text", "empty", "fake-zip"],
)
def test_a_non_checkpoint_file_fails_clearly(tmp_path, content):
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="notes.pt"):
        load_checkpoint(path)


def test_a_torch_file_that_is_not_our_checkpoint_fails_clearly(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(build_model("v1").state_dict(), path)  # a bare state_dict: no config, no classes
    with pytest.raises(CheckpointError, match="weights.pt"):
        load_checkpoint(path)


CALLS: list[str] = []


def _record_call(what: str) -> list[str]:
    CALLS.append(what)
    return CALLS


class Booby:
    """An object whose unpickling calls a function: what a malicious pickle does with os.system."""

    def __reduce__(self):
        return (_record_call, ("unpickled",))


def test_a_pickled_object_is_refused_without_running_its_code(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"format": "lenet_course.checkpoint/1", "model": Booby()}, path)
    with pytest.raises(CheckpointError, match="model.pt"):
        load_checkpoint(path)
    assert CALLS == []
    pickle.loads(pickle.dumps(Booby()))  # the unsafe way: plain unpickling runs the call
    assert CALLS == ["unpickled"]
    CALLS.clear()


def test_a_whole_pickled_model_is_refused(tmp_path):
    """The popular tutorial's ``torch.save(model)``: loading it needs unpickling; we refuse."""
    path = tmp_path / "whole_model.pth"
    torch.save(build_model("v1"), path)
    with pytest.raises(CheckpointError, match="whole_model.pth"):
        load_checkpoint(path)


def test_a_missing_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.pt"):
        load_checkpoint(tmp_path / "nowhere.pt")


# --- image files -> 28 x 28 ---------------------------------------------------------------------


def as_mode(gray: np.ndarray, mode: str) -> Image.Image:
    image = Image.fromarray(gray, mode="L")
    if mode == "RGBA":  # the picture's own pixels, fully opaque
        return image.convert("RGBA")
    if mode == "I;16":
        return Image.fromarray(gray.astype(np.uint16) * 257)
    return image.convert(mode)


#: (file format, Pillow mode): JPEG stores no transparency, palette or 16 bits.
FORMATS_AND_MODES = [
    *[("PNG", mode) for mode in ("L", "RGB", "RGBA", "P", "LA", "I;16", "1")],
    *[("JPEG", mode) for mode in ("L", "RGB", "1")],
]


@pytest.mark.parametrize(("fmt", "mode"), FORMATS_AND_MODES, ids="-".join)
@pytest.mark.parametrize("size", [(28, 28), (300, 180), (37, 211), (9, 6)], ids=str)
@pytest.mark.parametrize("dark", [True, False], ids=["dark-background", "light-background"])
def test_any_file_becomes_28x28_black_background_uint8(tmp_path, fmt, mode, size, dark):
    height, width = size
    path = tmp_path / f"picture.{fmt.lower()}"
    as_mode(glyph(height, width, dark_background=dark), mode).save(path, format=fmt)
    converted = convert_image(load_image(path))
    pixels = converted.pixels
    assert pixels.dtype == torch.uint8 and tuple(pixels.shape) == (28, 28)
    assert converted.inverted is (not dark)
    assert converted.size == (width, height)
    assert int(pixels.max()) >= 150  # the object survives
    assert background_level(pixels.numpy()) <= 10  # black background, as in the data sets
    spans = []
    for axis in (0, 1):
        ink = torch.nonzero(pixels.float().amax(dim=axis) > 60).flatten()
        spans.append(int(ink.max() - ink.min()) + 1)
    # The object's longest edge fills the 28 pixels; JPEG's ringing around sharp edges (worst
    # in tiny pictures) survives the 5% trimming tolerance and leaves a margin of a few pixels.
    assert max(spans) >= (26 if fmt == "PNG" else 20)


def test_light_and_dark_versions_of_a_picture_convert_alike():
    dark = convert_image(Image.fromarray(glyph(120, 90, True))).pixels.float()
    light = convert_image(Image.fromarray(glyph(120, 90, False))).pixels.float()
    assert float((dark - light).abs().max()) <= 1.0


def test_a_28x28_data_set_image_passes_through_unchanged():
    image = glyph(28, 28, margin=False)
    image[5:9, 3:7] = 77  # some grey too
    assert np.array_equal(convert_image(image).pixels.numpy(), image)


def test_an_enlarged_inverted_jpeg_comes_back_close_to_the_original(tmp_path):
    original = glyph(28, 28, margin=False)
    big = Image.fromarray(255 - original).resize((140, 140), Image.Resampling.NEAREST)
    canvas = Image.new("L", (260, 200), 255)
    canvas.paste(big, (80, 30))
    canvas.save(tmp_path / "photo.jpg", quality=90)
    converted = convert_image(tmp_path / "photo.jpg")
    assert converted.inverted
    difference = (converted.pixels.float() - torch.from_numpy(original).float()).abs()
    assert float(difference.mean()) < 12


def test_no_invert_keeps_a_light_background():
    converted = convert_image(Image.fromarray(glyph(50, 40, False)), invert=False)
    assert not converted.inverted and int(converted.pixels[0, 0]) >= 200


def test_transparent_background_is_read_as_white_paper():
    rgba = np.zeros((60, 60, 4), dtype=np.uint8)  # transparent black everywhere...
    rgba[10:50, 25:35] = (20, 20, 20, 255)  # ...and an opaque dark bar
    converted = convert_image(Image.fromarray(rgba, mode="RGBA"))
    assert converted.inverted and converted.background == 255.0
    assert int(converted.pixels.max()) >= 200 and int(converted.pixels[0, 0]) == 0


def test_mnist_layout_fits_a_20x20_box_centred_by_mass():
    converted = convert_image(Image.fromarray(glyph(100, 60, False)), dataset="mnist")
    pixels = converted.pixels.float()
    rows = torch.nonzero(pixels.amax(dim=1) > 0).flatten()
    cols = torch.nonzero(pixels.amax(dim=0) > 0).flatten()
    assert int(rows.max() - rows.min()) + 1 <= 21 and int(cols.max() - cols.min()) + 1 <= 21
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    center = ((ys * pixels).sum() / pixels.sum(), (xs * pixels).sum() / pixels.sum())
    assert all(abs(float(c) - 13.5) <= 1.0 for c in center)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    Image.fromarray(glyph(30, 80)).save(tmp_path / "sideways.jpg", exif=exif)
    assert load_image(tmp_path / "sideways.jpg").size == (30, 80)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.txt", b"a text file, not a picture\n", "not an image file"),
        ("empty.png", b"", "not an image file"),
        ("cut.png", None, "unreadable image (image file is truncated"),
    ],
)
def test_unreadable_files_get_one_line_errors(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is None:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(ImageFileError) as caught:
        load_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message
    with pytest.raises(ImageFileError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageFileError, match="is a folder"):
        load_image(tmp_path)


FIFO_SCRIPT = """
import os, sys
from pathlib import Path
from lenet_course.predict import ImageFileError, load_image
fifo = Path(sys.argv[1])
os.mkfifo(fifo)
try:
    load_image(fifo)
except ImageFileError as error:
    print(error)
"""


def test_a_fifo_or_device_is_refused_at_once_never_opened(tmp_path, monkeypatch):
    """Opening a FIFO waits for a writer forever: load_image must refuse it without opening it."""
    fifo = tmp_path / "picture.png"
    result = subprocess.run([sys.executable, "-c", FIFO_SCRIPT, str(fifo)], timeout=20,
                            capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout == f"{fifo}: is a FIFO or device, not an image file\n", result.stderr

    def opened(*args, **kwargs):
        raise AssertionError("the file was opened")

    monkeypatch.setattr(Image, "open", opened)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ImageFileError, match="is a FIFO or device, not an image file"):
            load_image(path)


def test_a_fifo_among_pictures_gets_its_error_and_the_others_are_predicted(
    checkpoint, tmp_path, monkeypatch
):
    paths = write_pictures(tmp_path)[:2] + [tmp_path / "fifo.png"]
    os.mkfifo(paths[2])
    real_open = Image.open

    def guarded(path, *args, **kwargs):  # fail, rather than wait forever, if the FIFO is opened
        assert str(path) != str(paths[2]), "the FIFO was opened"
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", guarded)
    predictions = predict_files(checkpoint, paths)
    assert [p.error is None for p in predictions] == [True, True, False]
    assert predictions[2].error == f"{paths[2]}: is a FIFO or device, not an image file"


def test_an_unreadable_image_names_the_fix(tmp_path, monkeypatch):
    """As root chmod stops nothing: the open that Pillow makes raises PermissionError instead."""
    import builtins

    path = tmp_path / "p.png"
    Image.fromarray(glyph()).save(path)
    real_open = builtins.open

    def denied(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    with pytest.raises(ImageFileError) as caught:
        load_image(path)
    assert str(caught.value) == f"{path}: permission denied; make it readable (chmod a+r)"


def test_nan_probabilities_become_that_files_error(checkpoint, tmp_path, monkeypatch):
    """A file whose probabilities are NaN or infinite is reported, not printed as NaN numbers."""
    import lenet_course.predict as predict

    paths = write_pictures(tmp_path)[:2]
    real = predict.class_probabilities

    def second_is_nan(*args, **kwargs):
        probabilities = real(*args, **kwargs)
        probabilities[1, 3] = float("nan")
        return probabilities

    monkeypatch.setattr(predict, "class_probabilities", second_is_nan)
    first, second = predict_files(checkpoint, paths)
    assert first.error is None and len(first.top) == 3
    assert second.error == f"{paths[1]}: the model gives NaN or infinite probabilities; retrain it"
    assert second.top == [] and str(second) == f"error: {second.error}"
    json.dumps([first.to_json(), second.to_json()], allow_nan=False)


def test_a_model_that_overflows_gives_errors_not_nan(checkpoint, tmp_path, capsys):
    model = model_from_checkpoint(checkpoint)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1e30)  # the scores overflow to +-inf: softmax gives NaN
    paths = write_pictures(tmp_path)[:2]
    predictions = predict_files(checkpoint, paths, model=model)
    assert all("NaN or infinite probabilities" in p.error for p in predictions)
    answer = json.loads(json.dumps([p.to_json() for p in predictions], allow_nan=False))
    assert [set(item) for item in answer] == [{"path", "error"}] * 2


def test_to_json_is_always_valid_json():
    prediction = Prediction("x.png", [("a", float("nan")), ("b", float("inf")), ("c", 0.25)])
    answer = json.loads(json.dumps(prediction.to_json(), allow_nan=False))
    assert [t["probability"] for t in answer["top"]] == [None, None, 0.25]


def test_top_classes_checks_k():
    probabilities = torch.tensor([[0.1, 0.7, 0.2]])
    assert top_classes(probabilities, ["a", "b", "c"], 2) == [
        [("b", pytest.approx(0.7)), ("c", pytest.approx(0.2))]
    ]
    with pytest.raises(ValueError, match="k=4; it must be between 1 and the 3 classes"):
        top_classes(probabilities, ["a", "b", "c"], 4)


# --- many files, and the command line -----------------------------------------------------------


def write_pictures(folder: Path) -> list[Path]:
    paths = [folder / "dark.png", folder / "light.jpg", folder / "notes.txt", folder / "rgba.png"]
    Image.fromarray(glyph(64, 48)).save(paths[0])
    Image.fromarray(glyph(90, 120, False)).convert("RGB").save(paths[1])
    paths[2].write_text("not a picture\n")
    as_mode(glyph(40, 40), "RGBA").save(paths[3])
    return paths


def test_predict_files_reports_a_bad_file_and_predicts_the_others(checkpoint, tmp_path):
    paths = write_pictures(tmp_path)
    predictions = predict_files(checkpoint, paths, top_k=2)
    assert [p.path for p in predictions] == [str(p) for p in paths]
    assert [p.error is None for p in predictions] == [True, True, False, True]
    assert "notes.txt: not an image file" in predictions[2].error
    assert [p.inverted for p in predictions] == [False, True, False, False]
    for p in (predictions[0], predictions[1], predictions[3]):
        assert len(p.top) == 2 and p.top[0][1] >= p.top[1][1] and p.top[0][0] in CLASSES


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lenet_course", *args],
        capture_output=True, text=True, cwd=REPO, check=False,
    )


def test_cli_predict_text_output_and_exit_status(checkpoint, tmp_path):
    paths = write_pictures(tmp_path)
    result = run_cli("predict", "--checkpoint", str(checkpoint), *map(str, paths), "--top-k", "3")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "notes.txt: not an image file" in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{paths[0]}: ") and lines[1].endswith(" (inverted)")
    assert all(line.count(", ") == 2 for line in lines)


def test_cli_predict_json_matches_the_library(checkpoint, tmp_path, capsys):
    paths = write_pictures(tmp_path)
    good = [str(paths[0]), str(paths[1])]
    assert main(["predict", "--checkpoint", str(checkpoint), *good, "--json", "--top-k", "10"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    answer = json.loads(captured.out)
    expected = predict_files(checkpoint, good, top_k=10)
    assert [a["path"] for a in answer] == good
    for item, prediction in zip(answer, expected, strict=True):
        assert [t["class"] for t in item["top"]] == [name for name, _ in prediction.top]
        assert sum(t["probability"] for t in item["top"]) == pytest.approx(1.0, abs=1e-4)
    assert [a["inverted"] for a in answer] == [False, True]
    assert main(["predict", "--checkpoint", str(checkpoint), good[1], "--json", "--no-invert"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["inverted"] is False


def test_cli_predict_json_keeps_errors_in_place(checkpoint, tmp_path, capsys):
    paths = write_pictures(tmp_path)
    assert main(["predict", "--checkpoint", str(checkpoint), *map(str, paths), "--json"]) == 1
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert "error" in answer[2] and "top" in answer[3]
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--top-k", "0"], "argument --top-k: 0 must be >= 1"),
        (["--top-k", "many"], "argument --top-k: 'many' is not a whole number"),
        (["--top-k", "11"], "--top-k 11: the model has 10 classes"),
    ],
)
def test_cli_predict_bad_arguments_exit_2_with_one_line(checkpoint, tmp_path, args, reason):
    picture = tmp_path / "p.png"
    Image.fromarray(glyph()).save(picture)
    result = run_cli("predict", "--checkpoint", str(checkpoint), str(picture), *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and reason in result.stderr


def test_cli_predict_with_a_broken_checkpoint_exits_1_with_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    picture = tmp_path / "p.png"
    Image.fromarray(glyph()).save(picture)
    result = run_cli("predict", "--checkpoint", str(bad), str(picture))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "bad.pt" in result.stderr and result.stdout == ""
