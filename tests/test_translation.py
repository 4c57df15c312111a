"""The Chinese edition (tools/translate.py, i18n/zh/): every English cell translated or pending,
translations that keep what must not change, Chinese notebooks that are the English code, the
quizzes' structure, the checker in Chinese, and one Chinese notebook executed."""

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

from lenet_course import check

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("translate", REPO / "tools" / "translate.py")
translate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(translate)
NOTEBOOKS = translate.notebooks()
NAMES = [path.name[:2] for path in NOTEBOOKS]
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def chinese(tmp_path_factory) -> Path:
    """notebooks-zh/ as tools/translate.py writes it, in a temporary folder."""
    out = tmp_path_factory.mktemp("zh") / "notebooks-zh"
    translate.build(out)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_every_cell_is_translated_or_pending(path):
    """Out of date or missing means listed in i18n/zh/pending.txt, and the list is exact: a cell
    translated since, or an English cell changed without its translation, fails here."""
    state = translate.status(path)
    number = path.name[:2]
    listed = {entry.split(":")[1] for entry in translate.pending() if entry[:2] == number}
    assert set(state["missing"] + state["out of date"]) == listed, (
        "run `python tools/translate.py pending` after translating, or translate the cells that"
        " changed"
    )
    assert not state["orphans"], "translations of cells that are gone: run translate.py extract"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_translations_keep_code_numbers_maths_and_links(path):
    assert translate.check(path) == {}


def test_the_checks_catch_what_a_translation_must_keep():
    english = "Take **28**, `k=5` and $s$: 24 ([notebook 02](02_x.ipynb))."
    assert (
        translate.problems(english, "取 **28**、`k=5` 和 $s$：24（[笔记本 02](02_x.ipynb)）。")
        == []
    )
    found = translate.problems(english, "取**“28”**、`k=6` 和 $t$：25（[笔记本 02](03.ipynb)）。")
    kinds = " ".join(found)
    for kind in ("maths", "inline code", "links", "numbers", "unparsed **"):
        assert kind in kinds, found
    assert translate.problems(english, english) == ["no Chinese in it"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_a_chinese_notebook_is_the_english_code(path, chinese):
    english = nbformat.read(path, as_version=4)
    translated = nbformat.read(chinese / path.name, as_version=4)
    assert translated.metadata == english.metadata
    pairs = list(zip(english.cells, translated.cells, strict=True))
    assert [(a.id, a.cell_type) for a, _ in pairs] == [(b.id, b.cell_type) for _, b in pairs]
    for a, b in pairs:
        if a.cell_type != "code":
            assert CJK.search(b.source), f"cell {a.id} has no Chinese"
            continue
        assert (a.source, a.metadata) == (b.source, b.metadata), f"code cell {a.id} changed"
        quiz = translate.QUIZ_CALL.search(a.source)
        if quiz and (translate.ZH / "quizzes" / f"{quiz.group(1)}.json").exists():
            shown = json.dumps([o.get("data", {}) for o in b.outputs], ensure_ascii=False)
            assert CJK.search(shown), f"quiz cell {a.id} still shows the English quiz"
        else:
            assert a.outputs == b.outputs, f"outputs of code cell {a.id} changed"


@pytest.mark.parametrize("quiz", sorted((translate.ZH / "quizzes").glob("*.json")), ids=str)
def test_a_chinese_quiz_is_the_english_quiz(quiz):
    english = json.loads((REPO / "notebooks" / "quizzes" / quiz.name).read_text())
    chinese = json.loads(quiz.read_text(encoding="utf-8"))

    def shape(questions):
        return [
            (q["type"], [(a.get("correct"), a.get("value"), a.get("type")) for a in q["answers"]])
            for q in questions
        ]

    assert shape(chinese) == shape(english)
    assert all(CJK.search(q["question"]) for q in chinese)


def test_pooling_is_chihua_and_huiju_is_named_once():
    """The glossary: 池化 everywhere; d2l-zh's 汇聚 named once, where notebook 01 meets pooling."""
    cells = {
        (path.name[:2], m.context): m.string
        for path in NOTEBOOKS
        for m in translate.read_catalogue(path)
        if m.id and m.string
    }
    huiju = [key for key, text in cells.items() for _ in range(text.count("汇聚"))]
    assert len(huiju) <= 1 and all(key[0] == "01" and "池化" in cells[key] for key in huiju)
    if any(key[0] == "01" for key in cells):
        assert len(huiju) == 1, "notebook 01 should name d2l-zh's 汇聚 once"
    assert any("池化" in text for text in cells.values()) or not cells


def test_the_checker_speaks_chinese(monkeypatch, capsys):
    table = json.loads(check.CHINESE.read_text(encoding="utf-8"))
    assert set(table["hints"]) == set(check.answers())
    assert all(CJK.search(hint) for hint in table["hints"].values())
    monkeypatch.setenv("LENET_COURSE_LANG", "zh")
    check.words.cache_clear()
    try:
        check.exercise("01-1", None)
        check.exercise("01-1", "surely wrong")
        check.exercise("01-1", {"a": 1})
    finally:
        check.words.cache_clear()
    lines = capsys.readouterr().out.splitlines()
    hint = table["hints"]["01-1"]
    assert (
        lines[0] == f"{table['Exercise']} 01-1：{table['no answer yet']}。{table['Hint']}：{hint}"
    )
    assert lines[1].startswith(f"{table['Exercise']} 01-1：{table['not yet']}。")
    assert lines[2].startswith(f"{table['Exercise']} 01-1：{table['not an answer I can check']}")
    monkeypatch.setenv("LENET_COURSE_LANG", "fr")
    with pytest.raises(ValueError, match="LENET_COURSE_LANG='fr'; use en or zh"):
        check.exercise("01-1", None)
    check.words.cache_clear()


@pytest.mark.slow
def test_the_first_chinese_notebook_runs(chinese, real_data_root):
    """notebooks-zh/01 executed with notebook 01's short test parameters."""
    import papermill

    from lenet_course.notebook import recorded_values

    output = chinese / "01-executed.ipynb"
    papermill.execute_notebook(
        str(chinese / NOTEBOOKS[0].name),
        str(output),
        parameters={"seed": 1, "image_index": 3, "digit_index": 5, "random_checks": 40,
                    "learning_steps": 100},
        kernel_name="python3",
        cwd=str(chinese),
        progress_bar=False,
        execution_timeout=900,
    )  # fmt: skip
    values = recorded_values(nbformat.read(output, as_version=4))
    assert values["random_checks"] == 40 and values["learning_steps"] == 100
    assert values["first_output"] == 0 * 0 + 1 * 1 + 3 * 2 + 4 * 3


def test_extract_follows_a_new_id_and_marks_changed_english(tmp_path, monkeypatch):
    """A re-created cell id keeps its translation (found by its English); a changed English
    keeps the old translation, marked out of date, with the old English beside it."""
    path = NOTEBOOKS[2]
    copy = tmp_path / path.name
    notebook = nbformat.read(path, as_version=4)
    cells = [cell for cell in notebook.cells if cell.cell_type == "markdown"]
    renamed, edited = cells[1], cells[2]
    old_id, edited_english = renamed.id, edited.source
    renamed.id = "0123abcd"
    edited.source += "\n\nOne more sentence."
    nbformat.write(notebook, copy)
    catalogues = tmp_path / "po"
    catalogues.mkdir()
    (catalogues / f"{path.stem}.po").write_bytes(translate.catalogue_path(path).read_bytes())
    monkeypatch.setattr(translate, "CATALOGUES", catalogues)
    translate.write_catalogue(copy, translate.extract(copy))
    entries = {m.context: m for m in translate.read_catalogue(copy) if m.id}
    assert old_id not in entries and entries["0123abcd"].string and not entries["0123abcd"].fuzzy
    assert entries[edited.id].fuzzy and entries[edited.id].string
    first_line = edited_english.splitlines()[0]
    # the old English stays beside it, for the translator
    assert f'#| msgid "" "{first_line}' in (catalogues / f"{path.stem}.po").read_text()
    state = translate.status(copy)
    assert state["out of date"] == [edited.id] and not state["missing"] and not state["orphans"]


@pytest.mark.parametrize("page", ["intro.md", "draw.md", "references.md"])
def test_the_chinese_book_pages_keep_what_they_must(page):
    english = (REPO / "book" / page).read_text(encoding="utf-8")
    chinese = (translate.ZH / "book" / page).read_text(encoding="utf-8")
    found = translate.problems(english, chinese)
    # the intro says once that this is the Chinese edition, and how to open it
    if page == "intro.md":
        found = [p for p in found if not p.startswith("inline code")]
        assert "make lab EDITION=zh" in chinese
    assert found == []
    if page == "draw.md":  # the pad and its scripts, byte for byte but for the pad's language

        def pad(text):
            return text[text.index('<div id="lenet-draw">') : text.rindex("</script>")]

        zh = ', language: "zh" }'
        assert zh in pad(chinese) and pad(chinese).replace(zh, " }") == pad(english)
