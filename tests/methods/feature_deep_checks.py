"""Checks shared by the feature-based deep hashers (UH-BDNN, TBH, WSIH).

A test module imports the ``test_*`` functions it wants and defines the fixture ``make_method``:
``make_method(**overrides)`` returns a small, fast configuration of its method.
"""

from __future__ import annotations

import numpy as np
import pytest

from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError, TrainingDivergedError, UnknownNameError
from tests.methods.image_checks import one_thread, parameter_gradients  # noqa: F401  (re-exported fixtures/helpers)

N_CLASSES = 4
N_FEATURES = 16


def clustered_features(n: int, rng: np.random.Generator, centres: np.ndarray):
    """Non-negative (ReLU-like) features of noisy class centres, and the one-hot classes."""
    classes = rng.integers(0, N_CLASSES, n)
    features = np.maximum(centres[classes] + rng.normal(0, 0.5, (n, N_FEATURES)), 0)
    return features.astype(np.float32), np.eye(N_CLASSES, dtype=np.uint8)[classes]


def feature_split(n: int = 120, *, seed: int = 0, web: bool = True, name: str = "train") -> Split:
    """A clustered split; the training split carries a labelled web split of the same classes."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).uniform(0, 3, (N_CLASSES, N_FEATURES))
    features, labels = clustered_features(n, rng, centres)
    web_split = None
    if web:
        web_features, web_labels = clustered_features(n // 2, rng, centres)
        web_split = Split(web_features, web_labels, name="web")
    return Split(features, labels, name=name, web=web_split)


def test_codes_have_the_asked_shape(make_method, one_thread):
    method = make_method(n_bits=12).fit(feature_split())
    codes = method.encode(feature_split(30, seed=1, web=False, name="query"))
    assert (len(codes), codes.n_bits) == (30, 12)
    assert set(np.unique(codes.to_signs())) <= {-1, 1}


def test_same_seed_same_codes_other_seed_other_codes(make_method, one_thread):
    train, query = feature_split(), feature_split(40, seed=1, web=False, name="query")
    first = make_method(seed=3).fit(train).encode(query).unpack()
    again = make_method(seed=3).fit(train).encode(query).unpack()
    other = make_method(seed=4).fit(train).encode(query).unpack()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_callback_sees_each_epoch_with_an_encodable_model(make_method, one_thread):
    seen = []
    train = feature_split()
    method = make_method(**{epochs_argument(make_method): 2})
    method.fit(train, callback=lambda epoch, hasher: seen.append((epoch, hasher.encode(train).n_bits)))
    assert seen == [(1, method.n_bits), (2, method.n_bits)]


def test_explicit_settings_override_the_preset_and_unknown_presets_are_named(make_method, one_thread):
    method = make_method(preset="quick", **{epochs_argument(make_method): 1}).fit(feature_split())
    assert sum(1 for h in method.history_ if not any(k.startswith("web_") for k in h)) == 1
    with pytest.raises(UnknownNameError, match="preset"):
        make_method(preset="fast").fit(feature_split())


def test_parameter_counts_are_reported_per_network(make_method, one_thread):
    counts = make_method().fit(feature_split()).n_parameters()
    assert counts and all(isinstance(n, int) and n > 0 for n in counts.values())


def test_non_positive_epochs_are_rejected_by_name(make_method):
    argument = epochs_argument(make_method)
    with pytest.raises(InvalidInputError, match=argument):
        make_method(**{argument: 0}).fit(feature_split())


def check_nan_is_reported_with_epoch_and_term(method, loss_function: str, term: str) -> None:
    """Poison ``term`` of ``method.<loss_function>`` from the second epoch on (epochs counted by
    ``history_``); fit must stop with an error naming the term and epoch 2."""
    original = getattr(method, loss_function)

    def poisoned(*args, **kwargs):
        terms = original(*args, **kwargs)
        if len(method.history_) >= 1:
            terms[term] = terms[term] * float("nan")
        return terms

    setattr(method, loss_function, poisoned)
    with pytest.raises(TrainingDivergedError, match=rf"'{term}'.*epoch 2"):
        method.fit(feature_split())


def epochs_argument(make_method) -> str:
    """The hyper-parameter that counts the epochs seen by the callback ('epochs' or 'iterations')."""
    params = make_method().get_params()
    return "epochs" if "epochs" in params else "iterations"
