import numpy as np
import pytest

import hashbench as hb
from hashbench.methods.pca_rr import PCARR
from hashbench.methods.pcah import PCAH
from tests.methods.shallow_checks import centred_gaussian, check_determinism, clustered, signs
from tests.methods.test_pcah import spectrum_with_gaps


def test_deterministic_in_its_seed():
    check_determinism(PCARR, clustered(100), random=True)


def test_codes_are_signs_of_rotated_top_principal_projections():
    features = spectrum_with_gaps(300, 40, seed=3)
    model = PCARR(n_bits=8, seed=1).fit(hb.Split(features=features))
    rotation = model.rotation_
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(8), atol=1e-10)
    # the PCA part from numpy's SVD, independently of the method's route; a principal direction's
    # sign is arbitrary, so compare the projections on each direction up to sign
    centred = features.astype(np.float64) - features.mean(axis=0)
    top = np.linalg.svd(centred, full_matrices=False)[2][:8].T
    unrotated = model.projection_ @ rotation.T
    signs_of_directions = np.sign(np.sum(unrotated * top, axis=0))
    np.testing.assert_allclose(unrotated, top * signs_of_directions, atol=1e-6)
    expected = np.where(centred @ (top * signs_of_directions) @ rotation >= 0, 1, -1)
    assert (model.fit_transform(features) == expected).mean() > 0.999


def test_rotation_spreads_the_variance_over_the_bits():
    """PCAH's bits carry the decaying principal variances; the rotation evens them out."""
    split = centred_gaussian(n=4000, dim=24)
    data = split.features - split.features.mean(axis=0)
    pcah, rotated = PCAH(n_bits=8).fit(split), PCARR(n_bits=8, seed=0).fit(split)

    def spread(model):
        return np.var(data @ model.projection_, axis=0)

    pcah_ratio = spread(pcah).max() / spread(pcah).min()
    rotated_ratio = spread(rotated).max() / spread(rotated).min()
    np.testing.assert_allclose(spread(pcah).sum(), spread(rotated).sum(), rtol=1e-4)  # a rotation keeps the total
    assert rotated_ratio < pcah_ratio


def test_more_bits_than_feature_width_is_an_error():
    with pytest.raises(hb.InvalidInputError, match="8"):
        PCARR(n_bits=9).fit(clustered(50, dim=8))


def test_registered_and_encodes_new_items():
    split = clustered(200)
    model = hb.create_method("pca-rr", n_bits=16, seed=0).fit(split)
    assert signs(model, split).shape == (200, 16)
