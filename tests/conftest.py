import numpy as np
import pytest

from hashbench.datasets.base import Split


@pytest.fixture
def clustered_split():
    """A small labelled split: 4 Gaussian clusters in 16-d, one label per cluster, plus aux."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (4, 16))
    cluster = rng.integers(0, 4, 200)
    features = centres[cluster] + rng.normal(0, 1, (200, 16))
    labels = np.eye(4, dtype=np.uint8)[cluster]
    return Split(features=features.astype(np.float32), labels=labels, aux=labels.astype(np.float32), name="train")
