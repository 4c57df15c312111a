"""The class server: JupyterHub for the LeNet course on one machine (deploy/README.md).

Start it as root with ``make hub`` (or ``jupyterhub -f deploy/jupyterhub_config.py`` from the hub's
environment). It expects what deploy/install.sh built under $LENET_HUB_PREFIX (/opt/lenet-course).

- Students log in with FirstUseAuthenticator: a name listed in etc/students.txt (or an admin in
  etc/admins.txt) and, the first time, any password of 7 characters or more, which becomes theirs.
  The hub then creates the Unix user with ``adduser`` (a 0700 home).
- Each student's JupyterLab runs as that user from the course environment: under SystemdSpawner
  (a memory and CPU limit per student) where systemd runs, LocalProcessSpawner (no limits) where it
  does not. Kernels get one CPU thread each (OMP_NUM_THREADS=1) and the one read-only copy of the
  data (LENET_COURSE_DATA); idle kernels are culled by the server, idle servers by the hub's
  jupyterhub-idle-culler service.

The environment variables below (LENET_HUB_*) let a teacher or a test change a setting without
editing this file.
"""

import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (JupyterHub defines get_config when it loads this file)

PREFIX = Path(os.environ.get("LENET_HUB_PREFIX", "/opt/lenet-course"))
COURSE_ENV = PREFIX / "venv"
HUB_ENV = PREFIX / "hub"
STATE = Path(os.environ.get("LENET_HUB_STATE", PREFIX / "state"))
ETC = Path(os.environ.get("LENET_HUB_ETC", PREFIX / "etc"))
DATA = os.environ.get("LENET_HUB_DATA", str(PREFIX / "data"))
# The hub's public port on the loopback; its API and the proxy's API use the next two ports.
PORT = int(os.environ.get("LENET_HUB_PORT", "8000"))
IP = os.environ.get("LENET_HUB_IP", "127.0.0.1")
# Per student, enforced under systemd only.
MEM_LIMIT = os.environ.get("LENET_HUB_MEM_LIMIT", "4G")
CPU_LIMIT = float(os.environ.get("LENET_HUB_CPU_LIMIT", "1"))
# Seconds: a server with no activity for this long is stopped (its files stay); a kernel idle this
# long is shut down (its notebook stays, its variables go).
CULL_SERVER = int(os.environ.get("LENET_HUB_CULL_SERVER", "3600"))
CULL_KERNEL = int(os.environ.get("LENET_HUB_CULL_KERNEL", "1800"))
SYSTEMD_DIR = Path(os.environ.get("LENET_HUB_SYSTEMD_DIR", "/run/systemd/system"))


def names(path: Path) -> set[str]:
    """The user names in a file, one a line (blank lines and # comments ignored)."""
    if not path.is_file():
        return set()
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


# -- the hub: where it listens, where it keeps its state --------------------------------------
c.JupyterHub.bind_url = f"http://{IP}:{PORT}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = PORT + 1
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PORT + 2}"
c.ConfigurableHTTPProxy.command = [str(HUB_ENV / "bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every student's server

# -- who may log in ----------------------------------------------------------------------------
# lenet_hub_auth.py, beside this file: FirstUseAuthenticator that also creates the Unix users
sys.path.insert(0, str(Path(__file__).resolve().parent))
c.JupyterHub.authenticator_class = "lenet_hub_auth.StudentAuthenticator"
c.FirstUseAuthenticator.create_users = True
c.LocalAuthenticator.create_system_users = True
c.FirstUseAuthenticator.dbm_path = str(STATE / "passwords.dbm")
c.FirstUseAuthenticator.min_password_length = 7
c.Authenticator.admin_users = names(ETC / "admins.txt")
c.Authenticator.allowed_users = names(ETC / "students.txt")
# only those: with no list, FirstUseAuthenticator would let any name in (and adduser it)
c.Authenticator.allow_all = False
# adduser, not useradd: Debian's adduser gives each student a 0700 home (useradd -m: 0755)
c.LocalAuthenticator.add_user_cmd = ["adduser", "--quiet", "--gecos", "", "--disabled-password"]

# -- each student's JupyterLab -----------------------------------------------------------------
c.Spawner.cmd = [str(COURSE_ENV / "bin" / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 180  # a first start on a busy 2-core machine takes tens of seconds
c.Spawner.http_timeout = 120
c.Spawner.environment = {
    "PATH": f"{COURSE_ENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
    "LENET_COURSE_DATA": DATA,
    "OMP_NUM_THREADS": "1",  # one CPU thread per kernel: students share the cores
    "MKL_NUM_THREADS": "1",
    # nbgitpuller runs git as the student on a repository root owns: this file's safe.directory
    # lets it (git refuses "dubious ownership" otherwise)
    "GIT_CONFIG_SYSTEM": str(ETC / "gitconfig"),
}
# Idle kernels go, connected or not: each one holds 0.5-1.3 GB after a notebook has run.
c.Spawner.args = [
    f"--MappingKernelManager.cull_idle_timeout={CULL_KERNEL}",
    "--MappingKernelManager.cull_interval=120",
    "--MappingKernelManager.cull_connected=True",
]
c.Spawner.mem_limit = MEM_LIMIT
c.Spawner.cpu_limit = CPU_LIMIT

if SYSTEMD_DIR.is_dir():  # systemd is PID 1: one transient unit per student, with limits
    c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
    c.SystemdSpawner.mem_limit = MEM_LIMIT
    c.SystemdSpawner.cpu_limit = CPU_LIMIT
    c.SystemdSpawner.dynamic_users = False  # the Unix users adduser made
    c.SystemdSpawner.user_workingdir = "/home/{USERNAME}"
    c.SystemdSpawner.isolate_tmp = True
    c.SystemdSpawner.isolate_devices = True
    c.SystemdSpawner.disable_user_sudo = True
    c.SystemdSpawner.readonly_paths = [str(PREFIX)]
    c.SystemdSpawner.unit_name_template = "jupyter-{USERNAME}-singleuser"
else:  # no systemd (a container): plain processes as each user, without limits
    c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"

# -- idle servers: the culler, a hub service ---------------------------------------------------
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [
            str(HUB_ENV / "bin" / "python"),
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={CULL_SERVER}",
            "--cull-every=300",
        ],
    }
]
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
