import pytest

import hashbench as hb

# A mosaic dataset small enough to build in about two seconds.
MICRO = dict(size="tiny", n_train=60, n_query=20, n_database=100, n_web=20, backbone_items=600, backbone_epochs=3)


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mosaic-cache")


@pytest.fixture(scope="session")
def micro(micro_dir):
    return hb.load_dataset("mosaic", data_dir=micro_dir, **MICRO)
