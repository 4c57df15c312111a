"""Measure the class server's capacity: the figures of deploy/README.md's "Capacity" section.

Run it as root, from the checkout, with the course's .venv (it needs Playwright and Chromium, as
`make test-hub` does) and what deploy/install.sh installed under /opt/lenet-course:

    .venv/bin/python deploy/measure_capacity.py            # about 12 minutes on 2 cores

What it does, reusing tests/hub/test_hub.py's helpers:

1. Starts the hub (deploy/jupyterhub_config.py) on a free loopback port with its own state and a
   class list of up to 4 throw-away students (the hub creates their Unix users).
2. Logs every student in with headless Chromium through the nbgitpuller link to the notebooks
   folder (the course is cloned into each home; JupyterLab open, no kernel), waits, and reads the
   memory of each student's processes (RSS and PSS, summed per Unix user) and of the hub, its
   proxy and its idle culler. Then it closes the browser (a student's browser runs on their own
   machine); the servers keep running.
3. Runs notebook 06 at its short test parameters for 1, then 2, then 4 students at once. Each run
   is a kernel started by nbclient as that student's Unix user, with the course environment's
   python and the environment the hub gives its servers (OMP_NUM_THREADS=1, the data), in the
   student's clone: not typed into 4 browsers. For each: the kernel's CPU time (its own and its
   data-loader workers'), the wall time, the memory; for each batch: the CPU the rest of the
   machine used meanwhile and the load average (other jobs share the cores).
4. Runs the other notebooks one after the other as the first student, each in a fresh kernel, at
   the parameters tests/test_notebook*.py pass (read from those files), and reads each kernel's
   memory when its last cell has run, and its peak.

The numbers go to test-artifacts/capacity/capacity.json and are printed as tables. Whatever
happens (an error, Ctrl-C, SIGTERM), it stops the hub's process group, its proxy and culler,
kills every process of the students, deletes the students with their homes (`deluser
--remove-home`) and removes its temporary folder.

`measure_capacity.py run-notebook ...` is the part that runs as a student (course python).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PREFIX = Path(os.environ.get("LENET_HUB_PREFIX", "/opt/lenet-course"))
CONFIG = REPO / "deploy" / "jupyterhub_config.py"
ARTIFACTS = REPO / "test-artifacts" / "capacity"
TARGET = "lenet-course"  # where nbgitpuller clones the course in each home
TRAINING = "06_training_on_gpu.ipynb"
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
MIB = 2**20


# -- /proc ----------------------------------------------------------------------------------------
def read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (field 3, the state, is index 0)."""
    text = read(f"/proc/{pid}/stat")
    return text.rsplit(")", 1)[1].split() if text else []


def status_kib(pid: int, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", read(f"/proc/{pid}/status"), re.M)
    return int(match.group(1)) if match else 0


def rss(pid: int) -> int:
    """Resident bytes of one process."""
    fields = read(f"/proc/{pid}/statm").split()
    return int(fields[1]) * PAGE if fields else 0


def pss(pid: int) -> int:
    """Proportional set size in bytes: shared pages divided among the processes sharing them."""
    match = re.search(r"^Pss:\s+(\d+) kB", read(f"/proc/{pid}/smaps_rollup"), re.M)
    return int(match.group(1)) * 1024 if match else 0


def pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def uid_of(pid: int) -> int:
    match = re.search(r"^Uid:\s+(\d+)", read(f"/proc/{pid}/status"), re.M)
    return int(match.group(1)) if match else -1


def processes_of(uid: int) -> list[int]:
    return [pid for pid in pids() if uid_of(pid) == uid]


def descendants(root: int) -> list[int]:
    """``root`` and every process below it."""
    parent = {}
    for pid in pids():
        fields = stat_fields(pid)
        if fields:
            parent[pid] = int(fields[1])
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(child for child, ppid in parent.items() if ppid == pid)
    return found


def name_of(pid: int) -> str:
    command = read(f"/proc/{pid}/cmdline").replace("\0", " ").split()
    if not command:
        return "?"
    words = [Path(command[0]).name] + command[1:3]
    return " ".join(w if len(w) < 40 else w[:37] + "..." for w in words)


def memory(group: list[int]) -> dict[str, Any]:
    return {
        "rss_mib": round(sum(map(rss, group)) / MIB, 1),
        "pss_mib": round(sum(map(pss, group)) / MIB, 1),
        "processes": sorted(name_of(pid) for pid in group if rss(pid)),
    }


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores) since boot, from /proc/stat."""
    fields = [int(x) for x in read("/proc/stat").splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def loadavg() -> list[float]:
    return [float(x) for x in read("/proc/loadavg").split()[:3]]


class Sampler(threading.Thread):
    """Every second, the RSS and the PSS summed over each watched Unix user's processes; keeps
    each one's peak per user since the last ``reset``. (A process's forked data-loader workers
    share most of its pages: RSS counts them once per worker, PSS divides them among them.)"""

    def __init__(self, uids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.uids = uids
        self.peaks = {name: [0, 0] for name in uids}
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            totals = {uid: [0, 0] for uid in self.uids.values()}
            for pid in pids():
                uid = uid_of(pid)
                if uid in totals:
                    totals[uid][0] += rss(pid)
                    totals[uid][1] += pss(pid)
            with self.lock:
                for name, uid in self.uids.items():
                    peak = self.peaks[name]
                    self.peaks[name] = [max(peak[0], totals[uid][0]), max(peak[1], totals[uid][1])]

    def reset(self) -> dict[str, dict[str, float]]:
        with self.lock:
            peaks = {name: {"rss_mib": round(r / MIB, 1), "pss_mib": round(p / MIB, 1)}
                     for name, (r, p) in self.peaks.items()}  # fmt: skip
            self.peaks = {name: [0, 0] for name in self.uids}
        return peaks


# -- the part that runs as a student --------------------------------------------------------------
def run_notebook(args: argparse.Namespace) -> None:
    """Execute one notebook in a fresh kernel (nbclient, papermill's parameter injection) and print,
    as JSON, the kernel's memory and CPU time read before the kernel is shut down."""
    import nbclient
    import nbformat
    from nbclient.util import ensure_async
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    notebook = load_notebook_node(args.notebook)  # as papermill reads it (every cell has tags)
    notebook = parameterize_notebook(notebook, json.loads(args.parameters), kernel_name="python3")
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": args.cwd}}
    )
    result: dict[str, Any] = {}

    async def execute() -> None:
        client.reset_execution_trackers()
        async with client.async_setup_kernel(cwd=args.cwd):
            kernel = client.km.provisioner.process.pid
            reply = await client.async_wait_for_reply(await ensure_async(client.kc.kernel_info()))
            assert reply is not None
            start = time.monotonic()
            for index, cell in enumerate(notebook.cells):
                await client.async_execute_cell(
                    cell, index, execution_count=client.code_cells_executed + 1
                )
            result["wall_s"] = round(time.monotonic() - start, 1)
            time.sleep(1)  # let data-loader workers finish exiting
            group = descendants(kernel)
            fields = stat_fields(kernel)  # utime, stime, cutime, cstime: fields 14-17
            own, waited = (int(fields[11]) + int(fields[12])), (int(fields[13]) + int(fields[14]))
            result.update(
                kernel_cpu_s=round((own + waited) / TICK, 1),
                kernel_workers_cpu_s=round(waited / TICK, 1),
                kernel=memory(group),
                kernel_peak_rss_mib=round(status_kib(kernel, "VmHWM") / 1024, 1),
                kernel_threads=int(fields[17]),
            )

    asyncio.run(execute())
    nbformat.write(notebook, args.output)
    print("RESULT " + json.dumps(result), flush=True)


# -- the measurement, as root ---------------------------------------------------------------------
def hub_environment(root: Path, port: int) -> dict[str, str]:
    return {**os.environ, "LENET_HUB_PORT": str(port), "LENET_HUB_STATE": str(root / "state"),
            "LENET_HUB_ETC": str(root / "etc"), "LENET_HUB_PREFIX": str(PREFIX)}  # fmt: skip


def spawner_environment(env: dict[str, str]) -> dict[str, str]:
    """The environment deploy/jupyterhub_config.py gives each student's server (and kernels)."""
    from traitlets.config import Config

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        c = Config()
        exec(compile(CONFIG.read_text(), str(CONFIG), "exec"),
             {"get_config": lambda: c, "__file__": str(CONFIG)})  # fmt: skip
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return dict(c.Spawner.environment)


def start_student_run(
    script: Path, name: str, notebook: str, parameters: dict[str, Any], env: dict[str, str]
) -> subprocess.Popen:
    home = Path(pwd.getpwnam(name).pw_dir)
    clone = home / TARGET / "notebooks"
    out = home / "capacity"
    subprocess.run(["runuser", "-u", name, "--", "mkdir", "-p", str(out)], check=True)
    parameters = dict(parameters)
    for key, value in parameters.items():  # a temporary path in the test: one in the home here
        if value is None and key.endswith("_dir"):
            parameters[key] = str(out / f"{Path(notebook).stem}_{key}")
    # The installed lenet_course finds no benchmarks/ beside it (its REPO_ROOT is site-packages):
    # notebooks 06, 08, 09 and 10 then fail in a cell. The student's clone on PYTHONPATH gives them
    # the same package with its benchmarks/ (the clone is the checkout's HEAD).
    env = {**env, "PYTHONPATH": str(home / TARGET)}
    command = ["runuser", "-u", name, "--", "env", "-i", f"HOME={home}", f"USER={name}",
               *(f"{k}={v}" for k, v in env.items()), str(PREFIX / "venv" / "bin" / "python"),
               str(script), "run-notebook", str(clone / notebook), str(out / notebook),
               json.dumps(parameters), "--cwd", str(clone)]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd="/")  # fmt: skip


def finish_student_run(process: subprocess.Popen, name: str, notebook: str) -> dict[str, Any]:
    out, err = process.communicate(timeout=1800)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"{notebook} as {name} failed ({process.returncode}):\n{err[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def log_in(browser: Any, hub: Any, name: str, password: str) -> Any:
    """Follow the nbgitpuller link to the notebooks folder and submit the login form (as the
    test's submit_login does, but to a folder: JupyterLab opens with no kernel)."""
    import test_hub as th

    page = th.new_page(browser, hub)
    page.goto(hub.link("notebooks"))
    page.wait_for_url(re.compile(r"/hub/login"))
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit", no_wait_after=True)
    return page


def start_hub(
    th: Any, root: Path, students: dict[str, str], results: dict[str, Any], started: list[Any]
) -> Any:
    """The hub on a free loopback port, with ``root``'s state, class list and course repository;
    returns the test's ``Hub``, appended to ``started`` as soon as its process runs."""

    for name in ("state", "etc"):
        (root / name).mkdir()
    (root / "state").chmod(0o700)
    (root / "etc" / "students.txt").write_text("".join(f"{n}\n" for n in students))
    source = th.make_course_repository(root)
    (root / "etc" / "gitconfig").write_text(f"[safe]\n\tdirectory = {source}\n")
    port = th.free_port()
    url = f"http://127.0.0.1:{port}"
    hub = th.Hub(url, root, source, ARTIFACTS / "jupyterhub.log", None, students)
    start = time.monotonic()
    with hub.log.open("w") as log:
        hub.process = subprocess.Popen(
            [str(PREFIX / "hub/bin/jupyterhub"), "-f", str(CONFIG)], cwd=root / "state",
            env=hub_environment(root, port), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    started.append(hub)
    if not th.hub_answers(url, hub.process, start + 90):
        raise RuntimeError("the hub did not start: see test-artifacts/capacity/")
    results["hub_start_s"] = round(time.monotonic() - start, 1)
    return hub


def measure_idle(th: Any, hub: Any, settle: float, results: dict[str, Any]) -> None:
    """Every student logs in at once: JupyterLab open on the notebooks folder, no kernel; after
    ``settle`` seconds, each student's memory and the hub's. The browser is closed after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(th.CHROMIUM), args=th.CHROMIUM_ARGS, headless=True
        )
        start = time.monotonic()
        pages = {name: log_in(browser, hub, name, hub.students[name]) for name in hub.students}
        for name, page in pages.items():
            page.wait_for_url(re.compile(rf"/user/{name}/lab"), timeout=240_000)
            listing = page.locator(".jp-DirListing-item", has_text="02_convolution").first
            listing.wait_for(timeout=240_000)
        results["logins_s"] = round(time.monotonic() - start, 1)
        time.sleep(settle)
        results["idle"] = {
            name: memory(processes_of(pwd.getpwnam(name).pw_uid)) for name in hub.students
        }
        hub_processes = [p for p in descendants(hub.process.pid) if uid_of(p) == os.getuid()]
        results["hub_with_servers"] = memory(hub_processes)  # the students' servers left out
        results["idle_load"] = loadavg()
        for name, page in pages.items():
            page.screenshot(path=str(ARTIFACTS / f"{name[:4]}-idle.png"))
        browser.close()


def measure_training(script: Path, names: list[str], counts: list[int], env: dict[str, str],
                     sampler: Sampler, results: dict[str, Any]) -> None:  # fmt: skip
    """Notebook 06 at its short parameters, for 1, 2, 4 students at once (batch after batch)."""
    parameters = results["parameters"][TRAINING]
    results["training"] = []
    for count in counts:
        sampler.reset()
        busy, load, start = machine_busy_s(), loadavg(), time.monotonic()
        runs = {n: start_student_run(script, n, TRAINING, parameters, env) for n in names[:count]}
        done = {n: finish_student_run(p, n, TRAINING) for n, p in runs.items()}
        wall = time.monotonic() - start
        used = machine_busy_s() - busy
        batch = {
            "students": count,
            "wall_s": round(wall, 1),
            "runs": done,
            "peak_user_mib": sampler.reset(),
            "machine_cpu_s": round(used, 1),
            "other_cpu_s": round(used - sum(r["kernel_cpu_s"] for r in done.values()), 1),
            "load_before": load,
            "load_after": loadavg(),
        }
        results["training"].append(batch)
        print(json.dumps(batch)[:2000], flush=True)
        write(results)


def measure_notebooks(script: Path, name: str, notebooks: list[str], env: dict[str, str],
                      sampler: Sampler, results: dict[str, Any]) -> None:  # fmt: skip
    """The other notebooks, one after the other, as one student, each in a fresh kernel."""
    results["notebooks"] = {}
    uid = pwd.getpwnam(name).pw_uid
    for short in notebooks:
        (notebook,) = [n for n in results["parameters"] if n.startswith(short)]
        sampler.reset()
        busy, start = machine_busy_s(), time.monotonic()
        run = start_student_run(script, name, notebook, results["parameters"][notebook], env)
        result = finish_student_run(run, name, notebook)
        result["outer_wall_s"] = round(time.monotonic() - start, 1)
        result["other_cpu_s"] = round(machine_busy_s() - busy - result["kernel_cpu_s"], 1)
        result["peak_user_mib"] = sampler.reset()[name]
        server = [
            p
            for p in processes_of(uid)
            if b"jupyterhub-singleuser" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        result["server_rss_mib"] = memory(server)["rss_mib"]
        results["notebooks"][notebook] = result
        print(notebook, json.dumps(result)[:600], flush=True)
        write(results)


def machine_facts() -> dict[str, Any]:
    """When, on what and under what load the measurement starts."""
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": " ".join(
            re.search(rf"^{key}\s*:\s*(.*)$", read("/proc/cpuinfo"), re.M).group(1)
            for key in ("model name", "cpu family", "model")
        ),  # e.g. "AMD EPYC 25 17": family 25, model 17
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30, 1),
        "kernel": platform.release(),
        "load_before": loadavg(),
        "spawner": "systemd" if Path("/run/systemd/system").is_dir() else "LocalProcessSpawner",
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests" / "hub"))
    sys.path.insert(0, str(REPO / "tests"))
    import notebook_parameters  # the short parameters tests/test_notebook*.py pass
    import test_hub as th  # the hub test's helpers: ports, course repository, hub stop, users

    if os.geteuid() != 0:
        sys.exit("measure_capacity.py runs as root: the hub creates a Unix user per student")
    results = machine_facts()
    root = Path(tempfile.mkdtemp(prefix="lenet-capacity-", dir="/tmp"))
    root.chmod(0o755)
    tag = secrets.token_hex(2)
    students = {f"cap{i}{tag}": f"pass-{i}-{tag}" for i in range(1, max(args.students) + 1)}
    started: list[Any] = []  # the hub, once its process runs
    sampler = None
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        script = root / "measure_capacity.py"  # a student may not be able to read the checkout
        shutil.copy(__file__, script)
        script.chmod(0o644)
        hub = start_hub(th, root, students, results, started)
        time.sleep(5)
        results["hub_alone"] = memory(descendants(hub.process.pid))
        sampler = Sampler({name: pwd.getpwnam(name).pw_uid for name in students})
        sampler.start()
        measure_idle(th, hub, args.settle, results)
        env = spawner_environment(hub_environment(root, 0))
        results["student_environment"] = env
        results["parameters"] = notebook_parameters.short()
        names = list(students)
        measure_training(script, names, args.students, env, sampler, results)
        measure_notebooks(script, names[0], args.notebooks, env, sampler, results)
        results["load_after"] = loadavg()
        return results
    finally:
        if sampler is not None:
            sampler.stopped.set()
        clean_up(th, started, students, root, results)


def clean_up(th: Any, started: list[Any], students: dict[str, str], root: Path,
             results: dict[str, Any]) -> None:  # fmt: skip
    """Stop the hub (its process group, proxy and culler), kill every process of the students,
    delete them with their homes, remove the temporary folder; say if a user is left."""
    for hub in started:
        results["hub_stop_s"] = round(th.stop_hub(hub.process), 1)
    for name in students:
        th.remove_user(name)
    shutil.rmtree(root, ignore_errors=True)
    left = [name for name in students if th.user_exists(name)]
    results["users_left"] = left
    write(results)
    if left:
        print(f"users left behind: {left}", file=sys.stderr)


def write(results: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "capacity.json").write_text(json.dumps(results, indent=1) + "\n")


def peak(run: dict[str, Any]) -> str:
    """A run's peak memory summed over the student's processes, RSS / PSS (MiB)."""
    value = run.get("peak_user_mib", run.get("peak_user_rss_mib", ""))
    return f"{value['rss_mib']} / {value['pss_mib']}" if isinstance(value, dict) else str(value)


def report(results: dict[str, Any]) -> str:
    """The measured tables, in Markdown."""
    lines = [f"Measured {results['when']} on {results['cores']} x {results['cpu']}, "
             f"{results['memory_gib']} GiB; load average before: {results['load_before']}", "",
             "| what | RSS MiB | PSS MiB |", "| --- | --- | --- |"]  # fmt: skip
    for key in ("hub_alone", "hub_with_servers"):
        lines.append(f"| {key} | {results[key]['rss_mib']} | {results[key]['pss_mib']} |")
    for name, value in results["idle"].items():
        lines.append(f"| idle student {name} | {value['rss_mib']} | {value['pss_mib']} |")
    lines += [
        "",
        "| notebook | kernel RSS MiB | PSS | kernel peak RSS | user peak RSS | CPU s | "
        "wall s | other CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = dict(results.get("notebooks", {}))
    if results.get("training"):  # 06: the first student's run when training alone
        first = results["training"][0]
        name, run = next(iter(first["runs"].items()))
        peaks = first.get("peak_user_mib", first.get("peak_user_rss_mib", {}))
        rows[TRAINING] = {**run, "peak_user_mib": peaks.get(name, "")}
    for notebook, r in sorted(rows.items()):
        lines.append(
            f"| {notebook[:2]} | {r['kernel']['rss_mib']} | {r['kernel']['pss_mib']} | "
            f"{r['kernel_peak_rss_mib']} | {peak(r)} | "
            f"{r['kernel_cpu_s']} | {r['wall_s']} | {r.get('other_cpu_s', '')} |"
        )
    lines += ["", "| students | CPU s each | wall s each | batch wall s | other CPU s | load |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for batch in results.get("training", []):
        cpu = ", ".join(str(r["kernel_cpu_s"]) for r in batch["runs"].values())
        wall = ", ".join(str(r["wall_s"]) for r in batch["runs"].values())
        lines.append(
            f"| {batch['students']} | {cpu} | {wall} | {batch['wall_s']} | "
            f"{batch['other_cpu_s']} | {batch['load_before']} -> {batch['load_after']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    runner = sub.add_parser("run-notebook", help="(as a student) run one notebook, print figures")
    runner.add_argument("notebook")
    runner.add_argument("output")
    runner.add_argument("parameters", help="JSON")
    runner.add_argument("--cwd", required=True)
    parser.add_argument(
        "--students",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        help="how many students train at once, batch after batch (at most 4)",
    )
    parser.add_argument(
        "--notebooks",
        nargs="*",
        default=["01", "02", "03", "04", "05", "07", "08", "09", "10"],
        help="the notebooks whose kernel memory to read (06: the training runs)",
    )
    parser.add_argument("--settle", type=float, default=15, help="seconds idle before reading")
    parser.add_argument("--report", action="store_true", help="print the tables of the last run")
    args = parser.parse_args()  # fmt: skip
    if args.command == "run-notebook":
        run_notebook(args)
        return
    if args.report:
        print(report(json.loads((ARTIFACTS / "capacity.json").read_text())))
        return
    if max(args.students) > 4:
        parser.error("at most 4 students")

    def stop(signum: int, frame: Any) -> None:  # SIGTERM/SIGHUP: clean up as Ctrl-C does
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    results = measure(args)
    print(report(results))


if __name__ == "__main__":
    main()
