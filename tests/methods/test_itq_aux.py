import numpy as np
import pytest

import hashbench as hb
from hashbench.datasets.base import Split
from hashbench.methods.itq import ITQ
from hashbench.methods.itq_aux import ITQAux
from tests.methods.shallow_checks import clustered, signs


def normalised(matrix):
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)


def test_equals_itq_on_the_concatenation_of_normalised_blocks():
    split = clustered(200)
    joint = np.hstack([normalised(split.features), normalised(split.aux)])
    expected = ITQ(n_bits=12, seed=4).fit(joint).transform(joint)
    np.testing.assert_array_equal(signs(ITQAux(n_bits=12, seed=4).fit(split), split), expected)


def test_all_zero_aux_rows_give_codes_not_nan():
    split = clustered(200)
    split.aux[:50] = 0
    itq_aux = ITQAux(n_bits=12).fit(split)
    assert np.isfinite(itq_aux.projection_).all()
    codes = signs(itq_aux, split)
    assert codes.shape == (200, 12)
    # rows without aux are hashed from their features alone, like a row whose aux is zero
    zero_aux = Split(features=split.features[:50], aux=np.zeros_like(split.aux[:50]), name="query")
    np.testing.assert_array_equal(signs(itq_aux, zero_aux), codes[:50])


def test_needs_aux_and_the_same_aux_width():
    split = clustered(100)
    with pytest.raises(hb.InvalidInputError, match="aux"):
        ITQAux(n_bits=8).fit(split.features)
    fitted = ITQAux(n_bits=8).fit(split)
    with pytest.raises(hb.InvalidInputError, match="aux"):
        fitted.encode(Split(features=split.features, aux=split.aux[:, :-1], name="query"))


def test_bits_limited_by_features_plus_aux_width():
    split = clustered(100, dim=6, aux_dim=4)
    assert ITQAux(n_bits=10).fit(split).encode(split).n_bits == 10
    with pytest.raises(hb.InvalidInputError, match="at most 10 bits"):
        ITQAux(n_bits=11).fit(split)
