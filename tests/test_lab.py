"""The README's first command, `make lab`, serves JupyterLab (HTTP 200 on /lab) after preparing the
data, and prints the address to open. The session's one JupyterLab (conftest.jupyterlab) is that
command's; the browser tests drive the same server."""

from __future__ import annotations

import urllib.request

import pytest


@pytest.mark.slow
def test_make_lab_serves_jupyterlab(jupyterlab) -> None:
    with urllib.request.urlopen(f"{jupyterlab.url}/lab?token={jupyterlab.token}", timeout=30) as r:
        assert r.status == 200
    text = jupyterlab.log.read_text()
    assert "ready in" in text  # the data step ran first
    assert f"{jupyterlab.url}/lab" in text  # the URL is printed for the user
    assert f"--notebook-dir={jupyterlab.root}" in text  # serving what LAB_DIR names
