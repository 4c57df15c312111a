"""The two environment files describe the same environment, and the venv really is it."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _requirement_lines(lines: list[str]) -> list[str]:
    """Requirement lines without comments (whole-line or after the requirement)."""
    stripped = (line.split(" #")[0].strip() for line in lines)
    return [line for line in stripped if line and not line.startswith("#")]


def requirements_txt() -> list[str]:
    return _requirement_lines((REPO / "requirements.txt").read_text().splitlines())


def environment_yml_pip() -> list[str]:
    lines = (REPO / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    pip_items = [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]
    return _requirement_lines(pip_items)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_and_requirements_txt_list_the_same_packages_and_pins():
    assert sorted(environment_yml_pip()) == sorted(requirements_txt())


def test_named_course_packages_are_listed():
    names = {_name(r) for r in requirements_txt()}
    for package in ["jupyterlab", "torch", "torchvision", "matplotlib", "ipywidgets", "nbval",
                    "papermill", "tqdm", "pytest", "hypothesis", "jupyter-book"]:  # fmt: skip
        assert package in names, package
    d2l = (REPO / "requirements-d2l.txt").read_text()
    assert "d2l==1.0.3" in _requirement_lines(d2l.splitlines())
    # d2l's real imports stand in for its stale pins
    assert {"pandas", "scipy", "requests", "matplotlib-inline"} <= names


def test_torch_and_torchvision_are_pinned_to_a_matching_pair():
    pins = {_name(r): r for r in requirements_txt()}
    torch_pin = re.fullmatch(r"torch==2\.(\d+)\.\d+", pins["torch"])
    vision_pin = re.fullmatch(r"torchvision==0\.(\d+)\.\d+", pins["torchvision"])
    assert torch_pin and vision_pin, (pins["torch"], pins["torchvision"])
    # torchvision 0.(m + 15) is built against torch 2.m
    assert int(vision_pin.group(1)) == int(torch_pin.group(1)) + 15


def test_installed_versions_match_the_pins():
    pins = {_name(r): r.split("==")[1] for r in requirements_txt() if "==" in r}
    for name, version in pins.items():
        installed = metadata.version(name).split("+")[0]
        assert installed == version, f"{name}: installed {installed}, pinned {version}"
    assert metadata.version("d2l") == "1.0.3"


def test_installed_versions_satisfy_every_requirement():
    """Ranges too, not only the == pins: the venv is what requirements.txt asks for."""
    from packaging.requirements import Requirement

    for line in requirements_txt():
        requirement = Requirement(line)
        installed = metadata.version(requirement.name).split("+")[0]
        assert requirement.specifier.contains(installed, prereleases=True), (
            f"{requirement.name} {installed} does not satisfy {requirement}"
        )


def test_torchvision_operators_load_with_this_torch():
    import torch
    import torchvision

    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.1, 1.1]])
    kept = torchvision.ops.nms(boxes, torch.tensor([1.0, 0.5]), 0.5)  # fails on a mismatched pair
    assert kept.tolist() == [0]


def test_d2l_imports_with_modern_packages():
    result = subprocess.run(
        [sys.executable, "-c", "import lenet_course, torchvision; from d2l import torch as d2l; "
         "print(d2l.LeNet.__name__)"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "LeNet"


def test_pip_check_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
