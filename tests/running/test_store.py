import json
import os

import pandas as pd
import pytest

from hashbench.errors import InvalidInputError
from hashbench.running import store
from hashbench.running.cell import Cell


def record(label="itq", params=None, status="done", map_value=0.5):
    spec = {
        "experiment": "table3",
        "label": label,
        "method": "itq",
        "params": params or {},
        "dataset": "toy",
        "n_bits": 16,
        "seed": 0,
        "method_seed": 7,
        "protocol": "official",
        "topk": 1000,
        "device": "cpu",
    }
    metrics = {
        "map": map_value,
        "maps": {"official": map_value, "deephash": 0.4, "tie_aware": 0.3},
        "precision_radius2": 0.6,
    }
    return {
        "schema": 1,
        "id": label,
        "spec": spec,
        "status": status,
        "error": None if status == "done" else "ValueError: x",
        "metrics": metrics if status == "done" else None,
        "epochs": [],
        "timings": {"fit": 1.5, "encode_query": 0.1, "encode_database": 0.2, "evaluate": 0.3}
        if status == "done"
        else {},
        "memory": {"peak_rss_mb": 100.0, "cuda_max_allocated_mb": None},
        "environment": {"device_name": "cpu x", "git_commit": "abc"},
        "started": "t0",
        "finished": "t1",
    }


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "a" / "b" / "r.json"
    store.write_json_atomic(path, record())
    store.write_json_atomic(path, record(map_value=0.7))
    assert json.loads(path.read_text())["metrics"]["map"] == 0.7
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_load_records_reads_only_records(tmp_path):
    store.write_json_atomic(tmp_path / "toy" / "itq" / "a.json", record("a"))
    store.write_json_atomic(tmp_path / "report" / "summary.json", {"not": "a record"})
    (tmp_path / "toy" / "itq" / ".b.json.123.tmp").write_text('{"schema": 1, "sp')  # a write cut short
    records = store.load_records(tmp_path)
    assert [r["id"] for r in records] == ["a"] and records[0]["path"] == str(tmp_path / "toy" / "itq" / "a.json")
    with pytest.raises(InvalidInputError, match="does not exist"):
        store.load_records(tmp_path / "none")
    (tmp_path / "toy" / "itq" / "broken.json").write_text("{")
    with pytest.raises(InvalidInputError, match=r"broken.json is not valid JSON"):
        store.load_records(tmp_path)


def test_load_results_columns(tmp_path):
    store.write_json_atomic(tmp_path / "1.json", record("a", {"lambda1": 0.1, "attention": False}))
    store.write_json_atomic(tmp_path / "2.json", record("b", {"lambda2": 10}))
    store.write_json_atomic(tmp_path / "3.json", record("c", status="failed"))
    table = store.load_results(tmp_path)
    assert list(table.columns) == [*store.RESULT_COLUMNS, "param_attention", "param_lambda1", "param_lambda2"]
    assert len(table) == 3
    row = table.set_index("label").loc["a"]
    assert row["params"] == '{"attention":false,"lambda1":0.1}'
    assert (row["map"], row["map_official"], row["map_deephash"], row["map_tie_aware"]) == (0.5, 0.5, 0.4, 0.3)
    assert (row["fit_s"], row["encode_query_s"], row["encode_database_s"], row["evaluate_s"]) == (1.5, 0.1, 0.2, 0.3)
    assert (row["precision_radius2"], row["peak_rss_mb"], row["device_name"], row["git_commit"]) == (
        0.6,
        100.0,
        "cpu x",
        "abc",
    )
    assert row["record"] == str(tmp_path / "1.json") and row["param_lambda1"] == 0.1
    assert row["role"] == "main" and pd.isna(row["constant_bits"])  # written before roles and code_stats
    failed = table.set_index("label").loc["c"]
    assert failed["status"] == "failed" and failed["error"] == "ValueError: x" and pd.isna(failed["map"])


def test_empty_results_have_the_columns(tmp_path):
    assert list(store.load_results(tmp_path).columns) == store.RESULT_COLUMNS


def test_paths():
    cell = Cell("e", "l", "uh-bdnn", {}, "toy/x", 8, 0)
    path = store.record_path("out", cell)
    assert path.parts[-3:] == ("toy_x", "uh-bdnn", f"{cell.id}.json")
    assert store.codes_path(path, "query").name == f"{cell.id}.query.codes.npz"


def test_link_atomic(tmp_path):
    source = tmp_path / "a.npz"
    source.write_bytes(b"codes")
    store.link_atomic(source, tmp_path / "b.npz")
    store.link_atomic(source, tmp_path / "b.npz")  # again over an existing file
    assert (tmp_path / "b.npz").read_bytes() == b"codes"


def test_per_query_ap_beside_a_record_and_stale_when_the_codes_are_newer(tmp_path):
    path = tmp_path / "toy" / "itq" / "a.json"
    path.parent.mkdir(parents=True)
    assert store.load_query_ap(path, "official", 1000) is None
    saved = store.save_query_ap(path, [0.5, float("nan")], "official", 1000)
    assert (
        saved.name == "a.ap.official.top1000.npy"
        and store.query_ap_path(path, "deephash", None).name == "a.ap.deephash.topall.npy"
    )
    assert store.load_query_ap(path, "official", 1000).tolist()[0] == 0.5
    assert store.load_query_ap(path, "official", 10) is None  # another top-k is another file
    codes = store.codes_path(path, "database")
    codes.write_bytes(b"recomputed codes")
    os.utime(codes, ns=(saved.stat().st_mtime_ns + 10**9,) * 2)
    assert store.load_query_ap(path, "official", 1000) is None


def test_mixed_builds_warns_once_per_dataset_with_more_than_one_fingerprint():
    def built(fingerprint, dataset="toy", status="done"):
        r = record(status=status)
        r["spec"]["dataset"] = dataset
        return {**r, "dataset_fingerprint": fingerprint}

    same = [built("aaaa"), built("aaaa"), built(None), record()]  # records made before fingerprints hold none
    assert store.mixed_builds(same) == []
    assert store.mixed_builds([built("aaaa"), built("bbbb", status="failed")]) == []  # a failed cell scored nothing
    (warning,) = store.mixed_builds([built("aaaa"), built("bbbb"), built("aaaa"), built("cccc", dataset="other")])
    assert "dataset 'toy'" in warning and "2 different builds" in warning
    assert "2 on aaaa, 1 on bbbb" in warning
