"""Shallow baselines: fit and encode seconds, and MAP@1000 of the codes.

    pytest benchmarks/bench_shallow.py --benchmark-only                    # 1,000 x 512 train, 20,000 encoded
    pytest benchmarks/bench_shallow.py --benchmark-only --scale full       # 5,000 x 4,096 train, 113,287 encoded
    pytest benchmarks/bench_shallow.py --benchmark-only --bench-dataset mosaic --bench-bits 16,32,64,128

Each method of METHODS (seed 0) is fitted on the training split (the benchmarked time), the
database is encoded (timed once, packing the codes included) and the query and database codes are
scored with ``hb.evaluate(..., topk=1000)`` (official protocol). Data: the structured synthetic
model of ``structured_dataset`` (multi-label items, CNN-like non-negative features, 80-d aux) at
the sizes of ``--scale``, or ``--bench-dataset``. In-run baselines: fit seconds over the seconds of
a PCA of the same training features (covariance and eigendecomposition, where most of these
methods start), encode seconds over one float32 projection matmul of the database (the floor of
any linear hashing), and MAP over LSH's at the same code length. No targets: the paper's Table 4
times no shallow method. Cells a method cannot fill (``aux-only`` with more bits than aux
columns) are skipped with the reason.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import hashbench as hb
from hashbench.datasets.base import Split

METHODS = ["lsh", "sklsh", "sh", "pcah", "itq", "sgh", "itq-aux", "aux-only"]
SIZES = {"small": (1000, 512, 500, 20_000), "full": (5000, 4096, 1000, 113_287)}  # train, dims, query, database


def structured_dataset(n_train: int, n_query: int, n_database: int, dim: int, seed: int) -> hb.HashingDataset:
    """A synthetic stand-in for VGG16 fc7 features of multi-label images.

    Each item belongs to one of 64 scene types that set its chances of carrying each of 80
    labels (at least one); its feature is ReLU(sum of its labels' prototypes + scene offset +
    item variation, all in a random 256-d subspace, + isotropic noise); its aux semantics are
    its labels seen by an imperfect detector (20% missed, 1% false alarms). The labelled ``web``
    split (half as many items as ``train``, for WSIH) holds single-label items, as web images
    found by one label's query, without aux."""
    rng = np.random.default_rng(seed)
    n_scenes, n_labels, rank = 64, 80, 256
    basis = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(rank)
    prototypes = rng.standard_normal((n_labels, rank)).astype(np.float32)
    scene_offsets = rng.standard_normal((n_scenes, rank)).astype(np.float32)
    scene_label_odds = rng.random((n_scenes, n_labels)) ** 24

    def draw(n: int, name: str) -> Split:
        scene = rng.integers(0, n_scenes, n)
        labels = (rng.random((n, n_labels)) < scene_label_odds[scene]) & (name != "web")
        labels[np.arange(n), scene_label_odds[scene].argmax(axis=1)] = True
        latent = labels.astype(np.float32) @ prototypes + scene_offsets[scene]
        latent += rng.standard_normal((n, rank), dtype=np.float32) * 2
        features = latent @ basis
        features += rng.standard_normal((n, dim), dtype=np.float32) * 0.3
        np.maximum(features, 0, out=features)
        detected = (labels & (rng.random(labels.shape) > 0.2)) | (rng.random(labels.shape) < 0.01)
        aux = None if name == "web" else detected.astype(np.float32)
        return Split(features=features, labels=labels.astype(np.uint8), aux=aux, name=name)

    splits = {"train": n_train, "query": n_query, "database": n_database, "web": max(1, n_train // 2)}
    return hb.HashingDataset(name="synthetic", **{name: draw(n, name) for name, n in splits.items()})


def benchmark_dataset(request, scale: str) -> hb.HashingDataset:
    """``--bench-dataset`` when given, else the structured synthetic set at ``scale``'s sizes."""
    name = request.config.getoption("--bench-dataset")
    if name:
        return hb.load_dataset(name)
    n_train, dim, n_query, n_database = SIZES[scale]
    return structured_dataset(n_train, n_query, n_database, dim, seed=0)


def official_map(method, dataset) -> float:
    """MAP@1000 (official protocol) of a fitted method's codes for the query and database splits."""
    return hb.evaluate(
        method.encode(dataset.query), method.encode(dataset.database), dataset.query.labels, dataset.database.labels
    ).map


def timed(action) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of ``action()``. On a shared
    machine the wall clock includes waiting for other processes; CPU seconds do not."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


@pytest.fixture(scope="module")
def dataset(request, scale):
    return benchmark_dataset(request, scale)


@pytest.fixture(scope="module")
def floors(dataset):
    """Seconds of the in-run baselines, measured once: a PCA of the training features and one
    projection matmul of the database per code length."""
    features = dataset.train.features
    pca_seconds = timed(lambda: np.linalg.eigh(np.cov(features, rowvar=False)))[0]
    matmul = {}

    def matmul_seconds(n_bits: int) -> float:
        if n_bits not in matmul:
            projection = np.random.default_rng(0).standard_normal((features.shape[1], n_bits)).astype(np.float32)
            matmul[n_bits] = timed(lambda: dataset.database.features @ projection)[0]
        return matmul[n_bits]

    lsh_maps = {}

    def lsh_map(n_bits: int) -> float:
        if n_bits not in lsh_maps:
            lsh_maps[n_bits] = official_map(hb.create_method("lsh", n_bits=n_bits, seed=0).fit(dataset.train), dataset)
        return lsh_maps[n_bits]

    return pca_seconds, matmul_seconds, lsh_map


@pytest.mark.parametrize("name", METHODS)
def test_fit_encode_and_map(benchmark, record, fastest, threads, dataset, floors, name, n_bits):
    pca_seconds, matmul_seconds, lsh_map = floors
    benchmark.group = f"shallow fit, {n_bits} bits"
    method = hb.create_method(name, n_bits=n_bits, seed=0)
    try:
        method.fit(dataset.train)
    except hb.InvalidInputError as error:
        pytest.skip(f"{name} at {n_bits} bits: {error}")
    benchmark.pedantic(method.fit, (dataset.train,), rounds=2, iterations=1)
    fit_seconds = fastest()
    encode_seconds, encode_cpu_seconds = timed(lambda: method.encode(dataset.database))
    score = official_map(method, dataset)
    record(
        baseline="PCA of the training features (fit); one projection matmul (encode); LSH (MAP)",
        ratio=fit_seconds / pca_seconds,
        ratio_is="fit seconds / PCA seconds",
        dataset=dataset.name,
        shape=f"fit {dataset.train.features.shape}, encode {len(dataset.database)}",
        fit_seconds=fit_seconds,
        encode_seconds=encode_seconds,
        encode_cpu_seconds=encode_cpu_seconds,
        encode_over_matmul=encode_seconds / matmul_seconds(n_bits),
        map=score,
        map_over_lsh=score / lsh_map(n_bits),
    )
