"""The trainer under torchrun: DDP with gloo on this machine's CPUs, as a user launches it.

Every launch runs in its own session with a tag in its environment; whatever happens, each test
ends with no process left that carries the tag, and with its ports free again."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from lenet_course.checkpoint import load_checkpoint, model_from_checkpoint
from lenet_course.cli import main
from lenet_course.config import RECIPES
from lenet_course.data import load_dataset, random_subset
from lenet_course.models import build_model
from lenet_course.train import evaluate, fit, seed_everything

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "ddp_script.py"
# 1,024 training images: 8 steps of 128 an epoch, for 1 process or 2 ranks of 64.
TRAIN = ["train", "--train-subset", "1024", "--test-subset", "500", "--epochs", "2",
         "--momentum", "0.9", "--no-nesterov", "--seed", "3", "--no-progress", "--threads", "1"]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """No process listens on ``port`` (closed connections may linger in TIME_WAIT: allowed)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def tagged(tag: str) -> list[int]:
    """The processes whose environment carries ``tag`` (torchrun and its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if f"LENET_COURSE_TEST_RUN={tag}".encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def launches() -> Iterator[Any]:
    """``start(*torchrun_args, env=...)`` starts torchrun; at the end every one is stopped and
    every process it started is killed, and the test checks that none is left."""
    tag, started, ports = uuid.uuid4().hex, [], []

    def start(*args: str, port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        ports.append(port)
        command = [sys.executable, "-m", "torch.distributed.run", *args]
        environment = {**os.environ, **(env or {}), "LENET_COURSE_TEST_RUN": tag,
                       "LENET_COURSE_DDP_TIMEOUT": "60"}
        process = subprocess.Popen(command, cwd=REPO, env=environment, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # torchrun stops its workers
        deadline = time.monotonic() + 15
        while tagged(tag) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in tagged(tag):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for process in started:
            process.wait(timeout=15)
        assert not tagged(tag), "processes left behind"
        assert all(port_is_free(port) for port in ports), "a port is still taken"


def finish(process: subprocess.Popen, timeout: float = 150) -> str:
    """Wait for ``process``; its output, or a failure that shows it."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"torchrun did not finish in {timeout} s")
    assert process.returncode == 0, output[-6000:]
    return output


def one_node(port: int, *args: str, restarts: int = 0) -> list[str]:
    return ["--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}",
            f"--max-restarts={restarts}", *args]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory, real_data_root: Path) -> Path:
    """``torchrun --nproc_per_node=2 -m lenet_course train ... --batch-size 64``: its run folder."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    with launches() as start:
        port = free_port()
        finish(start(*one_node(port, "-m", "lenet_course", *TRAIN, "--batch-size", "64",
                               "--out", str(out)), port=port))
    return out


def test_two_ranks_of_64_end_with_the_weights_of_one_process_of_128(two_ranks, tmp_path, capsys):
    assert main([*TRAIN, "--batch-size", "128", "--out", str(tmp_path / "one")]) == 0
    one = weights(tmp_path / "one" / "checkpoint.pt")
    assert max_difference(weights(two_ranks / "checkpoint.pt"), one) <= 1e-5
    assert load_checkpoint(two_ranks / "checkpoint.pt")["train_config"]["world_size"] == 2
    out = capsys.readouterr().out  # the same test accuracy, the same number of steps
    metrics = json.loads((two_ranks / "metrics.json").read_text())
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in out


def test_the_reported_accuracy_is_the_checkpoints_in_one_process(two_ranks):
    metrics = json.loads((two_ranks / "metrics.json").read_text())
    state = load_checkpoint(two_ranks / "checkpoint.pt")
    test = random_subset(load_dataset("fashion-mnist", "test"), 500, seed=3)
    accuracy = evaluate(model_from_checkpoint(state), test, state["normalization"])
    assert accuracy == metrics["test_accuracy"]
    assert len((two_ranks / "history.csv").read_text().splitlines()) == 1 + 2  # rank 0's files


def test_two_nodes_on_one_machine_train_one_model(two_ranks, tmp_path):
    """Two torchrun launches, one a node, meet at a c10d rendezvous on 127.0.0.1."""
    out, port = tmp_path / "run", free_port()
    with launches() as start:
        nodes = [start("--nnodes=2", "--nproc_per_node=1", f"--node_rank={rank}",
                       "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
                       "--rdzv_id=lenet", "-m", "lenet_course", *TRAIN, "--batch-size", "64",
                       "--out", str(out), port=port) for rank in (0, 1)]
        for node in nodes:
            finish(node)
    assert max_difference(weights(out / "checkpoint.pt"), weights(two_ranks / "checkpoint.pt")) \
        <= 1e-5


def test_a_killed_worker_is_restarted_and_the_run_resumes_to_the_same_weights(tmp_path,
                                                                              real_data_root):
    with launches() as start:
        port = free_port()
        output = finish(start(*one_node(port, str(SCRIPT), str(tmp_path), "--kill-after", "1",
                                        restarts=1), port=port))
    assert "(exitcode: -9) local_rank: 1" in output, output[-3000:]  # killed, then restarted
    assert json.loads((tmp_path / "done.json").read_text()) == {"restarts": 1, "resumed_from": 1}
    # The run as one process with batches of 128 (equal to 2 ranks of 64, as shown above)
    seed_everything(0)
    whole = build_model("v1")
    config = RECIPES["modern"].replace(epochs=3, batch_size=128, lr=0.05, progress=False)
    fit(whole, random_subset(load_dataset("fashion-mnist", "train"), 1024, seed=0), config)
    assert max_difference(weights(tmp_path / "checkpoint.pt"), whole.state_dict()) <= 1e-5


def test_ranks_started_with_different_settings_fail_with_a_clear_error(tmp_path, real_data_root):
    with launches() as start:
        port = free_port()
        process = start(*one_node(port, str(SCRIPT), str(tmp_path)), port=port,
                        env={"LR_RANK1": "0.02"})
        output, _ = process.communicate(timeout=150)
    assert process.returncode != 0
    assert "rank 1 has lr=0.02" in output or "rank 0 has lr=0.05, rank 1 has lr=0.02" in output
    assert "start every rank with the same command" in output


@pytest.mark.parametrize("restarts", ["0", "1"])
def test_a_command_that_torchrun_restarts_continues_its_run(tmp_path, monkeypatch, restarts):
    """After a restart the same command line runs again: --overwrite would delete the run that
    the failed attempt saved, so a restarted rank resumes it instead (its checkpoint is there)."""
    from lenet_course.cli import build_parser
    from lenet_course.run_folder import check_out as _check_out

    (tmp_path / "checkpoint.pt").write_bytes(b"saved by the failed attempt")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", restarts)
    args = build_parser().parse_args(["train", "--overwrite", "--out", str(tmp_path)])
    _, resume, overwrite = _check_out(args)
    assert (resume, overwrite) == ((True, False) if restarts == "1" else (False, True))
