"""Shared fixtures: the real data root, and the one run of each notebook that `make test` makes.

Each notebook is executed once, by papermill with short parameters. That run is checked twice:
its cells' outputs against the committed notebook's, as nbval would compare them (every cell but
those tagged ``nbval-ignore-output``, whose numbers a machine or a parameter decides), and the
values it ``record()``s, by each notebook's tests."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch
from nbval.plugin import coalesce_streams, get_sanitize_patterns

if (os.cpu_count() or 1) <= 2:  # the notebooks' kernels run beside this process: one thread each
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
SANITIZE = get_sanitize_patterns((REPO / "tests" / "nbval_sanitize.cfg").read_text())
# What nbval leaves out of a comparison, and the tests' own values (compared by the tests).
NOT_COMPARED = {"image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json",
                "application/vnd.lenet-course.record+json"}  # fmt: skip
UNCOMPARED_TAGS = {"nbval-ignore-output", "nbval-skip", "parameters"}


def sanitize(value: Any) -> Any:
    """Apply tests/nbval_sanitize.cfg's patterns to a text, in order (as nbval does)."""
    if isinstance(value, str):
        for pattern, replacement in SANITIZE:
            value = re.sub(pattern, replacement, value)
    return value


def comparable(outputs: list[Any]) -> dict[str, list[Any]]:
    """A cell's outputs as nbval compares them: streams merged per name (text before a carriage
    return dropped), then every stream and MIME type's values in order, sanitized."""
    merged = coalesce_streams([nbformat.from_dict(output) for output in outputs])
    found: dict[str, list[Any]] = defaultdict(list)
    for output in merged:
        if output.output_type == "stream":
            found[output.name].append(sanitize(output.text))
        elif output.output_type == "error":
            found["error"].append(output.ename)
        for key, value in output.get("data", {}).items():
            if key not in NOT_COMPARED:
                found[key].append(sanitize(value))
    return dict(found)


def output_differences(stored: Any, executed: Any) -> list[str]:
    """The cells of ``stored`` whose outputs the ``executed`` run did not reproduce."""
    fresh = {cell.id: cell for cell in executed.cells if cell.cell_type == "code"}
    problems = []
    for cell in stored.cells:
        if cell.cell_type != "code" or UNCOMPARED_TAGS & set(cell.metadata.get("tags", [])):
            continue
        if cell.id not in fresh:
            problems.append(f"cell {cell.id}: not in the executed notebook")
            continue
        want, got = comparable(cell.outputs), comparable(fresh[cell.id].outputs)
        if want != got:
            problems.append(f"cell {cell.id} ({cell.source.splitlines()[0][:60]!r}):\n"
                            f"  committed: {want}\n  this run:  {got}")
    return problems


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The data root with the real Fashion-MNIST and MNIST files (skip-free: CI must have them)."""
    from lenet_course.data import data_root, missing_files

    root = data_root()
    missing = {name: missing_files(name, root) for name in ("fashion-mnist", "mnist")}
    if any(missing.values()):
        pytest.fail(
            f"the real data sets are not under {root}: missing {missing}. "
            "Set LENET_COURSE_DATA (e.g. to ../shared/data) or run `python -m lenet_course data`."
        )
    return root


def notebook_knobs(name: str) -> dict[str, Any]:
    """The knobs of ``notebooks/<name>``'s parameters cell and their defaults (plain assignments
    only, see test_notebook_hygiene)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    namespace: dict[str, Any] = {}
    exec(cell.source, namespace)
    return {knob: value for knob, value in namespace.items() if knob != "__builtins__"}


def assert_every_knob_turned(name: str, short: dict[str, Any]) -> None:
    """The notebook's one short run sets every knob, each to another value than its default."""
    knobs = notebook_knobs(name)
    assert set(short) == set(knobs)
    assert all(short[knob] != default for knob, default in knobs.items()), knobs


@pytest.fixture
def run_notebook(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Run ``notebooks/<name>`` with papermill and the given parameters; return what it recorded.

    The run fails if a cell that the committed notebook compares printed anything else. The
    executed copy is kept under ``test-artifacts/papermill/`` for inspection after a failure.
    """
    import papermill

    from lenet_course.notebook import recorded_values

    def run(name: str, **parameters: Any) -> dict[str, Any]:
        source = NOTEBOOKS / name
        artifacts = REPO / "test-artifacts" / "papermill"
        artifacts.mkdir(parents=True, exist_ok=True)
        output = artifacts / name
        workdir = tmp_path / "notebooks"  # so what a notebook writes to ../runs lands in tmp_path
        workdir.mkdir(exist_ok=True)
        if not (workdir / "quizzes").exists():
            (workdir / "quizzes").symlink_to(NOTEBOOKS / "quizzes")
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(workdir),
            progress_bar=False,
            request_save_on_cell_execute=False,
            execution_timeout=900,  # per cell; the longest take about 2 minutes: a hang
        )
        executed = nbformat.read(output, as_version=4)
        differences = output_differences(nbformat.read(source, as_version=4), executed)
        if differences:
            pytest.fail(f"{name}: {len(differences)} cells printed other outputs than the "
                        "committed notebook:\n" + "\n".join(differences), pytrace=False)
        return recorded_values(executed)

    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return run


@dataclass
class Build:
    """The outcome of the one build of the book that the tests share."""

    returncode: int
    log: str
    seconds: float


@pytest.fixture(scope="session")
def book_build() -> Build:
    """A fresh (--all) build of the book into book/_build/html, as `make book` does, made once for
    the book's tests and the browser's."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "build_book.py"), "--all"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
        env={**os.environ, "BOOK_EXECUTE": "0"},  # `make test` never re-executes the book
    )  # fmt: skip
    log = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    return Build(result.returncode, log, time.perf_counter() - start)


# JupyterLab user settings for a quiet, deterministic session: no news or update checks (no
# network, no toasts over the notebook), every cell attached to the DOM (no windowing).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


@dataclass
class Lab:
    """A running JupyterLab server, started by `make lab`."""

    url: str
    token: str
    root: Path
    log: Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory, real_data_root: Path) -> Iterator[Lab]:
    """The README's `make lab`, started once for every test that needs JupyterLab: on a free port
    with a random token, serving a copy of notebooks/ (LAB_DIR), with quiet settings."""
    tmp_path = tmp_path_factory.mktemp("lab")
    root = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name, values in LAB_SETTINGS.items():
        (tmp_path / "lab-settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "lab-settings" / name).write_text(json.dumps(values))
    config = tmp_path / "jupyter-config"
    config.mkdir()
    never = {"LabApp": {"check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
             "ServerApp": {"port_retries": 0}}  # fmt: skip
    (config / "jupyter_server_config.json").write_text(json.dumps(never))
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "LENET_COURSE_DATA": str(real_data_root),
        "JUPYTER_TOKEN": token,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    env.pop("DISPLAY", None)  # no browser window of its own
    log = tmp_path / "jupyterlab.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            ["make", "lab", f"PORT={port}", f"LAB_DIR={root}"], cwd=REPO, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # make lab checks the data first
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"make lab did not start JupyterLab (exit {server.poll()}):\n"
                                f"{log.read_text()[-3000:]}")  # fmt: skip
                time.sleep(0.5)
        yield Lab(url, token, root, log)
    finally:
        # SIGTERM to make and JupyterLab: the server shuts its kernels down, then exits.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        artifacts = REPO / "test-artifacts" / "browser"
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, artifacts / "jupyterlab.log")


def outcome(argv: list[str], capsys) -> tuple[int, list[str], str]:
    """(exit status, the lines on stderr, stdout) of a command line, run in this process."""
    from lenet_course.cli import main

    try:
        status = main(argv)
    except SystemExit as exit:
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.err.strip().splitlines(), captured.out


def refused(argv: list[str], capsys, code: int, needles: list[str]) -> str:
    """Run the command line: exit status ``code`` and one line on stderr holding every needle."""
    status, err, _ = outcome(argv, capsys)
    assert status == code and len(err) == 1, (status, err)
    missing = [needle for needle in needles if needle not in err[0]]
    assert not missing, (missing, err[0])
    return err[0]
