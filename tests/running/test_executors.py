import pytest

from hashbench.codes import BinaryCodes
from hashbench.errors import InvalidInputError
from hashbench.running import store
from hashbench.running.cell import Cell
from hashbench.running.executors import make_executor
from hashbench.running.runner import run_cells
from tests.running.toy_methods import write_toy_dataset


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    toy = write_toy_dataset(tmp_path_factory.mktemp("data") / "toy.npz")
    base = dict(
        experiment="e", method="toy-projection", label="toy-projection", dataset="toy", seed=0, dataset_source=toy
    )
    return [
        Cell(params={"n_epochs": 2}, n_bits=8, record_epochs=(1,), **base),  # a plugin method, epoch callback
        Cell(params={"fail_at_bits": 12}, n_bits=12, **base),  # a failure
        Cell(**{**base, "method": "lsh", "label": "lsh"}, params={}, n_bits=16),
    ]


@pytest.fixture(scope="module")
def local_records(cells, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return out, run_cells(cells, out, quiet=True)


def assert_same_outcomes(cells, local, other):
    (local_dir, local_records), (other_dir, other_records) = local, other
    for cell, mine, theirs in zip(cells, local_records, other_records, strict=True):
        assert (theirs["status"], theirs["error"], theirs["metrics"]) == (
            mine["status"],
            mine["error"],
            mine["metrics"],
        )
        assert [e["map"] for e in theirs["epochs"]] == [e["map"] for e in mine["epochs"]]
        if mine["status"] == "done":
            for split in ("query", "database"):
                paths = [store.codes_path(store.record_path(d, cell), split) for d in (local_dir, other_dir)]
                assert BinaryCodes.load(paths[0]) == BinaryCodes.load(paths[1])


@pytest.mark.slow  # starting two fresh worker processes (imports of torch) takes tens of seconds
def test_processes_executor_matches_local(cells, local_records, tmp_path):
    records = run_cells(cells, tmp_path, executor="processes", workers=2, quiet=True)
    assert_same_outcomes(cells, local_records, (tmp_path, records))


@pytest.mark.slow  # starts a local Ray cluster
def test_ray_executor_matches_local(cells, local_records, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    records = run_cells(cells, tmp_path, executor="ray", workers=2, quiet=True, num_gpus=0)
    assert_same_outcomes(cells, local_records, (tmp_path, records))


@pytest.mark.slow  # one fresh process per job
def test_submitit_executor_matches_local(cells, local_records, tmp_path):
    pytest.importorskip("submitit")
    records = run_cells(
        cells, tmp_path, executor="slurm", quiet=True, cluster="local", poll_s=0.2, timeout_min=10,
        method_resources={"lsh": {"cpus_per_task": 1}},
    )  # fmt: skip
    assert_same_outcomes(cells, local_records, (tmp_path, records))
    assert list((tmp_path / ".submitit").glob("*_log.out"))  # job logs kept beside the results


def test_executor_options_are_checked(tmp_path):
    with pytest.raises(InvalidInputError, match="executor must be one of local, processes, ray, slurm"):
        make_executor("dask")
    with pytest.raises(InvalidInputError, match="local executor takes no executor_options, got \\['adress'\\]"):
        make_executor("local", adress="x")
    with pytest.raises(InvalidInputError, match=r"ray .* got \['num_gpu'\]"):
        make_executor("ray", num_gpu=1)
