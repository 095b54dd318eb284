import numpy as np
import pytest
import torch

import hashbench as hb
from hashbench.datasets import mosaic
from hashbench.datasets.backbone import FEATURE_DIM, MosaicBackbone
from hashbench.datasets.fashion import debian_available
from hashbench.datasets.mosaic import render_mosaics
from hashbench.errors import InvalidInputError, UnknownNameError

from .conftest import MICRO


def test_split_sizes_and_shapes(micro):
    sizes = {name: len(split) for name, split in micro.splits().items()}
    assert sizes == {"train": 60, "query": 20, "database": 100, "web": 20}
    for name in ("train", "query", "database"):
        split = getattr(micro, name)
        assert split.features.shape == (len(split), FEATURE_DIM) and split.features.dtype == np.float32
        assert split.labels.shape == (len(split), 10) and split.aux.shape == (len(split), 10)
        assert split.labels.sum(1).min() >= 1  # every mosaic holds at least one item
    assert micro.label_names[0] == "t-shirt/top" and len(micro.aux_names) == 10


def test_labels_match_the_cells(micro):
    cells = micro.train.images.cells
    assert ((cells >= 0).sum(1) >= micro.train.labels.sum(1)).all()
    assert 1.3 < micro.info["label_cardinality"] < 2.6


def test_web_split_is_single_items_with_one_hot_labels(micro):
    assert (micro.web.labels.sum(1) == 1).all() and micro.web.aux is None
    pixels = micro.web.images.load(np.arange(3))
    assert pixels.shape == (3, 1, 56, 56) and pixels[:, :, :14].max() == 0  # centred, blank border


def test_backbone_reproduces_the_stored_features(micro):
    for split in (micro.query, micro.web):
        model = split.images.backbone()
        assert isinstance(model, MosaicBackbone) and not model.training
        with torch.no_grad():
            features = model(torch.from_numpy(split.images.load(np.arange(5))).float() / 255).numpy()
        np.testing.assert_allclose(features, split.features[:5], rtol=1e-5, atol=1e-6)
    assert micro.query.images.backbone() is not micro.query.images.backbone()


def test_image_loading_by_index_slice_and_scalar(micro):
    images = micro.database.images
    assert images.load(np.array([4, 2])).shape == (2, 1, 56, 56)
    np.testing.assert_array_equal(images.load(slice(2, 5))[0], images.load(2))
    assert micro.database.subset([3, 1]).images.load([0]).shape == (1, 1, 56, 56)


def test_render_places_and_mirrors_items():
    items = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    cells = np.array([[0, -1, -1, 1]])
    mosaic = render_mosaics(items, cells, np.array([[False, False, False, True]]))[0, 0]
    np.testing.assert_array_equal(mosaic[:28, :28], items[0])
    np.testing.assert_array_equal(mosaic[28:, 28:], items[1][:, ::-1])
    assert mosaic[:28, 28:].max() == 0


def test_aux_quality_is_recorded_and_informative(micro):
    info = micro.info
    assert 0 < info["aux_precision"] <= 1 and 0 < info["aux_recall"] <= 1
    true = micro.database.labels.astype(bool)
    detected = micro.database.aux.astype(bool)
    # Detections agree with the truth more often than chance would.
    assert (true & detected).sum() / detected.sum() > true.mean() * 2
    assert info["image_source"].startswith("vendored") and info["params"]["seed"] == 0


def test_same_seed_gives_identical_arrays_and_other_seed_differs(micro):
    again = hb.load_dataset("mosaic", cache=False, **MICRO)
    for name, split in micro.splits().items():
        other = getattr(again, name)
        assert split.features.tobytes() == other.features.tobytes()
        assert split.labels.tobytes() == other.labels.tobytes()
    different = hb.load_dataset("mosaic", cache=False, **{**MICRO, "seed": 1})
    assert not np.array_equal(different.train.features, micro.train.features)


def test_tags_variant_shares_the_objects_build(micro, micro_dir, monkeypatch):
    monkeypatch.setattr(mosaic, "_build_arrays", lambda params: 1 / 0)
    ds = hb.load_dataset("mosaic-tags", data_dir=micro_dir, **MICRO)
    assert ds.name == "mosaic-tags" and ds.train.aux.shape[1] == len(ds.aux_names) >= 200
    assert ds.info["params"]["aux"] == "tags" and 0 < ds.info["aux_recall"] < 1
    assert ds.info["aux_precision"] != micro.info["aux_precision"]
    assert ds.train.features.tobytes() == micro.train.features.tobytes()
    again = hb.load_dataset("mosaic-tags", data_dir=micro_dir, **MICRO)
    assert again.train.aux.tobytes() == ds.train.aux.tobytes()


@pytest.mark.parametrize("size", sorted(mosaic.SIZES))
def test_every_size_preset_is_consistent(size, tmp_path, monkeypatch):
    resolved = []
    monkeypatch.setattr(mosaic, "_build_arrays", lambda params: resolved.append(params) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        hb.load_dataset("mosaic", size=size, source="vendored", data_dir=tmp_path)
    assert resolved[0]["n_web"] <= resolved[0]["backbone_items"] <= 8000


@pytest.mark.parametrize(
    "options, message",
    [
        ({"size": "huge"}, "size"),
        ({"n_train": 0}, "n_train"),
        ({"aux": "captions"}, "aux"),
        ({"cell_probability": 1.5}, "cell_probability"),
        ({"n_web": 700}, "n_web"),
        ({"source": "internet"}, "source"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_options_are_rejected(options, message, tmp_path):
    with pytest.raises(InvalidInputError, match=message):
        hb.load_dataset("mosaic", data_dir=tmp_path, **{**MICRO, **options})


def test_unknown_dataset_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="mosaic"):
        hb.load_dataset("mosiac")


@pytest.mark.skipif(not debian_available(), reason="needs the Debian package dataset-fashion-mnist")
def test_coco_variant_uses_all_debian_images(tmp_path):
    ds = hb.load_dataset("mosaic-coco", cache=False, **{**MICRO, "size": "coco"})
    assert ds.info["params"]["source"] == "debian" and "70000 images" in ds.info["image_source"]
    assert len(ds.database) == MICRO["n_database"]


@pytest.mark.slow
def test_default_size_build(tmp_path):
    ds = hb.load_dataset("mosaic", data_dir=tmp_path)
    assert (len(ds.train), len(ds.query), len(ds.database)) == (5000, 1000, 20000)
    assert ds.info["build_seconds"] < 240
