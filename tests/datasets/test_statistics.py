import numpy as np
import pytest

from hashbench.datasets.base import ArrayImages, Split
from hashbench.datasets.statistics import TooFewItemsError, feature_statistics
from hashbench.errors import InvalidInputError


def axis_points(scales):
    """+-s_i on axis i for every i: the covariance is diagonal with entries proportional to s_i^2."""
    d = len(scales)
    return np.concatenate([np.diag(scales), -np.diag(scales)]).astype(np.float32).reshape(2 * d, d)


def test_two_points_span_one_direction():
    stats = feature_statistics(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert stats["top3_variance_share"] == pytest.approx(1) and stats["effective_rank"] == pytest.approx(1)
    assert stats["median_cosine"] == pytest.approx(0) and stats["p5_cosine"] == pytest.approx(0)
    assert stats["zero_fraction"] == 0.5 and (stats["items"], stats["pairs"]) == (2, 1)


def test_isotropic_cross():
    # Pairs: (e1, -e1) and (e2, -e2) have cosine -1, the four others 0. Sorted [-1, -1, 0, 0, 0, 0]:
    # median 0; 5th percentile at position 0.05 * 5 = 0.25, between -1 and -1.
    stats = feature_statistics(axis_points([1.0, 1.0]))
    assert stats["effective_rank"] == pytest.approx(2)
    assert stats["median_cosine"] == pytest.approx(0) and stats["p5_cosine"] == pytest.approx(-1)
    assert stats["pairs"] == 6


def test_effective_rank_of_a_three_to_one_spectrum():
    # Eigenvalues 3 : 1, p = (3/4, 1/4): exp(-(3/4 ln 3/4 + 1/4 ln 1/4)) = 1.7548
    stats = feature_statistics(axis_points([np.sqrt(3), 1.0]))
    assert stats["effective_rank"] == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))
    assert stats["effective_rank"] == pytest.approx(1.7548, abs=1e-4)


def test_variance_shares_of_twelve_directions():
    # Variances proportional to 12, 11, ..., 1 (sum 78): top 3 hold 33/78, top 10 hold 75/78.
    stats = feature_statistics(axis_points(np.sqrt(np.arange(12, 0, -1))))
    assert stats["top3_variance_share"] == pytest.approx(33 / 78)
    assert stats["top10_variance_share"] == pytest.approx(75 / 78)
    p = np.arange(12, 0, -1) / 78
    assert stats["effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))


def test_zero_rows_have_cosine_zero_and_count_as_zeros():
    stats = feature_statistics(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]))
    # Pairs: (0, x) -> 0 twice, (x, 2x) -> 1. Sorted [0, 0, 1]: median 0.
    assert stats["median_cosine"] == pytest.approx(0) and stats["zero_fraction"] == pytest.approx(2 / 6)


def test_equal_rows_have_no_variance_statistics():
    stats = feature_statistics(np.ones((4, 3)))
    assert np.isnan(stats["effective_rank"]) and np.isnan(stats["top3_variance_share"])
    assert stats["median_cosine"] == pytest.approx(1)


def test_large_inputs_are_subsampled_with_the_seed():
    x = np.random.default_rng(0).normal(size=(3000, 8)).astype(np.float32)
    stats = feature_statistics(x, max_items=1000, max_pairs=5000)
    assert (stats["items"], stats["pairs"]) == (1000, 5000)
    assert stats == feature_statistics(x, max_items=1000, max_pairs=5000)
    assert stats != feature_statistics(x, max_items=1000, max_pairs=5000, seed=1)
    # Independent Gaussian features: cosines centred on 0, variance spread evenly.
    assert abs(stats["median_cosine"]) < 0.03 and stats["effective_rank"] > 7.8


def test_gram_and_covariance_paths_agree():
    x = np.random.default_rng(1).normal(size=(6, 9))
    wide = feature_statistics(x)  # 6 rows < 9 columns: eigenvalues of the Gram matrix
    tall = feature_statistics(np.concatenate([x, x]))  # 12 rows: of the covariance
    assert wide["effective_rank"] == pytest.approx(tall["effective_rank"])


def test_a_split_is_accepted_and_too_few_items_raise_a_named_error():
    split = Split(np.eye(3, dtype=np.float32), name="train")
    assert feature_statistics(split)["items"] == 3
    with pytest.raises(TooFewItemsError, match="at least 2 items; the train features have 1"):
        feature_statistics(split.subset([0]))
    assert issubclass(TooFewItemsError, InvalidInputError)


def test_a_split_without_features_says_so():
    images = Split(None, images=ArrayImages(np.zeros((3, 1, 4, 4), np.uint8), backbone=lambda: None), name="train")
    with pytest.raises(InvalidInputError, match="no features"):
        feature_statistics(images)
