import numpy as np
import pytest

import hashbench as hb
from hashbench.methods.itq import ITQ
from tests.methods.shallow_checks import (
    centred_gaussian,
    clustered,
    mean_imbalance,
    signs,
)


def test_quantisation_loss_never_increases():
    itq = ITQ(n_bits=12, n_iter=30).fit(clustered(300))
    loss = itq.quantization_loss_
    assert len(loss) == 30
    assert np.all(np.diff(loss) <= 1e-9 * loss[0])
    assert loss[-1] < loss[0]


def test_codes_are_signs_of_rotated_principal_projections():
    split = clustered(200)
    itq = ITQ(n_bits=8).fit(split)
    np.testing.assert_allclose(itq.rotation_.T @ itq.rotation_, np.eye(8), atol=1e-10)
    # the rotated directions stay orthonormal, and span the top-8 principal subspace
    np.testing.assert_allclose(itq.projection_.T @ itq.projection_, np.eye(8), atol=1e-8)
    centred = split.features - split.features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.linalg.svd(vt[:8] @ itq.projection_, compute_uv=False), 1, atol=1e-6)
    np.testing.assert_array_equal(signs(itq, split), np.where(centred @ itq.projection_ >= 0, 1, -1))


def test_rotation_lowers_quantisation_loss_below_plain_pca():
    split = clustered(300)
    itq = ITQ(n_bits=8).fit(split)
    pca_directions = itq.projection_ @ itq.rotation_.T
    projected = split.features - split.features.mean(axis=0)
    unrotated = projected @ pca_directions
    assert itq.quantization_loss_[-1] < np.square(np.sign(unrotated) - unrotated).sum()


def test_callback_sees_every_iteration_with_an_encodable_model():
    split = clustered(100)
    seen = []
    ITQ(n_bits=8, n_iter=5).fit(split, callback=lambda it, m: seen.append((it, m.encode(split).n_bits)))
    assert seen == [(1, 8), (2, 8), (3, 8), (4, 8), (5, 8)]


def test_more_bits_than_feature_width_is_an_error_naming_the_limit():
    with pytest.raises(hb.InvalidInputError, match="at most 6 bits for 6-d features"):
        ITQ(n_bits=7).fit(clustered(50, dim=6))


def test_bad_iteration_count():
    with pytest.raises(hb.InvalidInputError, match="n_iter"):
        ITQ(n_bits=4, n_iter=0).fit(clustered(50))


def test_balanced_on_centred_data():
    split = centred_gaussian()
    assert mean_imbalance(signs(ITQ(n_bits=16).fit(split), split)) < 0.1
