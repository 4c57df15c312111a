"""Peak memory of a kernel running a notebook, for binder/README.md's table.

    python binder/measure_memory.py 01 02 06

Each notebook runs in its own fresh kernel (papermill, as the tests run them) in a scratch
folder, at its default parameters, except notebooks 06, 07, 08 and 10, which run at the short
settings of their tests (tests/test_notebook_*.py): their defaults train for many minutes on a
CPU, and 07's load 06's checkpoint from runs/, which is not in the repository, or else train five
epochs of 60,000 images.

A thread samples the kernel and the processes it starts (DataLoader workers, torchrun and its
workers, a command-line run) every 50 ms and prints three peaks in MiB:

- the kernel's resident set size (RSS) plus the private memory (USS) of each process it started:
  the pages they share with the kernel (torch's libraries, forked memory) counted once, as the
  container's memory limit counts them. This is the figure binder/README.md's table gives;
- the kernel's RSS alone;
- all their RSS summed, which counts those shared pages again for each process.

Proportional set sizes (PSS) would split the libraries' pages with every other process on this
shared machine that maps the same files, and so come out lower than in a session's container.
JupyterLab's own server (about 136 MiB, issue 26) comes on top of each figure.
"""

import sys
import tempfile
import threading
import time
from pathlib import Path

import papermill
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import notebook_parameters  # noqa: E402 (the tests' short parameters, read from their files)

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
#: The notebooks that run at their tests' short parameters: their defaults train for minutes.
SHORT = ("06", "07", "08", "10")


def sample() -> tuple[int, int, int, int]:
    """(the kernel's RSS plus the others' USS, the kernel's RSS, all RSS summed, how many
    processes) of this process's descendants: the kernel and what it started."""
    me = psutil.Process()
    kernel_rss = others_uss = total_rss = count = 0
    for child in me.children(recursive=True):
        try:
            info = child.memory_full_info()
            parent = child.parent()
        except psutil.Error:
            continue
        total_rss, count = total_rss + info.rss, count + 1
        if parent is not None and parent.pid == me.pid:  # the kernel: papermill's one child
            kernel_rss = info.rss
        else:
            others_uss += info.uss
    return kernel_rss + others_uss, kernel_rss, total_rss, count


def peaks(number: str) -> tuple[str, list[int], float]:
    """Run notebook ``number``; return its name, the peaks of :func:`sample` and the seconds."""
    (source,) = NOTEBOOKS.glob(f"{number}_*.ipynb")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "notebooks"
        work.mkdir()
        (work / "quizzes").symlink_to(NOTEBOOKS / "quizzes")
        short = notebook_parameters.short()[source.name] if number in SHORT else {}
        parameters = {name: value for name, value in short.items() if value is not None}
        if number == "06":  # its test's checkpoint folder is a temporary path
            parameters["checkpoint_dir"] = str(Path(scratch) / "06_modern")
        peak, done = [0, 0, 0, 0], threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[:] = [max(a, b) for a, b in zip(peak, sample(), strict=True)]
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        start = time.perf_counter()
        watcher.start()
        try:
            papermill.execute_notebook(
                str(source),
                str(work / source.name),
                parameters=parameters,
                kernel_name="python3",
                cwd=str(work),
                progress_bar=False,
            )
        finally:
            done.set()
            watcher.join()
        return source.name, peak, time.perf_counter() - start


def main(numbers: list[str]) -> int:
    for number in numbers or ["01", "02", "06"]:
        name, (tree, rss, total_rss, count), seconds = peaks(number)
        print(
            f"{name}: peak kernel RSS + others' USS {tree / 2**20:,.0f} MiB; "
            f"kernel RSS {rss / 2**20:,.0f} MiB; "
            f"summed RSS {total_rss / 2**20:,.0f} MiB; up to {count} processes; {seconds:.0f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
