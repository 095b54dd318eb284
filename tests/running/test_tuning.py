"""Tuning: validation views carved from the training split, grid selection, the tuned matrix."""

import tomllib

import numpy as np
import pytest

import hashbench as hb
from hashbench.running.cell import canonical_json
from hashbench.running.config import load_config, parse_config
from hashbench.running.tuning import choose, toml_value, tune, tuned_matrix, validation_cell, write_tuned
from tests.running.toy_methods import write_config, write_toy_dataset

GRID = """
[defaults]
datasets = ["{data}"]
bits = [8, 16]

[[experiment]]
name = "grid"
methods = [{{ method = "toy-projection", params = {{ constant_bits = [6, 0], n_epochs = [1, 2] }} }}, "lsh"]
"""


@pytest.fixture
def toy_npz(tmp_path):
    return write_toy_dataset(tmp_path / "toy.npz")


def test_validation_view_holds_out_training_items_as_queries(toy_npz):
    dataset = hb.load_dataset(toy_npz)
    view = hb.load_dataset("validation", dataset=toy_npz, fraction=0.25, split_seed=3)
    assert (len(view.query), len(view.train), len(view.database)) == (30, 90, 90)
    rows = {row.tobytes() for row in dataset.train.features}
    held_out = {row.tobytes() for row in view.query.features}
    kept = {row.tobytes() for row in view.train.features}
    assert held_out | kept == rows and not held_out & kept  # a partition of the training split
    np.testing.assert_array_equal(view.database.features, view.train.features)
    again = hb.load_dataset("validation", dataset=toy_npz, fraction=0.25, split_seed=3)
    np.testing.assert_array_equal(again.query.features, view.query.features)
    other = hb.load_dataset("validation", dataset=toy_npz, fraction=0.25, split_seed=4)
    assert not np.array_equal(other.query.features, view.query.features)


def test_validation_view_errors_are_named(toy_npz):
    with pytest.raises(hb.InvalidInputError, match="dataset=NAME"):
        hb.load_dataset("validation")
    with pytest.raises(hb.InvalidInputError, match="fraction"):
        hb.load_dataset("validation", dataset=toy_npz, fraction=1.0)


def test_tune_picks_the_best_grid_point_and_writes_a_runnable_matrix(tmp_path, toy_npz):
    config = load_config(write_config(tmp_path / "tuning.toml", GRID.format(data=toy_npz)))
    choices = tune(config, tmp_path / "tuning", quiet=True)
    by_label = {c.label: c for c in choices}
    toy = by_label["toy-projection"]
    assert toy.params["constant_bits"] == 0  # six constant bits of eight or sixteen score lower
    assert len(toy.scores) == 4 and all(score is not None for _, score in toy.scores)
    assert max(score for _, score in toy.scores) == dict(toy.scores)[canonical_json(toy.params)]
    assert by_label["lsh"].params == {}
    # every validation cell ran on the view, none on the dataset's own queries
    records = list((tmp_path / "tuning").glob("*/*/*.json"))
    assert len(records) == 10 and {p.parts[-3] for p in records} == {"toy[validation]"}

    path = write_tuned(config, choices, tmp_path / "tuned.toml")
    tuned = load_config(path)
    cells = tuned.cells()
    assert {c.dataset for c in cells} == {"toy"} and sorted({c.n_bits for c in cells}) == [8, 16]
    assert [c.params for c in cells if c.method == "toy-projection"] == [toy.params] * 2
    assert "validation MAP" in path.read_text()


def test_a_grid_point_with_a_failed_cell_is_not_chosen(tmp_path, toy_npz):
    text = GRID.format(data=toy_npz).replace(
        "params = { constant_bits = [6, 0], n_epochs = [1, 2] }", "params = { fail_at_bits = [16, 0] }"
    )
    config = parse_config(tomllib.loads(text))
    cells = config.cells()
    records = [
        {"status": "failed" if c.params.get("fail_at_bits") == c.n_bits else "done", "metrics": {"map": 0.5}}
        for c in cells
    ]
    (toy,) = [c for c in choose(cells, records) if c.label == "toy-projection"]
    assert toy.params == {"fail_at_bits": 0} and dict(toy.scores)['{"fail_at_bits":16}'] is None


def test_validation_cells_keep_what_they_compute_but_the_data():
    from hashbench.running.cell import Cell

    cell = Cell(
        "e", "itq", "itq", {}, "mosaic[size=tiny]", 16, 0, dataset_source="mosaic", dataset_options={"size": "tiny"}
    )
    view = validation_cell(cell, fraction=0.2)
    assert view.dataset == "mosaic[size=tiny][validation]" and view.dataset_source == "validation"
    assert view.dataset_options == {"dataset": "mosaic", "size": "tiny", "fraction": 0.2, "split_seed": 0}
    assert (view.method, view.n_bits, view.params) == (cell.method, cell.n_bits, cell.params)


def test_toml_values_read_back():
    value = {"a": 1, "b": 1e-4, "c": 'x"y', "d": [True, [1, 2]], "mosaic[size=tiny]": {"lr": 0.5}, "e": {}}
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value
    with pytest.raises(hb.InvalidInputError):
        toml_value(float("nan"))


def test_configs_tuning_toml_is_a_valid_grid():
    matrix = load_config("configs/tuning.toml")
    cells = matrix.cells()
    methods = {c.method for c in cells}
    assert methods == {"uh-bdnn", "tbh", "deepbit", "ssdh", "sadh", "wsih", "greedyhash", "bihalf", "cibhash"}
    for method in methods:
        assert len({canonical_json(c.params) for c in cells if c.method == method}) == 6
    assert tuned_matrix(matrix, []).startswith("# Written by")


def test_tune_then_run_from_the_command_line(tmp_path, capsys):
    from hashbench.cli import main

    toy = write_toy_dataset(tmp_path / "toy.npz")
    config = write_config(tmp_path / "tuning.toml", GRID.format(data=toy))
    assert main(["tune", config, "--out", str(tmp_path / "tuning"), "--bits", "8"]) == 0
    printed = capsys.readouterr().out
    assert 'toy-projection on toy: {"constant_bits":0' in printed and "tuning/tuned.toml" in printed
    assert main(["run", str(tmp_path / "tuning" / "tuned.toml"), "--out", str(tmp_path / "results"), "--quiet"]) == 0
    records = list((tmp_path / "results" / "toy").glob("*/*.json"))
    assert len(records) == 4  # two methods at the tuning matrix's two code lengths


def test_a_validation_cell_has_the_same_seed_wherever_its_file_lives(tmp_path):
    from hashbench.running.cell import Cell

    def view(folder):
        path = write_toy_dataset(tmp_path / folder / "toy.npz")
        return validation_cell(Cell("e", "lsh", "lsh", {}, "toy", 16, 0, dataset_source=path))

    here, there = view("a"), view("b")
    assert here.dataset_options != there.dataset_options and here.computation_id != there.computation_id
    assert here.method_seed == there.method_seed
    assert (
        validation_cell(Cell("e", "lsh", "lsh", {}, "toy", 16, 1, dataset_source="x.npz")).method_seed
        != here.method_seed
    )
