"""`make test` and `make check`: every test, as two pytest processes at once.

On a 2-core machine each process keeps one core busy: the notebooks' kernels and the tests run on
one CPU thread each. Every notebook is executed once, by its test in tests/test_notebook_*.py
(short parameters; the outputs that the committed notebook compares must come out the same). The
work is split in two halves of about equal time (measured): the tests that run notebooks 01-07
and 10, JupyterLab or the book; and notebooks 08 and 09 with every other test. The first half's
report streams here; the second's is written to test-artifacts/tests.log and printed when both
are done.
Extra arguments go to both (`make check` passes `-m "not slow"`)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOG = REPO / "test-artifacts" / "tests.log"
# notebooks 01-07 and 10, JupyterLab, the book and the browser: about half of the suite's time
FIRST = re.compile(r"test_(notebooks?_(0[1-7]|10)|browser|book|lab)")


def halves() -> tuple[list[str], list[str]]:
    tests = sorted((REPO / "tests").glob("test_*.py"))
    first = [t for t in tests if FIRST.match(t.name)]
    second = [t for t in tests if t not in first]
    return [str(p.relative_to(REPO)) for p in first], [str(p.relative_to(REPO)) for p in second]


def main(extra: list[str]) -> int:
    LOG.parent.mkdir(exist_ok=True)
    pytest = [sys.executable, "-m", "pytest", *extra]
    first, second = halves()
    start = time.perf_counter()
    with LOG.open("w") as log:
        other = subprocess.Popen([*pytest, *second], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            this = subprocess.run([*pytest, *first], cwd=REPO, check=False)
            other.wait()
        finally:
            if other.poll() is None:  # interrupted: stop the other one too
                other.terminate()
                other.wait()
    print(f"\n===== the second half, from {LOG.relative_to(REPO)} =====", flush=True)
    print(LOG.read_text(), flush=True)
    codes = {"first half": this.returncode, "second half": other.returncode}
    failed = [name for name, code in codes.items() if code != 0]
    verdict = f"FAILED: {', '.join(failed)}" if failed else "passed"
    print(f"make test: exit {this.returncode} and {other.returncode}; {verdict} in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    return max(codes.values())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
