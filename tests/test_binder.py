"""Binder's build of the course (binder/): what repo2docker, which Binder runs, would build.

``repo2docker --no-build --debug`` prints the Dockerfile it would build from the repository and
stops: no docker daemon, no network (the repository is read from this folder). The test reads
that Dockerfile: binder/ is picked (not environment.yml, which it would otherwise use), with the
Python of runtime.txt, the students' requirements installed, then binder/postBuild run."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BINDER = REPO / "binder"
#: In ../requirements.txt for the tests and the book only, not for a student's session (nbformat
#: comes with JupyterLab anyway).
NOT_FOR_STUDENTS = {"pytest", "hypothesis", "nbval", "papermill", "playwright", "ruff",
                    "jupyter-book", "jieba", "nbformat", "jupyter-repo2docker"}  # fmt: skip
#: The torch pair from PyTorch's CPU wheel index (binder/requirements.txt says why).
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def requirement_lines(path: Path) -> list[str]:
    stripped = (line.split(" #")[0].strip() for line in path.read_text().splitlines())
    return [line for line in stripped if line and not line.startswith("#")]


def name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower()


@pytest.fixture(scope="module")
def dockerfile() -> str:
    """The Dockerfile repo2docker would build for this repository on mybinder.org (which runs
    it with user jovyan, uid 1000), printed with no docker daemon and no network."""
    program = Path(sys.executable).with_name("repo2docker")
    if not program.exists():
        pytest.fail(
            "repo2docker is not installed in this environment: it comes with requirements.txt "
            "(jupyter-repo2docker); run `make venv` again",
            pytrace=False,
        )
    offline = {
        **os.environ,
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",  # no daemon is needed ...
        "HTTP_PROXY": "http://127.0.0.1:9",  # ... nor the network
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    result = subprocess.run(
        [str(program), "--no-build", "--debug", "--user-id", "1000", "--user-name", "jovyan",
         str(REPO)],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=offline,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = result.stdout + result.stderr
    assert "FROM " in text, text[-3000:]
    return text


def test_repo2docker_picks_binder_and_the_python_of_runtime_txt(dockerfile: str) -> None:
    assert "environment.yml" not in dockerfile  # the conda file at the root is ignored
    runtime = (BINDER / "runtime.txt").read_text().strip()
    version = re.fullmatch(r"python-(3\.\d+)", runtime)
    assert version, runtime
    assert f"Building conda environment for python={version.group(1)}" in dockerfile
    # the course's Python: environment.yml's, and the one these tests run on
    assert f"  - python={version.group(1)}\n" in (REPO / "environment.yml").read_text()
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == version.group(1)


def test_the_image_installs_the_students_requirements_then_runs_post_build(
    dockerfile: str,
) -> None:
    install = re.search(r'RUN \$\{KERNEL_PYTHON_PREFIX\}/bin/pip install --no-cache-dir -r '
                        r'"binder/requirements.txt"', dockerfile)  # fmt: skip
    post_build = dockerfile.find("RUN ./binder/postBuild")
    assert install and post_build > install.end(), dockerfile[-3000:]
    # postBuild runs as the student's user, in the repository (the home folder) copied as theirs
    assert "COPY --chown=1000:1000 src/ ${REPO_DIR}/" in dockerfile
    before = dockerfile[:post_build]
    assert before.rfind("USER ${NB_USER}") > before.rfind("USER root")


def test_students_requirements_are_the_courses_runtime_packages() -> None:
    course = {name(r): r for r in requirement_lines(REPO / "requirements.txt")}
    lines = requirement_lines(BINDER / "requirements.txt")
    assert lines[0] == CPU_INDEX
    students = {name(r): r for r in lines[1:]}
    assert set(students) == set(course) - NOT_FOR_STUDENTS
    for package, requirement in students.items():
        if package in ("torch", "torchvision"):  # the same matching pair, built without CUDA
            assert requirement == course[package] + "+cpu", requirement
        else:
            assert requirement == course[package], requirement


def test_post_build_installs_d2l_the_course_package_and_the_data() -> None:
    post_build = BINDER / "postBuild"
    assert post_build.stat().st_mode & stat.S_IXUSR  # git keeps the executable bit
    subprocess.run(["bash", "-n", str(post_build)], check=True)
    commands = requirement_lines(post_build)
    assert commands == [
        "set -euo pipefail",
        "python tools/install_d2l.py",
        "pip install --disable-pip-version-check --no-deps -e .",
        "python -m lenet_course data",
    ]
    # what `make venv` and `make data` run after their pip install -r requirements.txt
    makefile = (REPO / "Makefile").read_text()
    for step in ("$(PY) tools/install_d2l.py", "--no-deps -e .", "$(PY) -m lenet_course data"):
        assert step in makefile, step


def test_every_session_starts_with_one_thread_per_kernel(dockerfile: str) -> None:
    start = BINDER / "start"
    assert 'ENV R2D_ENTRYPOINT="${REPO_DIR}/binder/start"' in dockerfile
    assert start.stat().st_mode & stat.S_IXUSR

    def threads(environ: dict[str, str]) -> str:
        command = [
            str(start),
            sys.executable,
            "-c",
            "import os; print(os.environ['OMP_NUM_THREADS'])",
        ]
        return subprocess.run(
            command, env=environ, capture_output=True, text=True, check=True
        ).stdout

    base = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    assert threads(base) == "1\n"
    assert threads({**base, "OMP_NUM_THREADS": "4"}) == "4\n"  # a session's own choice is kept


def test_the_memory_script_finds_the_short_parameters_of_its_notebooks() -> None:
    """binder/measure_memory.py reads the short runs from the notebooks' tests (no copy): each
    notebook it runs short has parameters there, and notebook 06's checkpoint folder is left to
    the script."""
    import notebook_parameters

    sys.path.insert(0, str(REPO / "binder"))
    try:
        import measure_memory
    finally:
        sys.path.remove(str(REPO / "binder"))
    short = notebook_parameters.short()
    for number in measure_memory.SHORT:
        (name,) = [name for name in short if name.startswith(f"{number}_")]
        assert short[name] and all(
            value is not None for key, value in short[name].items() if key != "checkpoint_dir"
        ), (name, short[name])
    assert short["06_training_on_gpu.ipynb"]["checkpoint_dir"] is None  # a temporary path
