"""The README's first command serves JupyterLab on notebooks/ (HTTP 200 on /lab)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_make_lab_serves_jupyterlab(real_data_root, tmp_path):
    port, token = free_port(), "lenet-course-test"
    env = {**os.environ, "JUPYTER_TOKEN": token, "LENET_COURSE_DATA": str(real_data_root)}
    env.pop("DISPLAY", None)
    log = tmp_path / "lab.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["make", "lab", f"PORT={port}"], cwd=REPO, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/lab?token={token}"
                with urllib.request.urlopen(url, timeout=5) as response:
                    status = response.status
                break
            except OSError:
                time.sleep(1)
        text = log.read_text()
        assert status == 200, f"no HTTP 200 from /lab (exit {process.poll()}):\n{text[-3000:]}"
        assert "ready in" in text  # the data step ran first
        assert f"http://127.0.0.1:{port}/lab" in text  # the URL is printed for the user
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
