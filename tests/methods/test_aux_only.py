import numpy as np
import pytest

import hashbench as hb
from hashbench.datasets.base import Split
from hashbench.methods.aux_only import AuxOnly
from hashbench.methods.itq import ITQ
from tests.methods.shallow_checks import clustered, signs


def test_equals_itq_on_the_aux_matrix_and_ignores_features():
    split = clustered(200)
    expected = ITQ(n_bits=6, seed=2).fit(split.aux).transform(split.aux)
    aux_only = AuxOnly(n_bits=6, seed=2).fit(split)
    np.testing.assert_array_equal(signs(aux_only, split), expected)
    shuffled = Split(features=split.features[::-1], aux=split.aux, name="query")
    np.testing.assert_array_equal(signs(aux_only, shuffled), expected)


def test_codes_longer_than_the_aux_add_random_projection_bits_to_itqs():
    split = clustered(300, aux_dim=12)
    short = signs(AuxOnly(n_bits=12, seed=4).fit(split), split)
    long = AuxOnly(n_bits=40, seed=4).fit(split)
    codes = signs(long, split)
    np.testing.assert_array_equal(codes[:, :12], short)
    # the other 28 bits: signs of random Gaussian projections of the centred aux
    centred = split.aux - split.aux.mean(axis=0)
    extra = long.projection_[:, 12:]
    np.testing.assert_array_equal(codes[:, 12:], np.where(centred @ extra >= 0, 1, -1))
    assert extra.shape == (12, 28) and abs(extra.std() - 1) < 0.2
    assert hb.code_stats(long.encode(split))["constant_bits"] == 0


def test_needs_aux():
    with pytest.raises(hb.InvalidInputError, match="aux"):
        AuxOnly(n_bits=4).fit(clustered(50).features)
