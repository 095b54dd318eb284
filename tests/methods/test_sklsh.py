import numpy as np
import pytest

import hashbench as hb
from hashbench.codes import hamming_distances
from hashbench.datasets.base import Split
from hashbench.methods.sklsh import SKLSH
from tests.methods.shallow_checks import (
    centred_gaussian,
    clustered,
    mean_imbalance,
    signs,
)


def expected_hamming(squared_distance: np.ndarray, gamma: float) -> np.ndarray:
    """Raginsky & Lazebnik (2009), Lemma 2: E[normalised Hamming distance] =
    8 / pi^2 * sum_m (1 - K(m (x - y))) / (4 m^2 - 1), K(d) = exp(-gamma ||d||^2 / 2)."""
    m = np.arange(1, 2001)[:, None, None]
    return 8 / np.pi**2 * ((1 - np.exp(-gamma * m**2 * squared_distance / 2)) / (4 * m**2 - 1)).sum(axis=0)


def test_normalised_hamming_distance_tracks_kernel_distance():
    rng = np.random.default_rng(4)
    features = rng.normal(0, 1, (40, 10)).astype(np.float32)
    gamma = 0.2
    codes = SKLSH(n_bits=4096, gamma=gamma, seed=1).fit(features).encode(features)
    squared = ((features[:, None] - features[None]) ** 2).sum(axis=-1)
    expected = expected_hamming(squared, gamma)
    measured = hamming_distances(codes, codes) / 4096
    # 4,096 bits: standard error of each pair's estimate is at most 0.008
    np.testing.assert_allclose(measured, expected, atol=0.04)
    # closer in the kernel -> closer in Hamming space
    kernel_distance = 1 - np.exp(-gamma * squared / 2)
    upper = np.triu_indices(40, k=1)
    assert np.corrcoef(measured[upper], kernel_distance[upper])[0, 1] > 0.95


def test_default_gamma_follows_the_data_scale():
    split = clustered(300, dim=8)
    scaled = Split(features=split.features * 10, name="train")
    plain = SKLSH(n_bits=32, seed=2).fit(split)
    wide = SKLSH(n_bits=32, seed=2).fit(scaled)
    assert wide.gamma_ == pytest.approx(plain.gamma_ / 100, rel=1e-4)
    agree = (signs(plain, split) == signs(wide, scaled)).mean()
    assert agree > 0.999


def test_explicit_gamma_is_used_and_checked():
    split = clustered(60)
    assert SKLSH(n_bits=8, gamma=0.5).fit(split).gamma_ == 0.5
    for bad in (0, -1.0, float("nan"), "wide"):
        with pytest.raises(hb.InvalidInputError, match="gamma"):
            SKLSH(n_bits=8, gamma=bad).fit(split)


def test_coinciding_points_need_an_explicit_gamma():
    with pytest.raises(hb.InvalidInputError, match="give gamma explicitly"):
        SKLSH(n_bits=8).fit(np.ones((10, 3), dtype=np.float32))


def test_balanced_across_bits_on_centred_data():
    # bit = sign(cos(u) + t) is +1 with probability 1/2 + arcsin(t) / pi when the phase u spreads
    # over many periods (a kernel narrow against the data): single bits lean by design, by
    # 1 - 2 / pi on average over t ~ U[-1, 1], while the bits together balance out
    split = centred_gaussian()
    plain = SKLSH(n_bits=512).fit(split)
    codes = signs(SKLSH(n_bits=512, gamma=100 * plain.gamma_).fit(split), split)
    assert abs(codes.mean()) < 0.05
    assert mean_imbalance(codes) == pytest.approx(1 - 2 / np.pi, abs=0.04)
    assert abs(signs(plain, split).mean()) < 0.05
