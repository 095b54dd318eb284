"""Checks every shallow hasher must pass, shared by their test modules, and small data makers."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import hashbench as hb
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


def check_registered(cls, name: str) -> None:
    assert hb.list_methods()[name] is cls
    method = hb.create_method(name, n_bits=8, seed=3)
    assert isinstance(method, cls) and method.n_bits == 8 and method.seed == 3
    assert cls.input_kind == "features"
    # the module docstring cites the paper (its year) and lists the free choices with defaults
    year = cls.citation.split()[-1] if "(" not in cls.citation else cls.citation.split("(")[0].split()[-1]
    docstring = sys.modules[cls.__module__].__doc__
    assert year.isdigit() and year in docstring and "Free choices and defaults" in docstring


def check_sklearn_conventions(cls) -> None:
    """Usable in a Pipeline on a plain matrix, clonable, get_params reflects __init__."""
    features = clustered(120).features
    codes = Pipeline([("scale", StandardScaler()), ("hash", cls(n_bits=16))]).fit(features).transform(features)
    assert codes.shape == (120, 16) and set(np.unique(codes)) <= {-1, 1}
    method = cls(n_bits=12, seed=5)
    copy = clone(method)
    assert copy is not method and copy.get_params() == method.get_params()
    copy.fit(features)
    assert not hasattr(method, "is_fitted_")  # fitting the clone leaves the original untouched
    np.testing.assert_array_equal(copy.fit_transform(features), clone(method).fit(features).transform(features))


def check_bad_input(cls, split: Split) -> None:
    """NaN/inf features, a single training row, a width change and encode-before-fit are errors."""
    with pytest.raises(hb.NotFittedError):
        cls(n_bits=4).encode(split)
    broken = split.features.copy()
    broken[3, 1] = np.nan
    with pytest.raises(hb.InvalidInputError, match="NaN or inf"):
        cls(n_bits=4).fit(Split(features=broken, aux=split.aux, name="train"))
    with pytest.raises(hb.InvalidInputError, match="at least 2 training rows"):
        cls(n_bits=4).fit(split.subset([0]))
    fitted = cls(n_bits=4).fit(split)
    narrower = Split(features=split.features[:, :-1], aux=split.aux, name="query")
    with pytest.raises(hb.InvalidInputError, match="fitted on"):
        fitted.encode(narrower)


def check_determinism(cls, split: Split, *, random: bool) -> None:
    """Same seed -> same codes; for a randomised method another seed -> other codes."""
    first = signs(cls(n_bits=16, seed=1).fit(split), split)
    again = signs(cls(n_bits=16, seed=1).fit(split), split)
    np.testing.assert_array_equal(first, again)
    other = signs(cls(n_bits=16, seed=2).fit(split), split)
    assert (first != other).any() == random


def mean_imbalance(codes: np.ndarray) -> float:
    """Mean over bits of |fraction of +1 - fraction of -1|: 0 for perfectly balanced bits."""
    return float(np.abs(codes.mean(axis=0)).mean())
