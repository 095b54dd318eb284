"""Speed and memory of ``hashbench.evaluate`` at MS-COCO scale, against the common per-query loop.

    pytest benchmarks/bench_metrics.py --benchmark-only                 # 1,000 x 20,000 items
    pytest benchmarks/bench_metrics.py --benchmark-only --scale full    # 5,000 x 113,287 x 64 bits, 80 labels

Data are synthetic but shaped like learned codes: multi-hot labels (about 3 of 80 per item) and
codes = sign(label embedding + noise), so relevant items sit at small Hamming distances and many
items tie. Each benchmark times ``evaluate`` (official protocol: MAP, P@k and R@k curves, radius
PR curve, tie range and the other presets, all in one pass) and, in the same run, the usual
evaluation loop (inner-product Hamming distance, stable ``np.argsort``, AP per query), timed on a
few queries and scaled linearly to the full query set; its MAP on those queries must equal
``evaluate``'s. Memory: peak of numpy/Python allocations (tracemalloc) and of resident-set growth
(sampled every 2 ms) during one more call. Targets (at ``--scale full``, 2 threads): MAP@1000
<= 1.0 s and MAP@all <= 4 s, both >= 25x the loop, <= 1.5 GB extra memory.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import hashbench as hb

SIZES = {  # queries, database items, loop-timed queries
    "small": (1000, 20_000, 100),
    "full": (5000, 113_287, 250),
}
TARGET_SECONDS = {1000: 1.0, None: 4.0}
TARGET_SPEEDUP = 25
TARGET_MEMORY_BYTES = 1.5e9
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def synthetic_retrieval_set(n_query, n_database, n_bits, n_labels, seed):
    rng = np.random.default_rng(seed)
    n_items = n_query + n_database
    labels = (rng.random((n_items, n_labels), dtype=np.float32) < 3 / n_labels).astype(np.uint8)
    embedding = rng.standard_normal((n_labels, n_bits), dtype=np.float32)
    codes = np.empty((n_items, n_bits), np.uint8)
    for start in range(0, n_items, 65536):  # bounded temporaries for the million-item check
        block = slice(start, start + 65536)
        noisy = labels[block] @ embedding + 1.5 * rng.standard_normal((len(codes[block]), n_bits), dtype=np.float32)
        codes[block] = noisy >= 0
    all_codes = hb.BinaryCodes.from_bits(codes)
    return all_codes[:n_query], all_codes[n_query:], labels[:n_query], labels[n_query:]


def per_query_loop_map(query, database, query_labels, db_labels, topk):
    """The common evaluation loop: one matmul, stable argsort and AP per query (topk=None: all)."""
    q_signs, db_signs = query.to_signs().astype(np.float32), database.to_signs().astype(np.float32)
    q_labels, d_labels = query_labels.astype(np.float32), db_labels.astype(np.float32)
    aps = []
    for i in range(len(q_signs)):
        distance = 0.5 * (query.n_bits - db_signs @ q_signs[i])
        relevant = (d_labels @ q_labels[i]) > 0
        if not relevant.any():
            continue
        top = relevant[np.argsort(distance, kind="stable")[:topk]]
        hits = np.cumsum(top)
        aps.append((hits / np.arange(1, len(top) + 1))[top].sum() / hits[-1] if hits[-1] else 0.0)
    return float(np.mean(aps))


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def measure_memory(function):
    """Run ``function``; return its result, peak tracemalloc bytes and peak RSS growth (sampled)."""
    baseline, peak, done = resident_bytes(), [0], threading.Event()

    def sample():
        while not done.wait(0.002):
            peak[0] = max(peak[0], resident_bytes() - baseline)

    sampler = threading.Thread(target=sample)
    sampler.start()
    tracemalloc.start()
    try:
        result = function()
        traced_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        done.set()
        sampler.join()
    return result, traced_peak, max(peak[0], resident_bytes() - baseline)


@pytest.fixture(scope="module")
def retrieval_set(scale):
    n_query, n_database, _ = SIZES[scale]
    data = synthetic_retrieval_set(n_query, n_database, 64, 80, seed=0)
    query, database, q_labels, db_labels = data
    hb.evaluate(query[:2], database[:50], q_labels[:2], db_labels[:50], topk=10)  # compile or load the kernel
    return data


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("topk", [1000, None], ids=["map-at-1000", "map-at-all"])
def test_evaluate_against_the_per_query_loop(benchmark, record, fastest, scale, threads, retrieval_set, topk, device):
    query, database, q_labels, db_labels = retrieval_set
    benchmark.group = f"evaluate {'MAP@all' if topk is None else f'MAP@{topk}'}"

    def run():
        return hb.evaluate(query, database, q_labels, db_labels, topk=topk, device=device)

    scores = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    seconds = fastest()
    cpu_start = time.process_time()
    run()
    cpu_seconds = time.process_time() - cpu_start
    _, traced, resident = measure_memory(run)

    n_loop = SIZES[scale][2]
    subset = (query[:n_loop], database, q_labels[:n_loop], db_labels)
    start = time.perf_counter()
    loop_map = per_query_loop_map(*subset, topk)
    loop_seconds = (time.perf_counter() - start) * len(query) / n_loop
    same_queries = hb.evaluate(*subset, topk=topk, device=device).map
    assert same_queries == pytest.approx(loop_map, rel=1e-12, abs=1e-15)

    speedup = loop_seconds / seconds
    record(
        baseline=f"per-query argsort loop (timed on {n_loop} queries, scaled)",
        ratio=speedup,
        ratio_is="loop seconds / evaluate seconds",
        targets={
            "seconds": (seconds, "<=", TARGET_SECONDS[topk]),
            "speedup over the loop": (speedup, ">=", TARGET_SPEEDUP),
            "extra memory (bytes)": (max(traced, resident), "<=", TARGET_MEMORY_BYTES),
        },
        shape=f"{len(query)} queries x {len(database)} items x {query.n_bits} bits, {q_labels.shape[1]} labels",
        device=device,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        loop_seconds=loop_seconds,
        traced_peak_bytes=traced,
        resident_growth_bytes=resident,
        map=scores.map,
        map_range=list(scores.map_range),
        maps=scores.maps,
        loop_map_on_subset=loop_map,
    )
