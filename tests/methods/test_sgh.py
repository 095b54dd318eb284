import numpy as np
import pytest

import hashbench as hb
from hashbench.methods.lsh import LSH
from hashbench.methods.sgh import SGH, similarity_factors
from tests.methods.shallow_checks import (
    centred_gaussian,
    clustered,
    mean_imbalance,
    signs,
)


def test_feature_transformation_approximates_the_gaussian_similarity():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(60, 5))
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    left, right = similarity_factors(data, rho=2.0)
    target = 2 * np.exp(-((data[:, None] - data[None]) ** 2).sum(axis=-1) / 2) - 1
    approximation = left @ right.T
    np.testing.assert_allclose(np.diag(approximation), 1.0)  # exact for identical points
    # the chord t sinh(1) + cosh(1) of exp on [-1, 1] lies above it, by at most its value at
    # t = ln sinh(1); S scales that gap by 2 / e (about 0.41)
    worst = 2 / np.e * (np.sinh(1) * np.log(np.sinh(1)) + np.cosh(1) - np.sinh(1))
    assert np.all(approximation >= target - 1e-12)
    assert np.abs(approximation - target).max() <= worst + 1e-12
    # both increase with the inner product, so they rank pairs identically
    upper = np.triu_indices(60, k=1)
    np.testing.assert_array_equal(np.argsort(approximation[upper]), np.argsort(target[upper]))


def test_beats_lsh_on_clustered_data():
    data = clustered(1700, dim=64, n_clusters=12, seed=3)
    train, query, database = data.subset(range(500)), data.subset(range(500, 700)), data.subset(range(700, 1700))

    def mean_average_precision(method):
        method.fit(train)
        return hb.evaluate(method.encode(query), method.encode(database), query.labels, database.labels, topk=500).map

    sgh, lsh = mean_average_precision(SGH(n_bits=8, n_anchors=100)), mean_average_precision(LSH(n_bits=8))
    assert sgh > lsh + 0.1, (sgh, lsh)


def test_fewer_training_rows_than_anchors_uses_every_row():
    split = clustered(40)
    sgh = SGH(n_bits=8, n_anchors=300).fit(split)
    assert sgh.anchors_.shape == (40, 32)
    assert sgh.transform(split.features).shape == (40, 8)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"n_anchors": 0}, "n_anchors"),
        ({"rho": 0.0}, "rho"),
        ({"ridge": -1.0}, "ridge"),
        ({"n_refinements": -1}, "n_refinements"),
    ],
)
def test_bad_settings_are_named(setting, named):
    with pytest.raises(hb.InvalidInputError, match=named):
        SGH(n_bits=4, **setting).fit(clustered(40))


def test_refinement_pass_changes_the_bits_it_relearns():
    split = clustered(200)
    plain = signs(SGH(n_bits=8, n_refinements=0).fit(split), split)
    refined = signs(SGH(n_bits=8, n_refinements=1).fit(split), split)
    assert (plain != refined).any()


def test_balanced_on_centred_data():
    split = centred_gaussian()
    assert mean_imbalance(signs(SGH(n_bits=16, n_anchors=100).fit(split), split)) < 0.2
