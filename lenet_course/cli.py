"""``python -m lenet_course``: the course's command line.

Each subcommand is a pair of functions: one that adds its arguments to a parser, one that runs
it and returns an exit code.  Bad arguments exit with status 2 and a one-line reason.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


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


#: name -> (help, add_arguments, run)
COMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "data": ("check that the data sets are present, downloading them if not", _add_data, _run_data),
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.parser = parser
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    raise SystemExit(main())
