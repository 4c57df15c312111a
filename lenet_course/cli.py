"""``python -m lenet_course``: the course's command line.

Each subcommand is a pair of functions: one adds its arguments to a parser, one runs it and
returns an exit code.  ``train`` maps its flags onto a :class:`~lenet_course.config.TrainConfig`
recipe, so its defaults are the recipe's.  Bad arguments exit with status 2 and a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lenet_course import __version__
from lenet_course.checkpoint import load_checkpoint, model_from_checkpoint, save_run_files
from lenet_course.config import OPTIMIZERS, RECIPES, SCHEDULES, TrainConfig
from lenet_course.data import (
    DATASETS,
    DatasetNotFoundError,
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


def fail(message: Any) -> int:
    """Report a problem found while running (not in the arguments): one line, exit status 1."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 1


def number(kind: type, low: float, high: float | None = None, *,
           low_open: bool = False) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` (int/float) in [low, high) (or (low, high) if ``low_open``)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        too_low = value <= low if low_open else value < low
        if too_low or (high is not None and value >= high) or value != value:
            bound = f"> {low}" if low_open else f">= {low}"
            high_text = f" and < {high}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"{value} must be {bound}{high_text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _count_or_fraction(text: str) -> float:
    """``--validation``: a number of examples (5000) or a fraction of the training set (0.1)."""
    return number(float, 0.0, 1.0)(text) if "." in text else number(int, 0)(text)


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=[*sorted(DATASETS), "all"], default="all",
                        help="which data set to check or download (default: all)")
    parser.add_argument("--root", help="data root (default: $LENET_COURSE_DATA, else data/)")
    parser.add_argument("--no-download", action="store_true",
                        help="only check; never download missing files")


def _run_data(args: argparse.Namespace) -> int:
    for name in sorted(DATASETS) if args.dataset == "all" else [args.dataset]:
        try:
            ensure_dataset(name, args.root, download=not args.no_download)
        except DatasetNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)  # several lines: what is missing, the fix
            return 1
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


def _run_predict(args: argparse.Namespace) -> int:
    try:
        checkpoint = load_checkpoint(args.checkpoint)
        model = model_from_checkpoint(checkpoint)
    except (OSError, ValueError) as error:  # CheckpointError is a ValueError
        return fail(error)
    classes = len(checkpoint["class_names"])
    if args.top_k > classes:
        args.parser.error(f"--top-k {args.top_k}: the model has {classes} classes")
    invert = False if args.no_invert else None
    predictions = predict_files(checkpoint, args.images, top_k=args.top_k, invert=invert,
                                model=model)
    for prediction in predictions:
        if prediction.error is not None:
            print(f"error: {prediction.error}", file=sys.stderr)
        elif not args.json:
            print(prediction)
    if args.json:
        print(json.dumps([p.to_json() for p in predictions], indent=2))
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
    "seed": (int, "random seed: weights, shuffles, subsets"),
}


def _recipe_default(name: str) -> str:
    """``modern: 12; lenet5-1998: 6``: the defaults ``--help`` shows, read from the recipes."""
    values = {recipe: getattr(RECIPES[recipe], name) for recipe in ("modern", "lenet5-1998")}
    shown = {recipe: "none" if v is None else v for recipe, v in values.items()}
    if len(set(map(str, shown.values()))) == 1:
        return f"default: {shown['modern']}"
    return "default: " + "; ".join(f"{recipe}: {value}" for recipe, value in shown.items())


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of both ``train`` and ``evaluate``: where, with how many threads, on what."""
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="where to run (default: auto = cuda if available, else cpu)")
    parser.add_argument("--threads", type=number(int, 1), metavar="N",
                        help="CPU threads (default: 1 on machines with <= 2 cores, else torch's)")
    parser.add_argument("--root", help="data root (default: $LENET_COURSE_DATA, else data/)")
    parser.add_argument("--test-subset", type=number(int, 1), metavar="N",
                        help="use N test images drawn with --seed (for quick runs)")


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="fashion-mnist",
                        help="default: fashion-mnist")
    parser.add_argument("--model", choices=MODEL_NAMES, default="v1", help="default: v1")
    parser.add_argument("--activation", choices=ACTIVATIONS, help="for v1/v2/v3/classic")
    parser.add_argument("--pooling", choices=POOLINGS, help="for v1/v2/v3/classic")
    parser.add_argument("--recipe", choices=sorted(RECIPES),
                        help="the settings the flags below change (default: modern; "
                             "lenet5-1998 for --model lenet5-1998)")
    for name, (kind, help_text) in CONFIG_FLAGS.items():
        flag, text = "--" + name.replace("_", "-"), f"{help_text} ({_recipe_default(name)})"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        elif isinstance(kind, tuple):
            parser.add_argument(flag, choices=kind, help=text)
        else:
            parser.add_argument(flag, type=kind, help=text)
    parser.add_argument("--validation", type=_count_or_fraction, default=0, metavar="N|F",
                        help="hold out N training images, or a fraction F (default: 0)")
    parser.add_argument("--train-subset", type=number(int, 1), metavar="N",
                        help="train on N images drawn with --seed (for quick runs)")
    _add_run_arguments(parser)
    parser.add_argument("--out", default="runs/train", metavar="DIR",
                        help="folder for metrics.json, history.csv, checkpoint.pt")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run whose checkpoint is in --out")
    for flag, help_text in (("--bf16", "bfloat16 autocast"), ("--compile", "torch.compile"),
                            ("--cuda-graphs", "CUDA graphs (CUDA only)")):
        parser.add_argument(flag, action="store_true", help=help_text)
    parser.add_argument("--tensorboard", metavar="DIR", help="also log to TensorBoard in DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe, with the flags that were given replacing its settings."""
    recipe = args.recipe or ("lenet5-1998" if args.model == "lenet5-1998" else "modern")
    changes = {name: vars(args)[name] for name in CONFIG_FLAGS if vars(args)[name] is not None}
    if changes.get("schedule") == "none":
        changes["schedule"] = None
    if changes.get("optimizer", "sgd") != "sgd" and RECIPES[recipe].optimizer == "sgd":
        if "momentum" in changes or changes.get("nesterov"):
            raise ValueError(f"--momentum/--nesterov apply to sgd, not --optimizer "
                             f"{changes['optimizer']}")
        changes.update(momentum=0.0, nesterov=False)  # the recipe's SGD momentum goes too
    runtime = {"device": args.device, "threads": args.threads, "bf16": args.bf16,
               "compile": args.compile, "cuda_graphs": args.cuda_graphs,
               "progress": not args.no_progress, "tensorboard": args.tensorboard}
    return RECIPES[recipe].replace(**changes, **runtime)


def _load_sets(args: argparse.Namespace, seed: int) -> tuple[Any, Any, Any]:
    """(train, validation or None, test) as the flags ask."""
    train = load_dataset(args.dataset, "train", root=args.root)
    test = load_dataset(args.dataset, "test", root=args.root)
    validation = None
    if args.validation:
        train, validation = split_train_validation(train, args.validation, seed=seed)
    return (random_subset(train, args.train_subset, seed), validation,
            random_subset(test, args.test_subset, seed))


def _run_train(args: argparse.Namespace) -> int:
    checkpoint = Path(args.out) / "checkpoint.pt"
    options = {k: getattr(args, k) for k in ("activation", "pooling") if getattr(args, k)}
    if args.resume and not checkpoint.is_file():
        args.parser.error(f"--resume: no checkpoint at {checkpoint} to continue")
    try:  # every setting is checked before any data is read
        config = config_from_args(args)
        seed_everything(config.seed)  # the same initial weights as fit's callers get
        model = build_model(args.model, **options)
        check_settings(model, config)
    except ValueError as error:
        args.parser.error(str(error))
    try:
        train, validation, test = _load_sets(args, config.seed)
        history = fit(model, train, config, test=test, validation=validation,
                      checkpoint=checkpoint, resume=args.resume)
    except (DatasetNotFoundError, TrainingDivergedError) as error:
        return fail(error)
    except ValueError as error:  # settings that do not fit the checkpoint, e.g. another --lr
        args.parser.error(str(error))
    metrics = save_run_files(args.out, model, history, dataset=args.dataset,
                             test_size=len(test.labels))
    print(
        f"{args.dataset} {args.model}: test accuracy {metrics['test_accuracy']:.4f} after "
        f"{metrics['epochs']} epochs, {metrics['examples_per_second']:,.0f} examples/s on "
        f"{metrics['device']} ({metrics['seconds']:.1f} s); wrote {args.out}/metrics.json, "
        "history.csv, checkpoint.pt"
    )
    return 0


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="checkpoint.pt written by `train`")
    parser.add_argument("--dataset", choices=sorted(DATASETS),
                        help="test set to use (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=number(int, 1), default=1000, help="default: 1000")
    parser.add_argument("--seed", type=int, default=0, help="draws --test-subset (default: 0)")
    _add_run_arguments(parser)


def _run_evaluate(args: argparse.Namespace) -> int:
    try:
        device = resolve_device(args.device)
    except ValueError as error:  # no CUDA here
        args.parser.error(str(error))
    try:
        checkpoint = load_checkpoint(args.checkpoint)
        model = model_from_checkpoint(checkpoint)
    except ValueError as error:  # CheckpointError
        return fail(error)
    dataset = args.dataset or checkpoint["dataset"]
    if dataset is None:
        args.parser.error("the checkpoint names no data set; pass --dataset")
    try:
        test = random_subset(load_dataset(dataset, "test", root=args.root), args.test_subset,
                             args.seed)
    except (DatasetNotFoundError, ValueError) as error:
        return fail(error)
    with torch_threads(cpu_threads(args.threads) if device.type == "cpu" else None):
        accuracy = evaluate(model.to(device), test, checkpoint["normalization"],
                            batch_size=args.batch_size, device=device)
    recorded = (checkpoint["history"] or [{}])[-1].get("test_accuracy")
    note = f"; the checkpoint recorded {recorded:.4f}" if recorded is not None else ""
    print(f"{dataset} test accuracy {accuracy:.4f} ({len(test.labels):,} images, "
          f"{checkpoint['model']['name']} after {checkpoint['epoch']} epochs{note})")
    return 0


def reproduction_command(epochs: int, seed: int = 0, train_subset: int | None = None,
                         out: str = "runs/lenet5-1998") -> list[str]:
    """The command line of notebook 07's reproduction: the "lenet5-1998" recipe on MNIST."""
    command = ["python", "-m", "lenet_course", "train", "--model", "lenet5-1998", "--dataset",
               "mnist", "--recipe", "lenet5-1998", "--epochs", str(epochs), "--seed", str(seed)]
    if train_subset is not None:
        command += ["--train-subset", str(train_subset)]
    return [*command, "--out", out]


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {  # name: (help, add arguments, run)
    "data": ("check that the data sets are there, downloading what is not", _add_data, _run_data),
    "predict": ("predict the classes of image files", _add_predict, _run_predict),
    "train": ("train a LeNet; write metrics, history and checkpoint", _add_train, _run_train),
    "evaluate": ("re-compute a checkpoint's test accuracy", _add_evaluate, _run_evaluate),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m lenet_course",
        description="The LeNet course's command line: data, training, evaluation and prediction.",
    )
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
    return COMMANDS[args.command][2](args)
