"""The Draw and watch page's shipped weights (lenet_course/web/weights-*.js) as PyTorch models."""

import base64
import json
import re
from pathlib import Path

import numpy as np
import torch

from lenet_course.checkpoint import save_checkpoint
from lenet_course.models import build_model

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "lenet_course" / "web"
DATASETS = ("mnist", "fashion-mnist")
PAYLOAD = re.compile(r'globalThis\.LeNetWeights\["([a-z-]+)"\] = (\{.*\});\s*$', re.S)


def payload(dataset: str) -> dict:
    """The JSON object that weights-DATASET.js assigns to LeNetWeights[DATASET]."""
    match = PAYLOAD.search((WEB / f"weights-{dataset}.js").read_text())
    assert match and match.group(1) == dataset, f"weights-{dataset}.js is not for {dataset}"
    return json.loads(match.group(2))


def model(dataset: str) -> torch.nn.Module:
    """The network the page runs, in PyTorch, in eval mode."""
    data = payload(dataset)
    options = {k: v for k, v in data["model"].items() if k != "name"}
    net = build_model(data["model"]["name"], **options)
    state = {
        name: torch.from_numpy(
            np.frombuffer(base64.b64decode(t["data"]), dtype="<f4").reshape(t["shape"]).copy()
        )
        for name, t in data["tensors"].items()
    }
    net.load_state_dict(state)
    return net.eval()


def checkpoint(dataset: str, path: Path) -> Path:
    """A checkpoint.pt of the shipped network, as `train` would have written it."""
    data = payload(dataset)
    save_checkpoint(
        path,
        model(dataset),
        history=[{"epoch": data["epochs"], "test_accuracy": data["test_accuracy"]}],
        class_names=data["class_names"],
        dataset=dataset,
        normalization=data["normalization"],
        train_config={"test_flip": False},
    )
    return path
