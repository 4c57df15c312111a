"""``python -m lenet_course``: the course's command line.

Each subcommand is a pair of functions: one that adds its arguments to a parser, one that runs
it and returns an exit code.  Bad arguments exit with status 2 and a one-line reason.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump) and exit with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    """Report a bad combination of arguments found after parsing, the way argparse would."""
    parser.error(message)
    return 2  # not reached: error() exits


# --- data ---------------------------------------------------------------------------------------


def _add_data(parser: argparse.ArgumentParser) -> None:
    from lenet_course.data import DATASETS

    parser.add_argument(
        "--dataset",
        choices=[*sorted(DATASETS), "all"],
        default="all",
        help="which data set to check or download (default: all)",
    )
    parser.add_argument("--root", help="data root (default: $LENET_COURSE_DATA, else data/)")
    parser.add_argument(
        "--no-download", action="store_true", help="only check; never download missing files"
    )


def _run_data(args: argparse.Namespace) -> int:
    from lenet_course.data import DATASETS, DatasetNotFoundError, ensure_dataset, raw_folder

    names = sorted(DATASETS) if args.dataset == "all" else [args.dataset]
    for name in names:
        try:
            ensure_dataset(name, args.root, download=not args.no_download)
        except DatasetNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"{name}: ready in {raw_folder(name, args.root)}")
    return 0


# --- predict ------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _add_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="checkpoint.pt written by `train`"
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG/... image files")
    parser.add_argument(
        "--top-k", type=_positive_int, default=3, metavar="K", help="classes shown (default: 3)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    parser.add_argument(
        "--no-invert",
        action="store_true",
        help="never invert (default: invert pictures whose border is light, e.g. on white paper)",
    )


def _run_predict(args: argparse.Namespace) -> int:
    import json

    from lenet_course.predict import predict_files
    from lenet_course.train import load_checkpoint, model_from_checkpoint

    try:
        checkpoint = load_checkpoint(args.checkpoint)
        model = model_from_checkpoint(checkpoint)
    except (OSError, ValueError) as error:  # CheckpointError is a ValueError
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    classes = len(checkpoint["class_names"])
    if args.top_k > classes:
        return usage_error(args.parser, f"--top-k {args.top_k}: the model has {classes} classes")
    predictions = predict_files(
        checkpoint,
        args.images,
        top_k=args.top_k,
        invert=False if args.no_invert else None,
        model=model,
    )
    for prediction in predictions:
        if prediction.error is not None:
            print(f"error: {prediction.error}", file=sys.stderr)
        elif not args.json:
            print(prediction)
    if args.json:
        print(json.dumps([p.to_json() for p in predictions], indent=2))
    return 1 if any(p.error is not None for p in predictions) else 0


# --- train and evaluate -------------------------------------------------------------------------

#: The choices of ``train`` (the same as in ``lenet_course.models``, which imports torch: spelled
#: out here so that building the parser stays fast).
MODEL_NAMES = ("v1", "v2", "v3", "classic", "lenet5-1998")
ACTIVATIONS, POOLINGS = ("relu", "sigmoid", "tanh"), ("avg", "max")


def _number(
    kind: type, low: float, high: float | None = None, *, low_open: bool = False
) -> Callable[[str], float]:
    """An argparse type: a ``kind`` (int/float) in [low, high) (or (low, high) if ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        too_low = value <= low if low_open else value < low
        if too_low or (high is not None and value >= high) or value != value:
            bound = f"> {low}" if low_open else f">= {low}"
            raise argparse.ArgumentTypeError(
                f"{value} must be {bound}" + (f" and < {high}" if high is not None else "")
            )
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _count_or_fraction(text: str) -> float:
    """``--validation``: a number of examples (5000) or a fraction of the training set (0.1)."""
    return _number(float, 0.0, 1.0)(text) if "." in text else _number(int, 0)(text)


def _add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where to run (default: auto = cuda if available, else cpu)",
    )
    parser.add_argument(
        "--threads",
        type=_number(int, 1),
        metavar="N",
        help="CPU threads (default: 1 on machines with <= 2 cores, else torch's)",
    )
    parser.add_argument("--root", help="data root (default: $LENET_COURSE_DATA, else data/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--test-subset",
        type=_number(int, 1),
        metavar="N",
        help="use N test images drawn with --seed (for quick runs)",
    )


def _add_train(parser: argparse.ArgumentParser) -> None:
    from lenet_course.data import DATASETS

    parser.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        default="fashion-mnist",
        help="default: fashion-mnist",
    )
    parser.add_argument("--model", choices=MODEL_NAMES, default="v1", help="default: v1")
    parser.add_argument(
        "--activation", choices=ACTIVATIONS, help="for v1/v2/v3/classic (default: the model's own)"
    )
    parser.add_argument(
        "--pooling", choices=POOLINGS, help="for v1/v2/v3/classic (default: the model's own)"
    )
    parser.add_argument(
        "--epochs", type=_number(int, 1), help="default: 10 (6 for lenet5-1998, as notebook 07)"
    )
    parser.add_argument(
        "--lr",
        type=_number(float, 0.0, low_open=True),
        help="peak learning rate (default: 0.1 for sgd, 0.001 for adam; 0.003 for lenet5-1998)",
    )
    parser.add_argument(
        "--batch-size", type=_number(int, 1), help="default: 128 (64 for lenet5-1998)"
    )
    parser.add_argument(
        "--optimizer", choices=["sgd", "adam"], help="default: sgd (adam for lenet5-1998)"
    )
    parser.add_argument(
        "--momentum",
        type=_number(float, 0.0, 1.0),
        help="SGD momentum (default: 0.9; not for adam)",
    )
    parser.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    parser.add_argument(
        "--weight-decay", type=_number(float, 0.0), help="default: 5e-4 (0 for lenet5-1998)"
    )
    parser.add_argument(
        "--schedule",
        choices=["none", "onecycle", "cosine"],
        help="learning-rate schedule (default: onecycle; cosine for lenet5-1998)",
    )
    parser.add_argument(
        "--label-smoothing",
        type=_number(float, 0.0, 1.0),
        default=0.0,
        help="default: 0 (not for lenet5-1998, which has its own loss)",
    )
    parser.add_argument(
        "--validation",
        type=_count_or_fraction,
        default=0,
        metavar="N|F",
        help="hold out N training images, or a fraction F (default: 0)",
    )
    parser.add_argument(
        "--train-subset",
        type=_number(int, 1),
        metavar="N",
        help="train on N images drawn with --seed (for quick runs)",
    )
    _add_device_arguments(parser)
    parser.add_argument(
        "--out",
        default="runs/train",
        metavar="DIR",
        help="folder for metrics.json, history.csv, checkpoint.pt (default: runs/train)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run whose checkpoint is in --out"
    )
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="CUDA graphs (torch.compile mode reduce-overhead; CUDA only)",
    )
    parser.add_argument("--tensorboard", metavar="DIR", help="also log to TensorBoard in DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _random_subset(data, size: int | None, seed: int):
    """``size`` examples of the ImageSet ``data`` drawn with ``seed`` (all if ``size`` is None)."""
    import torch

    if size is None or size >= len(data.labels):
        return data
    order = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(seed))
    return data.subset(order[:size])


#: Defaults of the train options that depend on the model.  The modern LeNets train well with
#: SGD + momentum and a one-cycle schedule; the 1998 network (RBF outputs, MAP loss) stays at
#: chance with that recipe and is trained as notebook 07 trains it (lenet_course.paper).
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 10, "batch_size": 128, "optimizer": "sgd", "weight_decay": 5e-4,
    "schedule": "onecycle",
}  # fmt: skip


def _apply_model_defaults(args: argparse.Namespace) -> None:
    """Fill the options the user left out with the defaults of ``args.model``."""
    defaults = dict(TRAIN_DEFAULTS)
    if args.model == "lenet5-1998":
        from lenet_course.paper import REPRODUCTION, REPRODUCTION_PASSES

        defaults.update(REPRODUCTION, epochs=REPRODUCTION_PASSES)
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from lenet_course.data import DatasetNotFoundError, load_dataset, split_train_validation
    from lenet_course.models import build_model
    from lenet_course.train import (
        TrainingDivergedError,
        fit,
        resolve_device,
        save_run_files,
        seed_everything,
    )

    parser = args.parser
    _apply_model_defaults(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        return usage_error(parser, "--device cuda: CUDA is not available here; use --device cpu")
    if args.cuda_graphs and resolve_device(args.device).type != "cuda":
        return usage_error(parser, "--cuda-graphs needs a CUDA device; drop it on the CPU")
    if args.optimizer == "adam" and (args.momentum is not None or args.nesterov):
        return usage_error(parser, "--momentum/--nesterov apply to sgd, not --optimizer adam")
    if args.model == "lenet5-1998" and (args.activation or args.pooling):
        return usage_error(parser, "--activation/--pooling do not apply to --model lenet5-1998")
    if args.model == "lenet5-1998" and args.label_smoothing:
        return usage_error(parser, "--label-smoothing does not apply to lenet5-1998 (MAP loss)")
    out = Path(args.out)
    checkpoint = out / "checkpoint.pt"
    if args.resume and not checkpoint.is_file():
        return usage_error(parser, f"--resume: no checkpoint at {checkpoint} to continue")
    options = {k: getattr(args, k) for k in ("activation", "pooling") if getattr(args, k)}
    lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else 1e-3)
    momentum = 0.9 if args.momentum is None else args.momentum
    momentum = 0.0 if args.optimizer == "adam" else momentum
    try:
        train = load_dataset(args.dataset, "train", root=args.root)
        test = load_dataset(args.dataset, "test", root=args.root)
    except (DatasetNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    validation = None
    if args.validation:
        train, validation = split_train_validation(train, args.validation, seed=args.seed)
    train = _random_subset(train, args.train_subset, args.seed)
    test = _random_subset(test, args.test_subset, args.seed)
    seed_everything(args.seed)
    model = build_model(args.model, **options)
    try:
        history = fit(
            model, train, test=test, validation=validation, epochs=args.epochs, lr=lr,
            batch_size=args.batch_size, optimizer=args.optimizer, momentum=momentum,
            nesterov=args.nesterov, weight_decay=args.weight_decay,
            schedule=None if args.schedule == "none" else args.schedule,
            label_smoothing=args.label_smoothing, device=args.device, seed=args.seed,
            threads=args.threads, bf16=args.bf16, compile_model=args.compile,
            cuda_graphs=args.cuda_graphs, checkpoint=checkpoint, resume=args.resume,
            dataset=args.dataset, tensorboard=args.tensorboard, progress=not args.no_progress,
        )  # fmt: skip
    except TrainingDivergedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:  # settings that do not fit, e.g. resuming with another --lr
        return usage_error(parser, " ".join(str(error).split()))
    metrics = save_run_files(out, model, history, dataset=args.dataset, test_size=len(test.labels))
    print(
        f"{args.dataset} {args.model}: test accuracy {metrics['test_accuracy']:.4f} after "
        f"{metrics['epochs']} epochs, {metrics['examples_per_second']:,.0f} examples/s on "
        f"{metrics['device']} ({metrics['seconds']:.1f} s); wrote {out}/metrics.json, "
        "history.csv, checkpoint.pt"
    )
    return 0


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    from lenet_course.data import DATASETS

    parser.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="checkpoint.pt written by `train`"
    )
    parser.add_argument(
        "--dataset", choices=sorted(DATASETS), help="test set to use (default: the checkpoint's)"
    )
    parser.add_argument("--batch-size", type=_number(int, 1), default=1000, help="default: 1000")
    _add_device_arguments(parser)


def _run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from lenet_course.data import DatasetNotFoundError, load_dataset
    from lenet_course.train import (
        cpu_threads,
        evaluate,
        load_checkpoint,
        model_from_checkpoint,
        resolve_device,
        torch_threads,
    )

    if args.device == "cuda" and not torch.cuda.is_available():
        return usage_error(args.parser, "--device cuda: CUDA is not available; use --device cpu")
    try:
        checkpoint = load_checkpoint(args.checkpoint)
        model = model_from_checkpoint(checkpoint)
    except ValueError as error:  # CheckpointError
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    dataset = args.dataset or checkpoint["dataset"]
    if dataset is None:
        return usage_error(args.parser, "the checkpoint names no data set; pass --dataset")
    try:
        test = load_dataset(dataset, "test", root=args.root)
    except (DatasetNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    test = _random_subset(test, args.test_subset, args.seed)
    device = resolve_device(args.device)
    threads = cpu_threads(args.threads) if device.type == "cpu" else None
    with torch_threads(threads):
        accuracy = evaluate(
            model.to(device),
            test,
            checkpoint["normalization"],
            batch_size=args.batch_size,
            device=device,
        )
    recorded = checkpoint["history"][-1].get("test_accuracy") if checkpoint["history"] else None
    note = f"; the checkpoint recorded {recorded:.4f}" if recorded is not None else ""
    print(
        f"{dataset} test accuracy {accuracy:.4f} ({len(test.labels):,} images, "
        f"{checkpoint['model']['name']} after {checkpoint['epoch']} epochs{note})"
    )
    return 0


#: name -> (help, add_arguments, run)
COMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "data": ("check that the data sets are present, downloading them if not", _add_data, _run_data),
    "predict": ("predict the classes of image files with a checkpoint", _add_predict, _run_predict),
    "train": ("train a LeNet; write metrics, history and checkpoint", _add_train, _run_train),
    "evaluate": ("re-compute a checkpoint's test accuracy", _add_evaluate, _run_evaluate),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m lenet_course",
        description="The LeNet course's command line: data, training, evaluation and prediction.",
    )
    from lenet_course import __version__

    parser.add_argument("--version", action="version", version=f"lenet_course {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    parser.set_defaults(subparsers=sub.choices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # Errors found after parsing name the subcommand: "python -m lenet_course train: error: ..."
    args.parser = args.subparsers[args.command]
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    raise SystemExit(main())
