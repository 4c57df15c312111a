"""Use a trained LeNet on your own pictures: image files -> 28 x 28 inputs -> top classes.

A photo is not a Fashion-MNIST image.  The data sets were made by a fixed recipe, and an image
file must go through the same steps before the model can read it:

- **Fashion-MNIST** (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747): trim the edges that are
  close to the background colour, resize the longest edge to 28, sharpen, centre on a 28 x 28
  canvas, negate (light background -> black), 8-bit grayscale.  We do all but the sharpening.
- **MNIST** (LeCun, Cortes & Burges, the MNIST page): fit the digit in a 20 x 20 box keeping its
  aspect ratio, then place it on a 28 x 28 canvas with its centre of mass at the centre.

:func:`convert_image` does that (it inverts when the border of the picture is light, the way
clothes photographed on white or digits written on paper are), and :func:`predict_files` runs a
checkpoint on a list of files, one :class:`Prediction` per file, the same code path as
``python -m lenet_course predict``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

#: A border whose median is brighter than this is a light background: the picture is inverted.
LIGHT_BACKGROUND = 127
#: A pixel belongs to the object when it differs from the background by more than this
#: (5% of the intensity range, Fashion-MNIST's trimming rule).
TRIM_TOLERANCE = 0.05 * 255
#: How each data set placed its objects: (longest edge of the object, centring rule).
LAYOUTS: dict[str, tuple[int, str]] = {"fashion-mnist": (28, "box"), "mnist": (20, "mass")}
CANVAS = 28


class ImageFileError(ValueError):
    """A file that cannot be read as an image; the message is one line naming the file."""


# --- image file -> 28 x 28 uint8 ----------------------------------------------------------------


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image file (PNG, JPEG, ...), turned upright by its EXIF tag.

    Raises :class:`ImageFileError` with a one-line reason for a missing, unreadable, truncated
    or non-image file, so a caller can report it and carry on with the next file.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later
            return ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageFileError(f"{path}: is a folder, not an image file") from None
    except Image.UnidentifiedImageError:
        raise ImageFileError(
            f"{path}: not an image file that Pillow can read (PNG, JPEG, BMP, GIF, ...)"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ImageFileError(f"{path}: unreadable image ({reason})") from None


def to_grayscale(image: Image.Image) -> np.ndarray:
    """An image of any mode as an H x W uint8 array of brightness (0 black .. 255 white).

    Transparent pixels are laid on white first, as a viewer shows them: a dark drawing on a
    transparent background then reads as a dark drawing on paper.  16-bit images keep their
    range (divided by 257); other integer or float images are stretched to 0..255.
    """
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            values = values / 257.0
        else:
            low, high = float(values.min()), float(values.max())
            values = (values - low) * (255.0 / (high - low)) if high > low else values * 0
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8).copy()


def background_level(gray: np.ndarray) -> float:
    """The background brightness: the median of the pixels on the picture's outer border.

    The median of the whole border, not one corner, so an object touching an edge or a noisy
    JPEG corner does not decide it.
    """
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"expected a non-empty H x W grayscale array, got shape {gray.shape}")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border))


def should_invert(gray: np.ndarray) -> bool:
    """True when the background is light (border median > 127): the data sets have black ones."""
    return background_level(gray) > LIGHT_BACKGROUND


@dataclass
class ConvertedImage:
    """An image as the model reads it (``pixels``: 28 x 28 uint8, black background) and how."""

    pixels: torch.Tensor
    inverted: bool
    background: float  #: border median of the grayscale picture, before any inversion
    size: tuple[int, int]  #: (width, height) of the picture as read


def convert_image(
    image: Image.Image | np.ndarray | str | os.PathLike[str],
    *,
    invert: bool | None = None,
    dataset: str = "fashion-mnist",
) -> ConvertedImage:
    """Turn a picture of any size and mode into a 28 x 28 uint8 image laid out like ``dataset``.

    Steps: grayscale; invert if ``invert`` is true, or, when it is None, if the background is
    light (:func:`should_invert`); stretch the background to black; trim the edges within 5%
    of the background; resize keeping the aspect ratio (longest edge 28 for Fashion-MNIST, 20
    for MNIST) and centre on a black 28 x 28 canvas (by bounding box, or by centre of mass for
    MNIST).
    """
    if dataset not in LAYOUTS:
        raise ValueError(f"dataset={dataset!r}; expected one of {sorted(LAYOUTS)}")
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        size = image.size
        gray = to_grayscale(image)
    else:
        gray = np.asarray(image)
        if gray.dtype != np.uint8 or gray.ndim != 2:
            raise ValueError(f"expected an H x W uint8 array, got {gray.dtype} {gray.shape}")
        size = (gray.shape[1], gray.shape[0])
    background = background_level(gray)
    inverted = should_invert(gray) if invert is None else bool(invert)
    values = 255.0 - gray.astype(np.float64) if inverted else gray.astype(np.float64)
    level = 255.0 - background if inverted else background
    if level <= LIGHT_BACKGROUND:  # a dark background: make it exactly black, as in the data
        values = np.clip((values - level) * (255.0 / (255.0 - level)), 0, 255)
        level = 0.0
    rows, cols = np.nonzero(np.abs(values - level) > TRIM_TOLERANCE)
    if len(rows):  # a blank picture stays whole
        values = values[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    longest, centring = LAYOUTS[dataset]
    height, width = values.shape
    scale = longest / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = Image.fromarray(np.rint(values).astype(np.uint8)).resize(
        (new_w, new_h), Image.Resampling.LANCZOS
    )
    patch = np.asarray(small, dtype=np.uint8)
    top, left = (CANVAS - new_h) // 2, (CANVAS - new_w) // 2
    mass = patch.astype(np.float64) - level
    if centring == "mass" and mass.sum() > 0:
        ys, xs = np.indices(patch.shape)
        center_y, center_x = (ys * mass).sum() / mass.sum(), (xs * mass).sum() / mass.sum()
        top = min(max(round((CANVAS - 1) / 2 - center_y), 0), CANVAS - new_h)
        left = min(max(round((CANVAS - 1) / 2 - center_x), 0), CANVAS - new_w)
    canvas = np.full((CANVAS, CANVAS), round(level), dtype=np.uint8)
    canvas[top : top + new_h, left : left + new_w] = patch
    return ConvertedImage(torch.from_numpy(canvas), inverted, background, size)


# --- model outputs -> probabilities -------------------------------------------------------------


def class_probabilities(
    model: torch.nn.Module,
    images: torch.Tensor,
    normalization: Mapping[str, Any],
    *,
    batch_size: int = 1000,
) -> torch.Tensor:
    """Class probabilities (N x classes, float32, on the CPU) of uint8 ``images`` (N x 28 x 28).

    The images are scaled with the checkpoint's ``normalization`` (:func:`data.prepare_images`);
    the probabilities are the softmax of ``model.scores(outputs)`` when the model defines it
    (LeNet-5 of 1998 returns penalties, lower is better, and scores them as ``-outputs``), else
    of the outputs themselves (logits).
    """
    from lenet_course.data import prepare_images

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; it must be at least 1")
    spec = model.input_spec
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size].to(device)
                outputs = model(prepare_images(batch, spec, dict(normalization)))
                scores = model.scores(outputs) if hasattr(model, "scores") else outputs
                chunks.append(torch.softmax(scores.float(), dim=1).cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return torch.empty(0, 0)
    return torch.cat(chunks)


def top_classes(
    probabilities: torch.Tensor, class_names: Sequence[str], k: int = 3
) -> list[list[tuple[str, float]]]:
    """For each row of ``probabilities``, the ``k`` most likely (class name, probability) pairs."""
    classes = probabilities.shape[1] if probabilities.ndim == 2 else 0
    if len(class_names) != classes:
        raise ValueError(f"{len(class_names)} class names for {classes} model outputs")
    if not 1 <= k <= classes:
        raise ValueError(f"top-k k={k}; it must be between 1 and the {classes} classes")
    values, indices = probabilities.topk(k, dim=1)
    return [
        [(class_names[i], float(p)) for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


# --- files -> predictions -----------------------------------------------------------------------


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
        top = [{"class": name, "probability": round(p, 6)} for name, p in self.top]
        return {"path": self.path, "top": top, "inverted": self.inverted}

    def __str__(self) -> str:
        if self.error is not None:
            return f"error: {self.error}"
        guesses = ", ".join(f"{name} {p:.3f}" for name, p in self.top)
        return f"{self.path}: {guesses}" + (" (inverted)" if self.inverted else "")


def predict_files(
    checkpoint: str | os.PathLike[str] | Mapping[str, Any],
    paths: Sequence[str | os.PathLike[str]],
    *,
    top_k: int = 3,
    invert: bool | None = None,
    model: torch.nn.Module | None = None,
) -> list[Prediction]:
    """Predict the class of each image file with a checkpoint; one :class:`Prediction` per path.

    ``checkpoint`` is a path or a dict from :func:`train.load_checkpoint` (loaded safely, with
    ``weights_only=True``); pass ``model`` too to reuse one already built from it.  A file that
    is not a readable image gets a Prediction with ``error`` set and the others are still
    predicted.  ``invert=None`` decides per image from its background; True/False forces it.
    """
    from lenet_course.train import load_checkpoint, model_from_checkpoint

    if not isinstance(checkpoint, Mapping):
        checkpoint = load_checkpoint(checkpoint)
    if model is None:
        model = model_from_checkpoint(checkpoint)
    class_names = list(checkpoint["class_names"])
    if not 1 <= top_k <= len(class_names):
        raise ValueError(f"top_k={top_k}; it must be between 1 and {len(class_names)}")
    dataset = checkpoint.get("dataset", "fashion-mnist")
    layout = dataset if dataset in LAYOUTS else "fashion-mnist"
    predictions = []
    for path in paths:
        try:
            converted = convert_image(load_image(path), invert=invert, dataset=layout)
        except ImageFileError as error:
            predictions.append(Prediction(str(path), [], error=str(error)))
            continue
        predictions.append(Prediction(str(path), [], converted.inverted, converted.pixels))
    good = [p for p in predictions if p.error is None]
    if good:
        pixels = torch.stack([p.pixels for p in good])  # type: ignore[misc]
        probabilities = class_probabilities(model, pixels, checkpoint["normalization"])
        tops = top_classes(probabilities, class_names, top_k)
        for prediction, top in zip(good, tops, strict=True):
            prediction.top = top
    return predictions
