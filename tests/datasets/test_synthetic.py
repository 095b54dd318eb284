import numpy as np
import pytest

import hashbench as hb
from hashbench.datasets.statistics import feature_statistics
from hashbench.datasets.synthetic import fc7_like_dataset

SMALL = {"n_train": 400, "n_query": 50, "n_database": 300, "n_web": 40, "n_features": 128}


def test_registered_with_the_default_sizes_and_fc7_statistics():
    dataset = hb.load_dataset("fc7-like")
    sizes = [len(dataset.train), len(dataset.query), len(dataset.database), len(dataset.web)]
    assert sizes == [2000, 500, 8000, 500] and dataset.train.features.shape[1] == 512
    stats = feature_statistics(dataset.train)
    # CNN fc7-like: sparse, non-negative, most pairs far from parallel, variance over many directions
    assert (dataset.train.features >= 0).all() and 0.5 < stats["zero_fraction"] < 0.65
    assert 0.45 < stats["median_cosine"] < 0.55 and stats["effective_rank"] > 50
    assert 1.8 < dataset.train.labels.sum(axis=1).mean() < 2.2 and dataset.train.labels.sum(axis=1).min() >= 1


def test_same_seed_same_arrays_other_seed_other_arrays():
    first, again, other = fc7_like_dataset(**SMALL), fc7_like_dataset(**SMALL), fc7_like_dataset(**SMALL, seed=1)
    assert first.fingerprint == again.fingerprint != other.fingerprint


def test_aux_are_detection_scores_then_tags_and_web_items_have_one_label():
    dataset = fc7_like_dataset(**SMALL, n_tags=6)
    aux, labels = dataset.train.aux, dataset.train.labels
    assert aux.shape[1] == 10 + 6 and len(dataset.aux_names) == aux.shape[1]
    scores = aux[:, :10]
    assert ((scores == 0) | ((scores >= 0.5) & (scores <= 1))).all()
    # 10% of the objects missed, 3% of the absent ones seen
    assert (scores[labels == 1] > 0).mean() == pytest.approx(0.9, abs=0.04)
    assert (scores[labels == 0] > 0).mean() == pytest.approx(0.03, abs=0.02)
    assert set(np.unique(aux[:, 10:])) <= {0.0, 1.0}
    assert (dataset.web.labels.sum(axis=1) == 1).all() and dataset.train.web is dataset.web


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n_train": 0}, "n_train"),
        ({"n_classes": 3}, "n_classes"),
        ({"noise": -1.0}, "noise"),
        ({"n_tags": -2}, "n_tags"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(hb.InvalidInputError, match=message):
        fc7_like_dataset(**options)
