"""`make reproduce`: re-execute the notebooks at full size, in place, and check their claims.

The committed notebooks come from here. Each one is executed top to bottom in a fresh kernel with
its own parameters (the full-size runs a learner reads), written back with its cell ids kept, and
then every value it records is checked against tests/claims.py: the claims its prose makes about
numbers a machine decides, each with the range it is expected in and why.

    python tools/reproduce.py            # every notebook, in order (about 16 minutes on 2 cores)
    python tools/reproduce.py 06 07      # some of them (07 reads the checkpoint 06 writes)
    python tools/reproduce.py --check    # only check the committed notebooks' claims
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
sys.path.insert(0, str(REPO / "tests"))
from claims import broken_claims  # noqa: E402


def execute(path: Path, timeout: int) -> None:
    """Run one notebook from a fresh kernel in notebooks/ and write it back in place."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)  # timestamps: noise in every diff
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})  # fmt: skip
    client.execute()
    nbformat.write(notebook, path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="two-digit numbers (default: all, in order)")
    parser.add_argument("--check", action="store_true", help="check the claims, execute nothing")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    unknown = set(args.notebooks) - {p.name[:2] for p in paths}
    if unknown:
        parser.error(f"no notebook {sorted(unknown)}: they are numbered 01 to {paths[-1].name[:2]}")
    if args.notebooks:
        paths = [p for p in paths if p.name[:2] in args.notebooks]
    failed = []
    for path in paths:
        if not args.check:
            start = time.perf_counter()
            print(f"{path.name}: executing ...", flush=True)
            execute(path, args.timeout)
            print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s", flush=True)
        broken = broken_claims(path)
        failed += broken
        print(f"{path.name}: " + ("every claim holds" if not broken else "\n  ".join(broken)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
