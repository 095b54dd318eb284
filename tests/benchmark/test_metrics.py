import itertools
import json
import math
import time
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hashbench as hb
from hashbench.benchmark import metrics
from hashbench.errors import InvalidInputError


# --- a slow, obviously correct reference -----------------------------------------------------------
def reference_scores(q_bits, db_bits, q_labels, db_labels, topk):
    """Per query: stable ranking by sorted((distance, index)), AP@k and curves by plain loops,
    tie-aware AP by enumerating every order of the tied items."""
    per_query = []
    for bits, labels in zip(q_bits, q_labels):
        distance = [int(np.sum(bits != other)) for other in db_bits]
        relevant = [bool(np.any(labels & other)) for other in db_labels]
        ranking = sorted(range(len(db_bits)), key=lambda j: (distance[j], j))
        per_query.append(
            {
                "n_relevant": sum(relevant),
                "ap": reference_ap([relevant[j] for j in ranking], topk),
                "ap_tie_aware": reference_tie_aware_ap(distance, relevant, topk),
                "hits": [sum(relevant[j] for j in ranking[:k]) for k in range(1, topk + 1)],
                "within": [
                    (sum(d <= r for d in distance), sum(d <= r and rel for d, rel in zip(distance, relevant)))
                    for r in range(q_bits.shape[1] + 1)
                ],
            }
        )
    return per_query


def reference_ap(relevance_in_rank_order, topk):
    hits, precision_sum = 0, 0.0
    for rank, relevant in enumerate(relevance_in_rank_order[:topk], start=1):
        if relevant:
            hits += 1
            precision_sum += hits / rank
    return precision_sum / hits if hits else 0.0


def reference_tie_aware_ap(distance, relevant, topk):
    groups = [[j for j in range(len(distance)) if distance[j] == d] for d in sorted(set(distance))]
    orders = list(itertools.product(*(itertools.permutations(g) for g in groups)))
    aps = [reference_ap([relevant[j] for g in order for j in g], topk) for order in orders]
    return sum(aps) / len(aps)


def reference_protocol(per_query, protocol, topk):
    chosen = [q for q in per_query if protocol == "deephash" or q["n_relevant"] > 0]
    ap_key = "ap_tie_aware" if protocol == "tie_aware" else "ap"
    n = len(chosen)
    return {
        "map": sum(q[ap_key] for q in chosen) / n if n else math.nan,
        "precision": [sum(q["hits"][k - 1] for q in chosen) / k / n if n else math.nan for k in range(1, topk + 1)],
        "recall": [
            sum(q["hits"][k - 1] / q["n_relevant"] for q in chosen if q["n_relevant"]) / n if n else math.nan
            for k in range(1, topk + 1)
        ],
        "pr_precision": [
            sum(w[r][1] / w[r][0] for q in chosen if (w := q["within"])[r][0]) / n if n else math.nan
            for r in range(len(chosen[0]["within"]) if n else 0)
        ],
    }


# --- hand-worked rankings --------------------------------------------------------------------------
# One 4-bit query, all-zero code and label {0}. Distances to the database: [1, 0, 1, 2];
# relevance (shares label 0): [yes, no, no, yes]. Stable ranking: items 1, 0, 2, 3.
QUERY = np.zeros((1, 4), np.uint8)
DATABASE = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0]], np.uint8)
QUERY_LABELS = np.array([[1, 0]])
DB_LABELS = np.array([[1, 0], [0, 1], [0, 0], [1, 1]])


def test_hand_worked_ranking_with_ties():
    scores = hb.evaluate(QUERY, DATABASE, QUERY_LABELS, DB_LABELS, topk=3)
    # top 3 relevance [no, yes, no]: AP = (1/2) / 1
    assert scores.map == pytest.approx(0.5)
    assert scores.maps["deephash"] == pytest.approx(0.5)
    # the tie at distance 1 (items 0 and 2) in either order: AP 1/2 or 1/3
    assert scores.maps["tie_aware"] == pytest.approx(5 / 12)
    np.testing.assert_allclose(scores.precision_curve, [0, 1 / 2, 1 / 3])
    np.testing.assert_allclose(scores.recall_curve, [0, 1 / 2, 1 / 2])
    assert scores.precision_at(2) == pytest.approx(0.5) and scores.recall_at(3) == pytest.approx(0.5)
    np.testing.assert_allclose(scores.pr_curve["radius"], [0, 1, 2, 3, 4])
    # radius 0 holds item 1 (not relevant); radius 1 adds items 0 and 2; radius 2 adds item 3
    np.testing.assert_allclose(scores.pr_curve["precision"], [0, 1 / 3, 1 / 2, 1 / 2, 1 / 2])
    np.testing.assert_allclose(scores.pr_curve["recall"], [0, 1 / 2, 1, 1, 1])
    assert scores.precision_radius2 == pytest.approx(0.5)


def test_tie_aware_expected_curve_averages_the_tie():
    scores = hb.evaluate(QUERY, DATABASE, QUERY_LABELS, DB_LABELS, topk=3, protocol="tie_aware")
    assert scores.map == pytest.approx(5 / 12)
    # rank 2 holds item 0 or 2 with equal chance: expected hits 1/2 at ranks 2 and 3
    np.testing.assert_allclose(scores.precision_curve, [0, 1 / 4, 1 / 3])


def test_tie_group_cut_at_rank_k_is_hypergeometric():
    # distances [0, 1, 1, 1], relevance [no, yes, no, no], top 2: the distance-1 group is cut to
    # one slot, which holds the relevant item with chance 1/3 (AP 1/2) and otherwise none (AP 0)
    database = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    db_labels = np.array([[0, 1], [1, 0], [0, 1], [0, 1]])
    scores = hb.evaluate(QUERY, database, QUERY_LABELS, db_labels, topk=2)
    assert scores.maps["official"] == pytest.approx(0.5)
    assert scores.maps["tie_aware"] == pytest.approx(1 / 6)


def test_queries_without_relevant_items_are_skipped_or_count_zero():
    queries = np.vstack([QUERY, QUERY])
    query_labels = np.array([[1, 0], [0, 0]])  # the second query has no relevant item
    for protocol in ("official", "deephash", "tie_aware"):
        scores = hb.evaluate(queries, DATABASE, query_labels, DB_LABELS, topk=3, protocol=protocol)
        assert scores.n_queries == 2 and scores.n_queries_skipped == 1
        expected_map = {"official": 0.5, "deephash": 0.25, "tie_aware": 5 / 12}[protocol]
        assert scores.map == pytest.approx(expected_map)
    deephash = hb.evaluate(queries, DATABASE, query_labels, DB_LABELS, topk=3, protocol="deephash")
    np.testing.assert_allclose(deephash.precision_curve, [0, 1 / 4, 1 / 6])
    np.testing.assert_allclose(deephash.recall_curve, [0, 1 / 4, 1 / 4])


def test_topk_beyond_the_database_counts_missing_ranks_as_not_retrieved():
    scores = hb.evaluate(QUERY, DATABASE, QUERY_LABELS, DB_LABELS, topk=6)
    # full ranking relevance [no, yes, no, yes]: AP = (1/2 + 2/4) / 2
    assert scores.map == pytest.approx(0.5)
    # the tie in either order: relevance [no, yes, no, yes] (AP 1/2) or [no, no, yes, yes] (AP 5/12)
    assert scores.maps["tie_aware"] == pytest.approx(11 / 24)
    np.testing.assert_allclose(scores.precision_curve, [0, 1 / 2, 1 / 3, 2 / 4, 2 / 5, 2 / 6])
    np.testing.assert_allclose(scores.recall_curve, [0, 1 / 2, 1 / 2, 1, 1, 1])


def test_no_item_within_radius_gives_zero_precision():
    far_database = 1 - QUERY.repeat(2, axis=0)  # both items at distance 4
    scores = hb.evaluate(QUERY, far_database, QUERY_LABELS, np.array([[1, 0], [1, 0]]), topk=2)
    np.testing.assert_allclose(scores.pr_curve["precision"], [0, 0, 0, 0, 1])
    assert scores.precision_radius2 == 0.0


def test_every_query_skipped_gives_nan_and_json_null():
    scores = hb.evaluate(QUERY, DATABASE, np.array([[0, 0]]), DB_LABELS, topk=2)
    assert math.isnan(scores.map) and scores.n_queries_skipped == 1
    assert scores.to_dict()["map"] is None
    assert scores.maps["deephash"] == 0.0


def test_codes_as_signs_bits_or_binary_codes_agree():
    as_bits = hb.evaluate(QUERY, DATABASE, QUERY_LABELS, DB_LABELS, topk=3)
    as_signs = hb.evaluate(2 * QUERY.astype(int) - 1, 2 * DATABASE.astype(int) - 1, QUERY_LABELS, DB_LABELS, topk=3)
    as_codes = hb.evaluate(
        hb.BinaryCodes.from_bits(QUERY), hb.BinaryCodes.from_bits(DATABASE), QUERY_LABELS, DB_LABELS, topk=3
    )
    assert as_bits.maps == as_signs.maps == as_codes.maps


def test_to_dict_is_json_and_summary_names_each_protocol():
    scores = hb.evaluate(QUERY, DATABASE, QUERY_LABELS, DB_LABELS, topk=3, protocol="deephash")
    record = json.loads(json.dumps(scores.to_dict()))
    assert set(record) == {
        "protocol", "topk", "map", "maps", "precision_curve", "recall_curve", "pr_curve",
        "precision_radius2", "n_queries", "n_queries_skipped",
    }
    assert set(record["pr_curve"]) == {"radius", "precision", "recall"}
    assert record["protocol"] == "deephash" and len(record["precision_curve"]) == 3
    text = scores.summary()
    assert all(name in text for name in ("official", "deephash", "tie_aware", "P@3"))


def test_precision_at_outside_the_curve_raises():
    scores = hb.evaluate(QUERY, DATABASE, QUERY_LABELS, DB_LABELS, topk=3)
    with pytest.raises(InvalidInputError, match="k must be at most topk=3"):
        scores.precision_at(4)
    with pytest.raises(InvalidInputError, match="k must be an integer"):
        scores.recall_at(0)


# --- property tests against the reference ----------------------------------------------------------
@st.composite
def retrieval_problems(draw):
    n_bits = draw(st.integers(1, 9))
    n_db = draw(st.integers(1, 6))
    n_query = draw(st.integers(1, 3))
    n_labels = draw(st.integers(1, 3))

    def bits(rows, cols):
        return np.array(draw(st.lists(st.lists(st.integers(0, 1), min_size=cols, max_size=cols),
                                      min_size=rows, max_size=rows)), np.uint8).reshape(rows, cols)

    return bits(n_query, n_bits), bits(n_db, n_bits), bits(n_query, n_labels), bits(n_db, n_labels), draw(
        st.integers(1, 8)
    )


def assert_matches_reference(problem, evaluate=hb.evaluate):
    q_bits, db_bits, q_labels, db_labels, topk = problem
    per_query = reference_scores(q_bits, db_bits, q_labels, db_labels, topk)
    for protocol in metrics.PROTOCOLS:
        scores = evaluate(q_bits, db_bits, q_labels, db_labels, topk=topk, protocol=protocol)
        expected = reference_protocol(per_query, protocol, topk)
        np.testing.assert_allclose(scores.map, expected["map"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(scores.maps[protocol], expected["map"], rtol=1e-9, atol=1e-12)
        if protocol != "tie_aware":  # tie_aware curves are expectations, checked below
            np.testing.assert_allclose(scores.precision_curve, expected["precision"], atol=1e-12)
            np.testing.assert_allclose(scores.recall_curve, expected["recall"], atol=1e-12)
        if not math.isnan(expected["map"]):
            np.testing.assert_allclose(scores.pr_curve["precision"], expected["pr_precision"], atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(retrieval_problems())
def test_matches_the_reference(problem):
    assert_matches_reference(problem)


@settings(max_examples=40, deadline=None)
@given(retrieval_problems())
def test_torch_backend_matches_the_reference(problem):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics, "_ranker_for", lambda device: metrics.TorchRanker(torch.device("cpu")))
        assert_matches_reference(problem)


@settings(max_examples=60, deadline=None)
@given(retrieval_problems())
def test_tie_aware_curves_are_means_over_tie_orders(problem):
    q_bits, db_bits, q_labels, db_labels, topk = problem
    scores = hb.evaluate(q_bits, db_bits, q_labels, db_labels, topk=topk, protocol="tie_aware")
    counted = [i for i in range(len(q_bits)) if np.any(q_labels[i] & db_labels)]
    expected_hits = np.zeros(topk)
    for i in counted:
        distance = np.sum(q_bits[i] != db_bits, axis=1)
        relevant = np.any(q_labels[i] & db_labels, axis=1)
        groups = [np.flatnonzero(distance == d) for d in np.unique(distance)]
        orders = list(itertools.product(*(itertools.permutations(g) for g in groups)))
        for order in orders:
            ranked = relevant[np.concatenate(order)]
            hits = np.cumsum(ranked)[np.minimum(np.arange(topk), len(ranked) - 1)]
            expected_hits += hits / len(orders)
    if counted:
        np.testing.assert_allclose(scores.precision_curve, expected_hits / len(counted) / np.arange(1, topk + 1))


def test_chunks_and_threads_do_not_change_the_scores(monkeypatch):
    rng = np.random.default_rng(0)
    q_bits, db_bits = rng.integers(0, 2, (37, 70)), rng.integers(0, 2, (300, 70))
    q_labels, db_labels = rng.random((37, 5)) < 0.3, rng.random((300, 5)) < 0.3
    whole = hb.evaluate(q_bits, db_bits, q_labels, db_labels, topk=50, protocol="tie_aware")
    monkeypatch.setattr(metrics, "QUERY_CHUNK", 4)
    chunked = hb.evaluate(q_bits, db_bits, q_labels, db_labels, topk=50, protocol="tie_aware")
    assert whole.maps == chunked.maps
    np.testing.assert_allclose(whole.precision_curve, chunked.precision_curve)
    monkeypatch.setattr(metrics, "TORCH_CHUNK_BYTES", 1)  # one query per chunk
    on_torch = metrics.TorchRanker(torch.device("cpu"))
    monkeypatch.setattr(metrics, "_ranker_for", lambda device: on_torch)
    by_torch = hb.evaluate(q_bits, db_bits, q_labels, db_labels, topk=50, protocol="tie_aware")
    np.testing.assert_allclose(list(by_torch.maps.values()), list(whole.maps.values()), rtol=1e-12)


def test_matches_the_per_query_argsort_loop_on_random_codes():
    rng = np.random.default_rng(1)
    signs_q, signs_db = rng.choice([-1, 1], (20, 16)), rng.choice([-1, 1], (500, 16))
    labels_q, labels_db = rng.random((20, 6)) < 0.2, rng.random((500, 6)) < 0.2
    aps = []
    for i in range(20):
        distance = (16 - signs_db @ signs_q[i]) // 2
        relevant = (labels_db.astype(int) @ labels_q[i].astype(int)) > 0
        if relevant.any():
            aps.append(reference_ap(relevant[np.argsort(distance, kind="stable")], 100))
    scores = hb.evaluate(signs_q, signs_db, labels_q, labels_db, topk=100)
    assert scores.map == pytest.approx(np.mean(aps), rel=1e-12)


# --- bad input -------------------------------------------------------------------------------------
GOOD = dict(query_codes=QUERY, db_codes=DATABASE, query_labels=QUERY_LABELS, db_labels=DB_LABELS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"db_codes": DATABASE[:, :3]}, "query_codes have 4 bits but db_codes have 3"),
        ({"query_labels": np.array([[1, 0], [0, 1]])}, r"query_codes: 1, query_labels: 2"),
        ({"db_labels": DB_LABELS[:3]}, r"db_codes: 4, db_labels: 3"),
        ({"db_labels": DB_LABELS[:, :1]}, "same number"),
        ({"query_labels": np.array([[2, 0]])}, "query_labels must hold only 0 and 1"),
        ({"db_labels": np.where(DB_LABELS == 1, np.nan, 0.0)}, "db_labels contains NaN"),
        ({"query_codes": np.array([[0.5, 1, 1, 1]])}, "query_codes must be BinaryCodes"),
        ({"query_codes": np.array([[np.inf, 1, 1, 1]])}, "query_codes contains NaN or inf"),
        ({"db_codes": np.zeros((0, 4))}, "db_codes has zero rows"),
        ({"query_labels": np.zeros((1, 0))}, "same number"),
        ({"topk": 0}, "topk must be an integer >= 1"),
        ({"topk": 2.5}, "topk must be an integer >= 1"),
        ({"protocol": "oficial"}, "unknown protocol 'oficial'. Did you mean 'official'"),
        ({"device": "tpu"}, "device must be"),
    ],
)
def test_bad_input_names_the_argument(change, message):
    with pytest.raises(InvalidInputError, match=message):
        hb.evaluate(**{**GOOD, **change})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_a_cuda_device_raises():
    with pytest.raises(InvalidInputError, match="no CUDA device"):
        hb.evaluate(**GOOD, device="cuda")


# --- scale (slow) ----------------------------------------------------------------------------------
def load_benchmark_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "bench_metrics.py"
    spec = importlib.util.spec_from_file_location("bench_metrics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_at_coco_scale_beats_the_per_query_loop_25_times_with_the_same_map():
    bench = load_benchmark_script()
    query, database, q_labels, db_labels = bench.synthetic_retrieval_set(500, 113287, 64, 80, seed=0)
    hb.evaluate(query[:2], database[:10], q_labels[:2], db_labels[:10], topk=5)  # compile / load kernel
    start = time.process_time()
    fast = hb.evaluate(query, database, q_labels, db_labels, topk=1000, device="cpu")
    fast_cpu = time.process_time() - start
    start = time.process_time()
    loop_map = bench.per_query_loop_map(query[:50], database, q_labels[:50], db_labels, 1000)
    loop_cpu = (time.process_time() - start) * 10
    assert loop_cpu / fast_cpu >= 25
    subset = hb.evaluate(query[:50], database, q_labels[:50], db_labels, topk=1000, device="cpu")
    assert subset.map == pytest.approx(loop_map, rel=1e-12)
    assert fast.n_queries == 500


@pytest.mark.slow
def test_a_million_item_database_stays_in_bounded_memory():
    rng = np.random.default_rng(0)
    database = hb.BinaryCodes(rng.integers(0, 256, (1_000_000, 8), dtype=np.uint8), 64)
    db_labels = (rng.random((1_000_000, 20), dtype=np.float32) < 0.1).astype(np.uint8)
    query, q_labels = database[:40], db_labels[:40]
    tracemalloc.start()
    try:
        scores = hb.evaluate(query, database, q_labels, db_labels, topk=1000, device="cpu")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 600 * 2**20  # inputs are 88 MB; no queries x database matrix (which is 320 MB+)
    assert scores.n_queries == 40 and 0 < scores.map <= 1


def test_per_query_ap_averages_to_the_map_and_marks_skipped_queries_nan():
    queries = np.vstack([QUERY, QUERY])
    query_labels = np.array([[1, 0], [0, 0]])  # the second query has no relevant item
    for protocol, first in (("official", 0.5), ("deephash", 0.5), ("tie_aware", 5 / 12)):
        scores = hb.evaluate(queries, DATABASE, query_labels, DB_LABELS, topk=3, protocol=protocol)
        expected = [first, 0.0 if protocol == "deephash" else math.nan]
        np.testing.assert_allclose(scores.ap, expected)
        assert np.nanmean(scores.ap) == pytest.approx(scores.map)
