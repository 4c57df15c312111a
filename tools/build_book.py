"""Build the course's Jupyter Book (v1) site into book/_build/html.

    python tools/build_book.py [--all] [--output DIR] [--notebooks DIR]

The notebooks live in notebooks/, outside the book: Sphinx only reads files under its source
folder, so this script first copies them into book/notebooks/ (git-ignored, wiped each time),
where book/_toc.yml takes them by a glob in reading order. It then runs ``jupyter-book build``
with Sphinx warnings as errors (``--warningiserror --keep-going``: every warning is reported,
then the build fails).

By default the site shows the outputs stored in the notebooks; nothing is executed. With
``BOOK_EXECUTE=1`` every notebook is re-executed during the build (MyST-NB's
``execute_notebooks: force``) and the cell timeout is raised from 30 s to ``BOOK_TIMEOUT``
seconds (default 1800), so that the training cells fit.

Scripts the reader's browser runs: the pages with stored widget state (the explorers, progress
bars) need require.js and @jupyter-widgets/html-manager's ``embed-amd.js``, and the maths needs
MathJax. ``book/_config.yml`` points at copies under ``book/_vendor/`` (Sphinx's static path,
published as ``_static/``; not ``book/_static/``, whose every .js file Jupyter Book would load on
every page, so that each widget page loaded require.js and embed-amd.js twice, and every page all
of MathJax's extensions), and the widget stylesheet's fonts under ``book/_extra/``, so that the
site works without a network; this script
fetches them once from the npm registry (pinned versions, checked against their sha512
integrity, :data:`VENDORED`) into those git-ignored folders. Where
the registry cannot be reached and no copy is there yet, it says so and builds with the CDN
addresses instead (an online reader still sees widgets and maths).

The Draw and watch page (book/draw.md) loads LeNet's forward pass, the drawing pad and the
shipped weights from lenet_course/web/, copied into ``book/_vendor/draw/`` on every build; in the
copies of the notebooks, notebook 07's drawing pad (an anywidget, which needs a kernel) becomes a
link to that page.

Launch buttons: with ``BOOK_REPOSITORY_URL`` (the course's repository on GitHub or GitLab) in the
environment, every notebook page of the English site gets a Binder button (mybinder.org, or
``BOOK_BINDERHUB_URL``), which builds the repository from binder/ and opens that notebook in
JupyterLab, and the page header links to the repository; with ``BOOK_HUB_URL`` as well, a
JupyterHub button, an nbgitpuller link that clones the repository into the student's home on
that hub (or pulls the teacher's changes) and opens the notebook there. Both open
``notebooks/<name>.ipynb`` of the repository's ``main`` branch (:func:`launch_settings`).
Without the variables there are none: the project has no public address. The Chinese site has
none either: its notebooks (notebooks-zh/) are generated and not in the repository.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
NOTEBOOKS = REPO / "notebooks"
WEB = REPO / "lenet_course" / "web"
ZH_PAGES = REPO / "i18n" / "zh" / "book"
ZH_SOURCE = BOOK / "_zh"  # the Chinese book's source folder, assembled for each build
ZH_NOTEBOOKS = REPO / "notebooks-zh"
#: What the Chinese site sets on top of book/_config.yml.
ZH_CONFIG = {
    "title": "LeNet 动手学",
    "author": "LeNet 课程作者",
    "sphinx": {"html_search_language": "zh", "language": "zh_CN"},
}
TWIN = '<p class="lenet-twin"><a href="{href}" lang="{lang}" hreflang="{lang}">{label}</a></p>'
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PAD_NOTE = (
    '<p class="lenet-pad-note">In JupyterLab this cell shows the drawing pad, read by the '
    'notebook\'s own model. On this site, the <a href="../draw.html">Draw and watch</a> page has '
    "the same pad, with a LeNet running in your browser.</p>"
)
EXECUTE_TIMEOUT_S = 1800
#: The launch buttons' defaults: the public BinderHub, and the branch the buttons open.
BINDERHUB_URL = "https://mybinder.org"
LAUNCH_BRANCH = "main"
#: The hosts whose repository addresses sphinx-book-theme turns into Binder links (gh/, gl/).
LAUNCH_HOSTS = ("github.com", "gitlab.com")
#: npm packages whose files the site loads in the reader's browser, copied into book/_vendor/
#: and book/_extra/ (both git-ignored) so that the site needs no network: (tarball, sha512
#: integrity, {file in the tarball: where it goes under book/}).  A key ending in "/" copies a
#: folder; a key with a "*" copies the matching files into the folder it maps to.
VENDORED = {
    # The widget pages (explorers, progress bars): html-manager 1.0.6 is what MyST-NB 1.x loads
    # from its CDN; it renders ipywidgets 8 state (@jupyter-widgets/controls 2.0.0).
    "@jupyter-widgets/html-manager@1.0.6": (
        "https://registry.npmjs.org/@jupyter-widgets/html-manager/-/html-manager-1.0.6.tgz",
        "sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5cOJbpmgMhNR27n/rmP3mKyEe0PWCJrtZrXTXDQ==",
        {
            "package/dist/embed-amd.js": "_vendor/widgets/embed-amd.js",
            "package/LICENSE": "_vendor/widgets/LICENSE.html-manager",
            # Its stylesheet's Font Awesome fonts, which it looks up relative to the page.
            **{
                f"package/dist/*.{kind}": "_extra/notebooks/@jupyter-widgets/html-manager/dist/"
                for kind in ("woff2", "woff", "ttf")
            },
        },
    ),
    "requirejs@2.3.7": (
        "https://registry.npmjs.org/requirejs/-/requirejs-2.3.7.tgz",
        "sha512-DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPVHJ0pyBkM1z+pDsw==",
        {"package/require.js": "_vendor/widgets/require.js"},
    ),
    # The maths: Sphinx's MathJax 3 component, its fonts, and the TeX extensions it loads on
    # demand (paths relative to the script, as MathJax looks them up).
    "mathjax@3.2.2": (
        "https://registry.npmjs.org/mathjax/-/mathjax-3.2.2.tgz",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        {
            "package/es5/tex-mml-chtml.js": "_vendor/mathjax/tex-mml-chtml.js",
            "package/es5/output/chtml/fonts/": "_vendor/mathjax/output/chtml/fonts/",
            "package/es5/input/tex/extensions/": "_vendor/mathjax/input/tex/extensions/",
            "package/LICENSE": "_vendor/mathjax/LICENSE",
        },
    ),
}
#: What _config.yml's local addresses become where no local copy can be had: MyST-NB's and
#: Sphinx's own defaults (CDN addresses; an online reader still sees widgets and maths).
CDN_FALLBACK = {
    "nb_ipywidgets_js": {
        "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js": {
            "integrity": "sha256-Ae2Vz/4ePdIu6ZyI/5ZGsYnb+m0JlOmKPjt6XZ9JJkA=",
            "crossorigin": "anonymous",
        },
        "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/dist/embed-amd.js": {
            "data-jupyter-widgets-cdn": "https://cdn.jsdelivr.net/npm/",
            "crossorigin": "anonymous",
        },
    },
    "mathjax_path": "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js",
    "html_extra_path": [],
    "html_static_path": [],
}


def _check_integrity(data: bytes, integrity: str, source: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise ValueError(f"{source}: {algorithm} {actual} does not match the pinned {expected}")


def _unpack(data: bytes, wanted: Mapping[str, str]) -> dict[str, bytes]:
    """{path under book/: content} for the files, folders and patterns ``wanted`` names."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            for source, target in wanted.items():
                if member.name == source:
                    out = target
                elif source.endswith("/") and member.name.startswith(source):
                    out = target + member.name[len(source) :]
                elif "*" in source and fnmatch.fnmatchcase(member.name, source):
                    out = target + Path(member.name).name
                else:
                    continue
                if ".." in Path(out).parts or Path(out).is_absolute():
                    raise ValueError(f"refusing to write {out!r} outside book/")
                extracted = archive.extractfile(member)
                if extracted is not None:
                    files[out] = extracted.read()
    missing = [source for source in wanted if not any(
        out == wanted[source] or out.startswith(wanted[source]) for out in files
    )]  # fmt: skip
    if missing:
        raise ValueError(f"the tarball holds no {missing}")
    return files


def vendor_static(target: Path = BOOK, fetch: Any = None, timeout: float = 60.0) -> int | None:
    """Make sure ``target`` (book/) holds the files of :data:`VENDORED`; return how many files
    were written this time (0 when an earlier build left them), or None when they cannot be had
    (then nothing is written).

    ``fetch(url) -> bytes`` defaults to an HTTPS download; every tarball is checked against its
    pinned integrity before anything is written, and each file lands atomically.
    ``target/_vendor/VENDORED.json`` records which packages are there. A ``target/_static/``
    left by an earlier version of this script (it held the same files) is removed.
    """
    stale = target / "_static"
    if (stale / "VENDORED.json").exists():
        shutil.rmtree(stale)
    stamp = target / "_vendor" / "VENDORED.json"
    packages = sorted(VENDORED)
    try:
        if json.loads(stamp.read_text(encoding="utf-8")) == packages:
            return 0
    except (OSError, ValueError):
        pass  # absent, unreadable or another set of versions: fetch
    if fetch is None:

        def fetch(url: str) -> bytes:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https)
                return response.read()

    files: dict[str, bytes] = {}
    for name in packages:
        url, integrity, wanted = VENDORED[name]
        try:
            data = fetch(url)
            _check_integrity(data, integrity, url)
            files.update(_unpack(data, wanted))
        except (OSError, ValueError, tarfile.TarError) as error:
            print(
                f"warning: cannot fetch {name} for the site ({error}); this build loads the "
                "widget and MathJax scripts from their CDNs, so widgets and maths show only "
                "where the reader is online.",
                file=sys.stderr,
            )
            return None
    for out, data in files.items():
        path = target / out
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(packages), encoding="utf-8")
    return len(files)


def copy_notebooks(source: Path = NOTEBOOKS, book: Path = BOOK) -> list[Path]:
    """Replace ``book/notebooks/`` with a fresh copy of ``source`` and return the notebooks.

    Modification times are kept, so Sphinx's incremental build re-reads changed notebooks only.
    """
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no notebooks to build: {source} holds no *.ipynb file")
    target = book / "notebooks"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        source,
        target,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc"),
    )
    copies = [target / path.name for path in notebooks]
    for copy in copies:
        drop_kernel_widgets(copy)
    return copies


def drop_kernel_widgets(path: Path) -> int:
    """Replace the anywidget views of the notebook at ``path`` (notebook 07's drawing pad) by a
    link to the Draw and watch page, and drop their stored state; return how many went.

    anywidget keeps each widget's JavaScript in the kernel's state, and the page's widget manager
    would fetch anywidget's own module from a CDN (offline: a console error and an empty box);
    and a pad needs the kernel's model behind it, which a static page does not have."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    widgets = notebook.get("metadata", {}).get("widgets", {})
    state = widgets.get(WIDGET_STATE, {}).get("state", {})
    gone = {key for key, model in state.items() if model.get("model_module") == "anywidget"}
    for key in gone:
        del state[key]
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if output.get("data", {}).get(WIDGET_VIEW, {}).get("model_id") in gone:
                output["data"] = {"text/html": PAD_NOTE}
    if gone:
        path.write_text(json.dumps(notebook, indent=1), encoding="utf-8")
    return len(gone)


def copy_web(book: Path = BOOK) -> list[Path]:
    """Copy the Draw and watch page's scripts and weights (lenet_course/web/) into
    ``book/_vendor/draw/``, published as ``_static/draw/``; return the copies."""
    target = book / "_vendor" / "draw"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    return [Path(shutil.copy2(path, target)) for path in sorted(WEB.glob("*.js"))]


def execute_settings(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``execute:`` overrides that ``BOOK_EXECUTE=1`` asks for, or None to keep _config.yml."""
    if environ.get("BOOK_EXECUTE", "").strip().lower() not in {"1", "true", "yes", "on"}:
        return None
    timeout = environ.get("BOOK_TIMEOUT", str(EXECUTE_TIMEOUT_S))
    try:
        seconds = int(timeout)
    except ValueError:
        raise SystemExit(f"BOOK_TIMEOUT={timeout!r} is not a whole number of seconds") from None
    if seconds < 1 and seconds != -1:
        raise SystemExit(f"BOOK_TIMEOUT={seconds} must be a positive number of seconds, or -1")
    return {"execute_notebooks": "force", "timeout": seconds}


def _address(name: str, value: str) -> str:
    """``value`` of the environment variable ``name``, checked to be an http(s) address."""
    url = urllib.parse.urlsplit(value)
    if url.scheme not in ("https", "http") or not url.netloc or url.query or url.fragment:
        raise SystemExit(f"{name}={value!r} is not an address like https://host/path")
    return value.rstrip("/")


def launch_settings(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The _config.yml sections that put launch buttons on the notebook pages, from
    ``BOOK_REPOSITORY_URL``, ``BOOK_HUB_URL`` and ``BOOK_BINDERHUB_URL``; None without them.

    ``repository: path_to_book`` is empty: the book's copies of the notebooks sit in
    book/notebooks/, so a page's name (``notebooks/01_...``) is also its notebook's path in the
    repository, which is what Binder's ``urlpath`` and nbgitpuller's need (the hub's link opens
    ``lab/tree/<repository name>/notebooks/<name>.ipynb``: nbgitpuller clones into a folder
    named after the repository)."""
    repository = environ.get("BOOK_REPOSITORY_URL", "").strip()
    hub = environ.get("BOOK_HUB_URL", "").strip()
    binderhub = environ.get("BOOK_BINDERHUB_URL", "").strip() or BINDERHUB_URL
    if not repository:
        if hub:
            raise SystemExit("BOOK_HUB_URL needs BOOK_REPOSITORY_URL: the hub pulls it")
        return None
    repository = _address("BOOK_REPOSITORY_URL", repository).removesuffix(".git")
    url = urllib.parse.urlsplit(repository)
    if url.netloc.lower() not in LAUNCH_HOSTS or len(url.path.strip("/").split("/")) != 2:
        raise SystemExit(
            f"BOOK_REPOSITORY_URL={repository!r}: give the repository's page on "
            f"{' or '.join(LAUNCH_HOSTS)}, like https://github.com/<owner>/<name>"
        )
    launch = {
        "notebook_interface": "jupyterlab",
        "binderhub_url": _address("BOOK_BINDERHUB_URL", binderhub),
        "jupyterhub_url": _address("BOOK_HUB_URL", hub) if hub else "",
        "thebe": False,
        "colab_url": "",
        "deepnote_url": "",
    }
    return {
        "html": {"use_repository_button": True},
        "repository": {"url": repository, "branch": LAUNCH_BRANCH, "path_to_book": ""},
        "launch_buttons": launch,
    }


def write_config(
    output: Path,
    overrides: dict[str, Any],
    book: Path = BOOK,
    sphinx_overrides: dict[str, Any] | None = None,
    sections: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write ``book/_config.yml`` with the ``execute:`` overrides (and ``sphinx: config:``
    overrides, and keys of other sections: :func:`launch_settings`) into ``output``; return its
    path.

    Paths inside the config (bibliography, logo) are relative to the book's source folder, not
    to the config file, so the copy may live anywhere.
    """
    config = yaml.safe_load((book / "_config.yml").read_text(encoding="utf-8"))
    config.setdefault("execute", {}).update(overrides)
    if sphinx_overrides:
        config.setdefault("sphinx", {}).setdefault("config", {}).update(sphinx_overrides)
    for section, values in (sections or {}).items():
        config[section] = {**(config.get(section) or {}), **values}
    output.mkdir(parents=True, exist_ok=True)
    path = output / "_config.execute.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def build_command(
    output: Path, *, fresh: bool, config: Path | None = None, source: Path = BOOK
) -> list[str]:
    """The ``jupyter-book build`` command line (the script next to this Python, as in a venv)."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    program = str(jupyter_book) if jupyter_book.exists() else shutil.which("jupyter-book")
    if program is None:
        raise SystemExit("jupyter-book is not installed: pip install 'jupyter-book>=1.0.4,<2'")
    command = [program, "build", str(source), "--builder", "html", "--path-output", str(output)]
    command += ["--warningiserror", "--keep-going"]
    if fresh:
        command.append("--all")
    if config is not None:
        command += ["--config", str(config)]
    return command


def assemble_chinese() -> Path:
    """book/_zh/: the Chinese book's source, from book/ (configuration, table of contents,
    bibliography, vendored scripts), i18n/zh/book/ (its pages) and notebooks-zh/ (its notebooks,
    written now by tools/translate.py)."""
    sys.path.insert(0, str(REPO / "tools"))
    import translate

    translate.build()
    shutil.rmtree(ZH_SOURCE, ignore_errors=True)
    ZH_SOURCE.mkdir()
    for name in ("_toc.yml", "references.bib"):
        shutil.copy2(BOOK / name, ZH_SOURCE / name)
    for page in ("intro.md", "draw.md", "references.md"):
        chinese = ZH_PAGES / page
        text = chinese.read_text(encoding="utf-8") if chinese.exists() else None
        if text is None:  # not translated yet: the English page under a note
            english = (BOOK / page).read_text(encoding="utf-8")
            title, _, rest = english.partition("\n")
            text = f"{title}\n\n{translate.PENDING_NOTE}{rest}"
        (ZH_SOURCE / page).write_text(text, encoding="utf-8")
    for folder in ("_vendor", "_extra"):
        if (BOOK / folder).exists():
            (ZH_SOURCE / folder).symlink_to(BOOK / folder, target_is_directory=True)
    copy_notebooks(ZH_NOTEBOOKS, ZH_SOURCE)
    config = yaml.safe_load((BOOK / "_config.yml").read_text(encoding="utf-8"))
    config["title"], config["author"] = ZH_CONFIG["title"], ZH_CONFIG["author"]
    config["sphinx"]["config"].update(ZH_CONFIG["sphinx"])
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    (ZH_SOURCE / "_config.yml").write_text(text, encoding="utf-8")
    return ZH_SOURCE


def link_twins(html: Path) -> int:
    """Put a link to its twin on every page of the English site (``html``) and of the Chinese
    one (``html/zh``) that has one; return how many pages got one."""
    linked = 0
    for page in sorted(html.rglob("*.html")):
        relative = page.relative_to(html)
        chinese = relative.parts[0] == "zh"
        twin = html / relative.relative_to("zh") if chinese else html / "zh" / relative
        if not twin.exists() or relative.parts[-2:-1] == ("_static",):
            continue
        href = os.path.relpath(twin, page.parent)
        label, lang = ("English", "en") if chinese else ("中文版", "zh-CN")
        text = page.read_text(encoding="utf-8")
        marker = '<article class="bd-article">'
        if marker in text and 'class="lenet-twin"' not in text:
            link = TWIN.format(href=href, lang=lang, label=label)
            page.write_text(text.replace(marker, marker + link, 1), encoding="utf-8")
            linked += 1
    return linked


def build_chinese(output: Path, fresh: bool, config: Path | None) -> int:
    """Build the Chinese site into ``output``/_build/html/zh; return jupyter-book's status."""
    source = assemble_chinese()
    build = output / "_build" / "zh"
    command = build_command(build, fresh=fresh, config=config, source=source)
    print("$ " + " ".join(command), flush=True)
    status = subprocess.call(command, cwd=REPO)
    if status == 0:
        target = output / "_build" / "html" / "zh"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(build / "_build" / "html", target)
    return status


def main(argv: list[str] | None = None) -> int:
    """Copy the notebooks into the book and build it; return jupyter-book's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="rebuild every page (fresh build)")
    parser.add_argument(
        "--output",
        type=Path,
        default=BOOK,
        help="folder that receives _build/html (default: book/, i.e. book/_build/html)",
    )
    parser.add_argument(
        "--notebooks", type=Path, default=NOTEBOOKS, help="where the notebooks are copied from"
    )
    parser.add_argument(
        "--edition", choices=("both", "en"), default="both", help="default: both (zh/ too)"
    )
    args = parser.parse_args(argv)

    copy_notebooks(args.notebooks.resolve())
    output = args.output.resolve()
    overrides = execute_settings(os.environ)
    launch = launch_settings(os.environ)
    written = vendor_static()
    copy_web()
    if written:
        print(f"{written} widget and MathJax files fetched into book/", flush=True)
    fallback = CDN_FALLBACK if written is None else {}  # no local copies
    config = None
    if overrides or fallback or launch:
        config = write_config(
            output / "_build", overrides or {}, sphinx_overrides=fallback, sections=launch
        )
    fresh = args.all or overrides is not None or bool(written) or written is None
    command = build_command(output, fresh=fresh, config=config)
    print("$ " + " ".join(command), flush=True)
    status = subprocess.call(command, cwd=REPO)
    if status == 0 and args.edition in ("both", "zh"):
        zh_config = None
        if overrides or fallback:
            zh_config = write_config(output / "_build" / "zh", overrides or {}, ZH_SOURCE, fallback)
        status = build_chinese(output, fresh, zh_config)
    if status == 0:
        html = output / "_build" / "html"
        linked = link_twins(html)
        print(f"The book is in {html} (open index.html); {linked} pages link to their twin.")
        if launch:
            hub = launch["launch_buttons"]["jupyterhub_url"]
            print(f"Launch buttons: Binder ({launch['launch_buttons']['binderhub_url']})"
                  + (f" and JupyterHub ({hub})" if hub else "")
                  + f" for {launch['repository']['url']}")  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main())
