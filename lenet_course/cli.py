"""``python -m lenet_course``: the course's command line.

Each subcommand has a function that adds its arguments and one that runs it.  Every problem is one
line on stderr: exit 2 for arguments and settings, 1 for failures while running, 130 for Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from lenet_course import __version__, distributed
from lenet_course.checkpoint import (
    RUN_FILES,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_run_files,
)
from lenet_course.config import OPTIMIZERS, RECIPES, SCHEDULES, TrainConfig
from lenet_course.data import (
    DATASETS,
    DatasetFormatError,
    ensure_dataset,
    load_dataset,
    random_subset,
    raw_folder,
    split_train_validation,
)
from lenet_course.models import ACTIVATIONS, MODEL_NAMES, POOLINGS, build_model
from lenet_course.predict import predict_files
from lenet_course.train import (
    TrainingDivergedError,
    check_settings,
    cpu_threads,
    evaluate,
    fit,
    resolve_device,
    seed_everything,
    torch_threads,
)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump) and exit with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def number(kind: type, low: float, high: float | None = None, *,
           low_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` in [low, high) (or (low, high) if ``low_open``)."""
    high = 2**63 if high is None and kind is int else high  # what a seed or an index holds

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not -float("inf") < value < float("inf"):  # inf or NaN
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if (value <= low if low_open else value < low) or (high is not None and value >= high):
            bound = f"> {low}" if low_open else f">= {low}"
            raise argparse.ArgumentTypeError(
                f"{value} must be {bound}" + (f" and < {high}" if high is not None else ""))
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=[*sorted(DATASETS), "all"], default="all",
                        help="which data set to check or download (default: all)")
    parser.add_argument("--root", help="data root (default: $LENET_COURSE_DATA, else data/)")
    parser.add_argument("--no-download", action="store_true",
                        help="only check; never download missing files")


def _run_data(args: argparse.Namespace) -> int:
    for name in sorted(DATASETS) if args.dataset == "all" else [args.dataset]:
        ensure_dataset(name, args.root, download=not args.no_download)  # main reports a failure
        print(f"{name}: ready in {raw_folder(name, args.root)}")
    return 0


def _add_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="checkpoint.pt written by `train`")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG/... image files")
    parser.add_argument("--top-k", type=number(int, 1), default=3, metavar="K",
                        help="classes shown (default: 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    parser.add_argument("--no-invert", action="store_true",
                        help="never invert (default: invert pictures whose border is light)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu",
                        help="where the model runs (default: cpu)")


def _run_predict(args: argparse.Namespace) -> int:
    device, checkpoint = resolve_device(args.device), load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint).to(device)
    if args.top_k > (classes := len(checkpoint["class_names"])):
        args.parser.error(f"--top-k {args.top_k}: the model has {classes} classes")
    predictions = predict_files(checkpoint, args.images, top_k=args.top_k, model=model,
                                invert=False if args.no_invert else None)
    for p in predictions:  # a file with NaN probabilities has an error: --json stays JSON
        if p.error is not None:
            print(f"error: {p.error}", file=sys.stderr)
        elif not args.json:
            print(p)
    if args.json:
        print(json.dumps([p.to_json() for p in predictions], indent=2, allow_nan=False))
    return 1 if any(p.error is not None for p in predictions) else 0


#: The TrainConfig fields that ``train`` has flags for: field -> (argparse type, help).
CONFIG_FLAGS: dict[str, tuple[Any, str]] = {
    "epochs": (number(int, 1), "passes through the training set"),
    "batch_size": (number(int, 1), "examples per step"),
    "lr": (number(float, 0.0, low_open=True), "(peak) learning rate"),
    "optimizer": (OPTIMIZERS, "optimiser"),
    "momentum": (number(float, 0.0, 1.0), "SGD momentum"),
    "nesterov": (bool, "Nesterov momentum (SGD)"),
    "weight_decay": (number(float, 0.0), "L2 penalty"),
    "schedule": (("none", *SCHEDULES), "learning-rate schedule"),
    "label_smoothing": (number(float, 0.0, 1.0), "for cross-entropy"),
    "crop": (number(int, 0, 9), "random crops: shift training images by up to N pixels"),
    "flip": (bool, "random horizontal flips of the training images"),
    "test_flip": (bool, "evaluate each image and its mirror image"),
    "seed": (number(int, 0), "random seed: weights, shuffles, subsets"),
}


def _recipe_default(name: str) -> str:
    """``modern: 12; lenet5-1998: 6``: the defaults ``--help`` shows, read from the recipes."""
    shown = {recipe: str(getattr(RECIPES[recipe], name)).replace("None", "none")
             for recipe in ("modern", "lenet5-1998")}
    each = "; ".join(f"{recipe}: {value}" for recipe, value in shown.items())
    return f"default: {shown['modern'] if len(set(shown.values())) == 1 else each}"


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of both ``train`` and ``evaluate``: where, with how many threads, on what."""
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where to run (default: auto = cuda if available, else cpu)")
    parser.add_argument("--threads", type=number(int, 1, 1025), metavar="N",
                        help="CPU threads (default: 1 on machines with <= 2 cores, else torch's)")
    parser.add_argument("--root", help="data root (default: $LENET_COURSE_DATA, else data/)")
    parser.add_argument("--test-subset", type=number(int, 1), metavar="N",
                        help="use N test images drawn with --seed (for quick runs)")


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="fashion-mnist",
                        help="default: fashion-mnist")
    parser.add_argument("--model", choices=MODEL_NAMES,
                        help="default: v1; lenet-bn for --recipe challenge")
    parser.add_argument("--activation", choices=ACTIVATIONS, help="for v1/v2/v3/classic")
    parser.add_argument("--pooling", choices=POOLINGS, help="for v1/v2/v3/classic")
    parser.add_argument("--recipe", choices=sorted(RECIPES),
                        help="the settings the flags below change (default: modern; "
                             "lenet5-1998 for --model lenet5-1998)")
    for name, (kind, help_text) in CONFIG_FLAGS.items():
        flag, text = "--" + name.replace("_", "-"), f"{help_text} ({_recipe_default(name)})"
        how = ({"action": argparse.BooleanOptionalAction} if kind is bool else
               {"choices": kind} if isinstance(kind, tuple) else {"type": kind})
        parser.add_argument(flag, help=text, **how)
    parser.add_argument("--validation", default=0, metavar="N|F",  # 5000, or a fraction: 0.1
                        type=lambda t: (number(float, 0.0, 1.0) if "." in t else number(int, 0))(t),
                        help="hold out N training images, or a fraction F (default: 0)")
    parser.add_argument("--train-subset", type=number(int, 1), metavar="N",
                        help="train on N images drawn with --seed (for quick runs)")
    _add_run_arguments(parser)
    parser.add_argument("--out", default="runs/train", metavar="DIR",
                        help="folder for metrics.json, history.csv, checkpoint.pt")
    run = parser.add_mutually_exclusive_group()  # what to do with a run already in --out
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run in --out (its files go before the first epoch)")
    for flag, help_text in (("--bf16", "bfloat16 autocast"), ("--compile", "torch.compile"),
                            ("--cuda-graphs", "the whole step as one CUDA graph (CUDA only)")):
        parser.add_argument(flag, action="store_true", help=help_text)
    parser.add_argument("--tensorboard", metavar="DIR", help="also log to TensorBoard in DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe, with the flags that were given replacing its settings (and --model's default)."""
    args.model = args.model or ("lenet-bn" if args.recipe == "challenge" else "v1")
    recipe = args.recipe or ("lenet5-1998" if args.model == "lenet5-1998" else "modern")
    changes = {name: vars(args)[name] for name in CONFIG_FLAGS if vars(args)[name] is not None}
    if changes.get("schedule") == "none":
        changes["schedule"] = None
    if changes.get("optimizer", "sgd") != "sgd" and RECIPES[recipe].optimizer == "sgd":
        if "momentum" in changes or changes.get("nesterov"):
            raise ValueError(f"--momentum/--nesterov apply to sgd, not --optimizer "
                             f"{changes['optimizer']}")
        changes.update(momentum=0.0, nesterov=False)  # the recipe's SGD momentum goes too
    runtime = {k: vars(args)[k] for k in ("device", "threads", "bf16", "compile", "cuda_graphs",
                                          "tensorboard")}
    return RECIPES[recipe].replace(**changes, **runtime, progress=not args.no_progress)


def _check_out(args: argparse.Namespace) -> Path:
    """Refuse at once an --out we cannot write, or one holding a run that the flags do not name."""
    out = Path(args.out)
    there = next(p for p in (out, *out.parents) if p.exists())  # out, or its nearest parent
    if not (there.is_dir() and os.access(there, os.W_OK | os.X_OK)):
        why = "cannot be written" if there.is_dir() else "is not a folder"
        args.parser.error(f"--out {out}: {there} {why}; pass a folder you may write to")
    held = [name for name in RUN_FILES if (out / name).exists()]
    args.resume = args.resume or (distributed.restarted() and RUN_FILES[0] in held)  # torchrun's
    args.overwrite = args.overwrite and not args.resume  # restart continues the run it stopped
    if held and not (args.resume or args.overwrite):
        args.parser.error(f"--out {out} already holds a run ({', '.join(held)}); pass --resume "
                          "to continue it, --overwrite to replace it, or another --out")
    if args.resume and RUN_FILES[0] not in held:
        args.parser.error(f"--resume: no checkpoint at {out / RUN_FILES[0]} to continue")
    return out


def _lock(out: Path) -> Path:
    """Take ``out/.lock`` (our pid): a second writer fails at once; a dead one's is taken over."""
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".lock"
    try:
        os.kill(int(lock.read_text()), 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        lock.unlink()  # a stale lock: its process has gone
    except (OSError, ValueError, OverflowError):
        pass  # no lock, or one we cannot judge: os.open decides
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))  # only one can
    except FileExistsError:
        raise FileExistsError(f"--out {out} is in use by another run (pid in {lock}); wait, or "
                              "pass another --out (delete the lock if no run uses it)") from None
    lock.write_text(str(os.getpid()))
    return lock


def _run_train(args: argparse.Namespace) -> int:
    out = _check_out(args)  # every argument is checked before any work
    checkpoint = out / RUN_FILES[0]
    if args.tensorboard and find_spec("tensorboard") is None:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard")
    config = config_from_args(args)
    seed_everything(config.seed)  # the same initial weights as fit's callers get
    model = build_model(args.model, **{k: v for k in ("activation", "pooling")
                                       if (v := getattr(args, k))})
    check_settings(model, config)
    if args.resume:  # a damaged checkpoint is refused before the data are read
        load_checkpoint(checkpoint)
    main = distributed.rank() == 0  # under torchrun, rank 0 alone writes the run's files
    lock = _lock(out) if main else None
    try:
        train, test = (load_dataset(args.dataset, s, root=args.root) for s in ("train", "test"))
        train, validation = (split_train_validation(train, args.validation, seed=config.seed)
                             if args.validation else (train, None))
        train = random_subset(train, args.train_subset, config.seed)
        test = random_subset(test, args.test_subset, config.seed)
        for name in RUN_FILES if args.overwrite and main else ():  # before any epoch
            (out / name).unlink(missing_ok=True)
        history = fit(model, train, config, test=test, validation=validation,
                      checkpoint=checkpoint, resume=args.resume)
        if not main:
            return 0
        metrics = save_run_files(out, model, history, dataset=args.dataset,
                                 test_size=len(test.labels))
    except KeyboardInterrupt:  # say what was saved and how to go on; 130 = 128 + SIGINT
        saved = load_checkpoint(checkpoint)["epoch"] if checkpoint.is_file() else 0
        then = (f"the checkpoint in {out} holds epoch {saved}; continue with --resume" if saved
                else "no epoch had finished, so nothing was saved; train again")
        print(f"interrupted in epoch {saved + 1}; {then}", file=sys.stderr)
        return 130
    finally:
        if lock is not None:
            lock.unlink(missing_ok=True)  # also when the run fails
    print(f"{args.dataset} {args.model}: test accuracy {metrics['test_accuracy']:.4f} after "
          f"{metrics['epochs']} epochs, {metrics['examples_per_second']:,.0f} examples/s on "
          f"{metrics['device']} ({metrics['seconds']:.1f} s); wrote {args.out}/metrics.json, "
          "history.csv, checkpoint.pt")
    return 0


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="checkpoint.pt written by `train`")
    parser.add_argument("--dataset", choices=sorted(DATASETS),
                        help="test set to use (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=number(int, 1), default=1000, help="default: 1000")
    parser.add_argument("--seed", type=number(int, 0), default=0,
                        help="draws --test-subset (default: 0)")
    _add_run_arguments(parser)


def _run_evaluate(args: argparse.Namespace) -> int:
    device, checkpoint = resolve_device(args.device), load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint)
    dataset = args.dataset or checkpoint["dataset"]
    if dataset is None:
        args.parser.error("the checkpoint names no data set; pass --dataset")
    if checkpoint["dataset"] not in (None, dataset):
        args.parser.error(f"--dataset {dataset}: the checkpoint was trained on "
                          f"{checkpoint['dataset']}; evaluate it on that (leave out --dataset)")
    test = random_subset(load_dataset(dataset, "test", root=args.root), args.test_subset, args.seed)
    with torch_threads(cpu_threads(args.threads) if device.type == "cpu" else None):
        accuracy = evaluate(model.to(device), test, checkpoint["normalization"],
                            batch_size=args.batch_size, device=device,
                            flip=bool((checkpoint["train_config"] or {}).get("test_flip")))
    recorded = (checkpoint["history"] or [{}])[-1].get("test_accuracy")
    note = f"; the checkpoint recorded {recorded:.4f}" if recorded is not None else ""
    print(f"{dataset} test accuracy {accuracy:.4f} ({len(test.labels):,} images, "
          f"{checkpoint['model']['name']} after {checkpoint['epoch']} epochs{note})")
    return 0


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {  # name: (help, add arguments, run)
    "data": ("check that the data sets are there, downloading what is not", _add_data, _run_data),
    "predict": ("predict the classes of image files", _add_predict, _run_predict),
    "train": ("train a LeNet; write metrics, history and checkpoint", _add_train, _run_train),
    "evaluate": ("re-compute a checkpoint's test accuracy", _add_evaluate, _run_evaluate),
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m lenet_course`` and its subcommands."""
    parser = OneLineParser(prog="python -m lenet_course", description="The LeNet course's "
                           "command line: data, training, evaluation and prediction.")
    parser.add_argument("--version", action="version", version=f"lenet_course {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(parser=command)  # errors found later name the subcommand
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command][2](args)
    except (CheckpointError, DatasetFormatError, TrainingDivergedError, ImportError,
            OSError) as error:  # found while running (missing data is an OSError)
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    except ValueError as error:  # a setting that does not fit the checkpoint or the machine
        args.parser.error(str(error))
