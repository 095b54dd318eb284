"""Run records written by an earlier release still load, report and rescore.

``tests/data/records-schema1`` holds the records and codes of a small matrix (LSH and ITQ on
``fc7-like`` at 16 bits, ``matrix.toml`` beside them) as ``hashbench run`` wrote them at schema 1;
they are never regenerated, so a change to the store's layout or the record's fields that would
strand existing results fails here.
"""

import json
import shutil
from pathlib import Path

import pytest

from hashbench.cli import main

OLD_RESULTS = Path(__file__).parent / "data" / "records-schema1"


@pytest.fixture
def old_results(tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(OLD_RESULTS, copy, ignore=shutil.ignore_patterns("matrix.toml"))
    return copy


def recorded_maps(results) -> dict[str, float]:
    return {p.parent.name: json.loads(p.read_text())["metrics"]["map"] for p in results.glob("*/*/*.json")}


def test_old_records_report(old_results, capsys):
    assert main(["report", str(old_results), "--no-references"]) == 0
    written = capsys.readouterr().out
    assert "results.csv" in written
    table = (old_results / "report" / "results.csv").read_text()
    assert "lsh" in table and "itq" in table and "fc7-like" in table


def test_old_records_rescore_to_the_same_map(old_results):
    before = recorded_maps(old_results)
    assert sorted(before) == ["itq", "lsh"] and before["itq"] > before["lsh"]
    assert main(["rescore", str(old_results), "--quiet"]) == 0
    assert recorded_maps(old_results) == pytest.approx(before, abs=1e-12)


def test_old_records_are_resumed_not_rerun(old_results):
    records = sorted(old_results.glob("*/*/*.json"))
    before = [path.read_bytes() for path in records]
    assert main(["run", str(OLD_RESULTS / "matrix.toml"), "--out", str(old_results), "--quiet"]) == 0
    assert sorted(old_results.glob("*/*/*.json")) == records
    assert [path.read_bytes() for path in records] == before  # finished cells are kept as written
