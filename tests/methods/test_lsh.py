import numpy as np

from hashbench.codes import hamming_distances
from hashbench.methods.lsh import LSH
from tests.methods.shallow_checks import (
    centred_gaussian,
    clustered,
    mean_imbalance,
    signs,
)


def test_hamming_distance_estimates_angle_between_centred_points():
    # sign random projections: P(bit differs) = angle / pi (Charikar 2002)
    split = clustered(40, dim=16, seed=1)
    lsh = LSH(n_bits=4096, seed=0).fit(split)
    codes = lsh.encode(split)
    centred = split.features - split.features.mean(axis=0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    angle = np.arccos(np.clip(unit @ unit.T, -1, 1))
    np.testing.assert_allclose(hamming_distances(codes, codes) / 4096, angle / np.pi, atol=0.04)


def test_no_limit_on_bits_beyond_feature_width():
    split = clustered(50, dim=4)
    assert signs(LSH(n_bits=20).fit(split), split).shape == (50, 20)


def test_balanced_on_centred_data():
    split = centred_gaussian()
    assert mean_imbalance(signs(LSH(n_bits=32).fit(split), split)) < 0.1
