"""`make test`: every notebook (nbval) and every test, as two pytest processes at once.

On a 2-core machine each process keeps one core busy: the notebooks' kernels and the tests run on
one CPU thread each. The work is split in two halves of about equal time (measured in CI): the
notebooks up to 07, in order (07 reads the checkpoint that 06 writes), and 10, with the tests that
run notebooks, JupyterLab or the book; and notebooks 08 and 09 with every other test. The first
half's report streams here; the second's is written to test-artifacts/tests.log and printed when
both are done. Extra arguments go to both."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOG = REPO / "test-artifacts" / "tests.log"
HEAVY = re.compile(r"test_(notebook|browser|book|lab)")  # notebooks, JupyterLab, the book


def halves() -> tuple[list[str], list[str]]:
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    tests = sorted((REPO / "tests").glob("test_*.py"))
    heavy = [t for t in tests if HEAVY.match(t.name)]
    later = [p for p in notebooks if p.name[:2] in ("08", "09")]
    first = [p for p in notebooks if p not in later] + heavy
    second = later + [t for t in tests if t not in heavy]
    return [str(p.relative_to(REPO)) for p in first], [str(p.relative_to(REPO)) for p in second]


def main(extra: list[str]) -> int:
    LOG.parent.mkdir(exist_ok=True)
    pytest = [sys.executable, "-m", "pytest", "--nbval", *extra]
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
