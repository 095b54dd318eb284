"""Summary statistics of a feature matrix, to compare datasets' features with each other.

    from hashbench.datasets.statistics import feature_statistics
    feature_statistics(dataset.train)   # or an (n, d) array

``hashbench datasets describe`` prints them for any dataset; the embedded mosaic sets store those
of their train split in ``info["feature_statistics"]``. CNN features such as VGG16 fc7 have their
variance spread over many directions, most pairs of images far from parallel, and many zeros
(after the ReLU); features dominated by one shared component show a few principal components
holding nearly all variance and every pair of items nearly parallel.

The statistics (keys of the returned dict):
- ``top3_variance_share``, ``top10_variance_share``: share of the total variance held by the 3
  (10) largest eigenvalues of the covariance matrix (1 when there are at most that many features);
- ``effective_rank``: ``exp(H)`` with ``H = -sum_i p_i log p_i`` the entropy of the normalised
  eigenvalues ``p_i = lambda_i / sum_j lambda_j`` (Roy and Vetterli, 2007): the number of equally
  strong directions that would give the same entropy, between 1 and the number of features;
- ``median_cosine``, ``p5_cosine``: median and 5th percentile (numpy's linear interpolation) of
  the cosine similarity of pairs of distinct items; a row of zeros has cosine 0 with every row;
- ``zero_fraction``: fraction of feature values that are exactly 0;
- ``items``, ``pairs``: how many rows and pairs the statistics were computed on.

Free choices: the covariance is normalised by ``n - 1`` (this scales every eigenvalue alike, so no
statistic depends on it); when all rows are equal the total variance is 0 and the variance
statistics are NaN. Large inputs are subsampled with ``seed``: at most ``max_items`` rows (10,000)
drawn without replacement, and at most ``max_pairs`` pairs (200,000): every pair when there are
that few, otherwise pairs drawn uniformly from all pairs of distinct rows, with replacement.
"""

from __future__ import annotations

import numpy as np

from hashbench._validation import check_matrix, check_positive_int
from hashbench.errors import InvalidInputError

MAX_ITEMS = 10_000
MAX_PAIRS = 200_000


class TooFewItemsError(InvalidInputError):
    """Statistics over pairs of items or a covariance asked of fewer than two items."""


def feature_statistics(features, *, max_items: int = MAX_ITEMS, max_pairs: int = MAX_PAIRS, seed: int = 0) -> dict:
    """The statistics of the module docstring for a Split (its ``features``) or an (n, d) array."""
    name = "features"
    if hasattr(features, "images"):  # a Split
        name = f"{features.name} features"
        if features.features is None:
            raise InvalidInputError(f"the {features.name} split stores no features (images only)")
        features = features.features
    features = check_matrix(features, name, allow_empty=True)
    if len(features) < 2:
        raise TooFewItemsError(f"feature statistics need at least 2 items; the {name} have {len(features)}")
    if isinstance(max_items, bool) or not isinstance(max_items, (int, np.integer)) or max_items < 2:
        raise InvalidInputError(f"max_items must be an integer >= 2, got {max_items!r}")
    max_pairs = check_positive_int(max_pairs, "max_pairs")
    rng = np.random.default_rng(seed)
    if len(features) > max_items:
        features = features[np.sort(rng.choice(len(features), max_items, replace=False))]
    x = features.astype(np.float64)
    eigenvalues = covariance_eigenvalues(x)
    cosines = pair_cosines(x, rng, max_pairs)
    return {
        **variance_statistics(eigenvalues),
        "median_cosine": float(np.median(cosines)),
        "p5_cosine": float(np.percentile(cosines, 5)),
        "zero_fraction": float(np.mean(x == 0)),
        "items": len(x),
        "pairs": len(cosines),
    }


def covariance_eigenvalues(x: np.ndarray) -> np.ndarray:
    """Eigenvalues of the covariance of the rows of ``x``, descending, negatives of rounding set to 0.

    The centred Gram matrix (n x n) has the same non-zero eigenvalues as the covariance (d x d);
    the smaller of the two is decomposed.
    """
    centred = x - x.mean(axis=0)
    small = centred @ centred.T if len(x) < x.shape[1] else centred.T @ centred
    return np.clip(np.linalg.eigvalsh(small)[::-1], 0, None) / (len(x) - 1)


def variance_statistics(eigenvalues: np.ndarray) -> dict:
    """Top-3 and top-10 variance shares and effective rank of descending covariance eigenvalues."""
    total = eigenvalues.sum()
    if total <= 0:
        return {
            "top3_variance_share": float("nan"),
            "top10_variance_share": float("nan"),
            "effective_rank": float("nan"),
        }
    p = eigenvalues / total
    positive = p[p > 0]
    return {
        "top3_variance_share": float(p[:3].sum()),
        "top10_variance_share": float(p[:10].sum()),
        "effective_rank": float(np.exp(-(positive * np.log(positive)).sum())),
    }


def pair_cosines(x: np.ndarray, rng: np.random.Generator, max_pairs: int, chunk: int = 8192) -> np.ndarray:
    """Cosine similarities of every pair of distinct rows, or of ``max_pairs`` pairs drawn with ``rng``.

    Pairs are taken ``chunk`` at a time, so memory stays at ``chunk`` rows whatever their number;
    the unit rows are float32, ample for quantiles of cosines and half the memory traffic.
    """
    norms = np.linalg.norm(x, axis=1)
    unit = (x / np.where(norms > 0, norms, 1)[:, None]).astype(np.float32)
    n = len(x)
    if n * (n - 1) // 2 <= max_pairs:
        first, second = np.triu_indices(n, k=1)
    else:
        first = rng.integers(0, n, max_pairs)
        second = (first + rng.integers(1, n, max_pairs)) % n  # any row but the first, uniformly
    return np.concatenate(
        [
            np.einsum("ij,ij->i", unit[first[start : start + chunk]], unit[second[start : start + chunk]])
            for start in range(0, len(first), chunk)
        ]
    )
