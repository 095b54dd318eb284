import json

import numpy as np
import pytest

from hashbench import evaluate, load_dataset
from hashbench.datasets.base import HashingDataset, Split
from hashbench.reporting import references
from hashbench.reporting.references import References, Unavailable
from tests.reporting.report_fixtures import make_record
from tests.running.toy_methods import write_toy_dataset


def record_on(dataset: str, source: str) -> dict:
    """A record of a cell on ``dataset``, loaded from ``source``, as the runner writes it."""
    record = make_record("itq", dataset=dataset)
    record["spec"]["dataset_source"] = source
    return record


def signs_dataset(rng, n_bits=8, n_query=40, n_database=300, classes=5):
    """A dataset whose features are +-1 codes: Euclidean ranking = Hamming ranking, ties in database order."""

    def split(n, name):
        labels = (rng.random((n, classes)) < 0.3).astype(np.uint8)
        features = np.where(rng.random((n, n_bits)) < 0.5, -1.0, 1.0).astype(np.float32)
        return Split(features, labels, None, name=name)

    return HashingDataset("signs", split(10, "train"), split(n_query, "query"), split(n_database, "database"))


@pytest.mark.parametrize("topk", [7, 1000, None])
@pytest.mark.parametrize("protocol", ["official", "deephash"])
def test_raw_features_map_equals_hamming_map_on_sign_features(protocol, topk):
    dataset = signs_dataset(np.random.default_rng(1))
    expected = evaluate(dataset.query.features, dataset.database.features, dataset.query.labels,
                        dataset.database.labels, topk=topk, protocol=protocol).map  # fmt: skip
    assert references.raw_features_map(dataset, protocol, topk) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("normalise", ["retrieved", "min-r-k", "relevant"])
def test_euclidean_ap_per_query_equals_hamming_ap_for_each_normalisation(normalise):
    dataset = signs_dataset(np.random.default_rng(2))
    query, database = dataset.query, dataset.database
    expected = evaluate(query.features, database.features, query.labels, database.labels, topk=20,
                        normalise=normalise, no_relevant="skip").ap  # fmt: skip
    ours = references.euclidean_average_precision(query.features, database.features, query.labels, database.labels,
                                                  20, normalise)  # fmt: skip
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_euclidean_average_precision_by_hand():
    query = np.array([[0.0, 0.0]], np.float32)
    database = np.array([[3.0, 0], [1, 0], [2, 0], [0, 4]], np.float32)  # ranked 1, 2, 0, 3
    db_labels = np.array([[1], [0], [1], [1]], np.uint8)
    ap = {n: references.euclidean_average_precision(query, database, np.array([[1]], np.uint8), db_labels, 3, n)[0]
          for n in ("retrieved", "min-r-k", "relevant")}  # fmt: skip
    precision_sum = 1 / 2 + 2 / 3  # relevant at ranks 2 and 3
    assert ap == pytest.approx(
        {"retrieved": precision_sum / 2, "min-r-k": precision_sum / 3, "relevant": precision_sum / 3}
    )
    nobody = references.euclidean_average_precision(
        query, database, np.array([[0]], np.uint8), db_labels, 3, "retrieved"
    )
    assert np.isnan(nobody[0])  # no relevant item: the protocol decides (skip or zero)


def test_random_codes_are_reproducible_per_seed_and_length(tmp_path):
    dataset = load_dataset(write_toy_dataset(tmp_path / "toy.npz"))
    first = references.random_codes_map(dataset, 16, 0, "official", 100)
    assert first == references.random_codes_map(dataset, 16, 0, "official", 100)
    assert first != references.random_codes_map(dataset, 16, 1, "official", 100)
    # 4 balanced classes: a random ranking finds about a quarter of the items relevant
    assert 0.15 < first < 0.45


def test_references_are_cached_under_what_they_depend_on(tmp_path, monkeypatch):
    toy = write_toy_dataset(tmp_path / "toy.npz")
    records = [record_on("toy", toy)]
    refs = References(tmp_path / "results", records)
    raw = refs.raw_features("toy", "official", 100)
    floor = refs.random_codes("toy", 16, [0, 1], "official", 100)
    assert len(floor) == 2 and max(floor) < raw
    cache = json.loads((tmp_path / "results" / "reference" / "cache.json").read_text())
    assert len(cache) == 3

    def fail(*args):
        raise AssertionError("recomputed a cached reference")

    monkeypatch.setattr(references, "raw_features_map", fail)
    monkeypatch.setattr(references, "random_codes_map", fail)
    again = References(tmp_path / "results", records)
    assert (
        again.raw_features("toy", "official", 100) == raw
        and again.random_codes("toy", 16, [0, 1], "official", 100) == floor
    )
    with pytest.raises(AssertionError, match="recomputed"):
        again.raw_features("toy", "deephash", 100)  # another protocol is another value


def test_references_say_why_they_cannot_be_computed(tmp_path):
    records = [make_record("itq", dataset="old"), record_on("gone", str(tmp_path / "gone.npz"))]
    refs = References(tmp_path, records)
    with pytest.raises(Unavailable, match="do not name the dataset's source"):
        refs.raw_features("old", "official", 10)
    with pytest.raises(Unavailable, match=r"could not be loaded here .*gone.npz"):
        refs.random_codes("gone", 8, [0], "official", 10)
    dataset = signs_dataset(np.random.default_rng(0))
    dataset.query.features = None
    with pytest.raises(Unavailable, match="no features"):
        references.raw_features_map(dataset, "official", 10)
