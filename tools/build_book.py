"""Build the course's Jupyter Book (v1) site into book/_build/html.

    python tools/build_book.py [--all] [--output DIR] [--notebooks DIR]

The notebooks live in notebooks/, outside the book: Sphinx only reads files under its source
folder, so this script first copies them into book/notebooks/ (git-ignored, wiped each time),
where book/_toc.yml takes them by a glob in reading order. It then runs ``jupyter-book build``
with Sphinx warnings as errors (``--warningiserror --keep-going``: every warning is reported,
then the build fails).

By default the site shows the outputs stored in the notebooks; nothing is executed. With
``BOOK_EXECUTE=1`` every notebook is re-executed during the build (MyST-NB's
``execute_notebooks: force``) and the cell timeout is raised from 30 s to ``BOOK_TIMEOUT``
seconds (default 1800), so that the training cells fit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
NOTEBOOKS = REPO / "notebooks"
EXECUTE_TIMEOUT_S = 1800


def copy_notebooks(source: Path = NOTEBOOKS, book: Path = BOOK) -> list[Path]:
    """Replace ``book/notebooks/`` with a fresh copy of ``source`` and return the notebooks.

    Modification times are kept, so Sphinx's incremental build re-reads changed notebooks only.
    """
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no notebooks to build: {source} holds no *.ipynb file")
    target = book / "notebooks"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        source,
        target,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc"),
    )
    return [target / path.name for path in notebooks]


def execute_settings(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``execute:`` overrides that ``BOOK_EXECUTE=1`` asks for, or None to keep _config.yml."""
    if environ.get("BOOK_EXECUTE", "").strip().lower() not in {"1", "true", "yes", "on"}:
        return None
    timeout = environ.get("BOOK_TIMEOUT", str(EXECUTE_TIMEOUT_S))
    try:
        seconds = int(timeout)
    except ValueError:
        raise SystemExit(f"BOOK_TIMEOUT={timeout!r} is not a whole number of seconds") from None
    if seconds < 1 and seconds != -1:
        raise SystemExit(f"BOOK_TIMEOUT={seconds} must be a positive number of seconds, or -1")
    return {"execute_notebooks": "force", "timeout": seconds}


def write_config(output: Path, overrides: dict[str, Any], book: Path = BOOK) -> Path:
    """Write ``book/_config.yml`` with the ``execute:`` overrides into ``output``; return its path.

    Paths inside the config (bibliography, logo) are relative to the book's source folder, not
    to the config file, so the copy may live anywhere.
    """
    config = yaml.safe_load((book / "_config.yml").read_text(encoding="utf-8"))
    config.setdefault("execute", {}).update(overrides)
    output.mkdir(parents=True, exist_ok=True)
    path = output / "_config.execute.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def build_command(output: Path, *, fresh: bool, config: Path | None = None) -> list[str]:
    """The ``jupyter-book build`` command line (the script next to this Python, as in a venv)."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    program = str(jupyter_book) if jupyter_book.exists() else shutil.which("jupyter-book")
    if program is None:
        raise SystemExit("jupyter-book is not installed: pip install 'jupyter-book>=1.0.4,<2'")
    command = [program, "build", str(BOOK), "--builder", "html", "--path-output", str(output)]
    command += ["--warningiserror", "--keep-going"]
    if fresh:
        command.append("--all")
    if config is not None:
        command += ["--config", str(config)]
    return command


def main(argv: list[str] | None = None) -> int:
    """Copy the notebooks into the book and build it; return jupyter-book's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="rebuild every page (fresh build)")
    parser.add_argument(
        "--output",
        type=Path,
        default=BOOK,
        help="folder that receives _build/html (default: book/, i.e. book/_build/html)",
    )
    parser.add_argument(
        "--notebooks", type=Path, default=NOTEBOOKS, help="where the notebooks are copied from"
    )
    args = parser.parse_args(argv)

    copy_notebooks(args.notebooks.resolve())
    output = args.output.resolve()
    overrides = execute_settings(os.environ)
    config = write_config(output / "_build", overrides) if overrides else None
    command = build_command(output, fresh=args.all or overrides is not None, config=config)
    print("$ " + " ".join(command), flush=True)
    status = subprocess.call(command, cwd=REPO)
    if status == 0:
        print(f"The book is in {output / '_build' / 'html'} (open index.html).")
    return status


if __name__ == "__main__":
    sys.exit(main())
