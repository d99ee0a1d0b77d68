"""Golden files for every component's StatefulSet.  After an intended change, regenerate them with
``UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and review the diff."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import yaml

from doris_operator import cli

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"
CASES = [(case, comp) for case in ("full", "minimal") for comp in ("fe", "be", "cn", "broker")]


def _render(case: str) -> list[dict[str, object]]:
    out, err = io.StringIO(), io.StringIO()
    assert cli.render(str(DATA / f"{case}.yaml"), "yaml", False, out, err) == 0, err.getvalue()
    return list(yaml.safe_load_all(out.getvalue()))


@pytest.mark.parametrize(("case", "comp"), CASES, ids=[f"{c}-{p}" for c, p in CASES])
def test_statefulset_matches_golden(case: str, comp: str) -> None:
    (sts,) = [
        o
        for o in _render(case)
        if o["kind"] == "StatefulSet" and o["metadata"]["name"] == f"{case}-{comp}"  # type: ignore[index]
    ]
    text = yaml.safe_dump(sts, sort_keys=False, width=110)
    golden = GOLDEN / f"{case}-{comp}-statefulset.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"{golden} is missing: run with UPDATE_GOLDEN=1"
    assert text == golden.read_text()
