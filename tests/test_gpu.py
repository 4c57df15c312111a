"""The CUDA paths of lenet_course on a real GPU (``-m gpu``; skipped where torch sees no CUDA).

They need neither jupyter nor d2l: benchmarks/gpu_check.sh runs them on the GPU machine, with the
data from its carried folder.  Tolerances: TF32 convolutions (PyTorch's default for cuDNN) round
to about 1e-3, bfloat16 to about 1e-2; weights of a few dozen steps stay far closer than that.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from lenet_course.checkpoint import load_checkpoint, model_from_checkpoint
from lenet_course.cli import main
from lenet_course.config import RECIPES, TrainConfig
from lenet_course.data import ImageSet, load_dataset, normalization_for, prepare_images
from lenet_course.models import build_model, class_scores
from lenet_course.train import fit, seed_everything

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
QUIET = TrainConfig(progress=False, device="cuda")


@pytest.fixture(scope="module")
def fashion(real_data_root) -> tuple[ImageSet, ImageSet]:
    """The whole of Fashion-MNIST (train, test), on the CPU."""
    return tuple(load_dataset("fashion-mnist", split, root=real_data_root, download=False)
                 for split in ("train", "test"))


@pytest.fixture
def small(fashion) -> tuple[ImageSet, ImageSet]:
    """1,000 training images (batches of 128 leave a last batch of 104) and 1,000 test images."""
    return fashion[0].subset(slice(0, 1000)), fashion[1].subset(slice(0, 1000))


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().double().cpu() for k, v in model.state_dict().items()}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-12))


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_cuda_and_cpu_give_the_same_first_step(small, bf16):
    """The first batch's loss and every gradient agree between the CPU (float32, the reference)
    and CUDA (TF32 convolutions, or bfloat16 autocast)."""
    train, _ = small
    seed_everything(0)
    model = build_model("v1")
    x = prepare_images(train.images[:256], model.input_spec,
                       normalization_for(model.input_spec, train.images))
    y = train.labels[:256]
    results = {}
    for device in ("cpu", "cuda"):
        net = build_model("v1").to(device)
        net.load_state_dict(model.state_dict())
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16 and device == "cuda"):
            loss = torch.nn.functional.cross_entropy(net(x.to(device)), y.to(device))
        loss.backward()
        results[device] = (loss.detach().float().cpu(),
                           {n: p.grad.float().cpu() for n, p in net.named_parameters()})
    (cpu_loss, cpu_grads), (cuda_loss, cuda_grads) = results["cpu"], results["cuda"]
    tolerance = 3e-2 if bf16 else 3e-3
    assert abs(float(cuda_loss) - float(cpu_loss)) < tolerance * float(cpu_loss)
    for name, grad in cpu_grads.items():
        assert relative_error(cuda_grads[name], grad) < 3 * tolerance, name


@pytest.mark.parametrize(("optimizer", "bf16"), [("sgd", False), ("adam", False), ("sgd", True)])
def test_the_graphed_step_equals_the_eager_step(small, optimizer, bf16):
    """cuda_graphs=True (each step one CUDA graph replay, fused SGD or capturable Adam) trains as
    the plain loop: the same weights, losses and accuracies after 2 epochs of 8 steps each
    (full batches and a last, shorter one), with a one-cycle schedule read from a tensor."""
    train, test = small
    extra = {"momentum": 0.9, "nesterov": True} if optimizer == "sgd" else {}
    config = QUIET.replace(epochs=2, batch_size=128, lr=0.05 if optimizer == "sgd" else 3e-3,
                           optimizer=optimizer, schedule="onecycle", weight_decay=5e-4, bf16=bf16,
                           **extra)
    runs = {}
    for graphs in (False, True):
        seed_everything(0)
        model = build_model("v1", pooling="max")
        history = fit(model, train, config.replace(cuda_graphs=graphs), test=test)
        runs[graphs] = (weights(model), history)
    (plain, plain_history), (fast, fast_history) = runs[False], runs[True]
    for name, value in plain.items():
        assert torch.allclose(fast[name], value, rtol=1e-3, atol=1e-4), name
    for key in ("train_loss", "train_accuracy", "test_accuracy", "lr"):
        assert fast_history.column(key) == pytest.approx(plain_history.column(key),
                                                         abs=5e-3 if bf16 else 2e-3), key
    assert fast_history.config["capture_seconds"] > 0


def test_a_graphed_run_resumes_as_it_would_have_gone_on(small, tmp_path):
    """Capture happens after resuming, so the graphs read the resumed weights and momentum."""
    train, test = small
    config = QUIET.replace(epochs=3, batch_size=128, momentum=0.9, lr=0.05, cuda_graphs=True)
    seed_everything(0)
    straight = build_model("v1")
    fit(straight, train, config, test=test)
    seed_everything(0)
    resumed = build_model("v1")
    fit(resumed, train, config.replace(epochs=1), test=test, checkpoint=tmp_path / "c.pt")
    # the schedule is constant, so a run of 1 epoch may continue to 3
    fit(resumed, train, config, test=test, checkpoint=tmp_path / "c.pt", resume=True)
    for name, value in weights(straight).items():
        assert torch.allclose(weights(resumed)[name], value, rtol=1e-3, atol=1e-4), name


def test_ten_epochs_fast_and_plain_reach_the_same_accuracy(fashion):
    """The modern recipe for 10 epochs on all 60,000 images: fast path and plain loop within 0.3
    points of test accuracy (same seed, same shuffles)."""
    train, test = fashion
    config = RECIPES["modern"].replace(epochs=10, device="cuda", progress=False)
    accuracy = {}
    for graphs in (False, True):
        seed_everything(0)
        model = build_model("v1", pooling="max")
        accuracy[graphs] = fit(model, train, config.replace(cuda_graphs=graphs),
                               test=test).last["test_accuracy"]
    assert abs(accuracy[True] - accuracy[False]) <= 0.003, accuracy
    assert accuracy[True] > 0.90


def test_a_checkpoint_written_on_cuda_predicts_the_same_classes_on_the_cpu(small, tmp_path):
    train, test = small
    seed_everything(0)
    model = build_model("v1")
    fit(model, train, QUIET.replace(epochs=2, cuda_graphs=True), test=test,
        checkpoint=tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt")
    on_cpu = model_from_checkpoint(state)
    x = prepare_images(test.images, on_cpu.input_spec, state["normalization"])
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # float32 on both sides: only argmax ties may differ
    try:
        cuda_classes = class_scores(model, x.cuda()).argmax(1).cpu()
    finally:
        torch.backends.cudnn.allow_tf32 = previous
    cpu_classes = class_scores(on_cpu, x).argmax(1)
    assert (cuda_classes != cpu_classes).sum() <= 1
    assert next(model.parameters()).device.type == "cuda"


def test_the_commands_train_evaluate_and_predict_run_on_cuda(real_data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--device", "cuda", "--cuda-graphs", "--epochs", "1", "--root",
                 str(real_data_root), "--train-subset", "2000", "--test-subset", "500",
                 "--no-progress", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"] == "cuda" and metrics["train_config"]["cuda_graphs"] is True
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--device", "cuda",
                 "--root", str(real_data_root), "--test-subset", "500"]) == 0
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in capsys.readouterr().out
    test = load_dataset("fashion-mnist", "test", root=real_data_root, download=False)
    paths = [str(tmp_path / f"{i}.png") for i in range(3)]
    for i, path in enumerate(paths):
        Image.fromarray(test.images[i].numpy()).save(path)
    printed = {}
    for device in ("cpu", "cuda"):
        assert main(["predict", "--checkpoint", str(out / "checkpoint.pt"), "--device", device,
                     "--json", *paths]) == 0
        printed[device] = json.loads(capsys.readouterr().out)
    top = {d: [p["top"][0]["class"] for p in printed[d]] for d in printed}
    assert top["cuda"] == top["cpu"]
