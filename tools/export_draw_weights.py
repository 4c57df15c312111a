"""Train the modern LeNet on MNIST and on Fashion-MNIST, and ship its weights for "Draw and watch".

    python tools/export_draw_weights.py [--epochs N] [--threads N] [--only mnist|fashion-mnist]

For each data set this runs the course's own command line,

    python -m lenet_course train --dataset D --recipe modern --model v1 --pooling max \
        --out runs/draw-D

(notebook 06's modern LeNet: ReLU, max pooling, 61,706 weights, the modern recipe), then writes
``lenet_course/web/weights-D.js``: one script that a page opened from disk can load with a
``<script>`` tag (browsers refuse a ``fetch`` of a ``file://`` JSON file).
It holds every tensor as little-endian float32 in base64, the normalisation the model expects, the
class names and the test accuracy the run measured: about 330 KB, against several MB for a
general runtime such as onnxruntime-web.

tests/web_weights.py reads the file back into a PyTorch model; the browser test checks the page's
forward pass against it.
"""

import argparse
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "lenet_course" / "web"
DATASETS = ("mnist", "fashion-mnist")
# The order of the layers in the forward pass (lenet.js reads them by these names).
TENSORS = ("conv1", "conv2", "fc1", "fc2", "fc3")


def train(dataset: str, epochs: int | None, threads: int) -> Path:
    out = REPO / "runs" / f"draw-{dataset}"
    command = [sys.executable, "-m", "lenet_course", "train", "--dataset", dataset]
    command += ["--recipe", "modern", "--model", "v1", "--pooling", "max"]
    command += ["--out", str(out), "--overwrite", "--no-progress"]
    command += ["--threads", str(threads)]
    if epochs:
        command += ["--epochs", str(epochs)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)
    return out / "checkpoint.pt"


def export(checkpoint_path: Path, dataset: str) -> Path:
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    state = checkpoint["state_dict"]
    tensors = {}
    for layer in TENSORS:
        for kind in ("weight", "bias"):
            tensor = state[f"{layer}.{kind}"].float().contiguous()
            data = tensor.numpy().astype("<f4").tobytes()
            tensors[f"{layer}.{kind}"] = {
                "shape": list(tensor.shape),
                "data": base64.b64encode(data).decode("ascii"),
            }
    last = checkpoint["history"][-1]
    payload = {
        "dataset": dataset,
        "model": checkpoint["model"],
        "normalization": checkpoint["normalization"],
        "class_names": checkpoint["class_names"],
        "test_accuracy": round(float(last["test_accuracy"]), 4),
        "epochs": len(checkpoint["history"]),
        "tensors": tensors,
    }
    WEB.mkdir(parents=True, exist_ok=True)
    path = WEB / f"weights-{dataset}.js"
    text = json.dumps(payload, separators=(",", ":"))
    path.write_text(
        "// LeNet weights for the Draw and watch page, written by tools/export_draw_weights.py.\n"
        "globalThis.LeNetWeights = globalThis.LeNetWeights || {};\n"
        f'globalThis.LeNetWeights["{dataset}"] = {text};\n'
    )
    size = path.stat().st_size / 1024
    print(f"{path.relative_to(REPO)}: {size:.0f} KiB, accuracy {payload['test_accuracy']}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="default: the modern recipe's 12")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--only", choices=DATASETS, help="one data set (default: both)")
    args = parser.parse_args()
    for dataset in [args.only] if args.only else DATASETS:
        export(train(dataset, args.epochs, args.threads), dataset)


if __name__ == "__main__":
    main()
