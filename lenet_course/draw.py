"""Draw and watch in JupyterLab: the book page's drawing pad (web/pad.js) as a widget whose
drawings a trained LeNet in the kernel reads exactly as ``predict`` reads an image file."""

import base64
from pathlib import Path

import anywidget
import numpy as np
import torch
import traitlets
from PIL import Image

from lenet_course.check import words
from lenet_course.checkpoint import as_checkpoint, model_from_checkpoint
from lenet_course.data import prepare_images
from lenet_course.inspect_model import learned_filters, stage_maps
from lenet_course.models import LeNet5v1
from lenet_course.predict import LAYOUTS, class_probabilities, convert_image, resize, top_classes

WEB = Path(__file__).with_name("web")
# pad.js is a classic script that defines globalThis.LeNetPad; anywidget wants an ES module
RENDER = "export default { render: (context) => globalThis.LeNetPad.renderWidget(context) };\n"


def _values(tensor: torch.Tensor) -> list[float]:
    # 4 decimals are more than a picture shows, and keep each message (and saved notebook) small
    return np.round(tensor.double().flatten().numpy(), 4).tolist()


def _maps(maps: torch.Tensor) -> dict:
    """One stage's maps (1 x C x S x S) as the JSON record pad.js draws."""
    return {"data": _values(maps), "channels": maps.shape[1], "size": maps.shape[-1]}


class DrawPad(anywidget.AnyWidget):
    """Draw with the mouse, a finger or a pen; see the 28 x 28 image the model reads, its top
    classes and its feature maps.  ``checkpoint``: a path written by ``train`` or a loaded dict.
    Each stroke sends the drawing (``size`` x ``size`` pixels, white ink on black) and a new
    ``request`` number; the kernel answers with the ``record`` pad.js draws."""

    _esm = (WEB / "pad.js").read_text() + RENDER
    drawing = traitlets.Unicode("").tag(sync=True)  # base64 of the uint8 pixels, row by row
    size = traitlets.Int(0).tag(sync=True)
    centre = traitlets.Bool(True).tag(sync=True)
    request = traitlets.Int(0).tag(sync=True)
    dataset = traitlets.Unicode("").tag(sync=True)
    language = traitlets.Unicode("en").tag(sync=True)  # "zh" under LENET_COURSE_LANG=zh
    record = traitlets.Dict().tag(sync=True)

    def __init__(self, checkpoint, **kwargs):
        checkpoint = as_checkpoint(checkpoint)
        layout = checkpoint.get("dataset")
        dataset = layout if layout in LAYOUTS else "fashion-mnist"
        language = "en" if words() is None else "zh"
        super().__init__(dataset=dataset, language=language, **kwargs)
        self.model = model_from_checkpoint(checkpoint)
        self.normalization = checkpoint["normalization"]
        self.class_names = checkpoint["class_names"]
        self.flip = bool(checkpoint["train_config"].get("test_flip"))
        self.gray = np.zeros((0, 0), dtype=np.uint8)
        self.probabilities = None
        self.observe(lambda change: self.read(), names="request")

    def draw(self, picture) -> dict:
        """Read a square H x W uint8 picture (white on black) as if it had been drawn."""
        gray = np.asarray(picture)
        if gray.dtype != np.uint8 or gray.ndim != 2 or gray.shape[0] != gray.shape[1]:
            raise ValueError(f"expected a square uint8 picture, got {gray.dtype} {gray.shape}")
        self.size = len(gray)
        self.drawing = base64.b64encode(gray.tobytes()).decode("ascii")
        self.request += 1
        return self.record

    def read(self) -> None:
        """Run the model on the pad's drawing and send the record back."""
        data = base64.b64decode(self.drawing)
        self.gray = np.frombuffer(data, dtype=np.uint8).reshape(self.size, self.size).copy()
        if self.centre:
            pixels = convert_image(self.gray, dataset=self.dataset).pixels
        else:  # the whole square, only shrunk: what the page's "centre it" switch turns off
            pixels = torch.from_numpy(resize(Image.fromarray(self.gray), 28, 28))
        model, images = self.model, pixels[None]
        probabilities = class_probabilities(model, images, self.normalization, flip=self.flip)
        self.probabilities = probabilities[0]
        x = prepare_images(images, model.input_spec, dict(self.normalization))
        maps = stage_maps(model, x)
        record = {name.lower(): _maps(m) for name, m in maps.items()}
        if isinstance(model, LeNet5v1):
            # F5 and F6, after the activation that forward applies as a function
            with torch.no_grad():
                f5 = model.act(model.fc1(maps["S4"].flatten(1)))
                record |= {"f5": _values(f5), "f6": _values(model.act(model.fc2(f5)))}
        self.record = record | {
            "pixels": pixels.flatten().tolist(),
            "probabilities": self.probabilities.tolist(),
            "class_names": list(self.class_names),
            "kernels": _maps(learned_filters(model, "C1").transpose(0, 1)),
            "request": self.request,
        }

    def __repr__(self) -> str:
        return f"DrawPad({type(self.model).__name__} for {self.dataset})"

    def top(self, k=3) -> list[tuple[str, float]]:
        """The ``k`` most likely (class, probability) pairs for the current drawing."""
        if self.probabilities is None:
            raise ValueError("nothing drawn yet: draw on the pad, or call draw(picture)")
        return top_classes(self.probabilities[None], self.class_names, k)[0]

    def save(self, path) -> Path:
        """The drawing as a PNG file that ``predict`` reads as the pad did."""
        Image.fromarray(self.gray).save(path)
        return Path(path)
