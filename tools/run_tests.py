"""`make test`: every notebook (nbval, in order) and every test, as two pytest processes at once.

On a 2-core machine each process keeps one core busy: the notebooks' kernels and the tests run on
one CPU thread each. The notebooks run in order in one process, because notebook 07 reads the
checkpoint that notebook 06 writes. Their report streams here; the tests' report is written to
test-artifacts/tests.log and printed when both are done. Extra arguments go to both."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOG = REPO / "test-artifacts" / "tests.log"


def main(extra: list[str]) -> int:
    LOG.parent.mkdir(exist_ok=True)
    pytest = [sys.executable, "-m", "pytest", *extra]
    start = time.perf_counter()
    with LOG.open("w") as log:
        tests = subprocess.Popen([*pytest, "tests"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            notebooks = subprocess.run([*pytest, "--nbval", "notebooks"], cwd=REPO, check=False)
            tests.wait()
        finally:
            if tests.poll() is None:  # interrupted: stop the other one too
                tests.terminate()
                tests.wait()
    print(f"\n===== the tests (tests/), from {LOG.relative_to(REPO)} =====", flush=True)
    print(LOG.read_text(), flush=True)
    codes = {"notebooks": notebooks.returncode, "tests": tests.returncode}
    failed = [name for name, code in codes.items() if code != 0]
    verdict = f"FAILED: {', '.join(failed)}" if failed else "passed"
    print(f"make test: notebooks exit {codes['notebooks']}, tests exit {codes['tests']}; {verdict} "
          f"in {time.perf_counter() - start:.0f} s", flush=True)
    return max(codes.values())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
