"""Shallow baselines: MAP@1000 on a dataset, and fit / encode seconds at MS-COCO-like scale.

    .venv/bin/python benchmarks/bench_shallow.py                       # both parts, mosaic, 2 threads
    .venv/bin/python benchmarks/bench_shallow.py --skip-timing --dataset path/to/data.npz
    .venv/bin/python benchmarks/bench_shallow.py --skip-map --timing-bits 32 128

MAP: every method in METHODS fitted on the training split (seed 0), query and database encoded,
scored with ``hb.evaluate(..., topk=1000, protocol="official")``. Cells a method cannot fill
(e.g. ``aux-only`` with more bits than aux columns) are n/a, with the reason printed above the
table; ``aux-only`` is then also scored at its longest code (as many bits as aux columns).

Timing: 5,000 x 4,096 training features and 113,287 database items drawn from the structured
synthetic model of ``structured_dataset`` (multi-label items, CNN-like non-negative features,
80-d aux); BLAS limited to ``--threads`` threads. Encoding is timed on the whole database,
packing the codes included. ``--dataset synthetic`` scores MAP on a 512-d stand-in from the same
model (5,000 train / 1,000 query / 20,000 database).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import hashbench as hb
from hashbench.datasets.base import Split

METHODS = ["lsh", "sklsh", "sh", "pcah", "itq", "sgh", "itq-aux", "aux-only"]


def official_map(method, dataset) -> float:
    """MAP@1000 (official protocol) of a fitted method's codes for the query and database splits."""
    return hb.evaluate(
        method.encode(dataset.query),
        method.encode(dataset.database),
        dataset.query.labels,
        dataset.database.labels,
        topk=1000,
        protocol="official",
    ).map


def map_score(name: str, n_bits: int, dataset, seed: int) -> str:
    method = hb.create_method(name, n_bits=n_bits, seed=seed)
    try:
        method.fit(dataset.train)
    except hb.InvalidInputError as error:
        print(f"  {name:9s} {n_bits:4d} bits  n/a: {error}", flush=True)
        return "n/a"
    value = official_map(method, dataset)
    print(f"  {name:9s} {n_bits:4d} bits  MAP@1000 {value:.4f}", flush=True)
    return f"{value:.4f}"


def map_table(dataset, bits: list[int], seed: int) -> dict[str, dict[int, str]]:
    table = {name: {n_bits: map_score(name, n_bits, dataset, seed) for n_bits in bits} for name in METHODS}
    aux_width = dataset.train.aux.shape[1] if dataset.train.aux is not None else None
    if aux_width is not None and aux_width < max(bits):
        # aux-only takes one bit per aux column: show its longest code beside the table
        widest = f"aux-only ({aux_width} bits)"
        table[widest] = {n_bits: map_score("aux-only", aux_width, dataset, seed) for n_bits in bits[:1]}
    return table


def structured_dataset(n_train: int, n_query: int, n_database: int, dim: int, seed: int) -> hb.HashingDataset:
    """A synthetic stand-in for VGG16 fc7 features of multi-label images.

    Each item belongs to one of 64 scene types that set its chances of carrying each of 80
    labels (at least one); its feature is ReLU(sum of its labels' prototypes + scene offset +
    item variation, all in a random 256-d subspace, + isotropic noise); its aux semantics are
    its labels seen by an imperfect detector (20% missed, 1% false alarms)."""
    rng = np.random.default_rng(seed)
    n_scenes, n_labels, rank = 64, 80, 256
    basis = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(rank)
    prototypes = rng.standard_normal((n_labels, rank)).astype(np.float32)
    scene_offsets = rng.standard_normal((n_scenes, rank)).astype(np.float32)
    scene_label_odds = rng.random((n_scenes, n_labels)) ** 24

    def draw(n: int, name: str) -> Split:
        scene = rng.integers(0, n_scenes, n)
        labels = rng.random((n, n_labels)) < scene_label_odds[scene]
        labels[np.arange(n), scene_label_odds[scene].argmax(axis=1)] = True
        latent = labels.astype(np.float32) @ prototypes + scene_offsets[scene]
        latent += rng.standard_normal((n, rank), dtype=np.float32) * 2
        features = latent @ basis
        features += rng.standard_normal((n, dim), dtype=np.float32) * 0.3
        np.maximum(features, 0, out=features)
        detected = (labels & (rng.random(labels.shape) > 0.2)) | (rng.random(labels.shape) < 0.01)
        return Split(features=features, labels=labels.astype(np.uint8), aux=detected.astype(np.float32), name=name)

    splits = {"train": n_train, "query": n_query, "database": n_database}
    return hb.HashingDataset(name="synthetic", **{name: draw(n, name) for name, n in splits.items()})


def timed(action) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of ``action()``. On a shared
    machine the wall clock includes waiting for other processes; CPU seconds do not."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def timing_table(bits: list[int], seed: int) -> list[tuple]:
    data = structured_dataset(5000, 1, 113_287, 4096, seed)
    rows = []
    for name in METHODS:
        for n_bits in bits:
            method = hb.create_method(name, n_bits=n_bits, seed=seed)
            try:
                fit = timed(lambda: method.fit(data.train))
            except hb.InvalidInputError as error:
                print(f"  {name:9s} {n_bits:4d} bits  n/a: {error}", flush=True)
                continue
            encode = timed(lambda: method.encode(data.database))
            rows.append((name, n_bits, *fit, *encode))
            print(f"  {name:9s} {n_bits:4d} bits  fit {fit[0]:6.2f} s  encode {encode[0]:6.2f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        default="mosaic",
        help="registered dataset name, .npz path, or 'synthetic' (structured stand-in; default: mosaic)",
    )
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
            dataset = (
                structured_dataset(5000, 1000, 20_000, 512, args.seed)
                if args.dataset == "synthetic"
                else hb.load_dataset(args.dataset)
            )
            table = map_table(dataset, args.bits, args.seed)
            print("\n| method | " + " | ".join(f"{b} bits" for b in args.bits) + " |")
            print("|---" * (len(args.bits) + 1) + "|")
            for name, cells in table.items():
                print(f"| {name} | " + " | ".join(cells.get(b, "") for b in args.bits) + " |")
        if not args.skip_timing:
            scale = "fit 5,000 x 4,096; encode 113,287"
            print(f"\nSeconds at MS-COCO-like scale ({scale}), {args.threads} threads", flush=True)
            rows = timing_table(args.timing_bits, args.seed)
            print("\n| method | bits | fit s | fit CPU s | encode s | encode CPU s |\n|---|---|---|---|---|---|")
            for name, n_bits, *seconds in rows:
                print(f"| {name} | {n_bits} | " + " | ".join(f"{s:.2f}" for s in seconds) + " |")


if __name__ == "__main__":
    main()
