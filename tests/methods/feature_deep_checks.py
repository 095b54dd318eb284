"""Small data and checks shared by the tests of the feature-based deep hashers (UH-BDNN, TBH, WSIH).

The contracts every method shares are checked once for all by ``hashbench.check_method``
(tests/test_checks.py); these helpers serve the method-specific tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from hashbench.datasets.base import Split
from hashbench.errors import TrainingDivergedError
from tests.methods.image_checks import parameter_gradients  # noqa: F401  (re-exported fixtures/helpers)

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
