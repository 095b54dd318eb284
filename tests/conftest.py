import numpy as np
import pytest

import hashbench as hb
from hashbench.datasets.base import Split

# A mosaic dataset small enough to build in a few seconds, on the shipped backbone.
MICRO = dict(size="tiny", n_train=60, n_query=20, n_database=100, n_web=20)


@pytest.fixture
def clustered_split():
    """A small labelled split: 4 Gaussian clusters in 16-d, one label per cluster, plus aux."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (4, 16))
    cluster = rng.integers(0, 4, 200)
    features = centres[cluster] + rng.normal(0, 1, (200, 16))
    labels = np.eye(4, dtype=np.uint8)[cluster]
    return Split(features=features.astype(np.float32), labels=labels, aux=labels.astype(np.float32), name="train")


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mosaic-cache")


@pytest.fixture(scope="session")
def micro(micro_dir):
    return hb.load_dataset("mosaic", data_dir=micro_dir, **MICRO)
