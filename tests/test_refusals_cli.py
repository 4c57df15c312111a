"""Issue 25 at the command line: Ctrl-C (once or twice) and a full disk anywhere give one line and
leave whole files and no lock; the help says what each recipe sets; a recipe picks its network;
another optimiser takes its own rate; a subset larger than its set, or a bad --out, is refused
naming the flag; evaluate draws the run's test images and says whether they were the same.
Ctrl-C is a real SIGINT raised in-process; a full disk is an OSError(ENOSPC) from a monkeypatch."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import outcome, refused

from lenet_course import checkpoint as checkpoint_module
from lenet_course import cli, run_folder
from lenet_course import train as train_module
from lenet_course.checkpoint import load_checkpoint
from lenet_course.cli import RECIPE_MODELS, USUAL_LR, build_parser, config_from_args, main
from lenet_course.config import RECIPES
from lenet_course.models import build_model
from lenet_course.train import check_settings

REPO = Path(__file__).resolve().parent.parent
TINY = ["--train-subset", "256", "--test-subset", "200", "--epochs", "1", "--threads", "1",
        "--no-progress"]
FULL_DISK = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(autouse=True)
def one_thread_and_sigint_restored():
    # A test run started in the background (`nohup make test &`) inherits SIGINT ignored, which
    # main rightly leaves alone: give these tests the terminal's Ctrl-C, and put back what was.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    threads, handler = torch.get_num_threads(), signal.getsignal(signal.SIGINT)
    yield
    torch.set_num_threads(threads)
    assert signal.getsignal(signal.SIGINT) is handler  # main puts Ctrl-C's handler back
    signal.signal(signal.SIGINT, inherited)


@pytest.fixture(scope="module")
def finished(real_data_root, tmp_path_factory) -> Path:
    """A finished one-epoch run with --seed 5 on 256 training and 200 test images."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *TINY, "--seed", "5", "--root", str(real_data_root), "--out",
                 str(out)]) == 0
    return out


@pytest.fixture
def run(finished, tmp_path, capsys) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    capsys.readouterr()
    return tmp_path / "run"


def files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in ``folder`` (hidden ones too): its bytes and its modification time."""
    if not folder.is_dir():
        return {}
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def ctrl_c() -> None:
    """Press Ctrl-C: a real SIGINT to this process, handled as the terminal's would be."""
    signal.raise_signal(signal.SIGINT)


def pressed_in(monkeypatch, module, name: str, times: int = 1, when=lambda *a, **k: True,
               error=None) -> None:
    """Replace ``module.name`` with one that first presses Ctrl-C (``times=2``: again while the
    first unwinds), or raises ``error``, on a call where ``when(*args)`` holds."""
    real = getattr(module, name)

    def wrapped(*args, **kwargs):
        if when(*args, **kwargs):
            if error is not None:
                raise error
            try:
                ctrl_c()
            finally:
                if times == 2:
                    ctrl_c()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


def in_epoch(number: int):
    return lambda run, epoch, *args: epoch + 1 == number


def nth_call(n: int):
    calls = []

    def when(*args, **kwargs):
        calls.append(1)
        return len(calls) == n

    return when


# --- 2. Ctrl-C anywhere: exit 130, one line, nothing half written, no lock ----------------------


def train_argv(root: Path, out: Path, *more: str) -> list[str]:
    return ["train", *TINY, "--root", str(root), "--out", str(out), *more]


def test_ctrl_c_twice_in_an_epoch_says_what_was_saved(real_data_root, tmp_path, capsys,
                                                      monkeypatch):
    out = tmp_path / "run"
    pressed_in(monkeypatch, train_module, "end_epoch", times=2, when=in_epoch(2))
    refused(train_argv(real_data_root, out, "--epochs", "2"), capsys, 130,
            [f"interrupted in epoch 2; the checkpoint in {out} holds epoch 1; continue with "
             "--resume"])
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]  # no lock, no temp file
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1


@pytest.mark.parametrize("raised", [False, True], ids=["second-sigint", "second-raised"])
def test_ctrl_c_while_reading_what_was_saved(real_data_root, tmp_path, capsys, monkeypatch,
                                             raised):
    """The second Ctrl-C comes while the first is handled: a SIGINT is ignored; one raised as
    KeyboardInterrupt (as a notebook's stop button does) still gives the one line."""
    out = tmp_path / "run"
    pressed_in(monkeypatch, train_module, "end_epoch", when=in_epoch(2))
    second = KeyboardInterrupt() if raised else None
    pressed_in(monkeypatch, run_folder, "load_checkpoint", error=second)
    line = refused(train_argv(real_data_root, out, "--epochs", "2"), capsys, 130,
                   ["interrupted", f"the checkpoint in {out} holds"])
    assert ("epoch 1" in line) != raised  # read, or said without reading
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


def test_ctrl_c_while_a_checkpoint_is_written_keeps_the_last_one_whole(real_data_root, tmp_path,
                                                                       capsys, monkeypatch):
    out = tmp_path / "run"
    pressed_in(monkeypatch, checkpoint_module.os, "fsync", when=nth_call(2))  # epoch 2's save
    refused(train_argv(real_data_root, out, "--epochs", "2"), capsys, 130,
            ["interrupted in epoch 2", "holds epoch 1", "continue with --resume"])
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1


def test_ctrl_c_after_the_last_epoch_says_resume_writes_the_rest(real_data_root, tmp_path,
                                                                 capsys, monkeypatch):
    out = tmp_path / "run"
    pressed_in(monkeypatch, cli, "save_run_files")
    refused(train_argv(real_data_root, out), capsys, 130,
            ["interrupted after the last epoch", "holds epoch 1",
             "--resume writes metrics.json and history.csv"])
    monkeypatch.undo()
    assert main(train_argv(real_data_root, out, "--resume")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "history.csv",
                                                     "metrics.json"]


@pytest.mark.parametrize("target, flag", [("load_dataset", "--overwrite"),
                                          ("load_checkpoint", "--resume")],
                         ids=["reading-the-data", "checking-the-checkpoint"])
def test_ctrl_c_before_training_leaves_the_old_run_and_no_lock(target, flag, run, real_data_root,
                                                               capsys, monkeypatch):
    before = files(run)
    pressed_in(monkeypatch, cli, target, times=2)
    refused(train_argv(real_data_root, run, "--seed", "5", flag), capsys, 130,
            ["interrupted; it stopped before training; nothing was written"])
    assert files(run) == before  # --overwrite removes the old run only when training starts


@pytest.mark.parametrize("command, target, needles", [
    (["evaluate", "--checkpoint", "{run}/checkpoint.pt", "--test-subset", "200", "--root",
      "{root}"], "evaluate", ["interrupted", "evaluate writes no file"]),
    (["predict", "--checkpoint", "{run}/checkpoint.pt", "{run}/a.png", "{run}/b.png"],
     "predict_files", ["interrupted", "predict writes no file"]),
    (["data", "--dataset", "mnist", "--no-download", "--root", "{root}"], "ensure_dataset",
     ["interrupted", "MD5", "run `data` again"]),
], ids=["evaluate", "predict-many-files", "data"])
@pytest.mark.parametrize("times", [1, 2], ids=["once", "twice"])
def test_ctrl_c_in_every_other_subcommand_is_one_line(command, target, needles, times, run,
                                                      real_data_root, capsys, monkeypatch):
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("L", (28, 28), 200).save(run / name)
    before = files(run)
    pressed_in(monkeypatch, cli, target, times=times)
    argv = [a.replace("{run}", str(run)).replace("{root}", str(real_data_root)) for a in command]
    refused(argv, capsys, 130, needles)
    assert files(run) == before


# --- 2. a full disk: exit 1, one line, every file whole (the old one or the new one) ------------


def test_a_full_disk_in_epoch_2_keeps_epoch_1(real_data_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    pressed_in(monkeypatch, checkpoint_module.os, "fsync", when=nth_call(2), error=FULL_DISK)
    refused(train_argv(real_data_root, out, "--epochs", "2"), capsys, 1,
            ["No space left on device", f"the checkpoint in {out} holds epoch 1",
             "continue with --resume"])
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1


def test_a_full_disk_in_epoch_1_leaves_an_empty_folder(real_data_root, tmp_path, capsys,
                                                       monkeypatch):
    out = tmp_path / "run"
    pressed_in(monkeypatch, checkpoint_module.os, "fsync", error=FULL_DISK)
    refused(train_argv(real_data_root, out), capsys, 1,
            ["No space left on device", "nothing was saved", "train again"])
    assert list(out.iterdir()) == []


def test_a_full_disk_on_resume_leaves_the_run_as_it_was(run, real_data_root, capsys,
                                                        monkeypatch):
    before = files(run)
    pressed_in(monkeypatch, checkpoint_module.os, "fsync", error=FULL_DISK)
    refused(train_argv(real_data_root, run, "--seed", "5", "--resume"), capsys, 1,
            ["No space left on device", "--resume writes metrics.json"])
    assert files(run) == before


def test_a_full_disk_when_the_lock_is_written_leaves_no_lock(real_data_root, tmp_path, capsys,
                                                             monkeypatch):
    out = tmp_path / "run"
    real = Path.write_text

    def write_text(path, *args, **kwargs):
        if path.name.startswith(".lock"):
            raise FULL_DISK
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    refused(train_argv(real_data_root, out), capsys, 1,
            [f"--out {out}: cannot write its lock", "No space left on device"])
    assert list(out.iterdir()) == []
    monkeypatch.undo()
    assert main(train_argv(real_data_root, out)) == 0  # nothing blocks the next run


@pytest.mark.parametrize("content", ["", "not a pid", "99999999999999999999", "2147483646"],
                         ids=["empty", "text", "overflow", "dead-pid"])
def test_a_lock_no_process_holds_is_taken_over(content, real_data_root, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(content)  # an older version's crash, or a dead process's
    assert main(train_argv(real_data_root, out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "history.csv",
                                                     "metrics.json"]
    capsys.readouterr()


def test_a_live_lock_is_refused_and_stays(run, real_data_root, capsys):
    (run / ".lock").write_text(str(os.getpid()))
    before = files(run)
    refused(train_argv(real_data_root, run, "--overwrite"), capsys, 1,
            ["is in use by another run", "another --out"])
    assert files(run) == before


# --- 7. the CLI says what it does -------------------------------------------------------------


def train_parser():
    return build_parser()._subparsers._group_actions[0].choices["train"]


def help_of(flag: str) -> str:
    action = next(a for a in train_parser()._actions if flag in a.option_strings)
    return " ".join(action.help.split())


SETTINGS = ["--epochs", "--batch-size", "--lr", "--optimizer", "--momentum", "--nesterov",
            "--weight-decay", "--schedule", "--label-smoothing", "--crop", "--flip", "--test-flip",
            "--seed"]


def shown_values(text: str) -> dict[str, str]:
    """``... (modern, challenge: 0.9; others: 0.0)`` -> each recipe's value as the help shows it."""
    listed = text[text.rindex("(") + 1 : -1]
    if listed.startswith("default: "):
        return dict.fromkeys(RECIPES, listed.removeprefix("default: "))
    values = {}
    for part in listed.split("; "):
        names, value = part.split(": ")
        for name in RECIPES if names == "others" else names.split(", "):
            values.setdefault(name, value)
    return values


@pytest.mark.parametrize("flag", SETTINGS)
def test_the_help_shows_every_recipes_value(flag):
    field = flag.removeprefix("--").replace("-", "_")
    expected = {}
    for name, recipe in RECIPES.items():
        value = getattr(recipe, field)
        expected[name] = ("on" if value else "off") if isinstance(value, bool) else str(value)
        expected[name] = "none" if value is None else expected[name]
    assert shown_values(help_of(flag)) == expected


def test_the_help_shows_the_challenge_recipe_and_each_recipes_network():
    text = " ".join(train_parser().format_help().split())
    for shown in ("challenge: 40", "(challenge: 2; others: 0)", "challenge: on; others: off"):
        assert shown in text
    for recipe, model in RECIPE_MODELS.items():
        assert f"{model} for {recipe}" in help_of("--model")
    assert "0.001" in help_of("--optimizer") and "without --lr" in help_of("--optimizer")
    assert "--validation" in help_of("--train-subset")


def parsed(*argv: str):
    args = build_parser().parse_args(["train", *argv])
    return args, config_from_args(args)


@pytest.mark.parametrize("argv, model", [
    ([], "v1"),
    (["--recipe", "modern"], "v1"),
    (["--recipe", "challenge"], "lenet-bn"),
    (["--recipe", "lenet5-1998"], "lenet5-1998"),
    (["--recipe", "sdlm-1998"], "lenet5-1998"),
    (["--recipe", "classic"], "classic"),
    (["--recipe", "lenet5-1998", "--model", "v3"], "v3"),
    (["--model", "lenet5-1998"], "lenet5-1998"),
], ids=["default", "modern", "challenge", "lenet5-1998", "sdlm-1998", "classic", "model-wins",
        "model-picks-recipe"])
def test_a_recipe_trains_its_network(argv, model):
    args, config = parsed(*argv)
    assert cli.model_name(args) == model
    if "--model" not in argv:  # the recipe and its network go together
        check_settings(build_model(model), config.replace(device="cpu"))


@pytest.mark.parametrize("argv, lr", [
    (["--optimizer", "adam"], 1e-3),
    (["--optimizer", "adamw"], 1e-3),
    (["--optimizer", "adam", "--lr", "0.01"], 0.01),
    (["--optimizer", "sgd"], RECIPES["modern"].lr),
    (["--recipe", "lenet5-1998", "--optimizer", "sgd"], USUAL_LR["sgd"]),
    (["--recipe", "lenet5-1998", "--optimizer", "adam"], RECIPES["lenet5-1998"].lr),
    (["--recipe", "lenet5-1998", "--optimizer", "adamw"], 1e-3),
    (["--model", "lenet5-1998", "--optimizer", "sdlm"], USUAL_LR["sdlm"]),
], ids=["adam", "adamw", "adam-with-lr", "sgd-is-the-recipes", "sgd-from-adam",
        "adam-is-the-recipes", "adamw-from-adam", "sdlm"])
def test_another_optimizer_takes_its_own_rate(argv, lr):
    _, config = parsed(*argv)
    assert config.lr == lr


MAKE = shutil.which("make")


@pytest.mark.skipif(MAKE is None, reason="no make")
@pytest.mark.parametrize("train_args, pooling", [
    ("", True), ("--epochs 2", True), ("--model lenet5-1998", False),
    ("--model=v3 --pooling avg", False), ("--recipe challenge", False),
], ids=["default", "epochs", "lenet5-1998", "model=v3", "challenge"])
def test_make_train_adds_max_pooling_only_to_its_own_network(train_args, pooling):
    done = subprocess.run([MAKE, "--no-print-directory", "-n", "train", f"TRAIN_ARGS={train_args}"],
                          cwd=REPO,
                          capture_output=True, text=True, check=True)
    start = done.stdout.index("-m lenet_course train")
    command = done.stdout[start:].replace("\\\n", " ").split()[2:]
    assert (command.count("--pooling") > train_args.count("--pooling")) == pooling
    args, config = parsed(*command[1:])
    options = {k: getattr(args, k) for k in ("activation", "pooling") if getattr(args, k)}
    check_settings(build_model(cli.model_name(args), **options), config.replace(device="cpu"))


# --- 7. --out and subsets are refused naming the flag --------------------------------------------


def dangling(tmp: Path) -> Path:
    (tmp / "link").symlink_to(tmp / "nowhere")
    return tmp / "link"


def looping(tmp: Path) -> Path:
    (tmp / "a").symlink_to(tmp / "b")
    (tmp / "b").symlink_to(tmp / "a")
    return tmp / "a"


def link_to_a_file(tmp: Path) -> Path:
    (tmp / "file").write_text("not a folder")
    (tmp / "link").symlink_to(tmp / "file")
    return tmp / "link"


OUTS = {
    "dangling-symlink": (dangling, ["symbolic link to nothing"]),
    "symlink-to-a-file": (link_to_a_file, ["is not a folder", "pass a folder"]),
    "symlink-loop": (looping, ["symbolic link to nothing (or a loop)"]),
    "inside-a-dangling-symlink": (lambda tmp: dangling(tmp) / "run", ["symbolic link"]),
    "inside-a-loop": (lambda tmp: looping(tmp) / "run", ["symbolic link"]),
}


@pytest.mark.parametrize("make, needles", OUTS.values(), ids=list(OUTS))
def test_a_bad_out_is_named(make, needles, tmp_path, capsys):
    out = make(tmp_path)
    refused(["train", *TINY, "--out", str(out)], capsys, 2, [f"--out {out}", *needles])


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc")
def test_out_under_proc_is_named(capsys):
    refused(["train", *TINY, "--out", "/proc/lenet-run"], capsys, 2,
            ["--out /proc/lenet-run", "pass a folder you may write to"])


@pytest.mark.parametrize("error, code, needles", [
    (PermissionError(errno.EACCES, "Permission denied"), 2,
     ["cannot create it (Permission denied)", "pass a folder you may write to"]),
    (FULL_DISK, 1, ["cannot create it (No space left on device)", "free some space"]),
], ids=["refused", "full-disk"])
def test_an_out_that_cannot_be_created_is_named(error, code, needles, real_data_root, tmp_path,
                                                capsys, monkeypatch):
    def mkdir(*args, **kwargs):
        raise error

    monkeypatch.setattr(Path, "mkdir", mkdir)
    out = tmp_path / "new"
    refused(train_argv(real_data_root, out), capsys, code, [f"--out {out}", *needles])
    assert not out.exists()


SUBSETS = {
    "validation-leaves-too-few": (
        ["--validation", "0.5", "--train-subset", "40000"],
        ["--train-subset 40000", "--validation 0.5 leaves 30,000 training images",
         "use --train-subset <= 30000 or a smaller --validation"]),
    "validation-count": (
        ["--validation", "59000", "--train-subset", "1001"],
        ["--train-subset 1001", "--validation 59000 leaves 1,000"]),
    "train-subset-over-60000": (
        ["--train-subset", "60001"],
        ["--train-subset 60001", "the train set has 60,000 images", "<= 60000"]),
    "test-subset-over-10000": (
        ["--test-subset", "10001"],
        ["--test-subset 10001", "the test set has 10,000 images", "<= 10000"]),
}


@pytest.mark.parametrize("argv, needles", SUBSETS.values(), ids=list(SUBSETS))
def test_a_subset_larger_than_its_set_is_refused(argv, needles, run, real_data_root, capsys):
    before = files(run)
    refused(train_argv(real_data_root, run, "--overwrite", *argv), capsys, 2, needles)
    assert files(run) == before  # the old run stays, and no lock


def test_validation_then_train_subset_as_help_says(real_data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_argv(real_data_root, out, "--validation", "0.5", "--train-subset",
                           "1000")) == 0
    settings = load_checkpoint(out / "checkpoint.pt")["train_config"]
    assert (settings["train_size"], settings["validation_size"]) == (1000, 30000)
    capsys.readouterr()


# --- 7. evaluate draws the run's test images, and says whether they were the same --------------


def evaluate(run: Path, root: Path, *more: str) -> list[str]:
    return ["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--root", str(root),
            "--threads", "1", *more]


def forget_test_size(run: Path) -> None:
    """A checkpoint and folder that do not say how many test images the run measured."""
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["train_config"].pop("test_size", None)
    torch.save(state, run / "checkpoint.pt")
    (run / "metrics.json").unlink()


@pytest.mark.parametrize("more, setup, needles", [
    (["--test-subset", "200"], None, ["(200 images", "on the same 200 test images"]),
    (["--test-subset", "200", "--seed", "5"], None, ["on the same 200 test images"]),
    (["--test-subset", "200", "--seed", "0"], None,
     ["on another test set (200 images drawn with --seed 5)"]),
    (["--test-subset", "100"], None, ["on another test set (200 images drawn with --seed 5)"]),
    ([], None, ["(10,000 images", "on another test set"]),
    (["--test-subset", "200"], forget_test_size, ["on a test set it does not describe"]),
], ids=["run-seed", "same-seed-given", "other-seed", "other-size", "whole-set", "unknown"])
def test_evaluate_says_whether_the_test_set_is_the_runs(more, setup, needles, run,
                                                        real_data_root, capsys):
    if setup is not None:
        setup(run)
    status, err, out = outcome(evaluate(run, real_data_root, *more), capsys)
    assert status == 0 and not err, err
    assert not [needle for needle in needles if needle not in out], out
    recorded = load_checkpoint(run / "checkpoint.pt")["history"][-1]["test_accuracy"]
    if "the same" in needles[-1]:
        assert out.startswith(f"fashion-mnist test accuracy {recorded:.4f} ")


def test_evaluate_refuses_a_test_subset_larger_than_the_set(run, real_data_root, capsys):
    refused(evaluate(run, real_data_root, "--test-subset", "10001"), capsys, 2,
            ["--test-subset 10001", "the test set has 10,000 images", "<= 10000"])


def test_the_module_runs_in_a_thread_without_touching_signals(run, real_data_root, capsys):
    """Signals reach the main thread only: main() elsewhere leaves Ctrl-C's handler alone."""
    import threading

    status = []
    thread = threading.Thread(target=lambda: status.append(main(evaluate(
        run, real_data_root, "--test-subset", "200"))))
    thread.start()
    thread.join()
    assert status == [0]
    capsys.readouterr()
