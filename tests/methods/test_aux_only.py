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


def test_more_bits_than_aux_columns_is_an_error_naming_the_limit():
    with pytest.raises(hb.InvalidInputError, match="at most 12 bits for 12-d aux"):
        AuxOnly(n_bits=13).fit(clustered(100, aux_dim=12))


def test_needs_aux():
    with pytest.raises(hb.InvalidInputError, match="aux"):
        AuxOnly(n_bits=4).fit(clustered(50).features)
