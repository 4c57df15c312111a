"""The book's launch buttons: with a repository and a hub given to tools/build_book.py, each
notebook page opens that page's notebook on Binder and, through nbgitpuller, on the hub; without
them the site has no launch buttons.

The build runs a copy of tools/build_book.py in a scratch copy of the book's sources (its REPO is
where the script lies), so that it never touches book/, which conftest.book_build may be building
at the same time in the other half of `make test`. English edition only: the Chinese site has no
launch buttons (its notebooks are generated, not in the repository)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_book", REPO / "tools" / "build_book.py")
assert _spec is not None and _spec.loader is not None
build_book = importlib.util.module_from_spec(_spec)  # tools/ is not a package
_spec.loader.exec_module(build_book)

REPOSITORY = "https://github.com/example/lenet-course"
HUB = "https://hub.example.org"
EXAMPLE = {"BOOK_REPOSITORY_URL": REPOSITORY, "BOOK_HUB_URL": HUB}
NOTEBOOKS = sorted(path.name for path in (REPO / "notebooks").glob("*.ipynb"))
#: Where every kind of launch link starts (Binder, JupyterHub, and the ones we leave out).
LAUNCH_PREFIXES = ("https://mybinder.org", HUB, "https://colab.research.google.com",
                   "https://deepnote.com")  # fmt: skip


class Links(HTMLParser):
    """Every <a href> of a page, and the classes of its elements."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.classes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        self.classes.update((values.get("class") or "").split())


def links(page: Path) -> Links:
    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def scratch_sources(root: Path) -> Path:
    """``root`` laid out as the repository for tools/build_book.py: the script, the book's
    sources (without builds and copies), the notebooks and the Draw and watch page's scripts.

    The vendored scripts (book/_vendor, book/_extra) come along only once an earlier build has
    finished writing them (its stamp is there): else this build fetches its own."""
    (root / "tools").mkdir(parents=True)
    shutil.copy2(REPO / "tools" / "build_book.py", root / "tools")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copytree(REPO / "lenet_course" / "web", root / "lenet_course" / "web")
    book = REPO / "book"
    skipped = {"_build", "_zh", "notebooks"}  # this build's own products (and _vendor/draw)
    if not (book / "_vendor" / "VENDORED.json").exists():
        skipped |= {"_vendor", "_extra"}

    def ignored(folder: str, names: list[str]) -> list[str]:
        if Path(folder) == book:
            return [name for name in names if name in skipped]
        return ["draw"] if Path(folder) == book / "_vendor" else []

    shutil.copytree(book, root / "book", ignore=ignored)
    return root


def build(root: Path, output: Path, **variables: str) -> str:
    """Build the English site of ``root`` into ``output`` with the given launch variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BOOK_")}
    result = subprocess.run(
        [sys.executable, str(root / "tools" / "build_book.py"), "--edition", "en",
         "--output", str(output)],
        cwd=root, capture_output=True, text=True, timeout=900, env={**env, **variables},
    )  # fmt: skip
    log = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    assert result.returncode == 0, log[-4000:]
    return log


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The site built with the example addresses, then rebuilt without them."""
    root = scratch_sources(tmp_path_factory.mktemp("book-sources"))
    output = tmp_path_factory.mktemp("book-launch")
    start = time.perf_counter()
    log = build(root, output / "with", **EXAMPLE)
    assert f"Launch buttons: Binder (https://mybinder.org) and JupyterHub ({HUB})" in log
    build(root, output / "without")
    print(f"two English builds in {time.perf_counter() - start:.0f} s")
    return {"with": output / "with" / "_build" / "html",
            "without": output / "without" / "_build" / "html"}  # fmt: skip


def test_each_notebook_page_launches_its_own_notebook(sites: dict[str, Path]) -> None:
    html = sites["with"]
    pages = sorted(path.name for path in (html / "notebooks").glob("*.html"))
    assert pages == [name.replace(".ipynb", ".html") for name in NOTEBOOKS]
    for name in NOTEBOOKS:
        page = links(html / "notebooks" / name.replace(".ipynb", ".html"))
        assert "dropdown-launch-buttons" in page.classes, name
        launch = [href for href in page.hrefs if href.startswith(LAUNCH_PREFIXES)]
        binder = [href for href in launch if href.startswith("https://mybinder.org")]
        hub = [href for href in launch if href.startswith(HUB)]
        assert len(binder) == 1 and len(hub) == 1 and len(launch) == 2, (name, launch)  # no Colab
        # Binder: builds the repository's main branch, opens the notebook in JupyterLab.
        url = urlsplit(binder[0])
        assert url.path == "/v2/gh/example/lenet-course/main", binder
        assert parse_qs(url.query) == {"urlpath": [f"lab/tree/notebooks/{name}"]}, binder
        # JupyterHub: nbgitpuller clones the repository into ~/lenet-course and opens the notebook.
        url = urlsplit(hub[0])
        assert url.path == "/hub/user-redirect/git-pull", hub
        assert parse_qs(url.query) == {
            "repo": [REPOSITORY],
            "urlpath": [f"lab/tree/lenet-course/notebooks/{name}"],
            "branch": ["main"],
        }, hub
        # ... a notebook that the repository really has there
        assert (REPO / "notebooks" / name).is_file()
        assert REPOSITORY in page.hrefs  # the repository button


def test_the_other_pages_have_no_launch_buttons(sites: dict[str, Path]) -> None:
    for name in ("intro.html", "draw.html", "references.html"):
        page = links(sites["with"] / name)
        assert "dropdown-launch-buttons" not in page.classes, name
        assert not [href for href in page.hrefs if href.startswith(LAUNCH_PREFIXES)], name


def test_without_the_variables_there_are_no_launch_buttons(sites: dict[str, Path]) -> None:
    pages = sorted(sites["without"].rglob("*.html"))
    assert len(pages) >= len(NOTEBOOKS) + 3
    for path in pages:
        page = links(path)
        assert "dropdown-launch-buttons" not in page.classes, path
        assert "btn-source-repository-button" not in page.classes, path
        assert not [href for href in page.hrefs if href.startswith(LAUNCH_PREFIXES)], path
        # nor Jupyter Book's default repository, executablebooks/jupyter-book
        assert not [href for href in page.hrefs if "executablebooks/jupyter-book" in href], path


def test_launch_settings_come_only_from_the_variables() -> None:
    assert build_book.launch_settings({}) is None
    settings = build_book.launch_settings({"BOOK_REPOSITORY_URL": REPOSITORY + ".git/"})
    assert settings is not None
    assert settings["repository"] == {"url": REPOSITORY, "branch": "main", "path_to_book": ""}
    assert settings["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert settings["launch_buttons"]["jupyterhub_url"] == ""  # Binder only
    assert settings["launch_buttons"]["colab_url"] == ""
    own = build_book.launch_settings(
        {**EXAMPLE, "BOOK_BINDERHUB_URL": "https://binder.school.edu/"}
    )
    assert own is not None
    assert own["launch_buttons"]["binderhub_url"] == "https://binder.school.edu"
    assert own["launch_buttons"]["jupyterhub_url"] == HUB
    assert own["launch_buttons"]["notebook_interface"] == "jupyterlab"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"BOOK_HUB_URL": HUB}, "BOOK_HUB_URL needs BOOK_REPOSITORY_URL"),
        ({"BOOK_REPOSITORY_URL": "https://example.org/lenet-course"}, "github.com or gitlab.com"),
        (
            {"BOOK_REPOSITORY_URL": "https://github.com/example"},
            "https://github.com/<owner>/<name>",
        ),
        ({"BOOK_REPOSITORY_URL": "git@github.com:example/lenet-course"}, "is not an address"),
        ({"BOOK_REPOSITORY_URL": REPOSITORY, "BOOK_HUB_URL": "hub.example.org"}, "not an address"),
        ({"BOOK_REPOSITORY_URL": REPOSITORY, "BOOK_HUB_URL": HUB + "/?next=x"}, "not an address"),
    ],
)
def test_bad_addresses_are_refused(variables: dict[str, str], message: str) -> None:
    with pytest.raises(SystemExit, match=re.escape(message)):
        build_book.launch_settings(variables)


def test_write_config_adds_the_launch_sections(tmp_path: Path) -> None:
    import yaml

    settings = build_book.launch_settings(EXAMPLE)
    path = build_book.write_config(tmp_path, {}, sections=settings)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert config["repository"]["url"] == REPOSITORY
    assert config["html"]["use_repository_button"] is True
    assert config["html"]["home_page_in_navbar"] is True  # book/_config.yml's other keys kept
    assert config["launch_buttons"]["jupyterhub_url"] == HUB
