"""Use a trained LeNet on your own pictures: image files -> 28 x 28 inputs -> top classes, by the
recipe that made the data set (Fashion-MNIST, arXiv:1708.07747: trim, longest edge 28, centre,
negate; MNIST: fit in 20 x 20, centre of mass in the middle)."""

import math
import numbers
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from lenet_course.checkpoint import as_checkpoint, model_from_checkpoint
from lenet_course.data import PathLike, prepare_images
from lenet_course.models import class_scores

LIGHT_BACKGROUND = 127  # a border median above it: a light background, so the picture is inverted
TRIM_TOLERANCE = 0.05 * 255  # an object's pixels differ from the background by more (Fashion-MNIST)
LAYOUTS = {"fashion-mnist": (28, "box"), "mnist": (20, "mass")}  # object's longest edge, centring
CANVAS = 28


class ImageFileError(ValueError):
    """A file that cannot be read as an image; the message is one line naming the file."""


def load_image(path: PathLike) -> Image.Image:
    """Decode an image file, turned upright by its EXIF tag, or raise a one-line ImageFileError."""
    path = Path(path)
    # a folder, a FIFO or a device is never opened: reading a FIFO blocks forever
    if os.path.exists(path) and not os.path.isfile(path):
        what = "a folder" if os.path.isdir(path) else "a FIFO or device"
        raise ImageFileError(f"{path}: is {what}, not an image file")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so that a truncated file fails here rather than later
            image = ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageFileError(f"{path}: permission denied; make it readable (chmod a+r)") from None
    except Image.UnidentifiedImageError:
        raise ImageFileError(f"{path}: not an image file Pillow reads (PNG, JPEG, ...)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ImageFileError(f"{path}: unreadable image ({reason})") from None
    # a float TIFF may hold NaN or inf, which no brightness stands for
    if image.mode == "F" and not np.isfinite(np.asarray(image)).all():
        raise ImageFileError(f"{path}: has NaN or infinite pixels; save it without them")
    return image


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Any image as H x W uint8 brightness (0 black .. 255 white), transparent pixels on white."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    # 16-bit images span 0..65535; 32-bit and float ones have no fixed range: their own does
    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("the image has NaN or infinite pixels; replace them with numbers")
    low, high = (0, 65535) if image.mode.startswith("I;16") else (values.min(), values.max())
    values = (values - low) * (255.0 / (high - low)) if high > low else values * 0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def background_level(gray: np.ndarray) -> float:
    """The background's brightness: the median of the outer border, not one (maybe noisy) corner."""
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"expected a non-empty H x W grayscale array, got shape {gray.shape}")
    return float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))


@dataclass
class ConvertedImage:
    """An image as the model reads it (``pixels``: 28 x 28 uint8, black background) and how."""

    pixels: torch.Tensor
    inverted: bool
    background: float  #: border median of the grayscale picture, before any inversion
    size: tuple[int, int]  #: (width, height) of the picture as read


def resize(image: Image.Image, width: int, height: int) -> np.ndarray:
    """Lanczos, across then down: one pass per axis, as lenet.js does (Pillow 13 picks the order
    of its two passes from the image's shape, which moves a pixel's value by a few levels)."""
    across = image.resize((width, image.height), Image.Resampling.LANCZOS)
    return np.array(across.resize((width, height), Image.Resampling.LANCZOS), dtype=np.uint8)


def _place(values: np.ndarray, level: float, dataset: str) -> torch.Tensor:
    """Resize the trimmed object ``values`` as ``dataset`` did and centre it on the canvas."""
    longest, centring = LAYOUTS[dataset]
    scale = longest / max(values.shape)
    new_h, new_w = (max(1, round(side * scale)) for side in values.shape)
    small = Image.fromarray(np.rint(values).astype(np.uint8))
    patch = resize(small, new_w, new_h)
    top, left = (CANVAS - new_h) // 2, (CANVAS - new_w) // 2
    mass = patch.astype(np.float64) - level
    if centring == "mass" and mass.sum() > 0:
        # MNIST's centre of mass goes in the middle, as far as the canvas lets the patch move
        ys, xs = np.indices(patch.shape)
        center_y, center_x = (ys * mass).sum() / mass.sum(), (xs * mass).sum() / mass.sum()
        top = min(max(round((CANVAS - 1) / 2 - center_y), 0), CANVAS - new_h)
        left = min(max(round((CANVAS - 1) / 2 - center_x), 0), CANVAS - new_w)
    canvas = np.full((CANVAS, CANVAS), round(level), dtype=np.uint8)
    canvas[top : top + new_h, left : left + new_w] = patch
    return torch.from_numpy(canvas)


def convert_image(image, *, invert=None, dataset="fashion-mnist") -> ConvertedImage:
    """A picture (a PIL image, an H x W uint8 array or a file) as ``dataset`` lays out its 28 x 28
    uint8 images; ``invert=None`` inverts it if its background is light."""
    if dataset not in LAYOUTS:
        raise ValueError(f"dataset={dataset!r}; expected one of {sorted(LAYOUTS)}")
    if not (invert is None or isinstance(invert, bool | np.bool_)):
        raise TypeError(f"invert={invert!r}; use None (invert a light background), True or False")
    image = load_image(image) if isinstance(image, (str, os.PathLike)) else image
    gray = to_grayscale(image) if isinstance(image, Image.Image) else np.asarray(image)
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"expected an H x W uint8 array, got {gray.dtype} {gray.shape}")
    # the data sets draw light objects on black: a picture on a light background is inverted
    background = background_level(gray)
    inverted = background > LIGHT_BACKGROUND if invert is None else bool(invert)
    values = 255.0 - gray.astype(np.float64) if inverted else gray.astype(np.float64)
    level = 255.0 - background if inverted else background
    if level <= LIGHT_BACKGROUND:
        # a dark background becomes exactly black, as in the data
        values = np.clip((values - level) * (255.0 / (255.0 - level)), 0, 255)
        level = 0.0
    # trim to the object: the pixels that differ from the background (a blank picture stays whole)
    rows, cols = np.nonzero(np.abs(values - level) > TRIM_TOLERANCE)
    if len(rows):
        values = values[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return ConvertedImage(_place(values, level, dataset), inverted, background, gray.shape[::-1])


def class_probabilities(model, images, normalization, *, batch_size=1000, flip=False):
    """Softmax of the class scores (models.class_scores) of uint8 ``images``, a CPU tensor of
    N x classes; ``flip`` (test-time flips): the mean of each image's and its mirror image's."""
    if not (_whole(batch_size) and batch_size >= 1):
        raise ValueError(f"batch_size={batch_size!r}; it must be a whole number, at least 1")
    if not isinstance(flip, bool):  # "no" would flip
        raise TypeError(f"flip={flip!r}; use True (test-time flips) or False")
    if len(images) == 0:
        return torch.empty(0, 0)
    device = next(model.parameters()).device
    x = prepare_images(images.to(device), model.input_spec, dict(normalization))
    scores = class_scores(model, x, batch_size, flip).float()
    # with flips, class_scores gives the mean probabilities already
    return (scores if flip else torch.softmax(scores, dim=1)).cpu()


def top_classes(probabilities, class_names, k=3) -> list[list[tuple[str, float]]]:
    """For each row of ``probabilities``, the ``k`` most likely (class name, probability) pairs."""
    classes = probabilities.shape[1] if probabilities.ndim == 2 else 0
    if len(class_names) != classes:
        raise ValueError(f"{len(class_names)} class names for {classes} model outputs")
    if not 1 <= k <= classes:
        raise ValueError(f"top-k k={k}; it must be between 1 and the {classes} classes")
    values, indices = probabilities.topk(k, dim=1)
    return [
        [(class_names[i], p) for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


@dataclass
class Prediction:
    """What the model says about one file: ``top`` (class, probability) pairs, or an ``error``."""

    path: str
    top: list[tuple[str, float]]
    inverted: bool = False
    pixels: torch.Tensor | None = None  #: the 28 x 28 uint8 image the model read
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``--json`` output of the command line)."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        # JSON has no NaN
        top = [
            {"class": name, "probability": round(p, 6) if math.isfinite(p) else None}
            for name, p in self.top
        ]
        return {"path": self.path, "top": top, "inverted": self.inverted}

    def __str__(self) -> str:
        if self.error is not None:
            return f"error: {self.error}"
        guesses = ", ".join(f"{name} {p:.3f}" for name, p in self.top)
        return f"{self.path}: {guesses}" + (" (inverted)" if self.inverted else "")


def predict_files(checkpoint, paths, *, top_k=3, invert=None, model=None) -> list[Prediction]:
    """One :class:`Prediction` per file (``paths``: one path or a list) from a checkpoint (a path
    or a loaded dict; ``model``: one built from it), with the test-time flips of the run that made
    it.  An unreadable file, or one with NaN probabilities, gets an ``error``."""
    checkpoint = as_checkpoint(checkpoint)
    paths = _check_paths(paths)
    class_names = checkpoint["class_names"]
    if not (_whole(top_k) and 1 <= top_k <= len(class_names)):
        raise ValueError(f"top_k={top_k!r}; use a whole number from 1 to {len(class_names)}")
    if not isinstance(model, torch.nn.Module | None):
        why = "pass model_from_checkpoint(checkpoint) or leave it out"
        raise TypeError(f"model is a {type(model).__name__}, not an nn.Module; {why}")
    model = model if model is not None else model_from_checkpoint(checkpoint)
    flip = bool(checkpoint["train_config"].get("test_flip"))  # as the run and evaluate measured
    layout = checkpoint.get("dataset") if checkpoint.get("dataset") in LAYOUTS else "fashion-mnist"
    predictions = []
    for path in paths:
        try:
            converted = convert_image(path, invert=invert, dataset=layout)
            predictions.append(Prediction(str(path), [], converted.inverted, converted.pixels))
        except ImageFileError as error:
            predictions.append(Prediction(str(path), [], error=str(error)))
    good = [p for p in predictions if p.error is None]
    if good:
        pixels = torch.stack([p.pixels for p in good])  # type: ignore[misc]
        probabilities = class_probabilities(model, pixels, checkpoint["normalization"], flip=flip)
        tops = top_classes(probabilities, class_names, top_k)
        # NaN when the weights are not finite, or overflow on this picture
        for p, top, finite in zip(good, tops, probabilities.isfinite().all(dim=1), strict=True):
            if finite:
                p.top = top
            else:
                p.error = f"{p.path}: the model gives NaN or infinite probabilities; retrain it"
    return predictions


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_paths(paths: Any) -> list[PathLike]:
    """``paths`` as a list of file paths: one path is a list of one (not of its characters)."""
    if isinstance(paths, str | os.PathLike):
        return [paths]
    if not isinstance(paths, Iterable) or isinstance(paths, bytes | Mapping):
        raise TypeError(f"paths: got {type(paths).__name__}; give an image file's path or a list")
    paths = list(paths)
    for index, path in enumerate(paths):
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"paths[{index}]: got {type(path).__name__}, not a file path (a str)")
    return paths
