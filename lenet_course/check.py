"""Self-checking exercises: ``exercise("02-3", answer)`` says whether an answer is right, with a
hint when it is not, and never shows the solution: ``answers.json`` holds only digests.  The hidden
solutions call ``solution(key, value)``, which fails when the stored digest disagrees."""

from __future__ import annotations

import hashlib
import json
import numbers
from functools import cache
from importlib import resources
from typing import Any


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
        return str(int(answer))
    if isinstance(answer, numbers.Real):
        value = float(answer)
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
    return json.loads(resources.files("lenet_course").joinpath("answers.json").read_text())


def exercise(key: str, answer: Any) -> None:
    """Print whether ``answer`` is right, with the hint when it is not."""
    _verdict(key, answer)


def solution(key: str, answer: Any) -> None:
    """For a hidden solution: print the verdict, and fail when ``answers.json`` disagrees."""
    if not _verdict(key, answer):
        raise AssertionError(f"the solution of exercise {key} is not what answers.json holds")


def _verdict(key: str, answer: Any) -> bool:
    if key not in answers():
        raise KeyError(f"no exercise {key!r}; keys look like '02-3' (notebook 02, exercise 3)")
    right, verdict = False, "no answer yet"
    if answer is not None:
        try:
            right = digest(answer) == answers()[key]["digest"]
            verdict = "right!" if right else "not yet"
        except TypeError as error:
            # a dict, a complex number, an object: a verdict for the learner, not a traceback
            verdict = f"not an answer I can check ({error})"
    hint = "" if right else f". Hint: {answers()[key]['hint']}"
    print(f"Exercise {key}: {verdict}{hint}")
    return right
