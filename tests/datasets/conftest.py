import pytest

import hashbench as hb

# A mosaic dataset small enough to build in a few seconds. Its backbone is trained for three steps
# only, so the detector is near chance; the low threshold makes it fire, so aux is not empty.
MICRO = dict(
    size="tiny", n_train=60, n_query=20, n_database=100, n_web=20, backbone_items=300, backbone_epochs=1,
    detector_threshold=0.1,
)


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mosaic-cache")


@pytest.fixture(scope="session")
def micro(micro_dir):
    return hb.load_dataset("mosaic", data_dir=micro_dir, **MICRO)
