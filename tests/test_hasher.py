import numpy as np
import pytest
from sklearn.base import clone

import hashbench as hb
from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError, NotFittedError


class MeanThreshold(hb.Hasher):
    """Bit j = feature j above its training mean (a deterministic toy method)."""

    name = "test-mean-threshold"
    citation = "test"

    def __init__(self, n_bits=4, *, seed=0, device="cpu", offset=0.0):
        super().__init__(n_bits, seed=seed, device=device)
        self.offset = offset

    def _fit(self, train, callback):
        self.mean_ = train.features[:, : self.n_bits].mean(axis=0) + self.offset

    def _encode(self, split):
        return split.features[:, : self.n_bits] - self.mean_


class NeedsAux(MeanThreshold):
    name = "test-needs-aux"
    uses_aux = True


class NeedsImages(MeanThreshold):
    name = "test-needs-images"
    input_kind = "images"


def test_fit_returns_self_and_encode_thresholds_by_sign_with_zero_as_one():
    X = np.array([[0.0, 1.0], [2.0, 3.0], [1.0, 5.0]], np.float32)
    m = MeanThreshold(n_bits=2)
    assert m.fit(X) is m
    # means are 1 and 3: rows sitting exactly on a mean get +1 (bit 1)
    assert m.encode(X).unpack().tolist() == [[0, 0], [1, 1], [1, 1]]


def test_sklearn_conventions():
    m = MeanThreshold(n_bits=3, offset=0.5)
    assert m.get_params() == {"n_bits": 3, "seed": 0, "device": "cpu", "offset": 0.5}
    m.set_params(offset=1.0)
    assert m.offset == 1.0
    copy = clone(m)
    assert copy.get_params() == m.get_params() and not hasattr(copy, "mean_")


def test_transform_gives_signs():
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    signs = MeanThreshold().fit_transform(X)
    assert signs.dtype == np.int8 and set(np.unique(signs)) <= {-1, 1}


def test_encode_before_fit_is_a_clear_error():
    with pytest.raises(NotFittedError, match="not fitted"):
        MeanThreshold().encode(np.zeros((2, 4)))


def test_width_mismatch_at_encode_time():
    m = MeanThreshold().fit(np.random.default_rng(0).normal(size=(10, 4)))
    with pytest.raises(InvalidInputError, match=r"4-d features.*5-d"):
        m.encode(np.zeros((2, 5)))


@pytest.mark.parametrize(
    "features, message",
    [
        (np.array([[1.0, 2.0, 3.0, 4.0]]), "at least 2 training rows"),
        (np.array([[1.0, np.nan, 3.0, 4.0], [1, 2, 3, 4]]), "NaN or inf"),
        (np.zeros((0, 4)), "zero rows"),
        (np.zeros(4), "2-D"),
    ],
)
def test_bad_training_input(features, message):
    with pytest.raises(InvalidInputError, match=message):
        MeanThreshold().fit(features)


@pytest.mark.parametrize("n_bits", [0, -3, 2.5, True])
def test_bad_n_bits(n_bits):
    with pytest.raises(InvalidInputError, match="n_bits"):
        MeanThreshold(n_bits=n_bits).fit(np.ones((3, 4)))


def test_missing_aux_and_images_are_named():
    split = Split(features=np.ones((3, 4), np.float32), name="train")
    with pytest.raises(InvalidInputError, match=r"\(aux\)"):
        NeedsAux().fit(split)
    with pytest.raises(InvalidInputError, match="frozen_backbone=True"):
        NeedsImages().fit(split)


def test_aux_width_checked_at_encode_time(clustered_split):
    m = NeedsAux().fit(clustered_split)
    narrow = Split(features=clustered_split.features, aux=clustered_split.aux[:, :2], name="query")
    with pytest.raises(InvalidInputError, match=r"4-d aux.*2-d aux"):
        m.encode(narrow)


def test_max_bits_per_feature_limit():
    class Limited(MeanThreshold):
        max_bits_per_feature = 1

    with pytest.raises(InvalidInputError, match="at most 4 bits"):
        Limited(n_bits=5).fit(np.random.default_rng(0).normal(size=(10, 4)))
