"""Shallow baselines: MAP@1000 on a dataset, and fit / encode seconds at MS-COCO-like scale.

    .venv/bin/python benchmarks/bench_shallow.py                       # both parts, mosaic, 2 threads
    .venv/bin/python benchmarks/bench_shallow.py --skip-timing --dataset path/to/data.npz
    .venv/bin/python benchmarks/bench_shallow.py --skip-map --timing-bits 32 128

MAP: every method in METHODS fitted on the training split (seed 0), query and database encoded,
scored with ``hb.evaluate(..., topk=1000, protocol="official")``. Cells a method cannot fill
(e.g. ``aux-only`` with more bits than aux columns) are reported as n/a with the reason.

Timing: 5,000 x 4,096 training features and 113,287 database items drawn from one structured
model (ReLU of a 64-cluster mixture in a random 256-d subspace plus noise, like CNN fc7 features),
with 80-d multi-hot aux; BLAS limited to ``--threads`` threads. Encoding is timed on the whole
database including packing the codes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import hashbench as hb
from hashbench.datasets.base import Split

METHODS = ["lsh", "sklsh", "sh", "pcah", "itq", "sgh", "itq-aux", "aux-only"]


def map_table(dataset, bits: list[int], seed: int) -> dict[str, dict[int, str]]:
    table = {}
    for name in METHODS:
        table[name] = {}
        for n_bits in bits:
            method = hb.create_method(name, n_bits=n_bits, seed=seed)
            try:
                method.fit(dataset.train)
            except hb.InvalidInputError as error:
                table[name][n_bits] = f"n/a ({error})"
                continue
            scores = hb.evaluate(
                method.encode(dataset.query),
                method.encode(dataset.database),
                dataset.query.labels,
                dataset.database.labels,
                topk=1000,
                protocol="official",
            )
            table[name][n_bits] = f"{scores.map:.4f}"
            print(f"  {name:9s} {n_bits:4d} bits  MAP@1000 {scores.map:.4f}", flush=True)
    return table


def coco_like_splits(n_train: int, n_database: int, dim: int, seed: int) -> tuple[Split, Split]:
    """Structured stand-ins for VGG16 fc7 features: ReLU(cluster centre + within-cluster
    variation in a 256-d subspace + isotropic noise); aux = the cluster's 80-d multi-hot tags."""
    rng = np.random.default_rng(seed)
    n_clusters, rank, n_tags = 64, 256, 80
    basis = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(rank)
    centres = rng.standard_normal((n_clusters, rank)).astype(np.float32) * 2
    tags = (rng.random((n_clusters, n_tags)) < 0.05).astype(np.float32)

    def draw(n: int, name: str) -> Split:
        cluster = rng.integers(0, n_clusters, n)
        latent = centres[cluster] + rng.standard_normal((n, rank), dtype=np.float32)
        features = latent @ basis
        features += rng.standard_normal((n, dim), dtype=np.float32) * 0.3
        np.maximum(features, 0, out=features)
        return Split(features=features, aux=tags[cluster], name=name)

    return draw(n_train, "train"), draw(n_database, "database")


def timing_table(bits: list[int], seed: int) -> list[tuple[str, int, float, float]]:
    train, database = coco_like_splits(5000, 113_287, 4096, seed)
    rows = []
    for name in METHODS:
        for n_bits in bits:
            method = hb.create_method(name, n_bits=n_bits, seed=seed)
            start = time.perf_counter()
            try:
                method.fit(train)
            except hb.InvalidInputError as error:
                print(f"  {name:9s} {n_bits:4d} bits  n/a ({error})", flush=True)
                continue
            fit_seconds = time.perf_counter() - start
            start = time.perf_counter()
            method.encode(database)
            encode_seconds = time.perf_counter() - start
            rows.append((name, n_bits, fit_seconds, encode_seconds))
            print(f"  {name:9s} {n_bits:4d} bits  fit {fit_seconds:6.2f} s  encode {encode_seconds:6.2f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mosaic", help="registered dataset name or .npz path (default: mosaic)")
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--timing-bits", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads (default 2)")
    parser.add_argument("--skip-map", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    args = parser.parse_args()

    with threadpool_limits(args.threads):
        if not args.skip_map:
            print(f"MAP@1000 (official protocol) on {args.dataset}, seed {args.seed}", flush=True)
            table = map_table(hb.load_dataset(args.dataset), args.bits, args.seed)
            print("\n| method | " + " | ".join(f"{b} bits" for b in args.bits) + " |")
            print("|---" * (len(args.bits) + 1) + "|")
            for name, cells in table.items():
                print(f"| {name} | " + " | ".join(cells[b] for b in args.bits) + " |")
        if not args.skip_timing:
            print(f"\nSeconds at MS-COCO-like scale (fit 5,000 x 4,096; encode 113,287), {args.threads} threads", flush=True)
            rows = timing_table(args.timing_bits, args.seed)
            print("\n| method | bits | fit s | encode s |\n|---|---|---|---|")
            for name, n_bits, fit_seconds, encode_seconds in rows:
                print(f"| {name} | {n_bits} | {fit_seconds:.2f} | {encode_seconds:.2f} |")


if __name__ == "__main__":
    main()
