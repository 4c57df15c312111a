"""The exercise checker: right and wrong answers, hints without solutions, and every exercise of
every notebook known to it (the notebooks' hidden solutions pass their own answers to it, so nbval
and papermill check each stored digest against a computed solution)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from lenet_course import check

REPO = Path(__file__).resolve().parent.parent
KEY = re.compile(r"""(?:exercise|solution)\(\s*["'](\d\d-\d+)["']""")


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, str]]:
    table = {"00-1": {"digest": check.digest((112, 56)), "hint": "conv, then pool"},
             "00-2": {"digest": check.digest(0.9171), "hint": "four digits"},
             "00-3": {"digest": check.digest("Larger"), "hint": "a word"}}
    monkeypatch.setattr(check, "answers", lambda: table)
    return table


def test_right_answers_in_any_equal_form(answers, capsys) -> None:  # type: ignore[no-untyped-def]
    for key, answer in [("00-1", (112, 56)), ("00-1", [112.0, 56]), ("00-2", 0.91712),
                        ("00-1", torch.tensor([112, 56])), ("00-3", "  larger ")]:
        assert check.exercise(key, answer) is None  # nothing to display under the answer cell
        check.solution(key, answer)
    assert capsys.readouterr().out.count("right!") == 10


def test_wrong_answers_get_the_hint_not_the_solution(answers, capsys) -> None:  # type: ignore[no-untyped-def]
    for key, answer in [("00-1", (112, 57)), ("00-1", (56, 112)), ("00-2", 0.9181),
                        ("00-1", None)]:  # (56, 112): order matters
        check.exercise(key, answer)
        with pytest.raises(AssertionError, match=f"solution of exercise {key} is not"):
            check.solution(key, answer)
    out = capsys.readouterr().out
    assert out.count("not yet. Hint: conv, then pool") == 4 and "no answer yet" in out
    assert "112" not in out and "56" not in out  # the hint never shows the solution


def test_unknown_keys_and_unusable_answers_are_refused(answers, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KeyError, match="keys look like '02-3'"):
        check.exercise("2-3", 1)
    check.exercise("00-1", {"size": 112})  # a verdict for the learner, not a traceback
    assert "not an answer I can check" in capsys.readouterr().out
    with pytest.raises(TypeError, match="give a number, a text"):
        check.canonical({"size": 112})


def test_canonical_forms() -> None:
    assert check.canonical(3692640) == "3692640"  # whole numbers exactly, however large
    assert check.canonical(3692641.0) != check.canonical(3692640)
    assert check.canonical(1 / 3) == "0.3333" and check.canonical(True) == "True"
    assert check.canonical([[1, 0.5], ["A  b"]]) == "[[1,0.5],[a b]]"


def test_the_digests_do_not_reveal_the_answers() -> None:
    stored = (REPO / "lenet_course" / "answers.json").read_text()
    assert all(re.fullmatch(r"[0-9a-f]{20}", e["digest"]) for e in json.loads(stored).values())


def test_every_notebook_exercise_is_known_and_every_answer_is_used() -> None:
    used: dict[str, int] = {}
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            for key in KEY.findall("".join(cell["source"])):
                assert key[:2] == path.name[:2], f"{path.name} checks another notebook's {key}"
                used[key] = used.get(key, 0) + 1
    known = set(check.answers())
    assert used and set(used) == known, (set(used) - known, known - set(used))
    # each key twice: the learner's answer cell and the hidden solution that proves the digest
    assert all(count >= 2 for count in used.values()), used


def test_any_real_number_is_checked_as_its_value(capsys) -> None:
    from fractions import Fraction

    import numpy as np
    import torch

    for answer in (Fraction(3, 2), np.float32(1.5), np.float64(1.5), torch.tensor([1.5]),
                   torch.tensor(1.5), 1.5):  # fmt: skip
        assert check.canonical(answer) == "1.5", answer
    assert check.canonical(np.int64(469)) == check.canonical(torch.tensor([[469]])) == "469"
    assert check.canonical(10**400) == "1" + "0" * 400  # no float overflow


def test_anything_else_gets_a_verdict_not_an_exception(capsys) -> None:
    key = next(iter(check.answers()))
    for answer in ({"a": 1}, 1 + 2j, object()):
        check.exercise(key, answer)
        assert f"Exercise {key}: not an answer I can check" in capsys.readouterr().out
