import numpy as np
import pytest

import hashbench as hb
from hashbench.methods._linear import EXACT_PCA_MAX_DIM
from hashbench.methods.pcah import PCAH
from tests.methods.shallow_checks import (
    centred_gaussian,
    check_determinism,
    clustered,
    mean_imbalance,
    signs,
)


def test_deterministic_and_seed_free():
    check_determinism(PCAH, clustered(100), random=False)


def top_principal_signs(features: np.ndarray, n_bits: int) -> np.ndarray:
    centred = features.astype(np.float64) - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return np.where(centred @ vt[:n_bits].T >= 0, 1, -1)


def spectrum_with_gaps(n: int, dim: int, seed: int) -> np.ndarray:
    """Data whose top 8 principal variances are well separated (so the directions are unique)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, 8)))
    scales = np.geomspace(20, 4, 8)
    return (rng.standard_normal((n, 8)) * scales @ basis.T + rng.standard_normal((n, dim)) * 0.5).astype(np.float32)


@pytest.mark.parametrize("dim", [40, EXACT_PCA_MAX_DIM + 76], ids=["exact-eigh", "randomized-svd"])
def test_codes_are_signs_of_top_principal_projections(dim):
    features = spectrum_with_gaps(300, dim, seed=dim)
    codes = PCAH(n_bits=8).fit_transform(features)
    expected = top_principal_signs(features, 8)
    agree = (codes == expected).mean(axis=0)
    # a principal direction's sign is arbitrary: each bit equals the reference or its negation
    assert np.all((agree > 0.995) | (agree < 0.005)), agree


def test_more_bits_than_feature_width_is_an_error_naming_the_limit():
    with pytest.raises(hb.InvalidInputError, match="at most 8 bits for 8-d features"):
        PCAH(n_bits=9).fit(clustered(50, dim=8))


def test_balanced_on_centred_data():
    split = centred_gaussian()
    assert mean_imbalance(signs(PCAH(n_bits=16).fit(split), split)) < 0.1
