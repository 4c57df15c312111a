"""The class server in a real browser: `make test-hub` (root; creates and deletes two users).

One JupyterHub from deploy/jupyterhub_config.py and what deploy/install.sh installed, on a free
loopback port, with its state, student list and course repository in a temporary folder. Two
students follow the teacher's nbgitpuller link to notebook 02, log in (first use: their password
becomes theirs), get the course cloned into their home, run all of 02's cells and move its stride
slider. Then: a wrong password gets the login page again; A's kernel gets PermissionError on B's
home and A's browser 403 on B's server; A saves the run notebook, the teacher pushes a commit, A
follows the link again and nbgitpuller merges it, keeping A's saved outputs; a student who renames
her copy gets the teacher's version on the next pull. Teardown, always: the hub's process group,
every process of the two users, the users and their homes, the temporary folder.

Timings (hub start, each login, the whole module) are printed and written to
test-artifacts/hub/timings.json; screenshots go next to them.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
PREFIX = Path(os.environ.get("LENET_HUB_PREFIX", "/opt/lenet-course"))
CONFIG = REPO / "deploy" / "jupyterhub_config.py"
ARTIFACTS = REPO / "test-artifacts" / "hub"
CHROMIUM = Path(os.environ.get("LENET_COURSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
NOTEBOOK = "notebooks/02_convolution_arithmetic.ipynb"
TARGET = "lenet-course"  # the folder nbgitpuller clones into, in each home
TEACHER_LINE = "*Updated by your teacher: read section 8 before the lab session.*"
OUTPUT_SIZE = re.compile(r"output size:\s*(\d+)\s*x\s*(\d+)")
TIMINGS: dict[str, float] = {}
MODULE_START = time.monotonic()


@dataclass
class Hub:
    url: str
    root: Path  # the temporary folder: state/, etc/, course.git, teacher/
    source: Path  # the course repository the link pulls from (bare)
    log: Path
    process: subprocess.Popen
    students: dict[str, str] = field(default_factory=dict)  # name -> password

    def link(self, path: str = NOTEBOOK) -> str:
        """The teacher's nbgitpuller link: clone or update the course, open ``path``."""
        query = urllib.parse.urlencode(
            {
                "repo": str(self.source),
                "branch": "main",
                "targetpath": TARGET,
                "urlpath": f"lab/tree/{TARGET}/{path}",
            }  # fmt: skip
        )
        return f"{self.url}/hub/user-redirect/git-pull?{query}"


def free_port() -> int:
    """A loopback port with the next two free too (the hub's API and the proxy's API)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port > 65000:
            continue
        try:
            for offset in (1, 2):
                with socket.socket() as other:
                    other.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
    pytest.fail("no three free consecutive loopback ports")


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, check=True,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def remove_user(name: str) -> None:
    """Kill every process of ``name`` (they all came from this test's hub) and delete the user."""
    if not user_exists(name):
        return
    uid = pwd.getpwnam(name).pw_uid
    for _ in range(3):
        pids = subprocess.run(["pgrep", "-u", str(uid)], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    subprocess.run(["deluser", "--quiet", "--remove-home", name], check=False)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def children(pid: int) -> dict[int, bytes]:
    """The processes whose parent is ``pid`` (the hub starts its proxy and the culler in sessions
    of their own: its process group does not hold them)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found[int(stat.parent.name)] = cmdline(int(stat.parent.name))
    return found


def stop_hub(process: subprocess.Popen) -> float:
    """SIGTERM the hub's process group (the hub stops the servers, the proxy and the culler);
    after 40 s SIGKILL it, and whatever of its children is left."""
    start = time.monotonic()
    helpers = children(process.pid)
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass
    for pid, command in helpers.items():
        if cmdline(pid) != command:  # gone (or its id taken by another process)
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return time.monotonic() - start


def hub_answers(url: str, process: subprocess.Popen, deadline: float) -> bool:
    """Wait until the hub at ``url`` answers its API; False if it exits or ``deadline`` (a
    time.monotonic()) passes first."""
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/hub/api/", timeout=2) as reply:
                if reply.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def make_course_repository(root: Path) -> Path:
    """A bare clone of this checkout's HEAD (the teacher's repository), world-readable."""
    source = root / "course.git"
    git("clone", "-q", "--bare", str(REPO), str(source))
    git("update-ref", "refs/heads/main", "HEAD", cwd=source)  # whatever branch was checked out
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=source)
    subprocess.run(["chmod", "-R", "a+rX", str(source)], check=True)
    return source


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    if os.geteuid() != 0:
        pytest.fail("make test-hub needs root: the hub creates a Unix user per student")
    installed = ("hub/bin/jupyterhub", "hub/bin/configurable-http-proxy",
                 "venv/bin/jupyterhub-singleuser", "data/FashionMNIST")  # fmt: skip
    for needed in (PREFIX / path for path in installed):
        if not needed.exists():
            pytest.fail(f"{needed} is missing: run deploy/install.sh (as root) first")
    root = Path(tempfile.mkdtemp(prefix="lenet-hub-test-", dir="/tmp"))
    root.chmod(0o755)
    tag = secrets.token_hex(2)
    students = {f"hubta{tag}": f"a-pass-{tag}", f"hubtb{tag}": f"b-pass-{tag}"}
    process = None
    try:
        for name in ("state", "etc"):
            (root / name).mkdir()
        (root / "state").chmod(0o700)
        (root / "etc" / "students.txt").write_text("".join(f"{n}\n" for n in students))
        source = make_course_repository(root)
        (root / "etc" / "gitconfig").write_text(f"[safe]\n\tdirectory = {source}\n")
        port = free_port()
        env = {**os.environ, "LENET_HUB_PORT": str(port), "LENET_HUB_STATE": str(root / "state"),
               "LENET_HUB_ETC": str(root / "etc"), "LENET_HUB_PREFIX": str(PREFIX)}  # fmt: skip
        log = ARTIFACTS / "jupyterhub.log"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        with log.open("w") as out:
            process = subprocess.Popen(
                [str(PREFIX / "hub/bin/jupyterhub"), "-f", str(CONFIG)], cwd=root / "state",
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        if not hub_answers(url, process, start + 60):
            pytest.fail(f"the hub did not start:\n{log.read_text()[-4000:]}")
        TIMINGS["hub start (s)"] = round(time.monotonic() - start, 1)
        yield Hub(url, root, source, log, process, students)
    finally:
        if process is not None:
            TIMINGS["hub stop (s)"] = round(stop_hub(process), 1)
        for name in students:
            remove_user(name)
        shutil.rmtree(root, ignore_errors=True)
        TIMINGS["module wall time (s)"] = round(time.monotonic() - MODULE_START, 1)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "timings.json").write_text(json.dumps(TIMINGS, indent=1) + "\n")
        print(f"\nhub test timings: {TIMINGS}")
        leftovers = [name for name in students if user_exists(name)]
        assert not leftovers, f"users left behind: {leftovers}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: run tools/ensure_chromium.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


def new_page(browser: Any, hub: Hub) -> Any:
    """A page in a fresh browser context (its own cookies) that may load only the hub."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(
        (hub.url, "data:", "blob:")) else r.abort())  # fmt: skip
    return context.new_page()


def screenshot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def submit_login(page: Any, hub: Hub, name: str, password: str) -> None:
    """Follow the nbgitpuller link (the hub asks to log in first) and submit the form."""
    page.goto(hub.link())
    page.wait_for_url(re.compile(r"/hub/login"))
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit", no_wait_after=True)


def wait_for_notebook(page: Any, name: str, timeout_s: float = 180) -> None:
    """Wait until ``name``'s JupyterLab shows notebook 02 with an idle kernel."""
    page.wait_for_url(re.compile(rf"/user/{name}/lab"), timeout=timeout_s * 1000)
    kernel = page.locator(".jp-StatusBar-TextItem[title^='Change kernel']")
    kernel.filter(has_text=re.compile(r"\|\s*Idle")).wait_for(timeout=timeout_s * 1000)


def run_all(page: Any, timeout_s: float = 150) -> None:
    """Run > Run All Cells, then wait until every code cell has a number and the kernel idles."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    deadline = time.monotonic() + timeout_s
    prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt")
    indicator = page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator")
    while time.monotonic() < deadline:
        texts = [t for t in prompts.all_text_contents() if t.strip()]
        if (
            indicator.get_attribute("data-status") == "idle"
            and texts
            and all(re.search(r"\[\d+\]", t) for t in texts)
        ):
            break
        time.sleep(0.5)
    else:
        screenshot(page, "run-all-timeout")
        pytest.fail(f"Run All Cells did not finish in {timeout_s} s")
    errors = page.locator('[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    assert not [e for e in errors if "Traceback" in e or "Error" in e], errors[-1:]


def move_stride(page: Any) -> tuple[str, str]:
    """Move the convolution explorer's stride slider one step; the shown output size changes."""
    label = page.locator(".widget-label", has_text=re.compile(r"^\s*stride\s*$", re.I))
    slider = page.locator(".widget-slider", has=label).first
    slider.scroll_into_view_if_needed()
    box = slider.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' widget-box ')]"
                         "[.//*[contains(text(), 'output size:')]][1]")  # fmt: skip
    shown = (
        box.locator(".widget-label, .widget-html-content, .jp-OutputArea-output")
        .filter(has_text=OUTPUT_SIZE)
        .last
    )
    before = shown.inner_text()
    slider.locator(".noUi-handle").press("ArrowRight")
    deadline = time.monotonic() + 30
    while shown.inner_text() == before and time.monotonic() < deadline:
        time.sleep(0.2)
    return before, shown.inner_text()


def run_new_cell(page: Any, code: str) -> str:
    """Add a code cell at the end of the open notebook, run it, return its output's text."""
    cells = page.locator(".jp-NotebookPanel .jp-Cell")
    cells.last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    index = cells.count() - 1
    page.keyboard.press("Enter")
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")
    output = cells.nth(index).locator(".jp-OutputArea-output")
    output.first.wait_for(timeout=60_000)
    return output.first.inner_text()


def save(page: Any) -> None:
    """Save the open notebook with Ctrl+S, as a student would, and wait until it is saved."""
    page.locator(".jp-NotebookPanel .jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while page.locator(".jp-mod-dirty").count() and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture(scope="module")
def students(hub: Hub, browser: Any) -> dict[str, Any]:
    """Both students log in through the link at once; each gets 02 open in JupyterLab."""
    pages = {name: new_page(browser, hub) for name in hub.students}
    start = time.monotonic()
    for name, page in pages.items():
        submit_login(page, hub, name, hub.students[name])
    for name, page in pages.items():
        wait_for_notebook(page, name)
        TIMINGS[f"login to notebook 02, {name[:5]} (s)"] = round(time.monotonic() - start, 1)
        screenshot(page, f"{name[:5]}-notebook")
    return pages


def test_homes_are_private_and_the_course_was_pulled(hub: Hub, students: dict) -> None:
    for name in students:
        home = Path(pwd.getpwnam(name).pw_dir)
        assert home.stat().st_mode & 0o777 == 0o700, f"{home} is not 0700"
        clone = home / TARGET / NOTEBOOK
        assert clone.is_file() and clone.stat().st_uid == pwd.getpwnam(name).pw_uid
        assert git("rev-parse", "HEAD", cwd=clone.parent) == git(
            "rev-parse", "main", cwd=hub.source
        )


def test_both_run_notebook_02_and_move_a_slider(students: dict) -> None:
    start = time.monotonic()
    for page in students.values():
        run_all(page)
    TIMINGS["notebook 02 run, both students (s)"] = round(time.monotonic() - start, 1)
    for name, page in students.items():
        before, after = move_stride(page)
        screenshot(page, f"{name[:5]}-slider-moved")
        assert OUTPUT_SIZE.search(after) and after != before, (before, after)


def test_a_wrong_password_or_name_gets_the_login_page_again(
    hub: Hub, browser: Any, students
) -> None:
    name = next(iter(hub.students))
    page = new_page(browser, hub)
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", "not-her-password")
    page.click("#login_submit")
    page.wait_for_load_state()
    assert "/hub/login" in page.url and "/user/" not in page.url
    assert page.locator("#password_input").is_visible()
    assert "Invalid username or password" in page.content()
    page.fill("#username_input", "not-a-student")  # a name the class list lacks: refused too
    page.fill("#password_input", "any-password")
    page.click("#login_submit")
    page.wait_for_load_state()
    assert "/hub/login" in page.url and "Invalid username or password" in page.content()
    assert not user_exists("not-a-student")
    page.context.close()


def test_the_readme_resets_a_password(hub: Hub, browser: Any, students) -> None:
    """deploy/README.md's one line deletes A's password; her next password becomes hers."""
    name = next(iter(hub.students))
    readme = (REPO / "deploy" / "README.md").read_text()
    line = next(x for x in readme.splitlines() if "passwords.dbm" in x and "del db" in x)
    line = line.replace("/opt/lenet-course/state", str(hub.root / "state"))
    command = line.replace("/opt/lenet-course", str(PREFIX)).replace(" NAME", f" {name}")
    subprocess.run(["bash", "-c", command], check=True)
    hub.students[name] = f"new-{hub.students[name]}"
    page = new_page(browser, hub)
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", hub.students[name])
    page.click("#login_submit")
    page.wait_for_url(re.compile(rf"/user/{name}/"), timeout=60_000)
    page.context.close()


def test_a_student_cannot_read_or_open_the_other(hub: Hub, students: dict) -> None:
    (a, page_a), (b, _) = students.items()
    output = run_new_cell(page_a, f"import os\nos.listdir('/home/{b}')")
    assert "PermissionError" in output, output
    reply = page_a.request.get(f"{hub.url}/user/{b}/lab", max_redirects=10)
    assert reply.status == 403, f"A opening B's server: {reply.status} {reply.url}"


def test_a_teacher_update_merges_and_the_student_keeps_her_run(hub: Hub, students: dict) -> None:
    """A saves 02 after running it; the teacher changes 02's first markdown cell and adds a file;
    A follows the link again: both arrive, and A's outputs stay. B renames her copy: the next pull
    gives her the teacher's version beside hers."""
    (a, page_a), (b, page_b) = students.items()
    save(page_a)
    mine = Path(pwd.getpwnam(a).pw_dir) / TARGET / NOTEBOOK
    saved = nbformat.read(mine, as_version=4)
    saved_outputs = [cell.get("outputs") for cell in saved.cells if cell.cell_type == "code"]
    assert any(saved_outputs), "A's saved notebook has no outputs"

    teacher = hub.root / "teacher"
    git("clone", "-q", str(hub.source), str(teacher))
    notebook = nbformat.read(teacher / NOTEBOOK, as_version=4)
    notebook.cells[0].source += f"\n\n{TEACHER_LINE}"
    nbformat.write(notebook, teacher / NOTEBOOK)
    (teacher / "notebooks" / "NEWS.md").write_text("Lab session on Thursday.\n")
    git("add", "-A", cwd=teacher)
    git("-c", "user.name=Teacher", "-c", "user.email=t@example.org", "commit", "-q", "-m",
        "Teacher: a note in 02", cwd=teacher)  # fmt: skip
    git("push", "-q", "origin", "HEAD:main", cwd=teacher)

    start = time.monotonic()
    page_a.goto(hub.link())
    wait_for_notebook(page_a, a)
    TIMINGS["second pull to notebook (s)"] = round(time.monotonic() - start, 1)
    screenshot(page_a, f"{a[:5]}-after-update")
    merged = nbformat.read(mine, as_version=4)
    nbformat.validate(merged)
    assert TEACHER_LINE in merged.cells[0].source, "the teacher's change did not arrive"
    assert (mine.parent / "NEWS.md").is_file(), "the teacher's new file did not arrive"
    merged_outputs = [cell.get("outputs") for cell in merged.cells if cell.cell_type == "code"]
    assert merged_outputs == saved_outputs, "A's saved outputs were not kept"
    log = git("log", "--format=%s", cwd=mine.parent)
    assert "Teacher: a note in 02" in log

    # B keeps her run under another name; the link restores the teacher's 02 next to it
    hers = Path(pwd.getpwnam(b).pw_dir) / TARGET / NOTEBOOK
    save(page_b)
    kept = hers.with_name("02-mine.ipynb")
    subprocess.run(["runuser", "-u", b, "--", "mv", str(hers), str(kept)], check=True)
    page_b.goto(hub.link())
    wait_for_notebook(page_b, b)
    fresh = nbformat.read(hers, as_version=4)
    assert TEACHER_LINE in fresh.cells[0].source and kept.is_file()
    assert fresh.cells == nbformat.read(teacher / NOTEBOOK, as_version=4).cells
