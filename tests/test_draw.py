"""Draw and watch without a browser: the shipped weights, and the JupyterLab pad's kernel side.

The page itself (lenet.js, pad.js on the built book) and the widget in JupyterLab are driven in
Chromium by tests/test_browser_draw.py."""

import base64
import subprocess
from functools import partial

import numpy as np
import pytest
import torch
import web_weights
from PIL import Image, ImageDraw

from lenet_course import check
from lenet_course.data import load_dataset, prepare_images
from lenet_course.draw import DrawPad
from lenet_course.predict import convert_image, predict_files

SIZE = 224  # pad.js's drawing canvas


def drawing(shape: str) -> np.ndarray:
    """White strokes on black, as the pad draws them: a "1" or a "0"."""
    image = Image.new("L", (SIZE, SIZE), 0)
    pen = ImageDraw.Draw(image)
    if shape == "1":
        pen.line([(118, 30), (106, 194)], fill=255, width=18)
    else:
        pen.ellipse([(62, 36), (162, 188)], outline=255, width=18)
    return np.asarray(image).copy()


def send(pad: DrawPad, gray: np.ndarray, centre: bool = True) -> dict:
    """What pad.js does on a stroke: set the drawing, then a new request number."""
    pad.centre = centre
    pad.size = gray.shape[0]
    pad.drawing = base64.b64encode(gray.tobytes()).decode()
    pad.request += 1
    return pad.record


def test_draw_sends_a_picture_as_the_pad_does(mnist_checkpoint):
    pad = DrawPad(mnist_checkpoint)
    with pytest.raises(ValueError, match="nothing drawn yet"):
        pad.top()
    assert pad.draw(drawing("0")) == send(DrawPad(mnist_checkpoint), drawing("0"))
    assert pad.top(1)[0][0] == "0"
    with pytest.raises(ValueError, match="expected a square uint8 picture"):
        pad.draw(np.zeros((20, 30), dtype=np.uint8))


def test_the_pad_speaks_the_readers_language(mnist_checkpoint, monkeypatch):
    """pad.js picks its words by the widget's language: English, or Chinese for the Chinese
    edition (make lab EDITION=zh sets LENET_COURSE_LANG=zh)."""
    assert DrawPad(mnist_checkpoint).language == "en"
    monkeypatch.setenv("LENET_COURSE_LANG", "zh")
    check.words.cache_clear()
    try:
        assert DrawPad(mnist_checkpoint).language == "zh"
    finally:
        check.words.cache_clear()


def test_the_weights_are_committed_and_small():
    listed = subprocess.run(
        ["git", "ls-files", "lenet_course/web"],
        cwd=web_weights.REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for dataset in web_weights.DATASETS:
        path = f"lenet_course/web/weights-{dataset}.js"
        assert path in listed, f"{path} is not committed"
        assert (web_weights.REPO / path).stat().st_size < 1_000_000
    assert {"lenet_course/web/lenet.js", "lenet_course/web/pad.js"} <= set(listed)


@pytest.mark.parametrize("dataset", web_weights.DATASETS)
def test_the_shipped_weights_score_what_their_run_measured(dataset, real_data_root):
    """2,000 test images: within 1.5 points of the accuracy recorded on all 10,000."""
    recorded = web_weights.payload(dataset)["test_accuracy"]
    test = load_dataset(dataset, "test", root=real_data_root, download=False)
    images, labels = test.images[:2000], test.labels[:2000]
    net = web_weights.model(dataset)
    normalization = web_weights.payload(dataset)["normalization"]
    with torch.no_grad():
        predicted = net(prepare_images(images, net.input_spec, normalization)).argmax(1)
    accuracy = (predicted == labels).float().mean().item()
    assert abs(accuracy - recorded) < 0.015, (accuracy, recorded)


@pytest.fixture(scope="module")
def mnist_checkpoint(tmp_path_factory):
    return web_weights.checkpoint("mnist", tmp_path_factory.mktemp("draw") / "checkpoint.pt")


def test_the_pad_reads_a_drawing_as_predict_reads_its_file(mnist_checkpoint, tmp_path):
    pad = DrawPad(mnist_checkpoint)
    assert pad.dataset == "mnist"
    for digit in ("1", "0"):
        gray = drawing(digit)
        record = send(pad, gray)
        assert record["request"] == pad.request
        expected = convert_image(gray, dataset="mnist").pixels
        assert record["pixels"] == expected.flatten().tolist()
        assert pad.top(1)[0][0] == digit
        # the saved drawing, through the command line's path
        saved = predict_files(mnist_checkpoint, pad.save(tmp_path / f"{digit}.png"))[0]
        assert saved.error is None
        assert saved.top[0][0] == digit
        assert saved.top[0][1] == pytest.approx(pad.top(1)[0][1], abs=1e-6)


def test_the_record_holds_every_layer_the_page_draws(mnist_checkpoint):
    pad = DrawPad(mnist_checkpoint)
    record = send(pad, drawing("0"))
    stages = ("c1", "s2", "c3", "s4")
    shapes = {key: (record[key]["channels"], record[key]["size"]) for key in stages}
    assert shapes == {"c1": (6, 28), "s2": (6, 14), "c3": (16, 10), "s4": (16, 5)}
    assert (record["kernels"]["channels"], record["kernels"]["size"]) == (6, 5)
    assert len(record["f5"]) == 120 and len(record["f6"]) == 84
    assert sum(record["probabilities"]) == pytest.approx(1, abs=1e-5)
    assert min(min(record[k]["data"]) for k in ("c1", "c3")) >= 0  # after the ReLU
    assert record["class_names"] == [str(d) for d in range(10)]


def test_without_centring_the_pad_only_shrinks_the_drawing(mnist_checkpoint):
    pad = DrawPad(mnist_checkpoint)
    gray = drawing("1")
    record = send(pad, gray, centre=False)
    shrunk = Image.fromarray(gray).resize((28, SIZE), Image.Resampling.LANCZOS)
    shrunk = shrunk.resize((28, 28), Image.Resampling.LANCZOS)
    assert record["pixels"] == np.asarray(shrunk).flatten().tolist()
    assert record["pixels"] != send(pad, gray, centre=True)["pixels"]


def shapes() -> dict:
    """The drawings behind book/draw.md's claims, white on the pad's black square."""
    tshirt = [(60, 40), (100, 30), (124, 30), (164, 40), (200, 80), (175, 100), (160, 90)]
    tshirt += [(160, 200), (64, 200), (64, 90), (49, 100), (24, 80)]
    pullover = [(70, 30), (154, 30), (200, 60), (215, 200), (185, 200), (165, 90), (160, 200)]
    pullover += [(64, 200), (59, 90), (39, 200), (9, 200), (24, 60)]
    return {
        "T-shirt/top": tshirt,
        "Trouser": [(70, 20), (154, 20), (170, 210), (125, 210), (112, 80), (99, 210), (54, 210)],
        "Pullover": pullover,
    }


def polygon(points, pen, **style) -> None:
    pen.polygon(points, outline=255, **style)


def read(dataset: str, draw) -> str:
    """The shipped network's top class for a drawing made by ``draw(ImageDraw)``."""
    image = Image.new("L", (SIZE, SIZE), 0)
    draw(ImageDraw.Draw(image))
    pixels = convert_image(np.asarray(image), dataset=dataset).pixels
    net = web_weights.model(dataset)
    normalization = web_weights.payload(dataset)["normalization"]
    with torch.no_grad():
        scores = net(prepare_images(pixels[None], net.input_spec, normalization))
    return web_weights.payload(dataset)["class_names"][int(scores.argmax())]


def test_what_the_page_tells_its_reader_to_try():
    """book/draw.md: strokes and loops, filled garments and outlines."""
    assert read("mnist", lambda pen: pen.line([(118, 30), (106, 194)], fill=255, width=18)) == "1"

    def nine(pen):
        pen.line([(140, 30), (140, 194)], fill=255, width=18)
        pen.ellipse([(70, 40), (140, 110)], outline=255, width=18)

    def six(pen):
        pen.line([(80, 30), (80, 194)], fill=255, width=18)
        pen.ellipse([(80, 124), (150, 194)], outline=255, width=18)

    assert (read("mnist", nine), read("mnist", six)) == ("9", "6")
    filled, outlines = {}, {}
    for garment, points in shapes().items():
        filled[garment] = read("fashion-mnist", partial(polygon, points, fill=255))
        outlines[garment] = read("fashion-mnist", partial(polygon, points, width=10))
    assert filled == {garment: garment for garment in shapes()}
    assert outlines["Trouser"] == "Dress" and outlines["Pullover"] == "Bag"


def test_a_normal_digit_a_little_off_the_middle_is_read_without_centring(mnist_checkpoint):
    """book/draw.md: convolutions and pooling tolerate some displacement."""
    pad = DrawPad(mnist_checkpoint)
    shifted = np.roll(drawing("0"), (18, 24), axis=(0, 1))  # 2 and 3 pixels at 28 x 28
    send(pad, shifted, centre=False)
    assert pad.top(1)[0][0] == "0"


def test_an_off_centre_digit_is_misread_until_centred(mnist_checkpoint):
    pad = DrawPad(mnist_checkpoint)
    corner = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(corner).ellipse([(150, 140), (200, 210)], outline=255, width=10)
    gray = np.asarray(corner).copy()
    send(pad, gray, centre=False)
    assert pad.top(1)[0][0] != "0"
    send(pad, gray, centre=True)
    assert pad.top(1)[0][0] == "0"
