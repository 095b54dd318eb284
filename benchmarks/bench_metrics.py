"""Speed and memory of ``hashbench.evaluate`` at MS-COCO scale, against the common per-query loop.

    .venv/bin/python benchmarks/bench_metrics.py                 # 5,000 x 113,287 x 64 bits, 80 labels
    .venv/bin/python benchmarks/bench_metrics.py --database 1000000 --queries 1000   # scale check

Data are synthetic but shaped like learned codes: multi-hot labels (about 3 of 80 per item) and
codes = sign(label embedding + noise), so relevant items sit at small Hamming distances and many
items tie. The loop baseline is the usual evaluation code (inner-product Hamming distance, stable
``np.argsort``, relevance by label products, AP@k per query); it is timed on ``--loop-queries``
queries and scaled linearly to the full query set, and its MAP on those queries must equal
``evaluate``'s on the same queries. Memory: peak of numpy/Python allocations (tracemalloc) and
peak resident-set growth (sampled every 2 ms) while ``evaluate`` runs. Threads: torch's count
(``torch.set_num_threads`` / ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import argparse
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

import hashbench as hb


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
    """The common evaluation loop: one matmul, stable argsort and AP per query."""
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--database", type=int, default=113287)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--labels", type=int, default=80)
    parser.add_argument("--topk", type=int, default=1000)
    parser.add_argument("--loop-queries", type=int, default=250, help="queries timed in the loop baseline")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of evaluate (best is reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    query, database, q_labels, db_labels = synthetic_retrieval_set(
        args.queries, args.database, args.bits, args.labels, args.seed
    )
    print(f"{args.queries} queries x {args.database} database items x {args.bits} bits, {args.labels} labels, "
          f"MAP@{args.topk}; {torch.get_num_threads()} threads")

    start = time.perf_counter()
    hb.evaluate(query[:2], database[:50], q_labels[:2], db_labels[:50], topk=10)
    print(f"first call (compiles or loads the cached kernel): {time.perf_counter() - start:.2f} s")

    times, cpu_times = [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        scores = hb.evaluate(query, database, q_labels, db_labels, topk=args.topk, device="cpu")
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    fast = min(times)
    print(f"evaluate: {fast:.2f} s wall, {min(cpu_times):.2f} s CPU over all threads "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)} s wall); "
          f"MAP official {scores.maps['official']:.4f}, deephash {scores.maps['deephash']:.4f}, "
          f"tie_aware {scores.maps['tie_aware']:.4f}; P@1000 {scores.precision_curve[-1]:.4f}")

    _, traced, rss = measure_memory(
        lambda: hb.evaluate(query, database, q_labels, db_labels, topk=args.topk, device="cpu")
    )
    print(f"peak extra memory: {traced / 2**20:.0f} MiB traced allocations, {rss / 2**20:.0f} MiB resident growth")

    n_loop = min(args.loop_queries, args.queries)
    subset = (query[:n_loop], database, q_labels[:n_loop], db_labels)
    start, cpu_start = time.perf_counter(), time.process_time()
    loop_map = per_query_loop_map(*subset, args.topk)
    loop_seconds = (time.perf_counter() - start) * args.queries / n_loop
    loop_cpu = (time.process_time() - cpu_start) * args.queries / n_loop
    same_map = hb.evaluate(*subset, topk=args.topk, device="cpu").map
    print(f"per-query loop: {loop_seconds:.1f} s wall, {loop_cpu:.1f} s CPU for {args.queries} queries "
          f"(timed on {n_loop}, scaled); speed-up {loop_seconds / fast:.1f}x wall, "
          f"{loop_cpu / min(cpu_times):.1f}x CPU")
    print(f"MAP on those {n_loop} queries: loop {loop_map:.12f}, evaluate {same_map:.12f}, "
          f"{'identical' if abs(loop_map - same_map) < 1e-12 else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
