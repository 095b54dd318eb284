import numpy as np
import pytest

from hashbench import evaluate, load_dataset
from hashbench.codes import BinaryCodes
from hashbench.reporting import significance
from hashbench.reporting.references import Unavailable
from hashbench.running import store
from hashbench.running.cell import Cell
from hashbench.running.runner import run_cells
from tests.running.toy_methods import write_toy_dataset


def test_tiers_need_a_win_over_the_leader_and_a_clean_second():
    # 0 > 1 > 2 by mean; 0 beats 2 only: nothing beats 1 clearly, so 0 and 1 tie for the best
    wins = {(0, 2)}
    # and 1 does not beat 2, so 2 is not clearly behind the whole best tier: no second best
    assert significance.tiers([0, 1, 2], lambda i, j: (i, j) in wins) == ([0, 1], [])
    wins |= {(1, 2)}
    assert significance.tiers([0, 1, 2], lambda i, j: (i, j) in wins) == ([0, 1], [2])
    # a lower cell the leader does not beat joins the best tier even past a beaten one
    assert significance.tiers([0, 1, 2], lambda i, j: (i, j) == (0, 1)) == ([0, 2], [])
    assert significance.tiers([0], lambda i, j: True) == ([0], [])
    assert significance.tiers([], lambda i, j: True) == ([], [])


def test_ap_beats_pools_shared_seeds_and_ignores_skipped_queries():
    base = np.linspace(0.1, 0.9, 100)
    better = {0: base + 0.05, 1: base + 0.05}
    assert significance.ap_beats(better, {0: base, 1: base})
    assert not significance.ap_beats({0: base}, better)  # lower mean: never better
    assert not significance.ap_beats(better, {2: base})  # no seed in common: no comparison
    assert not significance.ap_beats({0: base}, {0: base.copy()})  # no difference at all
    few = np.full(100, np.nan)
    few[:3] = 0.9
    assert not significance.ap_beats({0: few}, {0: np.where(np.isnan(few), np.nan, 0.1)})  # 3 queries: too few
    with pytest.raises(ValueError, match="same number of queries"):
        significance.ap_beats({0: base}, {0: base[:50]})


def test_fewer_seconds_needs_two_seeds_and_a_clear_gap():
    assert significance.fewer_seconds([1.0, 1.1, 0.9], [5.0, 5.2, 4.8])
    assert not significance.fewer_seconds([1.0], [5.0, 5.1])
    assert not significance.fewer_seconds([1.0, 3.0], [1.5, 3.5])  # overlapping spreads
    assert not significance.fewer_seconds([5.0, 5.2], [1.0, 1.1])


def test_query_ap_is_read_or_rescored_from_the_codes_and_saved(tmp_path):
    toy = write_toy_dataset(tmp_path / "toy.npz")
    cell = Cell("e", "lsh", "lsh", {}, "toy", 16, 0, dataset_source=toy)
    run_cells([cell], tmp_path / "out", quiet=True)
    path = store.record_path(tmp_path / "out", cell)
    saved = significance.query_ap(path, "official", 1000)
    dataset = load_dataset(toy)
    codes = [BinaryCodes.load(store.codes_path(path, split)) for split in ("query", "database")]
    official = evaluate(*codes, dataset.query.labels, dataset.database.labels, topk=1000)
    np.testing.assert_allclose(saved, official.ap)  # what the runner saved
    assert not store.query_ap_path(path, "deephash", 10).exists()
    deephash = evaluate(*codes, dataset.query.labels, dataset.database.labels, topk=10, protocol="deephash")
    np.testing.assert_allclose(significance.query_ap(path, "deephash", 10), deephash.ap)  # rescored
    assert store.query_ap_path(path, "deephash", 10).is_file()  # and saved for the next report
    store.codes_path(path, "query").unlink()
    with pytest.raises(Unavailable, match="codes are not saved"):
        significance.query_ap(path, "official", 10)
