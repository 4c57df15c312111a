"""Self-checking exercises: ``exercise("02-3", answer)`` says whether an answer is right, with a
hint when it is not, and never shows the solution: ``answers.json`` holds only digests.  The hidden
solutions call ``solution(key, value)``, which fails when the stored digest disagrees."""

import hashlib
import json
import numbers
import os
from functools import cache
from importlib import resources
from typing import Any

ANSWERS = resources.files("lenet_course") / "answers.json"
#: The Chinese edition's verdicts and hints, used when LENET_COURSE_LANG=zh (make lab EDITION=zh).
CHINESE = resources.files("lenet_course") / "zh.json"
RESTORE = "restore it: git checkout lenet_course/answers.json, or reinstall the course"


def canonical(answer: Any) -> str:
    """One text per answer: whole numbers exact, other numbers (one-element tensors too) to 4
    significant digits, text lower-case with single spaces, lists and tuples item by item."""
    if hasattr(answer, "tolist"):
        # a tensor or an array, as nested lists; one element stands for its number
        answer = answer.tolist()
        while isinstance(answer, list) and len(answer) == 1:
            answer = answer[0]
    if isinstance(answer, bool):
        return str(answer)
    if isinstance(answer, numbers.Integral):
        return str(int(answer))  # more than 4,300 digits: a ValueError
    if isinstance(answer, numbers.Real):
        value = float(answer)  # a Fraction too large for a float raises OverflowError
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    if isinstance(answer, str):
        return " ".join(answer.lower().split())
    if isinstance(answer, (list, tuple)):
        return "[" + ",".join(canonical(item) for item in answer) + "]"
    raise TypeError(f"answer {answer!r}: give a number, a text, or a list or tuple of them")


def digest(answer: Any) -> str:
    """What ``answers.json`` stores for a right answer."""
    return hashlib.sha256(canonical(answer).encode()).hexdigest()[:20]


@cache
def answers() -> dict[str, dict[str, str]]:
    """Every exercise's digest and hint, by key ("NN-k": notebook NN, exercise k)."""
    try:
        table = json.loads(ANSWERS.read_text())
    except (OSError, ValueError) as error:  # missing, unreadable, empty or cut short
        reason = f"{type(error).__name__}: {' '.join(str(error).split())}"
        raise RuntimeError(f"{ANSWERS} is damaged ({reason}); {RESTORE}") from None
    entries = table.values() if isinstance(table, dict) else [table]
    if not all(isinstance(e, dict) and {"digest", "hint"} <= e.keys() for e in entries):
        reason = "each exercise needs a digest and a hint"
        raise RuntimeError(f"{ANSWERS} is damaged ({reason}); {RESTORE}")
    return table


@cache
def words() -> dict[str, str] | None:
    """The reader's language: None for English, else {English text: its translation}."""
    language = os.environ.get("LENET_COURSE_LANG", "en")
    if language not in ("en", "zh"):
        raise ValueError(f"LENET_COURSE_LANG={language!r}; use en or zh")
    return json.loads(CHINESE.read_text(encoding="utf-8")) if language == "zh" else None


def exercise(key: str, answer: Any) -> None:
    """Print whether ``answer`` is right, with the hint when it is not."""
    _verdict(key, answer)


def solution(key: str, answer: Any) -> None:
    """For a hidden solution: print the verdict, and fail when ``answers.json`` disagrees."""
    if not _verdict(key, answer):
        raise AssertionError(f"the solution of exercise {key} is not what answers.json holds")


def _verdict(key: str, answer: Any) -> bool:
    if not isinstance(key, str) or key not in answers():
        raise KeyError(f"no exercise {key!r}; keys look like '02-3' (notebook 02, exercise 3)")
    right, verdict = False, "no answer yet"
    if answer is not None:
        try:
            right = digest(answer) == answers()[key]["digest"]
            verdict = "right!" if right else "not yet"
        except TypeError as error:
            # a dict, a complex number, an object: a verdict for the learner, not a traceback
            verdict = f"not an answer I can check ({error})"
        except (ValueError, OverflowError, RecursionError):
            # a number too large for a float, a list that holds itself: none is a right answer
            verdict = "not yet"
    table = words()
    if table is None:
        hint = "" if right else f". Hint: {answers()[key]['hint']}"
        print(f"Exercise {key}: {verdict}{hint}")
        return right
    # the verdict's first words (a TypeError's reason stays in English), then the hint
    verdict = next((table[v] + verdict[len(v) :] for v in table if verdict.startswith(v)), verdict)
    hint = "" if right else f"。{table['Hint']}：{table['hints'][key]}"
    print(f"{table['Exercise']} {key}：{verdict}{hint}")
    return right
