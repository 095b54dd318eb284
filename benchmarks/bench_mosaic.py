"""The embedded mosaic dataset: build time, aux quality, and MAP@1000 of raw-feature ranking.

    .venv/bin/python benchmarks/bench_mosaic.py                  # default size, fresh build
    .venv/bin/python benchmarks/bench_mosaic.py --dataset mosaic-tags --size tiny

The dataset is built from scratch (``cache=False``) and timed. The reference score ranks the
database by Euclidean distance between raw backbone features (no hashing) and scores it with the
official protocol (stable tie-break by database index, queries without any relevant item skipped,
AP@k normalised by the relevant items in the top k); ``hb.evaluate`` scores binary codes, so that
ranking is scored here by ``map_at_k_of_ranking``. Relevant = sharing at least one label.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import hashbench as hb


def euclidean_ranking(query: np.ndarray, database: np.ndarray, topk: int) -> np.ndarray:
    """Database indices (n_query, topk) by increasing Euclidean distance, ties by index."""
    squared = (query**2).sum(1)[:, None] - 2 * query @ database.T + (database**2).sum(1)[None]
    return np.argsort(squared, axis=1, kind="stable")[:, :topk]


def map_at_k_of_ranking(ranking: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray) -> float:
    """Official-protocol MAP of given rankings (n_query, k); memory grows with k, not the database."""
    labels_in_database = db_labels.any(axis=0)
    has_relevant = (query_labels.astype(bool) & labels_in_database).any(axis=1)
    hits = (db_labels[ranking].astype(bool) & query_labels.astype(bool)[:, None, :]).any(axis=2)
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, ranking.shape[1] + 1)
    ap = (precision_at * hits).sum(1) / np.maximum(hits.sum(1), 1)
    return float(ap[has_relevant].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mosaic")
    parser.add_argument("--size", default=None, help="tiny, default or coco (the dataset's own default if omitted)")
    parser.add_argument("--topk", type=int, default=1000)
    args = parser.parse_args()
    options = {"cache": False} | ({"size": args.size} if args.size else {})
    started = time.perf_counter()
    ds = hb.load_dataset(args.dataset, **options)
    seconds = time.perf_counter() - started
    ranking = euclidean_ranking(ds.query.features, ds.database.features, args.topk)
    score = map_at_k_of_ranking(ranking, ds.query.labels, ds.database.labels)
    summary = {k: v for k, v in ds.info.items() if k != "params"}
    print(json.dumps(summary, indent=1))
    print(f"build seconds (wall, incl. loading the images): {seconds:.1f}")
    print(f"MAP@{args.topk} of Euclidean ranking by raw features: {score:.4f}")


if __name__ == "__main__":
    main()
