"""The Jupyter Book site: `make book` (tools/build_book.py) builds from the stored outputs with no
Sphinx warning, and every notebook is a page of the site, in reading order, with its figures.

The build goes to book/_build/html (the same place as `make book`); tests/test_browser.py then
reuses it.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
import yaml
from conftest import Build

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
HTML = BOOK / "_build" / "html"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


class Page(HTMLParser):
    """The parts of a built page the tests look at: title, TOC links, images, scripts, styles."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.title = ""
        self.toc: list[str] = []
        self.images: list[str] = []
        self.assets: list[str] = []
        self.text = ""
        self._in_title = False
        self._in_code = False
        self._nav_depth = 0
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: value or "" for key, value in attrs}
        if tag == "title":
            self._in_title = True
        if tag in ("script", "style"):
            self._in_code = True
        if tag == "nav" and "bd-docs-nav" in attr.get("class", ""):
            self._nav_depth = 1
        elif tag == "nav" and self._nav_depth:
            self._nav_depth += 1
        if tag == "a" and self._nav_depth and "href" in attr:
            self.toc.append(attr["href"])
        if tag == "img":
            self.images.append(attr.get("src", ""))
        if tag == "script" and attr.get("src"):
            self.assets.append(attr["src"])
        if tag == "link" and attr.get("rel") == "stylesheet":
            self.assets.append(attr.get("href", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in ("script", "style"):
            self._in_code = False
        if tag == "nav" and self._nav_depth:
            self._nav_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._in_code:
            self.text += data

    @property
    def words(self) -> str:
        """The visible text, whitespace collapsed."""
        return " ".join(self.text.split())

    def resolve(self, src: str) -> Path:
        """The file a relative URL on this page points to."""
        return (self.path.parent / src.split("#")[0].split("?")[0]).resolve()


def load_build_script() -> ModuleType:
    """Import tools/build_book.py (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_book", REPO / "tools" / "build_book.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook_title(path: Path) -> str:
    """The text of the notebook's first '# ' heading."""
    for line in nbformat.read(path, as_version=4).cells[0].source.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return ""


def words(text: str) -> str:
    """Text reduced to lower-case letters and digits, to compare markdown with rendered HTML."""
    return re.sub(r"[^a-z0-9]+", "", html.unescape(text).lower())


@pytest.fixture(scope="module")
def book(book_build: Build) -> Build:
    """The session's one fresh build of the book (conftest.book_build)."""
    return book_build


@pytest.mark.slow
def test_book_builds_without_warnings(book: Build) -> None:
    problems = [line for line in book.log.splitlines() if re.search(r"WARNING|ERROR", line)]
    assert book.returncode == 0, f"the book build failed:\n{book.log[-5000:]}"
    assert not problems, "Sphinx warnings:\n" + "\n".join(problems)
    assert (HTML / "index.html").exists()


@pytest.mark.slow
def test_every_notebook_is_a_page_in_reading_order(book: Build) -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook"
    expected = [f"notebooks/{path.stem}.html" for path in NOTEBOOKS]
    home = Page(HTML / "intro.html")
    chapters = [href for href in home.toc if href.startswith("notebooks/")]
    assert chapters == expected, "the table of contents does not list the notebooks in order"
    book_title = yaml.safe_load((BOOK / "_config.yml").read_text())["title"]
    assert words(book_title) in words(home.title)
    for path, href in zip(NOTEBOOKS, expected, strict=True):
        page = Page(HTML / href)
        assert words(notebook_title(path)) in words(page.title), f"{href}: title {page.title!r}"
        assert [h for h in page.toc if h.endswith(".html")], f"{href}: no table of contents"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_figures_are_rendered(book: Build, path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    shown = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        and not {"remove-cell", "remove-output"} & set(cell.metadata.get("tags", []))
        for output in cell.outputs
        if any(key.startswith("image/") for key in output.get("data", {}))
    ]
    page = Page(HTML / "notebooks" / f"{path.stem}.html")
    images = [src for src in page.images if not src.startswith("data:")]
    assert len(page.images) >= len(shown), (
        f"{len(shown)} figures stored, {len(page.images)} <img> on the page"
    )
    for src in images:
        assert page.resolve(src).is_file(), f"{path.stem}.html: <img src={src!r}> has no file"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_hidden_cells_are_collapsed(book: Build, path: Path) -> None:
    """Solutions tagged hide-cell stay on the page, folded behind a toggle."""
    cells = nbformat.read(path, as_version=4).cells
    hidden = [c for c in cells if "hide-cell" in c.metadata.get("tags", [])]
    text = (HTML / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
    folded = re.findall(r'class="cell tag_[^"]*hide-cell[^"]*"[^>]*>\s*<details', text)
    assert len(folded) == len(hidden), f"{len(hidden)} hide-cell cells, {len(folded)} folded"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_scaffolding_on_the_page(book: Build, path: Path) -> None:
    """The cells that exist for the tests (``record`` and asserts, tagged remove-cell) and their
    outputs are not on the page; no test machinery is named; quiz cells show no source."""
    text = (HTML / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
    page = html.unescape(re.sub(r"<[^>]+>", "", text))
    for needle in ("record(", "recorded =", "NBVAL", "nbval", "papermill", "fmt: skip",
                   "display_quiz("):
        assert needle not in page, f"{path.stem}.html shows {needle!r}"
    removed = [c for c in nbformat.read(path, as_version=4).cells
               if "remove-cell" in c.metadata.get("tags", [])]
    flat = " ".join(page.split())
    for cell in removed:  # no removed cell's source appears on the page
        source = " ".join(cell.source.split())
        assert source not in flat, f"{path.stem}.html shows a removed cell: {source[:80]!r}"


@pytest.mark.slow
def test_every_cited_work_is_in_the_references(book: Build) -> None:
    """Every {cite} key in the notebooks and the intro is in references.bib, and resolves on the
    references page (Sphinx would warn about an unknown key; this names the notebook)."""
    bib = (BOOK / "references.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, re.MULTILINE))
    sources = [(p.name, p.read_text(encoding="utf-8")) for p in NOTEBOOKS]
    sources.append(("intro.md", (BOOK / "intro.md").read_text(encoding="utf-8")))
    for name, source in sources:
        for group in re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", source):
            for key in group.split(","):
                assert key.strip() in keys, f"{name} cites {key.strip()!r}, not in references.bib"
    references = Page(HTML / "references.html").words
    for title in re.findall(r"^\s*title\s*=\s*\{(.+)\},?$", bib, re.MULTILINE):
        plain = re.sub(r"[{}\\]", "", title)
        assert words(plain) in words(references), f"the references page lacks {plain!r}"


@pytest.mark.slow
def test_intro_and_references(book: Build) -> None:
    intro = Page(HTML / "intro.html").words
    for needed in ("make lab", "make test", "LENET_COURSE_DATA", "Prerequisites"):
        assert needed in intro, f"the introduction does not mention {needed!r}"
    references = Page(HTML / "references.html").words
    for needed in ("2278", "1708.07747", "Dive into Deep Learning", "Cambridge University Press"):
        assert needed in references, f"the references page lacks {needed!r}"


@pytest.mark.slow
def test_theme_and_assets_are_local(book: Build) -> None:
    """Every script and stylesheet, the widget manager and MathJax included, ships with the site
    (it works offline): tools/build_book.py vendors them from the npm registry."""
    pages = sorted(HTML.glob("*.html")) + sorted(HTML.glob("notebooks/*.html"))
    seen = set()
    for path in pages:
        page = Page(path)
        for src in page.assets:
            assert not re.match(r"^[a-z]+:|^//", src), f"{path.name} loads {src} from the network"
            assert page.resolve(src).is_file(), f"{path.name}: {src} is missing from the site"
            seen.add(Path(src.split("?")[0]).name)
    assert {"require.js", "embed-amd.js", "tex-mml-chtml.js"} <= seen, sorted(seen)
    fonts = HTML / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert len(list(fonts.glob("*.woff"))) > 10, "MathJax's fonts are missing"
    assert list((HTML / "notebooks" / "@jupyter-widgets" / "html-manager" / "dist").glob("*.woff2"))


@pytest.mark.slow
def test_each_script_is_loaded_once(book: Build) -> None:
    """A widget page loads require.js and embed-amd.js once (twice drew every widget twice), and
    MathJax loads its own extensions: none of them is a script tag of the page."""
    pages = sorted(HTML.glob("*.html")) + sorted(HTML.glob("notebooks/*.html"))
    for path in pages:
        assets = [src.split("?")[0] for src in Page(path).assets]
        scripts = [src for src in assets if src.endswith(".js")]
        repeated = sorted({src for src in scripts if scripts.count(src) > 1})
        assert not repeated, f"{path.name} loads {repeated} more than once"
        assert not [src for src in scripts if "/extensions/" in src], f"{path.name}: {scripts}"
    widget_page = Page(HTML / "notebooks" / f"{NOTEBOOKS[0].stem}.html")
    names = [Path(src.split("?")[0]).name for src in widget_page.assets]
    assert names.count("embed-amd.js") == names.count("require.js") == 1


def fake_package(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzipped npm-style tarball holding ``files``, and its sha512 integrity string."""
    import base64
    import hashlib
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return data, "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_vendor_static_checks_unpacks_and_reuses(tmp_path: Path, monkeypatch) -> None:
    build_book = load_build_script()
    data, integrity = fake_package({
        "package/dist/embed-amd.js": b"define('widgets')",
        "package/dist/a.woff2": b"font", "package/dist/b.ttf": b"font", "package/dist/c.svg": b"",
        "package/es5/fonts/x.woff": b"x", "package/es5/fonts/sub/y.woff": b"y",
        "package/README.md": b"not wanted",
    })  # fmt: skip
    wanted = {
        "package/dist/embed-amd.js": "_static/widgets/embed-amd.js",
        "package/dist/*.woff2": "_extra/fonts/",
        "package/dist/*.ttf": "_extra/fonts/",
        "package/es5/fonts/": "_static/mathjax/fonts/",
    }
    monkeypatch.setattr(
        build_book, "VENDORED", {"pkg@1.0.0": ("https://x/pkg.tgz", integrity, wanted)}
    )
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return data

    assert build_book.vendor_static(tmp_path, fetch=fetch) == 5
    assert (tmp_path / "_static/widgets/embed-amd.js").read_bytes() == b"define('widgets')"
    assert sorted(p.name for p in (tmp_path / "_extra/fonts").iterdir()) == ["a.woff2", "b.ttf"]
    assert (tmp_path / "_static/mathjax/fonts/sub/y.woff").read_bytes() == b"y"
    assert not list(tmp_path.rglob("README.md")) and not list(tmp_path.rglob("*.partial"))
    assert build_book.vendor_static(tmp_path, fetch=fetch) == 0  # the stamp says: all there
    assert fetched == ["https://x/pkg.tgz"]


def test_vendor_static_removes_an_old_static_folder(tmp_path: Path, monkeypatch) -> None:
    """Copies an earlier build left in book/_static/ would be loaded on every page: gone."""
    build_book = load_build_script()
    monkeypatch.setattr(build_book, "VENDORED", {})
    (tmp_path / "_static" / "widgets").mkdir(parents=True)
    (tmp_path / "_static" / "widgets" / "require.js").write_text("old")
    (tmp_path / "_static" / "VENDORED.json").write_text("[]")
    assert build_book.vendor_static(tmp_path, fetch=lambda url: b"") == 0
    assert not (tmp_path / "_static").exists()


@pytest.mark.parametrize("problem", ["integrity", "missing file", "offline", "escape"])
def test_vendor_static_writes_nothing_when_it_cannot(
    problem: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    build_book = load_build_script()
    name = "../../outside.js" if problem == "escape" else "package/dist/embed-amd.js"
    data, integrity = fake_package({name: b"x"})
    target = "_static/../../outside.js" if problem == "escape" else "_static/widgets/embed-amd.js"
    source = "../../outside.js" if problem == "escape" else "package/dist/embed-amd.js"
    if problem == "integrity":
        integrity = fake_package({name: b"tampered"})[1]
    if problem == "missing file":
        source = "package/dist/other.js"
    monkeypatch.setattr(
        build_book, "VENDORED", {"pkg@1.0.0": ("https://x/p.tgz", integrity, {source: target})}
    )

    def fetch(url: str) -> bytes:
        if problem == "offline":
            raise OSError("network is unreachable")
        return data

    assert build_book.vendor_static(tmp_path / "book", fetch=fetch) is None
    assert not (tmp_path / "book").exists() and not (tmp_path / "outside.js").exists()
    message = capsys.readouterr().err
    assert "cannot fetch pkg@1.0.0" in message and "CDN" in message


def test_cdn_fallback_replaces_the_local_addresses(tmp_path: Path) -> None:
    """Without local copies the build config points at the CDNs and drops _extra/."""
    build_book = load_build_script()
    stored = yaml.safe_load((BOOK / "_config.yml").read_text())["sphinx"]["config"]
    assert set(stored["nb_ipywidgets_js"]) == {"widgets/require.js", "widgets/embed-amd.js"}
    assert stored["mathjax_path"] == "mathjax/tex-mml-chtml.js"
    written = build_book.write_config(tmp_path, {}, sphinx_overrides=build_book.CDN_FALLBACK)
    config = yaml.safe_load(written.read_text())["sphinx"]["config"]
    assert all(url.startswith("https://") for url in config["nb_ipywidgets_js"])
    assert config["mathjax_path"].startswith("https://") and config["html_extra_path"] == []
    assert config["bibtex_reference_style"] == stored["bibtex_reference_style"]  # the rest kept
    targets = [t for _, _, wanted in build_book.VENDORED.values() for t in wanted.values()]
    assert config["html_static_path"] == []  # no _vendor/ to publish
    assert stored["html_static_path"] == ["_vendor"]  # published as _static/
    local = [f"_vendor/{path}" for path in stored["nb_ipywidgets_js"]]
    assert set(local) <= set(targets) and f"_vendor/{stored['mathjax_path']}" in targets


def test_execute_switch(tmp_path: Path) -> None:
    """BOOK_EXECUTE=1 re-executes every notebook with a timeout long enough for training."""
    build_book = load_build_script()
    assert build_book.execute_settings({}) is None
    assert build_book.execute_settings({"BOOK_EXECUTE": "0"}) is None
    settings = build_book.execute_settings({"BOOK_EXECUTE": "1"})
    assert settings == {"execute_notebooks": "force", "timeout": 1800}
    assert build_book.execute_settings({"BOOK_EXECUTE": "1", "BOOK_TIMEOUT": "-1"})["timeout"] == -1
    with pytest.raises(SystemExit, match="BOOK_TIMEOUT"):
        build_book.execute_settings({"BOOK_EXECUTE": "yes", "BOOK_TIMEOUT": "soon"})
    config = yaml.safe_load(build_book.write_config(tmp_path, settings).read_text())
    assert config["execute"]["execute_notebooks"] == "force"
    assert config["execute"]["timeout"] == 1800
    assert config["title"] == yaml.safe_load((BOOK / "_config.yml").read_text())["title"]
    stored = yaml.safe_load((BOOK / "_config.yml").read_text())["execute"]
    assert stored["execute_notebooks"] == "off", "`make book` must not execute the notebooks"
    command = build_book.build_command(tmp_path, fresh=True, config=tmp_path / "c.yml")
    assert {"--warningiserror", "--keep-going", "--all"} <= set(command)


@pytest.mark.slow
def test_draw_and_watch_ships_with_the_site(book: Build) -> None:
    """The Draw and watch page loads its scripts and weights from the site; notebook 07's pad,
    which needs a kernel, is a link to that page (no anywidget state left for a CDN to serve)."""
    draw = (HTML / "draw.html").read_text(encoding="utf-8")
    for script in ("lenet.js", "weights-mnist.js", "weights-fashion-mnist.js", "pad.js"):
        assert f'src="_static/draw/{script}"' in draw, f"draw.html does not load {script}"
        assert (HTML / "_static" / "draw" / script).is_file(), f"_static/draw/{script} missing"
    inspecting = (HTML / "notebooks" / "07_inspecting_lenet.html").read_text(encoding="utf-8")
    assert "anywidget" not in inspecting
    assert 'class="lenet-pad-note"' in inspecting and 'href="../draw.html"' in inspecting
    assert 'href="draw.html"' in (HTML / "intro.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_chinese_site_twins_the_english_one(book: Build) -> None:
    """book/_build/html/zh: every page of the English site has its Chinese twin, in zh-CN, with
    Chinese interface strings and a search index of Chinese words; each links to the other."""
    english = sorted(p.relative_to(HTML) for p in HTML.glob("**/*.html") if "zh" not in p.parts)
    pages = [p for p in english if p.parts[0] in ("notebooks", "intro.html", "draw.html")]
    assert len([p for p in pages if p.parts[0] == "notebooks"]) == len(NOTEBOOKS)
    for relative in pages:
        chinese = HTML / "zh" / relative
        assert chinese.is_file(), f"zh/{relative} is missing"
        text = chinese.read_text(encoding="utf-8")
        assert '<html lang="zh-CN"' in text, f"zh/{relative} is not marked zh-CN"
        for page, twin in ((chinese, HTML / relative), (HTML / relative, chinese)):
            found = re.search(r'class="lenet-twin"><a href="([^"]+)"', page.read_text("utf-8"))
            assert found, f"{page.relative_to(HTML)} has no link to its twin"
            assert (page.parent / found.group(1)).resolve() == twin.resolve()
    intro = (HTML / "zh" / "intro.html").read_text(encoding="utf-8")
    assert "搜索" in intro, "the interface strings are not Chinese"
    index = (HTML / "zh" / "searchindex.js").read_text(encoding="utf-8")
    terms = json.loads(index[index.index("(") + 1 : index.rindex(")")])["terms"]
    # words, not single characters: jieba segments the text (without it: none of these)
    assert {"卷积", "池化", "参数"} <= set(terms), "the Chinese search index holds no Chinese words"
