"""Exhaustive Hamming k-NN search throughput (k = 1,000): hashbench's kernel, faiss, plain numpy.

    pytest benchmarks/bench_search.py --benchmark-only                 # 20,000 and 100,000 items
    pytest benchmarks/bench_search.py --benchmark-only --scale full    # 113,287 and 1,000,000 items

Queries per second of ``hashbench.codes.hamming_knn`` (compiled counting sort, ties in database
order), faiss' ``IndexBinaryFlat.search`` (from ``BinaryCodes.to_faiss``; skipped without faiss)
and a numpy version (XOR + ``np.bitwise_count`` per query chunk, ``argpartition``, then a sort of
the k nearest by (distance, index)), over 32-, 64- and 128-bit random codes, all with the same
threads (``--bench-threads``, default 2). The in-run baseline is the numpy version; the
terminal summary prints the whole table. Each implementation's k-NN distances must equal
hashbench's.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from hashbench.codes import BinaryCodes, as_words, hamming_knn

K = 1000
SIZES = {"small": (20_000, 100_000), "full": (113_287, 1_000_000)}
QUERIES = 200  # per timed round; enough for a stable rate at a million items
NUMPY_CHUNK_PAIRS = 2**22  # (query, item) pairs per numpy step: bounded temporaries


def numpy_knn(query: BinaryCodes, database: BinaryCodes, k: int):
    """The plain-numpy exhaustive k-NN: (distances, indices), ties by database index."""
    q_words, db_words = as_words(query), as_words(database)
    chunk = max(1, NUMPY_CHUNK_PAIRS // len(database))
    index = np.arange(len(database))
    distances, indices = [], []
    for start in range(0, len(query), chunk):
        block = q_words[start : start + chunk]
        distance = np.bitwise_count(block[:, None, :] ^ db_words[None, :, :]).sum(axis=2, dtype=np.int64)
        key = distance * len(database) + index  # distance first, then database order
        nearest = np.argpartition(key, k - 1, axis=1)[:, :k]
        nearest = np.take_along_axis(nearest, np.argsort(np.take_along_axis(key, nearest, axis=1), axis=1), axis=1)
        distances.append(np.take_along_axis(distance, nearest, axis=1))
        indices.append(nearest)
    return np.concatenate(distances), np.concatenate(indices)


def faiss_knn(index, query: BinaryCodes, k: int):
    return index.search(query.packed, k)


@pytest.fixture(scope="module", params=["small-index", "large-index"])
def n_items(request, scale):
    return SIZES[scale][request.param == "large-index"]


@pytest.fixture(scope="module")
def codes(n_items):
    """Random codes of the longest length; shorter lengths are their leading bytes."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (QUERIES, 16), dtype=np.uint8), rng.integers(0, 256, (n_items, 16), dtype=np.uint8)


@pytest.mark.parametrize("implementation", ["numpy", "hashbench", "faiss"])  # numpy first: the baseline
@pytest.mark.parametrize("search_bits", [32, 64, 128])
def test_knn_throughput(benchmark, record, fastest, threads, codes, search_bits, implementation):
    query_bytes, db_bytes = codes
    query = BinaryCodes(np.ascontiguousarray(query_bytes[:, : search_bits // 8]), search_bits)
    database = BinaryCodes(np.ascontiguousarray(db_bytes[:, : search_bits // 8]), search_bits)
    if implementation == "faiss":
        faiss = pytest.importorskip("faiss")
        faiss.omp_set_num_threads(threads)
        index = database.to_faiss()
        search = (faiss_knn, index, query, K)
    else:
        search = (hamming_knn if implementation == "hashbench" else numpy_knn, query, database, K)
    benchmark.group = f"k-NN {len(database):,} items x {search_bits} bits"
    distances, _ = benchmark.pedantic(search[0], search[1:], rounds=3, iterations=1, warmup_rounds=1)
    np.testing.assert_array_equal(distances, hamming_knn(query, database, K)[0])
    rate = len(query) / fastest()
    if implementation == "numpy":
        _NUMPY_RATES[len(database), search_bits] = rate
    record(
        baseline="plain numpy (XOR, bitwise_count, argpartition), timed in the same run",
        ratio=rate / numpy_rate(query, database),
        ratio_is="queries/s / numpy's queries/s",
        queries_per_second=rate,
        implementation=implementation,
        n_items=len(database),
        n_bits=search_bits,
        k=K,
    )


_NUMPY_RATES: dict = {}  # (items, bits) -> numpy's queries/s in this run


def numpy_rate(query: BinaryCodes, database: BinaryCodes) -> float:
    """numpy's queries/s on these codes: its benchmark's, or measured now when it did not run."""
    key = (len(database), database.n_bits)
    if key not in _NUMPY_RATES:
        start = time.perf_counter()
        numpy_knn(query, database, K)
        _NUMPY_RATES[key] = len(query) / (time.perf_counter() - start)
    return _NUMPY_RATES[key]
