"""The claims table (tests/claims.py) and the committed notebooks agree: every claim names a value
its notebook records, states why its range is what it is, and holds for the committed outputs
(`make reproduce` checks the same claims on a fresh full-size run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from claims import CLAIMS, Claim, broken_claims, lookup

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_claim_is_about_a_notebook_and_says_why() -> None:
    numbers = {path.name[:2] for path in NOTEBOOKS}
    for claim in CLAIMS:
        assert claim.notebook in numbers, claim
        assert claim.low <= claim.high, claim
        assert len(claim.why) >= 20, f"{claim.name}: say where the range comes from"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name[:2] for p in NOTEBOOKS])
def test_the_committed_notebook_keeps_its_claims(path: Path) -> None:
    assert broken_claims(path) == []


def test_a_value_outside_its_range_or_missing_is_reported(tmp_path: Path, monkeypatch) -> None:
    values = {"accuracy": 0.8, "errors": {"a": 1.5}}
    record = {"output_type": "display_data", "metadata": {},
              "data": {"application/vnd.lenet-course.record+json": values}}  # fmt: skip
    notebook = {"cells": [{"cell_type": "code", "outputs": [record]}]}
    path = tmp_path / "42_example.ipynb"
    path.write_text(json.dumps(notebook))
    claims = [Claim("42", "accuracy", 0.85, 0.95, "three seeds spread 0.86-0.94"),
              Claim("42", "errors[a]", 1.0, 2.0, "the one item inside its range"),
              Claim("42", "missing", 0, 1, "a value the notebook never recorded")]  # fmt: skip
    monkeypatch.setattr("claims.CLAIMS", claims)
    broken = broken_claims(path)
    assert len(broken) == 2
    assert broken[0].startswith("accuracy = 0.8, outside [0.85, 0.95]")
    assert broken[1] == "missing: not recorded"
    assert lookup({"x": [3, 4]}, "x[1]") == 4
