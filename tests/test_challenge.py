"""The accuracy challenge's parts (notebook 10): LeNetBN, crops and flips inside fit, test-time
flips, the "challenge" recipe and its command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lenet_course.checkpoint import load_checkpoint
from lenet_course.cli import build_parser, config_from_args, model_name
from lenet_course.config import RECIPES, TrainConfig
from lenet_course.counting import count_parameters
from lenet_course.data import augment, load_dataset, normalization_for
from lenet_course.models import LeNetBN, build_model, class_scores
from lenet_course.train import check_settings, evaluate, fit, seed_everything

REPO = Path(__file__).resolve().parent.parent
QUIET = TrainConfig(progress=False, device="cpu", threads=1)


@pytest.fixture(scope="module")
def tiny(real_data_root):
    return load_dataset("fashion-mnist", "train", root=real_data_root).subset(slice(0, 600))


# --- augmentation ---------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(crop=st.integers(0, 3), flip=st.booleans(), n=st.integers(1, 9), side=st.integers(4, 12),
       seed=st.integers(0, 2**31))
def test_each_augmented_image_is_a_window_of_its_padded_or_mirrored_original(crop, flip, n, side,
                                                                             seed):
    torch.manual_seed(seed)
    x = torch.rand(n, 1, side, side)
    out = augment(x, crop, flip, background=-7.0)
    assert out.shape == x.shape
    for image, original in zip(out, x, strict=True):
        views = [original, original.flip(2)] if flip else [original]
        windows = [nn.functional.pad(v, (crop,) * 4, value=-7.0)[:, i : i + side, j : j + side]
                   for v in views for i in range(2 * crop + 1) for j in range(2 * crop + 1)]
        assert any(torch.equal(image, w) for w in windows)


def test_augmentation_draws_every_shift_and_both_mirrors_from_torchs_generator():
    x = torch.arange(3 * 5 * 5.0).view(3, 1, 5, 5).repeat(400, 1, 1, 1)  # 1,200 images
    torch.manual_seed(0)
    out = augment(x, 2, True, background=-1.0)
    torch.manual_seed(0)
    assert torch.equal(out, augment(x, 2, True, background=-1.0))  # seeded: the same draw
    assert not torch.equal(out, augment(x, 2, True, background=-1.0))  # the generator moved on
    shifted = {(int((img == -1).all(1).sum()), int((img == -1).all(0).sum())) for img in out[:, 0]}
    assert shifted == {(r, c) for r in range(3) for c in range(3)}  # 0, 1 or 2 blank rows/columns
    assert torch.equal(augment(x, 0, False, background=-1.0), x)


def test_a_crop_shifts_in_the_blank_background_of_the_prepared_images(tiny):
    """fit pads with a blank pixel as the model sees it (after standardising), not with 0."""
    blank = {}
    for crop in (0, 3):
        seen = []
        model = build_model("lenet-bn", widths=(2, 2, 4, 4))
        model.register_forward_pre_hook(lambda m, args, seen=seen: seen.append(args[0].clone()))
        fit(model, tiny, QUIET.replace(epochs=1, batch_size=600, crop=crop))
        norm = normalization_for(model.input_spec, tiny.images)
        background = -norm["mean"] / norm["std"]  # a 0 pixel, standardised
        assert seen[0].min().item() == pytest.approx(background, abs=1e-6)
        blank[crop] = (seen[0] == seen[0].min()).float().mean().item()
    assert blank[3] > blank[0] + 0.01  # shifts of up to 3 pixels bring in blank rows and columns


def test_a_run_with_crops_and_flips_resumes_to_the_same_weights(tiny, tmp_path):
    """The augmentation draws from torch's generator, which the checkpoint saves and restores."""
    config = QUIET.replace(epochs=3, batch_size=100, lr=0.05, momentum=0.9, crop=2, flip=True)
    seed_everything(1)
    whole = build_model("lenet-bn", widths=(4, 8, 16, 16))
    fit(whole, tiny, config)

    class Stop(Exception):
        pass

    def stop(record):
        if record["epoch"] == 2:
            raise Stop

    seed_everything(1)
    with pytest.raises(Stop):
        fit(build_model("lenet-bn", widths=(4, 8, 16, 16)), tiny, config,
            checkpoint=tmp_path / "c.pt", on_epoch_end=stop)
    resumed = build_model("lenet-bn", widths=(4, 8, 16, 16))
    fit(resumed, tiny, config, checkpoint=tmp_path / "c.pt", resume=True)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="cannot resume.*crop=2.*crop=1"):
        fit(build_model("lenet-bn", widths=(4, 8, 16, 16)), tiny, config.replace(crop=1),
            checkpoint=tmp_path / "c.pt", resume=True)


# --- the network and test-time flips --------------------------------------------------------------


def test_lenet_bn_is_lenet_shaped_and_within_lenet5s_parameters():
    model = build_model("lenet-bn")
    assert isinstance(model, LeNetBN)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [type(m) for m in layers] == [nn.Conv2d] * 2 + [nn.Linear] * 3
    assert count_parameters(model) == 61_482 <= count_parameters(build_model("v1")) == 61_706
    assert count_parameters(build_model("lenet-bn", widths=(6, 16, 120, 84))) == 61_932
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    rebuilt = build_model(**model.config)  # how a checkpoint rebuilds it
    assert rebuilt.config["widths"] == [16, 32, 56, 48]
    with pytest.raises(ValueError, match="widths=.*4 positive whole numbers"):
        build_model("lenet-bn", widths=(16, 32, 56))
    with pytest.raises(ValueError, match="no option 'j'"):
        build_model("lenet-bn", j=1)


def test_test_time_flips_average_the_probabilities_of_an_image_and_its_mirror():
    torch.manual_seed(0)
    model = build_model("lenet-bn", widths=(2, 2, 4, 4)).eval()
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
    assert torch.allclose(class_scores(model, x, batch_size=2, flip=True), expected, atol=1e-6)
    symmetric = x + x.flip(3)  # its own mirror image: flips change nothing
    assert torch.equal(class_scores(model, symmetric, flip=True).argmax(1),
                       class_scores(model, symmetric).argmax(1))


def test_fit_reports_the_accuracy_with_test_time_flips_that_evaluate_gives(tiny):
    seed_everything(0)
    model = build_model("lenet-bn", widths=(4, 8, 16, 16))
    history = fit(model, tiny, QUIET.replace(epochs=1, batch_size=100, test_flip=True), test=tiny)
    assert history.last["test_accuracy"] == evaluate(model, tiny, flip=True)  # tiny's own scaling
    assert history.last["test_accuracy"] != evaluate(model, tiny)


# --- the recipe and the command line ------------------------------------------------------------


def test_the_challenge_recipe_is_the_modern_one_with_crops_flips_and_40_epochs():
    modern, challenge = RECIPES["modern"], RECIPES["challenge"]
    assert challenge == modern.replace(epochs=40, crop=2, flip=True, test_flip=True)
    with pytest.raises(ValueError, match="crop=9"):
        TrainConfig(crop=9)
    with pytest.raises(ValueError, match="cuda_graphs.*no crop or flip"):
        check_settings(build_model("v1"), TrainConfig(cuda_graphs=True, device="cpu", flip=True))


def test_the_command_line_picks_lenet_bn_for_the_challenge_recipe():
    args = build_parser().parse_args(["train", "--recipe", "challenge"])
    config = config_from_args(args)
    assert model_name(args) == "lenet-bn"
    assert (config.crop, config.flip, config.test_flip) == (2, True, True)
    args = build_parser().parse_args(["train", "--crop", "3", "--flip"])
    config = config_from_args(args)
    assert model_name(args) == "v1" and (config.crop, config.flip, config.epochs) == (3, True, 12)


@pytest.mark.slow
def test_the_challenge_runs_from_the_command_line_and_evaluate_agrees(real_data_root, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lenet_course", "train", "--recipe", "challenge", "--epochs",
               "1", "--train-subset", "2000", "--test-subset", "1000", "--root",
               str(real_data_root), "--threads", "1", "--no-progress", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["name"] == "lenet-bn" and metrics["parameters"] == 61_482
    assert metrics["train_config"]["test_flip"] is True
    assert load_checkpoint(out / "checkpoint.pt")["train_config"]["crop"] == 2
    evaluate_command = [sys.executable, "-m", "lenet_course", "evaluate", "--checkpoint",
                        str(out / "checkpoint.pt"), "--root", str(real_data_root), "--threads",
                        "1", "--test-subset", "1000"]
    done = subprocess.run(evaluate_command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in done.stdout  # with flips, as trained
