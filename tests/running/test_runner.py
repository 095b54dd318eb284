import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hashbench import evaluate, load_dataset
from hashbench.codes import BinaryCodes
from hashbench.running import store
from hashbench.running.cell import Cell
from hashbench.running.rescore import rescore
from hashbench.running.runner import execution_order, run_cells, run_config
from hashbench.running.worker import CellTimeout, time_limit
from tests.running.toy_methods import write_config, write_toy_dataset

RECORD_KEYS = {
    "schema",
    "id",
    "spec",
    "status",
    "error",
    "metrics",
    "epochs",
    "timings",
    "memory",
    "environment",
    "started",
    "finished",
}
SPEC_KEYS = {
    "experiment",
    "label",
    "method",
    "params",
    "dataset",
    "n_bits",
    "seed",
    "method_seed",
    "protocol",
    "topk",
    "device",
}


@pytest.fixture
def toy_npz(tmp_path):
    return write_toy_dataset(tmp_path / "toy.npz")


def toy_cell(toy_npz, **changes) -> Cell:
    fields = dict(
        experiment="e",
        label="toy-projection",
        method="toy-projection",
        params={},
        dataset="toy",
        n_bits=8,
        seed=0,
        dataset_source=toy_npz,
    )
    return Cell(**{**fields, **changes})


def test_records_schema_codes_and_metrics(tmp_path, toy_npz):
    cells = [
        toy_cell(toy_npz, params={"n_epochs": 3}, record_epochs=(1, 3)),
        toy_cell(toy_npz, method="lsh", label="lsh", n_bits=16),
    ]
    records = run_cells(cells, tmp_path / "out", quiet=True)
    assert [r["status"] for r in records] == ["done", "done"]
    dataset = load_dataset(toy_npz)
    for cell, record in zip(cells, records):
        path = store.record_path(tmp_path / "out", cell)
        assert path == tmp_path / "out" / "toy" / cell.method / f"{cell.id}.json"
        assert json.loads(path.read_text()) == record
        assert set(record) >= RECORD_KEYS and set(record["spec"]) >= SPEC_KEYS
        assert record["schema"] == 1 and record["id"] == cell.id and record["error"] is None
        assert record["spec"]["method_seed"] == cell.method_seed
        assert record["dataset_fingerprint"] == dataset.fingerprint
        assert set(record["timings"]) == {"fit", "encode_query", "encode_database", "evaluate"}
        assert all(v >= 0 for v in record["timings"].values())
        assert record["memory"]["peak_rss_mb"] > 0 and record["memory"]["cuda_max_allocated_mb"] is None
        assert record["environment"]["versions"]["numpy"] == np.__version__
        assert record["started"] <= record["finished"]
        query = BinaryCodes.load(store.codes_path(path, "query"))
        database = BinaryCodes.load(store.codes_path(path, "database"))
        assert (len(query), len(database), query.n_bits) == (30, 200, cell.n_bits)
        expected = evaluate(query, database, dataset.query.labels, dataset.database.labels, topk=1000)
        assert record["metrics"]["map"] == pytest.approx(expected.map)
        np.testing.assert_allclose(store.load_query_ap(path, "official", 1000), expected.ap)
    epochs = records[0]["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 3]
    assert epochs[-1]["map"] == pytest.approx(records[0]["metrics"]["map"])
    assert 0 <= epochs[0]["seconds"] <= epochs[1]["seconds"] <= records[0]["timings"]["fit"]


def test_seed_flows_to_the_method_and_reruns_give_identical_codes(tmp_path, toy_npz):
    cell = toy_cell(toy_npz)
    first = run_cells([cell], tmp_path / "a", quiet=True)[0]
    again = run_cells([cell], tmp_path / "b", quiet=True)[0]
    other_seed = run_cells([toy_cell(toy_npz, seed=1)], tmp_path / "c", quiet=True)[0]
    codes = [
        BinaryCodes.load(store.codes_path(store.record_path(tmp_path / d, c), "database"))
        for d, c in (("a", cell), ("b", cell), ("c", toy_cell(toy_npz, seed=1)))
    ]
    assert codes[0] == codes[1] and codes[0] != codes[2]
    assert first["metrics"] == again["metrics"] and other_seed["spec"]["method_seed"] != first["spec"]["method_seed"]


def test_a_cell_runs_at_its_thread_count_and_the_caller_keeps_its_own(tmp_path, toy_npz, monkeypatch):
    import torch

    from hashbench.running import worker

    seen, measure = [], worker.measure_cell
    monkeypatch.setattr(worker, "measure_cell", lambda *args: (seen.append(torch.get_num_threads()), measure(*args))[1])
    before = torch.get_num_threads()
    pinned = run_cells([toy_cell(toy_npz)], tmp_path / "a", quiet=True, threads=1)[0]
    default = run_cells([toy_cell(toy_npz)], tmp_path / "b", quiet=True, threads=0)[0]
    assert seen == [1, before] and torch.get_num_threads() == before
    assert pinned["environment"]["threads"] == 1 and default["environment"]["threads"] == before


def test_the_objects_a_run_froze_are_collected_again_after_it(tmp_path, toy_npz):
    import gc

    from hashbench.running import worker

    frozen = []
    release = worker.release_freed_memory
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            worker, "release_freed_memory", lambda **kw: (release(**kw), frozen.append(gc.get_freeze_count()))
        )
        run_cells([toy_cell(toy_npz)], tmp_path, quiet=True)
    assert frozen and frozen[-1] > 0  # frozen between cells ...
    assert gc.get_freeze_count() == 0  # ... and thawed when the run ends


def test_a_failing_cell_is_recorded_and_the_matrix_goes_on_and_resume_skips_finished(tmp_path, toy_npz):
    cells = [toy_cell(toy_npz, params={"fail_at_bits": 8}, n_bits=n) for n in (8, 12, 16)]
    records = run_cells(cells, tmp_path, quiet=True)
    assert [r["status"] for r in records] == ["failed", "done", "done"]
    assert records[0]["error"] == "ValueError: toy-projection refuses 8 bits" and records[0]["metrics"] is None
    assert not records[0]["transient"]
    again = run_cells(cells, tmp_path, quiet=True)
    assert again == records  # nothing recomputed: a deterministic failure is finished too
    forced = run_cells(cells[1:2], tmp_path, quiet=True, force=True)
    assert forced[0]["started"] >= records[1]["started"] and forced[0]["metrics"] == records[1]["metrics"]


def test_transient_failures_and_raised_time_limits_are_retried(tmp_path, toy_npz):
    cell = toy_cell(toy_npz)
    path = store.record_path(tmp_path, cell)
    done = run_cells([cell], tmp_path, quiet=True)[0]
    store.write_json_atomic(path, {**done, "status": "failed", "error": "MemoryError: ", "transient": True})
    assert run_cells([cell], tmp_path, quiet=True)[0]["status"] == "done"
    store.write_json_atomic(path, {**done, "status": "timeout", "spec": {**done["spec"], "timeout_s": 5}})
    assert run_cells([cell], tmp_path, quiet=True)[0]["status"] == "done"  # no limit now


def test_timeout(tmp_path, toy_npz):
    cell = toy_cell(toy_npz, params={"sleep_s": 0.3, "n_epochs": 20}, timeout_s=0.5)
    started = time.perf_counter()
    record = run_cells([cell], tmp_path, quiet=True)[0]
    assert time.perf_counter() - started < 5
    assert record["status"] == "timeout" and "timeout_s=0.5" in record["error"]
    assert run_cells([cell], tmp_path, quiet=True)[0]["started"] == record["started"]  # same limit: not retried
    with pytest.raises(CellTimeout), time_limit(0.05):
        time.sleep(1)


def test_changed_topk_rescores_from_codes_without_retraining(tmp_path, toy_npz):
    cell = toy_cell(toy_npz)
    first = run_cells([cell], tmp_path, quiet=True)[0]
    top10 = run_cells([toy_cell(toy_npz, topk=10)], tmp_path, quiet=True)[0]
    assert top10["started"] == first["started"] and top10["spec"]["topk"] == 10
    assert top10["metrics"]["map"] != first["metrics"]["map"]
    path = store.record_path(tmp_path, cell)
    assert np.nanmean(store.load_query_ap(path, "official", 10)) == pytest.approx(top10["metrics"]["map"])
    rescored = rescore(tmp_path, topk=1000, quiet=True)
    assert [r["metrics"]["map"] for r in rescored] == pytest.approx([first["metrics"]["map"]])
    assert store.load_records(tmp_path)[0]["spec"]["topk"] == 1000


def test_a_changed_role_relabels_the_record_without_recomputing(tmp_path, toy_npz):
    first = run_cells([toy_cell(toy_npz)], tmp_path, quiet=True)[0]
    again = run_cells([toy_cell(toy_npz, role="ablation")], tmp_path, quiet=True)[0]
    assert (first["spec"]["role"], again["spec"]["role"]) == ("main", "ablation")
    assert again["started"] == first["started"] and store.load_records(tmp_path)[0]["spec"]["role"] == "ablation"


def test_cells_that_compute_the_same_thing_run_once(tmp_path, toy_npz):
    config = write_config(
        tmp_path / "m.toml",
        f"""
[defaults]
datasets = ["{toy_npz}"]
bits = [8]
[[experiment]]
name = "table"
methods = ["toy-projection"]
[[experiment]]
name = "figure"
role = "epochs"
methods = [{{ method = "toy-projection", label = "same" }}, {{ method = "toy-projection", params = {{ n_epochs = 2 }} }}]
""",
    )
    records = run_config(config, tmp_path / "out", quiet=True)
    assert [(r["spec"]["experiment"], r["spec"]["label"]) for r in records] == [
        ("table", "toy-projection"),
        ("figure", "same"),
        ("figure", "toy-projection"),
    ]
    assert "reused_from" not in records[0] and records[1]["reused_from"].endswith(f"{records[0]['id']}.json")
    assert [r["spec"]["role"] for r in records] == ["main", "epochs", "epochs"]  # a shared cell keeps its own role
    paths = {r["id"]: r["path"] for r in store.load_records(tmp_path / "out")}
    np.testing.assert_array_equal(*(store.load_query_ap(paths[r["id"]], "official", 1000) for r in records[:2]))
    assert records[1]["metrics"] == records[0]["metrics"] and records[1]["started"] == records[0]["started"]
    assert "reused_from" not in records[2]
    later = run_config(config, tmp_path / "later", quiet=True, experiments=["figure"])
    reused = run_config(config, tmp_path / "later", quiet=True, experiments=["table"])[0]
    assert reused["reused_from"].endswith(f"{later[0]['id']}.json")


def test_optional_dataset_that_cannot_be_loaded_is_skipped_with_a_note(tmp_path, toy_npz, capsys):
    cells = [
        toy_cell(toy_npz),
        toy_cell(toy_npz, dataset="gone", dataset_source="no-such-dataset", dataset_optional=True),
    ]
    records = run_cells(cells, tmp_path, quiet=False)
    assert [r["spec"]["dataset"] for r in records] == ["toy"]
    assert capsys.readouterr().err.count("note: skipping optional dataset 'gone'") == 1


def test_quiet_prints_nothing_but_errors(tmp_path, toy_npz, capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    run_cells([toy_cell(toy_npz), toy_cell(toy_npz, params={"fail_at_bits": 8})], tmp_path, quiet=True)
    out, err = capsys.readouterr()
    assert out == "" and err.strip().endswith("failed: ValueError: toy-projection refuses 8 bits")
    assert os.environ["TQDM_DISABLE"] == "1"


KILLED_RUN = """
import sys
from tests.running.toy_methods import ToyProjection
from hashbench.running.runner import run_config
run_config(sys.argv[1], sys.argv[2], quiet=True)
"""


def test_killing_a_run_loses_no_finished_cell_and_leaves_no_half_written_record(tmp_path, toy_npz):
    config = write_config(
        tmp_path / "m.toml",
        f"""
[defaults]
datasets = ["{toy_npz}"]
bits = [4, 5, 6, 7, 8, 9]
[[experiment]]
name = "kill"
methods = [{{ method = "toy-projection", params = {{ sleep_s = 0.3 }} }}]
""",
    )
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, config, str(out)], cwd=Path(__file__).parents[2])
    deadline = time.time() + 120
    while len(list(out.rglob("*.json"))) < 2 and time.time() < deadline and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    before = {r["id"]: r for r in map(store.read_record, out.rglob("*.json"))}
    assert 2 <= len(before) < 6, "the run was not interrupted mid-matrix"
    assert all(r["status"] == "done" for r in before.values())  # every file on disk is a complete record
    records = run_config(config, out, quiet=True)
    assert [r["status"] for r in records] == ["done"] * 6
    for record in records:
        if record["id"] in before:
            assert record == before[record["id"]]  # finished before the kill: kept, not recomputed
    assert not [p for p in out.rglob("*") if p.suffix == ".json" and p.name.startswith(".")]


def test_records_hold_code_stats_and_a_degenerate_cell_is_warned_about(tmp_path, toy_npz, capsys):
    healthy, degenerate = toy_cell(toy_npz), toy_cell(toy_npz, n_bits=12, params={"constant_bits": 4})
    records = run_cells([healthy, degenerate], tmp_path, quiet=True)
    assert [r["status"] for r in records] == ["done", "done"]
    assert set(records[0]["code_stats"]) == {
        "constant_bits",
        "mean_abs_balance",
        "distinct_fraction",
        "mean_abs_correlation",
    }
    assert records[1]["code_stats"]["constant_bits"] == pytest.approx(4 / 12)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert degenerate.describe() in warnings[0] and "constant_bits=0.33" in warnings[0]


def test_a_cell_whose_bits_copy_one_another_is_warned_about(tmp_path, toy_npz, capsys):
    # fifty power iterations turn every projection into the top principal direction: one bit, copied
    copied = toy_cell(toy_npz, n_bits=12, params={"n_epochs": 50})
    (record,) = run_cells([copied], tmp_path, quiet=True)
    stats = record["code_stats"]
    assert stats["constant_bits"] == 0 and stats["distinct_fraction"] >= 0.01 and stats["mean_abs_correlation"] > 0.9
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "mean_abs_correlation=1.00" in warnings[0]


def test_cells_run_by_dataset_with_the_image_methods_last_on_each():
    cells = [
        Cell("e", name, name, {}, dataset, 16, 0, dataset_source=dataset)
        for dataset in ("mosaic", "fc7-like")
        for name in ("deepbit", "lsh", "cibhash", "itq")
    ]
    order = [(c.dataset, c.method) for c in sorted(cells, key=execution_order)]
    assert order == [
        ("fc7-like", "lsh"),
        ("fc7-like", "itq"),
        ("fc7-like", "deepbit"),
        ("fc7-like", "cibhash"),
        ("mosaic", "lsh"),
        ("mosaic", "itq"),
        ("mosaic", "deepbit"),
        ("mosaic", "cibhash"),
    ]
