"""``python -m lenet_course``, the course's command line: each subcommand has a function that adds
its arguments and one that runs it. Every problem is one line on stderr: exit 2 for arguments and
settings, 1 for failures while running, 130 for Ctrl-C."""

import argparse
import contextlib
import json
import signal
import sys
import threading
from argparse import BooleanOptionalAction
from collections.abc import Sequence
from dataclasses import fields
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from lenet_course import __version__, distributed
from lenet_course.arguments import OneLineParser, number
from lenet_course.checkpoint import (
    RUN_FILES,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_run_files,
)
from lenet_course.config import OPTIMIZERS, RECIPES, SCHEDULES, TrainConfig, resolve_device
from lenet_course.data import (
    DATASETS,
    DatasetFormatError,
    ImageSet,
    ensure_dataset,
    load_dataset,
    random_subset,
    raw_folder,
    split_train_validation,
)
from lenet_course.models import ACTIVATIONS, MODEL_NAMES, POOLINGS, build_model
from lenet_course.predict import predict_files
from lenet_course.run_folder import check_out, claim, saved_state
from lenet_course.train import (
    TrainingDivergedError,
    check_settings,
    cpu_threads,
    evaluate,
    fit,
    seed_everything,
    torch_threads,
)

DEVICES = ("auto", "cpu", "cuda")
ROOT_HELP = "data root (default: $LENET_COURSE_DATA, else data/)"
CHECKPOINT_HELP = "checkpoint.pt written by `train`"
#: The network each recipe trains when --model is not given (the others: v1).
RECIPE_MODELS = {
    "challenge": "lenet-bn",
    "lenet5-1998": "lenet5-1998",
    "sdlm-1998": "lenet5-1998",
    "classic": "classic",
}
#: The learning rate of an --optimizer other than the recipe's when --lr is not given: the
#: recipe's rate belongs to its optimiser (SGD's one-cycle peak of 0.1 is far too high for Adam).
USUAL_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3, "sdlm": 5e-4}


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all", help="default: all")
    parser.add_argument("--root", help=ROOT_HELP)
    parser.add_argument("--no-download", action="store_true", help="only check; never download")


def _run_data(args: argparse.Namespace) -> int:
    for name in sorted(DATASETS) if args.dataset == "all" else [args.dataset]:
        ensure_dataset(name, args.root, download=not args.no_download)  # main reports a failure
        print(f"{name}: ready in {raw_folder(name, args.root)}")
    return 0


def _add_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help=CHECKPOINT_HELP)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG/... image files")
    parser.add_argument("--top-k", type=number(int, 1), default=3, metavar="K", help="default: 3")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    parser.add_argument("--no-invert", action="store_true", help="never invert a light picture")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="default: cpu")


def _run_predict(args: argparse.Namespace) -> int:
    device, checkpoint = resolve_device(args.device), load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint).to(device)
    if args.top_k > (classes := len(checkpoint["class_names"])):
        args.parser.error(f"--top-k {args.top_k}: the model has {classes} classes")
    invert = False if args.no_invert else None  # None: invert pictures whose border is light
    results = predict_files(checkpoint, args.images, top_k=args.top_k, model=model, invert=invert)
    for p in results:  # a file's error goes to stderr, so that --json stays JSON
        if p.error is not None:
            print(f"error: {p.error}", file=sys.stderr)
        elif not args.json:
            print(p)
    if args.json:
        print(json.dumps([p.to_json() for p in results], indent=2, allow_nan=False))
    return 1 if any(p.error is not None for p in results) else 0


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of both ``train`` and ``evaluate``: where, with how many threads, on what."""
    auto = "default: auto = cuda if available, else cpu"
    parser.add_argument("--device", choices=DEVICES, default="auto", help=auto)
    threads = "CPU threads (default: 1 on machines with <= 2 cores, else torch's)"
    parser.add_argument("--threads", type=number(int, 1, 1025), metavar="N", help=threads)
    parser.add_argument("--root", help=ROOT_HELP)
    subset = "N test images drawn with --seed (for quick runs)"
    parser.add_argument("--test-subset", type=number(int, 1), metavar="N", help=subset)


def _recipe_help(field: str, text: str) -> str:
    """``text (challenge: 2; others: 0)``: a setting's help, with each recipe's value."""
    recipes: dict[str, list[str]] = {}  # each value as shown -> the recipes that have it
    for name in ("modern", "lenet5-1998", "challenge", "sdlm-1998", "classic"):
        value = getattr(RECIPES[name], field)
        if isinstance(value, bool):
            value = "on" if value else "off"
        recipes.setdefault("none" if value is None else str(value), []).append(name)
    if len(recipes) == 1:
        return f"{text} (default: {next(iter(recipes))})"
    # the value of most recipes comes last, as "others"
    most = len(RECIPES) // 2
    parts = [f"{', '.join(names)}: {v}" for v, names in recipes.items() if len(names) <= most]
    parts += [f"others: {v}" for v, names in recipes.items() if len(names) > most]
    return f"{text} ({'; '.join(parts)})"


def _add_recipe_settings(parser: argparse.ArgumentParser) -> None:
    """The flags named after a TrainConfig field: each one given replaces the recipe's setting."""
    recipe = parser.add_argument_group("recipe settings (default: --recipe's, as listed)")

    def add(flag: str, text: str, **how: Any) -> None:
        field = flag.removeprefix("--").replace("-", "_")
        recipe.add_argument(flag, help=_recipe_help(field, text), **how)

    add("--epochs", "passes through the training set", type=number(int, 1))
    add("--batch-size", "examples per step", type=number(int, 1))
    add("--lr", "(peak) learning rate", type=number(float, 0.0, low_open=True))
    usual = ", ".join(f"{name} {lr:g}" for name, lr in USUAL_LR.items())
    switch = "one not the recipe's drops its momentum and, without --lr, takes its usual rate"
    add("--optimizer", f"optimiser ({switch}: {usual})", choices=OPTIMIZERS)
    add("--momentum", "SGD momentum", type=number(float, 0.0, 1.0))
    add("--nesterov", "Nesterov momentum (SGD)", action=BooleanOptionalAction)
    add("--weight-decay", "L2 penalty", type=number(float, 0.0))
    add("--schedule", "learning-rate schedule", choices=("none", *SCHEDULES))
    add("--label-smoothing", "for cross-entropy", type=number(float, 0.0, 1.0))
    add("--crop", "random crops: shift training images by up to N pixels", type=number(int, 0, 9))
    add("--flip", "random horizontal flips of the training images", action=BooleanOptionalAction)
    add("--test-flip", "evaluate each image and its mirror image", action=BooleanOptionalAction)
    add("--seed", "random seed: weights, shuffles, subsets", type=number(int, 0))


def _add_train(parser: argparse.ArgumentParser) -> None:
    fashion = "default: fashion-mnist"
    parser.add_argument("--dataset", choices=list(DATASETS), default="fashion-mnist", help=fashion)
    picks = ", ".join(f"{model} for {recipe}" for recipe, model in RECIPE_MODELS.items())
    parser.add_argument("--model", choices=MODEL_NAMES, help=f"default: {picks}, else v1")
    parser.add_argument("--activation", choices=ACTIVATIONS, help="for v1/v2/v3/classic")
    parser.add_argument("--pooling", choices=POOLINGS, help="for v1/v2/v3/classic")
    recipe = "default: modern; lenet5-1998 for --model lenet5-1998"
    parser.add_argument("--recipe", choices=sorted(RECIPES), help=recipe)
    _add_recipe_settings(parser)
    held_out = "training images held out: a count, or a fraction like 0.1 (default: 0)"
    parser.add_argument("--validation", default=0, type=_count_or_fraction, help=held_out)
    subset = "N training images drawn with --seed from those --validation leaves (quick runs)"
    parser.add_argument("--train-subset", type=number(int, 1), metavar="N", help=subset)
    _add_run_arguments(parser)
    out = "folder for metrics.json, history.csv, checkpoint.pt (default: runs/train)"
    parser.add_argument("--out", default="runs/train", metavar="DIR", help=out)
    # What to do with a run already in --out: continue it or replace it, not both.
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--overwrite", action="store_true", help="delete the run in --out, then train")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile")
    parser.add_argument("--cuda-graphs", action="store_true", help="each step as one CUDA graph")
    parser.add_argument("--tensorboard", metavar="DIR", help="also log to TensorBoard in DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _count_or_fraction(text: str) -> int | float:
    """--validation's type: 5000 (a count of images) or 0.1 (a fraction of them)."""
    return (number(float, 0.0, 1.0) if "." in text else number(int, 0))(text)


def model_name(args: argparse.Namespace) -> str:
    return args.model or RECIPE_MODELS.get(args.recipe, "v1")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe, with each flag given that names a TrainConfig field replacing its setting."""
    recipe = RECIPES[args.recipe or ("lenet5-1998" if args.model == "lenet5-1998" else "modern")]
    settings = {field.name for field in fields(TrainConfig)}
    changes = {k: v for k, v in vars(args).items() if k in settings and v is not None}
    if changes.get("schedule") == "none":
        changes["schedule"] = None
    # the recipe's rate belongs to its optimiser: another one starts from its own usual rate
    if changes.get("optimizer", recipe.optimizer) != recipe.optimizer and "lr" not in changes:
        changes["lr"] = USUAL_LR[changes["optimizer"]]
    # The recipe's momentum belongs to its SGD: another optimiser drops it (--optimizer's help).
    if changes.get("optimizer", "sgd") != "sgd" and recipe.optimizer == "sgd":
        if "momentum" in changes or changes.get("nesterov"):
            raise ValueError(f"--momentum and --nesterov apply to sgd, not {args.optimizer}")
        changes.update(momentum=0.0, nesterov=False)
    return recipe.replace(**changes, progress=not args.no_progress)


def _subset(args: argparse.Namespace, data: ImageSet, split: str, seed: int) -> ImageSet:
    """--train-subset or --test-subset of ``data``, drawn with ``seed``; a larger one is refused."""
    size, flag, n = getattr(args, f"{split}_subset"), f"--{split}-subset", len(data.labels)
    if size is not None and size > n:
        there, fix = f"the {split} set has {n:,} images", ""
        if split == "train" and args.validation:
            there = f"--validation {args.validation} leaves {n:,} training images"
            fix = " or a smaller --validation"
        args.parser.error(f"{flag} {size}: {there}; use {flag} <= {n}{fix}")
    return random_subset(data, size, seed)


def _load_data(args: argparse.Namespace, seed: int) -> tuple[ImageSet, ImageSet | None, ImageSet]:
    """(train, validation, test) as the flags ask: a held-out part, then subsets drawn with seed."""
    train, test = (load_dataset(args.dataset, split, root=args.root) for split in ("train", "test"))
    validation = None
    if args.validation:
        train, validation = split_train_validation(train, args.validation, seed=seed)
    train = _subset(args, train, "train", seed)
    return train, validation, _subset(args, test, "test", seed)


def _run_train(args: argparse.Namespace) -> int:
    out, resume, overwrite = check_out(args)  # every argument is checked before any work
    ckpt = out / RUN_FILES[0]
    if args.tensorboard and find_spec("tensorboard") is None:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard")
    config = config_from_args(args)
    seed_everything(config.seed)  # the same initial weights as fit's callers get
    options = {k: getattr(args, k) for k in ("activation", "pooling") if getattr(args, k)}
    model = build_model(model_name(args), **options)
    check_settings(model, config)
    if resume:  # a damaged checkpoint is refused before the data are read
        load_checkpoint(ckpt)
    main = distributed.rank() == 0  # under torchrun, rank 0 alone writes the run's files
    with claim(args, out) if main else contextlib.nullcontext():
        train, val, test = _load_data(args, config.seed)
        if overwrite and main:  # the old run's files go before the first epoch
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
        try:
            history = fit(
                model, train, config, test=test, validation=val, checkpoint=ckpt, resume=resume
            )
            if not main:
                return 0
            metrics = save_run_files(
                out, model, history, dataset=args.dataset, test_size=len(test.labels)
            )
        except KeyboardInterrupt:  # say what was saved and how to go on
            when, saved = saved_state(ckpt, config.epochs)
            print(f"interrupted{when}; {saved}", file=sys.stderr)
            return 130
        except OSError as error:  # a full disk: each file is whole, the old one or the new one
            raise OSError(f"{error}; {saved_state(ckpt, config.epochs)[1]}") from error
    print(
        f"{args.dataset} {model_name(args)}: test accuracy {metrics['test_accuracy']:.4f} after "
        f"{metrics['epochs']} epochs, {metrics['examples_per_second']:,.0f} examples/s on "
        f"{metrics['device']} ({metrics['seconds']:.1f} s); wrote {args.out}/metrics.json, "
        "history.csv, checkpoint.pt"
    )
    return 0


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help=CHECKPOINT_HELP)
    parser.add_argument("--dataset", choices=sorted(DATASETS), help="default: the checkpoint's")
    parser.add_argument("--batch-size", type=number(int, 1), default=1000, help="default: 1000")
    seed = "draws --test-subset (default: the checkpoint's, so the run's test images)"
    parser.add_argument("--seed", type=number(int, 0), help=seed)
    _add_run_arguments(parser)


def _recorded(checkpoint: dict[str, Any], path: Path, test: ImageSet, seed: int, full: int) -> str:
    """What the checkpoint recorded, and whether on the same test images as ``test``."""
    recorded = (checkpoint["history"] or [{}])[-1].get("test_accuracy")
    if recorded is None:
        return ""
    settings = checkpoint["train_config"]
    size, run_seed = settings.get("test_size"), settings.get("seed", 0)
    if size is None:  # an older checkpoint: the metrics.json beside it says
        with contextlib.suppress(OSError, ValueError, AttributeError):
            size = json.loads(path.with_name(RUN_FILES[1]).read_text()).get("test_size")
    if not isinstance(size, int):
        where = "a test set it does not describe"
    elif size == len(test.labels) and (size >= full or seed == run_seed):
        where = f"the same {size:,} test images"
    elif size >= full:
        where = f"another test set (all {size:,} images)"
    else:
        where = f"another test set ({size:,} images drawn with --seed {run_seed})"
    return f"; the checkpoint recorded {recorded:.4f} on {where}"


def _run_evaluate(args: argparse.Namespace) -> int:
    device, checkpoint = resolve_device(args.device), load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint).to(device)
    trained_on = checkpoint["dataset"]
    dataset = args.dataset or trained_on
    if dataset is None:
        args.parser.error("the checkpoint names no data set; pass --dataset")
    if trained_on not in (None, dataset):
        why = f"the checkpoint was trained on {trained_on}; leave out --dataset"
        args.parser.error(f"--dataset {dataset}: {why}")
    settings = checkpoint["train_config"]
    seed = args.seed if args.seed is not None else settings.get("seed", 0)  # the run's draw
    whole = load_dataset(dataset, "test", root=args.root)
    test = _subset(args, whole, "test", seed)
    norm, flip = checkpoint["normalization"], bool(settings.get("test_flip"))  # as the run tested
    with torch_threads(cpu_threads(args.threads) if device.type == "cpu" else None):
        accuracy = evaluate(model, test, norm, batch_size=args.batch_size, device=device, flip=flip)
    note = _recorded(checkpoint, Path(args.checkpoint), test, seed, len(whole.labels))
    which = f"{checkpoint['model']['name']} after {checkpoint['epoch']} epochs{note}"
    print(f"{dataset} test accuracy {accuracy:.4f} ({len(test.labels):,} images, {which})")
    return 0


#: What running a command may raise: one line on stderr, exit 1 (missing data is an OSError).
FAILURES = (CheckpointError, DatasetFormatError, TrainingDivergedError, ImportError, OSError)

COMMANDS = {  # name: (help, add arguments, run)
    "data": ("check that the data sets are there, downloading what is not", _add_data, _run_data),
    "predict": ("predict the classes of image files", _add_predict, _run_predict),
    "train": ("train a LeNet; write metrics, history and checkpoint", _add_train, _run_train),
    "evaluate": ("re-compute a checkpoint's test accuracy", _add_evaluate, _run_evaluate),
}


def build_parser() -> argparse.ArgumentParser:
    about = "The LeNet course's command line: data, training, evaluation and prediction."
    parser = OneLineParser(prog="python -m lenet_course", description=about)
    parser.add_argument("--version", action="version", version=f"lenet_course {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(parser=command)  # errors found later name the subcommand
    return parser


#: What Ctrl-C outside train's epochs leaves, by command.
INTERRUPTED = {
    "data": "a download cut short fails its MD5 check: delete its file and run `data` again",
    "train": "it stopped before training; nothing was written",
}


def _stop(signum: int, frame: Any) -> None:
    """Ctrl-C: stop, ignoring a second one that would cut the clean-up (lock, report) short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (130 for Ctrl-C: 128 + SIGINT)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # signals reach the main thread only; a SIGINT ignored from the start (nohup) stays ignored
    own = threading.current_thread() is threading.main_thread()
    own = own and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    previous = signal.signal(signal.SIGINT, _stop) if own else None
    try:
        return COMMANDS[args.command][2](args)
    except KeyboardInterrupt:
        stopped = INTERRUPTED.get(args.command, f"{args.command} writes no file")
        print(f"interrupted; {stopped}", file=sys.stderr)
        return 130
    except FAILURES as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    except ValueError as error:  # a setting that does not fit the checkpoint or the machine
        args.parser.error(str(error))
    finally:
        if own:
            signal.signal(signal.SIGINT, previous or signal.default_int_handler)
