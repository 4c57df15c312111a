"""deploy/jupyterhub_config.py loads without JupyterHub, root or systemd, and picks its spawner.

The file is executed as JupyterHub executes it, with ``get_config()`` handing it a traitlets
``Config`` (the fake ``c``). Here (no systemd) it must choose LocalProcessSpawner; with a
simulated /run/systemd/system (LENET_HUB_SYSTEMD_DIR pointing at a folder that exists) it must
choose SystemdSpawner with the per-student memory and CPU limits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "jupyterhub_config.py"


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Config:
    """Run the configuration file with ``env`` set and return the ``c`` it filled in."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    c = Config()
    namespace = {"get_config": lambda: c, "__file__": str(CONFIG)}  # as traitlets runs it
    exec(compile(CONFIG.read_text(), str(CONFIG), "exec"), namespace)
    return c


def test_without_systemd_it_uses_local_processes(monkeypatch, tmp_path):
    c = load(monkeypatch, LENET_HUB_SYSTEMD_DIR=str(tmp_path / "absent"))
    assert c.JupyterHub.spawner_class == "jupyterhub.spawner.LocalProcessSpawner"
    assert "SystemdSpawner" not in c


def test_with_systemd_it_uses_systemd_with_limits(monkeypatch, tmp_path):
    c = load(
        monkeypatch, LENET_HUB_SYSTEMD_DIR=str(tmp_path), LENET_HUB_MEM_LIMIT="3G",
        LENET_HUB_CPU_LIMIT="0.5",
    )  # fmt: skip
    assert c.JupyterHub.spawner_class == "systemdspawner.SystemdSpawner"
    assert c.SystemdSpawner.mem_limit == "3G"
    assert c.SystemdSpawner.cpu_limit == 0.5
    assert c.SystemdSpawner.dynamic_users is False
    assert c.SystemdSpawner.isolate_tmp is True
    assert c.SystemdSpawner.readonly_paths == ["/opt/lenet-course"]


def test_the_defaults_on_this_machine(monkeypatch, tmp_path):
    """What the real /run/systemd/system says here, and every setting the issue asks for."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "students.txt").write_text("# the class\nalice\nbob  # late\n\n")
    (etc / "admins.txt").write_text("teacher\n")
    c = load(monkeypatch, LENET_HUB_ETC=str(etc), LENET_HUB_PORT="9100")
    systemd = Path("/run/systemd/system").is_dir()
    expected = (
        "systemdspawner.SystemdSpawner" if systemd else "jupyterhub.spawner.LocalProcessSpawner"
    )
    assert c.JupyterHub.spawner_class == expected
    assert c.JupyterHub.bind_url == "http://127.0.0.1:9100"
    assert (c.JupyterHub.hub_port, c.ConfigurableHTTPProxy.api_url) == (
        9101,
        "http://127.0.0.1:9102",
    )
    assert c.JupyterHub.authenticator_class == "lenet_hub_auth.StudentAuthenticator"
    assert c.FirstUseAuthenticator.create_users is True
    assert c.LocalAuthenticator.create_system_users is True
    assert c.Authenticator.allowed_users == {"alice", "bob"}
    assert c.Authenticator.allow_all is False
    assert c.Authenticator.admin_users == {"teacher"}
    assert c.LocalAuthenticator.add_user_cmd[0] == "adduser"
    env = c.Spawner.environment
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["LENET_COURSE_DATA"] == "/opt/lenet-course/data"
    assert env["GIT_CONFIG_SYSTEM"] == str(etc / "gitconfig")
    assert c.Spawner.cmd == ["/opt/lenet-course/venv/bin/jupyterhub-singleuser"]
    assert "--MappingKernelManager.cull_idle_timeout=1800" in c.Spawner.args
    (culler,) = c.JupyterHub.services
    assert culler["command"][2:] == ["jupyterhub_idle_culler", "--timeout=3600", "--cull-every=300"]
    (role,) = c.JupyterHub.load_roles
    assert role["services"] == ["idle-culler"] and "delete:servers" in role["scopes"]
