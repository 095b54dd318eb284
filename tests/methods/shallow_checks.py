"""Small data makers and checks shared by the tests of the shallow hashers (the contracts of every
method are checked once for all by ``hashbench.check_method``, tests/test_checks.py)."""

from __future__ import annotations

import numpy as np

from hashbench.datasets.base import Split


def clustered(n: int, dim: int = 32, n_clusters: int = 8, seed: int = 0, aux_dim: int = 12) -> Split:
    """Gaussian clusters, one label per cluster, aux = the cluster's multi-hot tags."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (n_clusters, dim))
    tags = (rng.random((n_clusters, aux_dim)) < 0.3).astype(np.float32)
    cluster = rng.integers(0, n_clusters, n)
    features = centres[cluster] + rng.normal(0, 1, (n, dim))
    return Split(
        features=features.astype(np.float32),
        labels=np.eye(n_clusters, dtype=np.uint8)[cluster],
        aux=tags[cluster],
        name="train",
    )


def centred_gaussian(n: int = 2000, dim: int = 24, seed: int = 0) -> Split:
    """Zero-mean Gaussian data with a decaying spectrum (std 3 down to 1) in a random basis."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    features = rng.standard_normal((n, dim)) * np.linspace(3, 1, dim) @ basis.T
    return Split(features=features.astype(np.float32), aux=rng.random((n, 8)).astype(np.float32), name="train")


def signs(method, split) -> np.ndarray:
    return method.encode(split).to_signs()


def check_determinism(cls, split: Split, *, random: bool) -> None:
    """Same seed -> same codes; another seed -> other codes for a randomised method, the same
    codes for a deterministic one."""
    first = signs(cls(n_bits=16, seed=1).fit(split), split)
    again = signs(cls(n_bits=16, seed=1).fit(split), split)
    np.testing.assert_array_equal(first, again)
    other = signs(cls(n_bits=16, seed=2).fit(split), split)
    assert (first != other).any() == random


def mean_imbalance(codes: np.ndarray) -> float:
    """Mean over bits of |fraction of +1 - fraction of -1|: 0 for perfectly balanced bits."""
    return float(np.abs(codes.mean(axis=0)).mean())
