"""The Chinese edition: English code and outputs, Chinese prose, kept in step cell by cell.

    python tools/translate.py extract   # bring i18n/zh/notebooks/*.po up to date with the notebooks
    python tools/translate.py build     # write notebooks-zh/ (git-ignored) from the two
    python tools/translate.py status    # per notebook: translated, out of date, missing
    python tools/translate.py fill NAME FILE.json  # set translations {cell id: Chinese} of NAME
    python tools/translate.py check [NAME]         # each translation against its English cell
    python tools/translate.py pending              # list every cell without a current translation

The English notebooks are the only source of code and outputs. Each markdown cell's Chinese text
lives in a gettext catalogue per notebook (``i18n/zh/notebooks/NAME.po``): the cell's id is the
entry's context, its English text the msgid, the Chinese the msgstr. When the English text of a
cell changes, ``extract`` keeps the old translation but marks it fuzzy (out of date), with the old
English as its previous msgid; when a cell's id changes (a notebook re-created by a tool), the
translation follows its English text to the new id. The quizzes are translated as whole files
(``i18n/zh/quizzes/NN.json``) and the exercise hints in ``i18n/zh/hints.json``.

``build`` writes each Chinese notebook as a copy of the English one in which every markdown cell
reads its translation (a cell with none, or an out-of-date one listed in ``i18n/zh/pending.txt``,
keeps its English under a note in Chinese), and the quiz cell's output is rendered again from the
Chinese quiz. Nothing else changes: code, outputs, ids and metadata are the English notebook's.
"""

import argparse
import copy
import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
ZH = REPO / "i18n" / "zh"
CATALOGUES = ZH / "notebooks"
PENDING = ZH / "pending.txt"
OUT = REPO / "notebooks-zh"
QUIZ_CALL = re.compile(r'display_quiz\("quizzes/(\d\d)\.json"\)')
PENDING_NOTE = "> （本段尚待翻译，以下暂为英文原文。）\n\n"


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def markdown_cells(path: Path) -> dict[str, str]:
    """Cell id -> English source of each markdown cell, in order."""
    notebook = nbformat.read(path, as_version=4)
    return {cell.id: cell.source for cell in notebook.cells if cell.cell_type == "markdown"}


def catalogue_path(path: Path) -> Path:
    return CATALOGUES / f"{path.stem}.po"


def read_catalogue(path: Path) -> Catalog:
    po = catalogue_path(path)
    if not po.exists():
        return Catalog(locale="zh_CN", project="LeNet, hands on", fuzzy=False)
    with po.open("rb") as handle:
        return read_po(handle, locale="zh_CN")


def write_catalogue(path: Path, catalog: Catalog) -> None:
    CATALOGUES.mkdir(parents=True, exist_ok=True)
    with catalogue_path(path).open("wb") as handle:
        # width=0: no re-wrapping, so that a diff shows the lines a translator changed
        write_po(handle, catalog, width=0, omit_header=True, include_previous=True)


def extract(path: Path) -> Catalog:
    """The catalogue of ``path`` brought up to date with its markdown cells."""
    old = read_catalogue(path)
    by_id = {message.context: message for message in old if message.id}
    by_text = {message.id: message for message in old if message.id and message.string}
    new = Catalog(locale="zh_CN", project="LeNet, hands on", fuzzy=False)
    for cell_id, english in markdown_cells(path).items():
        before = by_id.get(cell_id) or by_text.get(english)
        string, flags, previous = "", set(), ()
        if before is not None and before.string:
            string, flags = before.string, set(before.flags)
            previous = tuple(before.previous_id or ())
            if before.id != english:
                # the English changed: keep the translation, mark it out of date
                flags.add("fuzzy")
                previous = (before.id,)
        new.add(english, string, context=cell_id, flags=flags, previous_id=previous)
    return new


def pending() -> set[str]:
    """``NN:cellid`` entries allowed to be untranslated or out of date for now."""
    if not PENDING.exists():
        return set()
    lines = PENDING.read_text(encoding="utf-8").splitlines()
    return {line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()}


def status(path: Path) -> dict[str, list[str]]:
    """The cell ids of ``path`` that are translated, out of date or missing a translation."""
    catalog = read_catalogue(path)
    entries = {message.context: message for message in catalog if message.id}
    result: dict[str, list[str]] = {"translated": [], "out of date": [], "missing": []}
    for cell_id, english in markdown_cells(path).items():
        message = entries.get(cell_id)
        if message is None or not message.string:
            result["missing"].append(cell_id)
        elif message.fuzzy or message.id != english:
            result["out of date"].append(cell_id)
        else:
            result["translated"].append(cell_id)
    result["orphans"] = sorted(set(entries) - set(markdown_cells(path)))
    return result


# What a translation keeps exactly as the English cell has it, each as a multiset.
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
KEPT = {
    "code blocks": FENCE,
    # a span may run across one line break (not a blank line), as Markdown allows
    "maths": re.compile(r"\$\$.+?\$\$|\$(?:[^$\n]|\n(?!\n))+?\$", re.S),
    "inline code and citations": re.compile(r"`(?:[^`\n]|\n(?!\n))+`"),
    "links": re.compile(r"\]\(([^)\s]+)\)"),
    "numbers": re.compile(r"\d+(?:[.,]\d+)*"),
    "answer blocks": re.compile(r"<details>|</details>|<summary>|</summary>"),
    "headings": re.compile(r"^#+ ", re.M),
}
CJK = re.compile(r"[\u4e00-\u9fff]")
WORDS = re.compile(r"[A-Za-z]{3,}")


def _kept(text: str, kind: str) -> list[str]:
    if kind != "code blocks":
        text = FENCE.sub("", text)  # numbers and spans inside code blocks are checked as blocks
    if kind in ("numbers", "links"):
        text = KEPT["maths"].sub("", KEPT["inline code and citations"].sub("", text))
    return sorted(KEPT[kind].findall(text))


def problems(english: str, chinese: str) -> list[str]:
    """What a translation changed that it must keep, or left unparsed; [] when it is fine."""
    from markdown_it import MarkdownIt

    found = []
    for kind in KEPT:
        want, got = _kept(english, kind), _kept(chinese, kind)
        if want != got:
            missing = sorted(set(want) - set(got))[:3]
            extra = sorted(set(got) - set(want))[:3]
            found.append(f"{kind} differ: missing {missing}, extra {extra}")
    prose = KEPT["maths"].sub("", KEPT["inline code and citations"].sub("", FENCE.sub("", english)))
    if len(WORDS.findall(prose)) >= 3 and not CJK.search(chinese):
        found.append("no Chinese in it")
    # CommonMark leaves **bold** as text next to Chinese punctuation unless a space separates it
    rendered = MarkdownIt("commonmark").render(FENCE.sub("", chinese))
    rendered = re.sub(r"<code>.*?</code>", "", rendered, flags=re.S)
    if "**" in rendered or re.search(r"(?<![\w*])\*[^*\s]", rendered):
        found.append("unparsed ** or * emphasis (put a space or a zero-width joiner around it)")
    return found


def check(path: Path) -> dict[str, list[str]]:
    """Cell id -> problems, for every translated cell of ``path``."""
    result = {}
    for message in read_catalogue(path):
        if message.id and message.string:
            found = problems(message.id, message.string)
            if found:
                result[message.context] = found
    return result


def fill(name: str, translations: Path) -> int:
    """Set the Chinese text of the cells ``translations`` (JSON: {cell id: text}) names."""
    (path,) = [p for p in notebooks() if p.stem == name or p.name[:2] == name]
    table = json.loads(translations.read_text(encoding="utf-8"))
    catalog = extract(path)
    entries = {message.context: message for message in catalog if message.id}
    unknown = sorted(set(table) - set(entries))
    if unknown:
        raise SystemExit(f"{path.name} has no markdown cell {unknown}")
    for cell_id, text in table.items():
        entries[cell_id].string = text
        entries[cell_id].flags.discard("fuzzy")
        entries[cell_id].previous_id = ()
    write_catalogue(path, catalog)
    return len(table)


def write_pending() -> int:
    """Write i18n/zh/pending.txt: every cell whose translation is missing or out of date."""
    lines = [
        f"{path.name[:2]}:{cell_id}  # {kind}"
        for path in notebooks()
        for kind in ("missing", "out of date")
        for cell_id in status(path)[kind]
    ]
    header = "# Cells shown in English (under a note) in the Chinese edition until translated.\n"
    PENDING.write_text(header + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return len(lines)


def quiz_outputs(quiz: Path) -> list:
    """The outputs ``display_quiz(quiz)`` shows, rendered here (no kernel), as the notebook's."""
    from IPython.core.formatters import DisplayFormatter
    from jupyterquiz.dynamic import display as quiz_display

    shown: list = []
    original = quiz_display.display
    quiz_display.display = lambda *objects, **_: shown.extend(objects)
    try:
        quiz_display.display_quiz(str(quiz))
    finally:
        quiz_display.display = original
    formatter = DisplayFormatter()
    outputs = []
    for obj in shown:
        data, metadata = formatter.format(obj)
        outputs.append(nbformat.v4.new_output("display_data", data=data, metadata=metadata))
    return outputs


def build_notebook(path: Path, allowed: set[str]) -> nbformat.NotebookNode:
    """The Chinese notebook of the English notebook at ``path``."""
    notebook = nbformat.read(path, as_version=4)
    chinese = copy.deepcopy(notebook)
    entries = {m.context: m for m in read_catalogue(path) if m.id}
    number = path.name[:2]
    for cell in chinese.cells:
        if cell.cell_type == "markdown":
            message = entries.get(cell.id)
            current = message is not None and message.string and not message.fuzzy
            if current and message.id == cell.source:
                cell.source = message.string
            elif f"{number}:{cell.id}" in allowed:
                cell.source = PENDING_NOTE + cell.source
            else:
                where = PENDING.relative_to(REPO)
                why = f"has no current translation and is not in {where}"
                raise SystemExit(f"{path.name}: cell {cell.id} {why}: translate it")
        elif cell.cell_type == "code" and QUIZ_CALL.search(cell.source):
            quiz = ZH / "quizzes" / f"{QUIZ_CALL.search(cell.source).group(1)}.json"
            if quiz.exists():
                cell.outputs = quiz_outputs(quiz)
    return chinese


def build(out: Path = OUT) -> list[Path]:
    """Write ``out`` (notebooks-zh/): the Chinese notebooks and quizzes, the rest as in
    notebooks/ (which the notebooks read at the same relative paths: ../runs, quizzes/)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(NOTEBOOKS, out, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.ipynb"))
    for quiz in sorted((ZH / "quizzes").glob("*.json")):
        shutil.copy2(quiz, out / "quizzes" / quiz.name)
    allowed = pending()
    written = []
    for path in notebooks():
        nbformat.write(build_notebook(path, allowed), out / path.name)
        written.append(out / path.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = ("extract", "build", "status", "fill", "check", "pending")
    parser.add_argument("command", choices=commands)
    parser.add_argument("name", nargs="?", help="a notebook: its name or two-digit number")
    parser.add_argument("file", nargs="?", type=Path, help="fill: the JSON file of translations")
    args = parser.parse_args(argv)
    if args.command == "pending":
        print(f"{write_pending()} cells pending in {PENDING.relative_to(REPO)}")
        return 0
    if args.command == "fill":
        print(f"set {fill(args.name, args.file)} translations of {args.name}")
        return 0
    if args.command == "check":
        chosen = [p for p in notebooks() if args.name in (None, p.stem, p.name[:2])]
        bad = {path.name: check(path) for path in chosen}
        for name, cells in bad.items():
            for cell_id, found in cells.items():
                print(f"{name} {cell_id}: " + "; ".join(found))
        return 1 if any(bad.values()) else 0
    if args.command == "extract":
        for path in notebooks():
            write_catalogue(path, extract(path))
        print(f"updated {len(notebooks())} catalogues in {CATALOGUES.relative_to(REPO)}")
    elif args.command == "build":
        written = build()
        print(f"wrote {len(written)} Chinese notebooks into {OUT.relative_to(REPO)}/")
    else:
        for path in notebooks():
            counts = {name: len(ids) for name, ids in status(path).items()}
            print(f"{path.stem}: {json.dumps(counts, ensure_ascii=False)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
