import pytest

import hashbench as hb

# A mosaic dataset small enough to build in a few seconds, on the shipped backbone.
MICRO = dict(size="tiny", n_train=60, n_query=20, n_database=100, n_web=20)


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mosaic-cache")


@pytest.fixture(scope="session")
def micro(micro_dir):
    return hb.load_dataset("mosaic", data_dir=micro_dir, **MICRO)
