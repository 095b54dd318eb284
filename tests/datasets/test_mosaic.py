import json

import numpy as np
import pytest
import torch
from torch import nn

import hashbench as hb
from hashbench.datasets import cache, mosaic
from hashbench.datasets.backbone import Fc7Backbone, PooledBackbone
from hashbench.datasets.backbone_shipped import SHIPPED_TRAINING, load_shipped_backbone
from hashbench.datasets.fashion import debian_available, load_items
from hashbench.errors import HashbenchError, InvalidInputError, UnknownNameError
from hashbench.methods._cnn import CodeNetwork, load_images
from tests.conftest import MICRO

FC7_WIDTH = 1024


def test_split_sizes_and_shapes(micro):
    sizes = {name: len(split) for name, split in micro.splits().items()}
    assert sizes == {"train": 60, "query": 20, "database": 100, "web": 20}
    for name in ("train", "query", "database"):
        split = getattr(micro, name)
        assert split.features.shape == (len(split), FC7_WIDTH) and split.features.dtype == np.float32
        assert split.labels.shape == (len(split), 10) and split.aux.shape == (len(split), 10)
        assert split.labels.sum(1).min() >= 1  # every mosaic holds at least one item
    assert micro.label_names[0] == "t-shirt/top" and len(micro.aux_names) == 10


def test_labels_match_the_cells(micro):
    cells = micro.train.images.cells
    assert ((cells >= 0).sum(1) >= micro.train.labels.sum(1)).all()
    assert 1.3 < micro.info["label_cardinality"] < 2.6


def test_web_split_is_single_items_with_one_hot_labels(micro):
    assert (micro.web.labels.sum(1) == 1).all() and micro.web.aux is None
    pixels = micro.web.images.load(np.arange(5))
    assert pixels.shape == (5, 1, 56, 56)
    quadrants = pixels.reshape(5, 2, 28, 2, 28).max(axis=(2, 4))
    assert ((quadrants > 0).sum(axis=(1, 2)) == 1).all()  # one item alone in one cell


def test_features_are_fc7_of_the_backbone_the_image_methods_fine_tune(micro):
    # The image methods' own path: their network's backbone part, their image loading, eval mode.
    for split in (micro.query, micro.web):
        backbone = split.images.backbone()
        assert isinstance(backbone, Fc7Backbone) and not backbone.training
        network = CodeNetwork(backbone, split.features.shape[1], 16, nn.Identity()).eval()
        with torch.no_grad():
            features = network.features(load_images(split, np.arange(8), torch.device("cpu"))).numpy()
        # the stored features come from the exact integer pass, which rounds each layer's inputs
        # to 8 bits: the float network agrees up to that rounding
        np.testing.assert_allclose(features, split.features[:8], atol=0.05 * split.features.max())
        assert np.corrcoef(features.ravel(), split.features[:8].ravel())[0, 1] > 0.999
    assert micro.query.images.backbone() is not micro.query.images.backbone()


def test_features_are_the_exact_pass_of_the_shipped_backbone(micro):
    trained = load_shipped_backbone("fc7")
    images = micro.query.images.load(np.arange(len(micro.query)))
    exact = trained.exact().features(images).numpy()
    assert exact.tobytes() == micro.query.features.tobytes()
    assert micro.info["params"]["backbone"] == trained.meta["sha256"]


def test_mosaics_never_show_an_item_the_shipped_backbone_was_trained_on(micro):
    # items are matched by their pixels: the dataset stores pixels, not item numbers
    items = load_items("vendored")
    row_of = {item.tobytes(): int(row) for item, row in zip(items.images, items.source_indices)}
    shown = {row_of[item.tobytes()] for item in micro.query.images.items}
    trained_on = set(load_shipped_backbone("fc7").source_indices.tolist())
    assert len(shown) == len(micro.query.images.items) and not shown & trained_on


def test_a_backbone_is_trained_here_when_its_options_are_given():
    ds = hb.load_dataset("mosaic", cache=False, **MICRO, backbone_items=300, backbone_epochs=1)
    assert ds.info["backbone"]["items"] == 300 and ds.info["backbone"]["epochs"] == 1
    assert "backbone" not in ds.info["params"] and ds.info["params"]["backbone_items"] == 300


def test_aux_quality_is_recorded(micro):
    info = micro.info
    true = np.concatenate([getattr(micro, s).labels for s in ("train", "query", "database")]).astype(bool)
    detected = np.concatenate([getattr(micro, s).aux for s in ("train", "query", "database")]).astype(bool)
    assert info["aux_precision"] == round((true & detected).sum() / detected.sum(), 4)
    assert info["aux_recall"] == round((true & detected).sum() / true.sum(), 4)
    assert info["image_source"].startswith("vendored") and info["params"]["seed"] == 0
    assert info["feature_statistics"]["items"] == len(micro.train)


def test_same_seed_gives_byte_identical_arrays_and_other_seed_differs(micro, micro_dir):
    (path,) = micro_dir.glob("mosaic-*.npz")
    cached = cache.read_npz_whole(path)
    params = json.loads(str(cached["meta"]))["params"]
    again = mosaic._build_arrays(params)
    assert sorted(again) == sorted(cached)
    for key in cached:
        if key != "meta":  # holds the build time
            assert again[key].dtype == cached[key].dtype and again[key].tobytes() == cached[key].tobytes(), key
    different = hb.load_dataset("mosaic", cache=False, **{**MICRO, "seed": 1})
    assert not np.array_equal(different.train.features, micro.train.features)


def test_two_builds_of_one_cache_file_at_once_build_it_once(tmp_path, monkeypatch):
    import threading

    builds, build = [], mosaic._build_arrays
    started = threading.Barrier(2)

    def counted(params):
        builds.append(params)
        return build(params)

    def load(results):
        started.wait()
        results.append(hb.load_dataset("mosaic", data_dir=tmp_path, **MICRO))

    monkeypatch.setattr(mosaic, "_build_arrays", counted)
    results = []
    threads = [threading.Thread(target=load, args=(results,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(results) == 2
    assert results[0].fingerprint == results[1].fingerprint


def test_a_large_build_runs_in_a_process_of_its_own_and_gives_the_same_dataset(micro, tmp_path, monkeypatch):
    def not_here(params):
        raise AssertionError("built in the calling process")

    monkeypatch.setattr(mosaic, "_build_arrays", not_here)  # the spawned process imports the real one
    monkeypatch.setattr(mosaic, "OWN_PROCESS_IMAGES", 0)
    own = hb.load_dataset("mosaic", data_dir=tmp_path, **MICRO)
    assert own.fingerprint == micro.fingerprint and own.info["cache_file"].startswith(str(tmp_path))
    with monkeypatch.context() as no_executable, pytest.raises(AssertionError, match="calling process"):
        no_executable.setattr(mosaic.sys, "executable", "")  # an interpreter that cannot start itself
        hb.load_dataset("mosaic", data_dir=tmp_path / "embedded", **MICRO)
    monkeypatch.setattr(mosaic, "OWN_PROCESS_IMAGES", 10**9)
    with pytest.raises(AssertionError, match="calling process"):  # a small build stays here
        hb.load_dataset("mosaic", data_dir=tmp_path / "small", **MICRO)
    monkeypatch.setattr(mosaic, "BUILD_COMMAND", "raise SystemExit(3)")  # a build that fails
    with pytest.raises(HashbenchError, match="exit code 3"):
        mosaic._build_in_own_process({"seed": 0}, tmp_path / "never.npz")


def test_pooled_features_keep_the_fully_convolutional_backbone(micro, tmp_path):
    pooled = hb.load_dataset("mosaic", data_dir=tmp_path, features="pooled", **MICRO)
    assert pooled.train.features.shape == (len(pooled.train), 256) and pooled.info["params"]["features"] == "pooled"
    assert isinstance(pooled.query.images.backbone(), PooledBackbone)
    np.testing.assert_array_equal(pooled.train.labels, micro.train.labels)  # same mosaics, other network
    (path,) = tmp_path.glob("mosaic-*.npz")
    assert path.name != micro.info["cache_file"].rsplit("/", 1)[-1]


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
    monkeypatch.setattr(mosaic, "OWN_PROCESS_IMAGES", 10**9)  # here, where the stand-in build is
    with pytest.raises(ZeroDivisionError):
        hb.load_dataset("mosaic", size=size, source="vendored", data_dir=tmp_path)
    assert resolved[0]["n_web"] <= SHIPPED_TRAINING["backbone_items"]
    assert resolved[0]["backbone"] == load_shipped_backbone("fc7").meta["sha256"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"size": "huge"}, "size"),
        ({"n_train": 0}, "n_train"),
        ({"aux": "captions"}, "aux"),
        ({"features": "fc8"}, "features"),
        ({"cell_probability": 1.5}, "cell_probability"),
        ({"n_web": 9000}, "n_web"),  # more than the backbone's 8,000 items
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
    # Noisy but informative detections, and features spread like CNN features.
    assert 0.75 <= ds.info["aux_precision"] <= 0.95 and 0.75 <= ds.info["aux_recall"] <= 0.95
    stats = ds.info["feature_statistics"]
    assert stats["median_cosine"] <= 0.7 and stats["effective_rank"] >= 8 and stats["zero_fraction"] >= 0.3
