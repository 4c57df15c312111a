"""``python -m lenet_course train`` and ``evaluate``: end to end on a tiny subset; bad arguments."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lenet_course.cli import build_parser, config_from_args, main
from lenet_course.config import RECIPES, TrainConfig
from lenet_course.data import load_dataset, random_subset
from lenet_course.models import build_model
from lenet_course.notebook import recorded_values
from lenet_course.paper import error_percent
from lenet_course.train import fit, seed_everything

REPO = Path(__file__).resolve().parent.parent
TINY = ["--train-subset", "512", "--test-subset", "300", "--no-progress", "--threads", "1"]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_train_then_evaluate_end_to_end(real_data_root, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "v1", "--epochs", "3", "--batch-size", "64", "--out", str(out),
            "--root", str(real_data_root), "--device", "cpu", "--validation", "0.1", "--optimizer",
            "adam", "--lr", "0.003",
            *TINY]
    assert main(argv) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("fashion-mnist v1: test accuracy ")
    assert {p.name for p in out.iterdir()} == {"metrics.json", "history.csv", "checkpoint.pt"}

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "examples_per_second", "epochs", "device"):
        assert key in metrics
    assert metrics["epochs"] == 3 and metrics["device"] == "cpu"
    assert metrics["test_size"] == 300 and metrics["train_size"] == 512
    assert metrics["test_accuracy"] > 0.3  # chance is 0.1
    assert metrics["validation_accuracy"] is not None
    assert f"{metrics['test_accuracy']:.4f}" in summary[0]

    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(metrics["test_accuracy"])

    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--root",
                 str(real_data_root), "--test-subset", "300", "--threads", "1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"fashion-mnist test accuracy {metrics['test_accuracy']:.4f} (300 ")
    assert f"the checkpoint recorded {metrics['test_accuracy']:.4f}" in line

    # --resume after the last epoch has nothing left to do; with more epochs and the same
    # schedule settings it is refused (the one-cycle schedule depends on the epoch count)
    assert main([*argv, "--resume"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        main([*argv[:4], "4", *argv[5:], "--resume"])
    assert caught.value.code == 2
    assert "cannot resume" in capsys.readouterr().err


def test_overwrite_replaces_a_run_and_a_stale_lock_is_taken_over(real_data_root, tmp_path,
                                                                   capsys):
    out = tmp_path / "run"
    argv = ["train", "--epochs", "1", "--root", str(real_data_root), "--out", str(out), *TINY]
    assert main(argv) == 0
    old = json.loads((out / "metrics.json").read_text())
    (out / ".lock").write_text("2147483646")  # a pid no process has: a crashed run's lock
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    new = json.loads((out / "metrics.json").read_text())
    assert (old["train_config"]["seed"], new["train_config"]["seed"]) == (0, 1)
    assert len(list(csv.DictReader((out / "history.csv").open()))) == 1  # one run, not two
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "history.csv",
                                                     "metrics.json"]  # the lock is gone
    assert main([*argv, "--seed", "1", "--resume"]) == 0  # the same run: nothing left to do
    capsys.readouterr()


def bad(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["--epochs", "0"], "--epochs: 0 must be >= 1"),
        (["--lr", "-0.1"], "--lr: -0.1 must be > 0.0"),
        (["--lr", "fast"], "'fast' is not a number"),
        (["--batch-size", "2.5"], "'2.5' is not a whole number"),
        (["--model", "alexnet"], "invalid choice: 'alexnet'"),
        (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
        (["--optimizer", "sdlm"], "LeNet5_1998"),
        (["--recipe", "fastest"], "invalid choice: 'fastest'"),
        (["--momentum", "1.5"], "--momentum: 1.5 must be >= 0.0 and < 1.0"),
        (["--validation", "1.5"], "--validation: 1.5 must be >= 0.0 and < 1.0"),
        (["--optimizer", "adam", "--momentum", "0.9"], "apply to sgd"),
        (["--model", "lenet5-1998", "--label-smoothing", "0.1"], "lenet5-1998"),
        (["--resume"], "--resume: no checkpoint at"),
        (["--seed", "-3"], "--seed: -3 must be >= 0"),
        (["--resume", "--overwrite"], "not allowed with argument --resume"),
    ],
)
def test_bad_train_arguments_exit_2_with_one_line(argv, reason, tmp_path, capsys):
    err = bad(["train", "--out", str(tmp_path / "none"), *argv], capsys)
    assert reason in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_exits_2(tmp_path, capsys):
    assert "CUDA is not available" in bad(["train", "--device", "cuda", "--out", str(tmp_path)],
                                          capsys)
    assert "CUDA" in bad(["train", "--cuda-graphs", "--device", "cpu", "--out", str(tmp_path)],
                         capsys)


def test_evaluate_a_missing_checkpoint_is_one_clear_line(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint at" in err[0]


def test_the_clis_choices_are_the_models_and_the_configs():
    from lenet_course import config, models

    actions = {a.dest: a for a in train_parser()._actions}
    assert tuple(actions["model"].choices) == models.MODEL_NAMES
    assert tuple(actions["activation"].choices) == models.ACTIVATIONS
    assert tuple(actions["pooling"].choices) == models.POOLINGS
    assert tuple(actions["optimizer"].choices) == config.OPTIMIZERS  # adamw and sdlm included
    assert sorted(actions["recipe"].choices) == sorted(config.RECIPES)


def train_parser():
    return build_parser()._subparsers._group_actions[0].choices["train"]


def parsed_config(*argv: str) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["train", *argv]))


#: The settings a command line run adds to a recipe: where and how it runs.
RUNTIME = dict(device="auto", threads=None, bf16=False, compile=False, cuda_graphs=False,
               progress=True, tensorboard=None)


def test_flags_change_the_recipe_and_nothing_else():
    assert parsed_config() == RECIPES["modern"].replace(**RUNTIME)
    assert parsed_config("--model", "lenet5-1998") == RECIPES["lenet5-1998"].replace(**RUNTIME)
    assert parsed_config("--recipe", "classic", "--epochs", "3") == RECIPES["classic"].replace(
        epochs=3, **RUNTIME
    )
    assert parsed_config("--schedule", "none", "--no-nesterov").schedule is None
    adam = parsed_config("--optimizer", "adam", "--lr", "0.003")  # the recipe's momentum goes
    assert (adam.optimizer, adam.lr, adam.momentum, adam.nesterov) == ("adam", 0.003, 0.0, False)


def test_help_shows_the_recipes_defaults():
    text = train_parser().format_help()
    modern, paper = RECIPES["modern"], RECIPES["lenet5-1998"]
    assert f"modern: {modern.epochs}; lenet5-1998: {paper.epochs}" in " ".join(text.split())
    assert f"default: {modern.weight_decay}" not in text  # the two recipes differ: both shown


def reproduction_command(epochs: int, seed: int, train_subset: int, out: str) -> list[str]:
    """Notebook 08's command line (as it recorded it), with other passes, seed, subset and --out."""
    notebook = json.loads((REPO / "notebooks" / "08_lenet5_1998_on_mnist.ipynb").read_text())
    command = recorded_values(notebook)["command"]
    flags = {"--epochs": str(epochs), "--seed": str(seed), "--out": out}
    command = [flags.get(before, word) for before, word in zip(["", *command], command,
                                                               strict=False)]
    return [*command, "--train-subset", str(train_subset)]  # argparse: the last one counts


def test_the_notebooks_command_is_its_recipe():
    notebook = json.loads((REPO / "notebooks" / "08_lenet5_1998_on_mnist.ipynb").read_text())
    command = recorded_values(notebook)["command"]
    assert command[:4] == ["python", "-m", "lenet_course", "train"]
    args = build_parser().parse_args(command[3:])
    assert (args.model, args.dataset, args.train_subset, args.out) == (
        "lenet5-1998", "mnist", None, "runs/lenet5-1998"
    )
    (parameters,) = [
        "".join(cell["source"])
        for cell in notebook["cells"]
        if "parameters" in cell.get("metadata", {}).get("tags", [])
    ]
    assert f"passes = {RECIPES['lenet5-1998'].epochs} " in parameters
    assert config_from_args(args) == RECIPES["lenet5-1998"].replace(**RUNTIME)
    changed = build_parser().parse_args(reproduction_command(20, 3, 500, "somewhere")[3:])
    assert (changed.epochs, changed.seed, changed.train_subset, changed.out) == (
        20, 3, 500, "somewhere")


@pytest.mark.slow
def test_cli_reproduces_fit(real_data_root, tmp_path):
    """`python -m lenet_course train` with the recipe's flags gives fit's test error exactly."""
    epochs, seed, subset = 1, 0, 10_000
    out = tmp_path / "run"
    command = reproduction_command(epochs, seed, subset, out=str(out))
    command = [sys.executable, *command[1:], "--root", str(real_data_root), "--threads", "1",
               "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == epochs and metrics["model"]["name"] == "lenet5-1998"

    train = random_subset(load_dataset("mnist", "train", root=real_data_root), subset, seed)
    test = load_dataset("mnist", "test", root=real_data_root)
    seed_everything(seed)
    model = build_model("lenet5-1998")
    config = RECIPES["lenet5-1998"].replace(epochs=epochs, seed=seed, threads=1, progress=False)
    history = fit(model, train, config, test=test)
    assert metrics["test_accuracy"] == history.last["test_accuracy"]
    assert error_percent(metrics["test_accuracy"]) < 50  # it learned (chance: 90%)

    # `evaluate` recomputes the number from the checkpoint (paper normalisation included).
    evaluate = [sys.executable, "-m", "lenet_course", "evaluate", "--checkpoint",
                str(out / "checkpoint.pt"), "--root", str(real_data_root), "--threads", "1"]
    done = subprocess.run(evaluate, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in done.stdout


def test_the_module_entry_point_lists_train_and_evaluate():
    result = subprocess.run(
        [sys.executable, "-m", "lenet_course", "train", "--help"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )
    assert result.returncode == 0
    for flag in ("--dataset", "--model", "--epochs", "--lr", "--batch-size", "--optimizer",
                 "--device", "--seed", "--out", "--resume", "--threads", "--schedule", "--recipe"):
        assert flag in result.stdout


def test_the_lenet5_1998_recipe_is_notebook_08s():
    """Adam (Kingma and Ba, 2015), cosine schedule, batches of 64, no weight decay, 6 passes."""
    recipe = RECIPES["lenet5-1998"]
    assert (recipe.optimizer, recipe.lr, recipe.batch_size) == ("adam", 3e-3, 64)
    assert (recipe.schedule, recipe.weight_decay, recipe.epochs) == ("cosine", 0.0, 6)


def test_random_subset_is_the_cli_draw():
    from lenet_course import cli
    from lenet_course.data import ImageSet

    data = ImageSet(
        torch.arange(50, dtype=torch.uint8).view(50, 1, 1).expand(50, 28, 28).contiguous(),
        torch.arange(50) % 10,
        tuple(str(i) for i in range(10)),
    )
    ours = random_subset(data, 7, 4)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(4))  # the draw as it was
    theirs = data.subset(order[:7])
    assert torch.equal(ours.labels, theirs.labels) and torch.equal(ours.images, theirs.images)
    assert random_subset(data, None, 4) is data
    assert cli.random_subset is random_subset  # `train --train-subset N --seed S` draws the same
