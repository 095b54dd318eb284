"""The standard protocols prepared from miniatures in the sources' original formats (tests/datasets/miniatures.py),
with a cheap stand-in backbone (pixel means per image quadrant) whose features can be checked by hand."""

import hashlib
import json
import pickle
import warnings

import numpy as np
import pytest
import torch

import hashbench as hb
from hashbench.cli import main
from hashbench.datasets.extract import Extractor
from hashbench.datasets.extract_models import BACKBONES, build_backbone, image_preprocessing, weights_provenance
from hashbench.datasets.protocols import PROTOCOLS, draw_split, protocol
from hashbench.datasets.sources import read_cifar10
from hashbench.datasets.standard import prepare_protocol
from hashbench.errors import HashbenchError, InvalidInputError
from tests.datasets import miniatures

IMAGE_SIDE = 8


def pooled_extractor(resize="full"):
    """Features = the normalised mean of each channel: checkable against the pixels written."""
    return Extractor(
        backbone=torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()),
        preprocess=image_preprocessing(IMAGE_SIDE, resize),
    )


def prepare(protocol_id, root, tmp_path, **options):
    return prepare_protocol(
        protocol_id,
        root,
        tmp_path / f"{protocol_id}.npz",
        extractor_factory=pooled_extractor,
        work_dir=tmp_path / f"{protocol_id}.parts",
        quiet=True,
        **options,
    )


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    return root, miniatures.cifar10(root)


def stored(dataset_path):
    with np.load(dataset_path) as data:
        return {key: data[key] for key in data.files}


# Miniature sizes: 20 training and 4 test images per class for CIFAR-10 (200 / 40).
CIFAR_CASES = {
    "cifar10-q1000-t5000-db54000": ({"query_size": 3, "train_size": 10}, {"query": 30, "train": 100, "database": 110}),
    "cifar10-q1000-t5000-db59000": ({"query_size": 3, "train_size": 10}, {"query": 30, "train": 100, "database": 210}),
    "cifar10-q10000-db50000": ({}, {"query": 40, "train": 200, "database": 200}),
    "cifar10-q10000-db50000-drawn": ({"query_size": 4, "train_size": 20}, {"query": 40, "train": 200, "database": 200}),
    "cifar10-q10000-t5000-db50000": ({"train_size": 5}, {"query": 40, "train": 50, "database": 200}),
}


@pytest.mark.parametrize("protocol_id", CIFAR_CASES)
def test_cifar_protocols_sizes_disjointness_and_labels(protocol_id, cifar, tmp_path):
    root, truth = cifar
    options, sizes = CIFAR_CASES[protocol_id]
    spec = protocol(protocol_id)
    if options:  # sizes overridden: nothing to compare with the protocol's, so no warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = prepare(protocol_id, root, tmp_path, **options)
    else:  # the protocol's own sizes: a miniature cannot meet its full-size counts
        with pytest.warns(UserWarning, match="sizes differ"):
            ds = prepare(protocol_id, root, tmp_path)
    assert {name: len(split) for name, split in ds.splits().items()} == {
        "train": sizes["train"],
        "query": sizes["query"],
        "database": sizes["database"],
    }
    data = stored(tmp_path / f"{protocol_id}.npz")
    query, train, database = (set(data[f"{s}_index"].tolist()) for s in ("query", "train", "database"))
    assert not query & train and not query & database
    assert (train <= database) == spec.train_in_database and (not train & database) == (not spec.train_in_database)
    keys = read_cifar10(root).items
    mean = torch.tensor([0.485, 0.456, 0.406]).numpy()
    std = torch.tensor([0.229, 0.224, 0.225]).numpy()
    for split in ("query", "train", "database"):
        for row, item in enumerate(data[f"{split}_index"]):
            label, pixels = truth[str(keys[item])]
            assert data[f"{split}_labels"][row].tolist() == np.eye(10, dtype=int)[label].tolist()
            expected = (pixels.reshape(-1, 3).mean(axis=0) / 255 - mean) / std
            np.testing.assert_allclose(data[f"{split}_features"][row], expected, atol=0.05)
    if spec.draw == "per-class":
        assert np.all(data["query_labels"].sum(axis=0) == options["query_size"])
        assert np.all(data["train_labels"].sum(axis=0) == options["train_size"])
    if spec.draw == "test-set":
        assert all(str(keys[i]).startswith("test_batch") for i in query)
        assert all(str(keys[i]).startswith("data_batch") for i in database)
    info = json.loads(str(data["info"]))
    assert info["protocol"] == protocol_id and info["source_info"]["matches_release"] is False
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    assert info["source_files"]["cifar-10-batches-py/data_batch_2"] == hashlib.sha256(batch.read_bytes()).hexdigest()


def test_split_draws_follow_the_seed(cifar):
    root, _ = cifar
    source = read_cifar10(root)
    spec = protocol("cifar10-q1000-t5000-db54000")
    first, again, other = (
        draw_split(spec, source.labels, source.subsets, seed, query_size=3, train_size=10) for seed in (0, 0, 1)
    )
    assert all(np.array_equal(first[s], again[s]) for s in first)
    assert not np.array_equal(first["query"], other["query"])


def test_sizes_the_source_fixes_cannot_be_overridden():
    labels = np.eye(2, dtype=np.uint8)[[0, 1, 0, 1]]
    with pytest.raises(InvalidInputError, match="takes its query and train split from the source; train_size"):
        draw_split(protocol("coco-hashnet-q5000-t10000"), labels, {}, 0, train_size=1)
    with pytest.raises(InvalidInputError, match="takes its query split from the source; query_size"):
        draw_split(protocol("cifar10-q10000-db50000"), labels, {}, 0, query_size=1)


def test_per_concept_draw_on_a_hand_made_case():
    """Four items hold label 0, three label 1; one query per label never draws an item twice."""
    labels = np.array([[1, 1], [1, 1], [1, 0], [1, 0], [0, 1], [0, 0]])
    rows = draw_split(protocol("nuswide21-q2100-t10500"), labels, {}, 0, query_size=1, train_size=1)
    assert len(rows["query"]) == 2 and 5 not in np.concatenate(list(rows.values()))  # item 5 has no label
    assert labels[rows["query"]].any(axis=0).all() and not set(rows["query"]) & set(rows["database"])
    assert set(rows["train"]) <= set(rows["database"]) and len(rows["train"]) == 2
    with pytest.raises(InvalidInputError, match="label 1 has 1 items, fewer than the 2"):
        draw_split(protocol("nuswide21-q2100-t10500"), labels[2:], {}, 0, query_size=2, train_size=1)


def test_nuswide21_keeps_the_21_most_frequent_concepts(tmp_path):
    labels = miniatures.nuswide(tmp_path / "nus")
    ds = prepare("nuswide21-q2100-t10500", tmp_path / "nus", tmp_path, query_size=1, train_size=2)
    assert ds.label_names == [f"concept{j:02d}" for j in range(21)]
    data = stored(tmp_path / "nuswide21-q2100-t10500.npz")
    usable = np.flatnonzero(labels[:, :21].any(axis=1))
    assert len(ds.query) == 21 and len(ds.train) == 42 and len(ds.database) == len(usable) - 21
    for split in ("query", "train", "database"):
        np.testing.assert_array_equal(data[f"{split}_labels"], labels[data[f"{split}_index"]][:, :21])
    assert set(data["train_index"]) <= set(data["database_index"])


@pytest.mark.parametrize(
    "protocol_id, train_size", [("flickr25k-q2000-t5000-db18015", 30), ("flickr25k-q2000-t10000-db18015", 40)]
)
def test_mirflickr_protocols(protocol_id, train_size, tmp_path):
    labels = miniatures.mirflickr(tmp_path / "flickr")
    ds = prepare(protocol_id, tmp_path / "flickr", tmp_path, query_size=20, train_size=train_size)
    labelled = int(labels.any(axis=1).sum())
    assert (len(ds.query), len(ds.train), len(ds.database)) == (20, train_size, labelled - 20)
    data = stored(tmp_path / f"{protocol_id}.npz")
    for split in ("query", "train", "database"):
        np.testing.assert_array_equal(data[f"{split}_labels"], labels[data[f"{split}_index"]])
    assert not set(data["query_index"]) & set(data["database_index"])
    assert ds.label_names[0] == "animals" and len(ds.label_names) == 24


def test_bihalf_flickr_draws_from_every_image_labelled_or_not(tmp_path):
    labels = miniatures.bihalf_flickr(tmp_path / "bihalf")
    ds = prepare("flickr25k-q2000-t5000-db23000", tmp_path / "bihalf", tmp_path, query_size=10, train_size=20)
    assert (len(ds.query), len(ds.train), len(ds.database)) == (10, 20, 50)  # all 60 images, 6 of them unlabelled
    data = stored(tmp_path / "flickr25k-q2000-t5000-db23000.npz")
    for split in ("query", "train", "database"):
        np.testing.assert_array_equal(data[f"{split}_labels"], labels[data[f"{split}_index"]])
    (tmp_path / "bihalf" / "targets.txt").write_text("0 1\n")
    with pytest.raises(InvalidInputError, match=r"targets.txt.*expected 60 rows of 24"):
        prepare("flickr25k-q2000-t5000-db23000", tmp_path / "bihalf", tmp_path)


@pytest.mark.parametrize(
    "protocol_id, n_labels, train_in_database",
    [
        ("imagenet100-hashnet-q5000-t13000", 100, True),
        ("nuswide81-hashnet-q5000-t10000", 81, True),
        ("coco-hashnet-q5000-t10000", 80, False),
    ],
)
def test_hashnet_list_protocols_keep_the_lists(protocol_id, n_labels, train_in_database, tmp_path):
    lines = miniatures.hashnet_lists(tmp_path / "lists", n_labels, train_in_database=train_in_database)
    with pytest.warns(UserWarning, match="sizes differ"):
        prepare(protocol_id, tmp_path / "lists", tmp_path)
    data = stored(tmp_path / f"{protocol_id}.npz")
    info = json.loads(str(data["info"]))
    assert info["split_sizes"] == {"query": 12, "train": 30, "database": 60}
    assert info["split_overlaps"]["train&database"] == (30 if train_in_database else 0)
    for split in ("query", "train", "database"):
        # rows are in item order; compare as sets of (file name, labels)
        written = {(path.rsplit("/", 1)[-1], tuple(lab)) for path, lab in lines[split]}
        with np.load(tmp_path / f"{protocol_id}.npz") as arrays:
            got_labels = arrays[f"{split}_labels"]
        assert {tuple(r) for r in got_labels} <= {lab for _, lab in written} and len(got_labels) == len(written)


def test_lists_that_put_queries_in_the_database_are_kept_with_a_warning(tmp_path):
    lines = miniatures.hashnet_lists(tmp_path / "lists", 80, train_in_database=False)
    with open(tmp_path / "lists" / "database.txt", "a") as f:
        path, labels = lines["query"][0]
        f.write(f"{path} {' '.join(map(str, labels))}\n")
    with pytest.warns(UserWarning, match="1 queries in the database"):
        ds = prepare("coco-hashnet-q5000-t10000", tmp_path / "lists", tmp_path)
    assert ds.info["split_overlaps"]["query&database"] == 1 and len(ds.database) == 61


def test_prepare_resumes_after_an_interruption(cifar, tmp_path):
    root, _ = cifar
    calls = []

    class Interrupting(Extractor):
        def __call__(self, images):
            calls.append(len(images))
            if len(calls) == 3:
                raise KeyboardInterrupt
            return super().__call__(images)

    def factory(resize):
        base = pooled_extractor(resize)
        return Interrupting(backbone=base.backbone, preprocess=base.preprocess)

    options = {
        "extractor_factory": factory,
        "work_dir": tmp_path / "parts",
        "quiet": True,
        "chunk_size": 64,
        "batch_size": 64,
        "query_size": 3,
        "train_size": 10,
    }
    with pytest.raises(KeyboardInterrupt):
        prepare_protocol("cifar10-q1000-t5000-db54000", root, tmp_path / "c.npz", **options)
    assert not (tmp_path / "c.npz").exists() and len(list((tmp_path / "parts").glob("chunk_*.npz"))) == 2
    resumed = prepare_protocol("cifar10-q1000-t5000-db54000", root, tmp_path / "c.npz", **options)
    assert calls == [64, 64, 64, 64, 48]  # 240 images: chunks 1-2 kept, chunk 3 redone, then chunk 4 (48 images)
    fresh = prepare("cifar10-q1000-t5000-db54000", root, tmp_path, query_size=3, train_size=10)
    np.testing.assert_array_equal(resumed.database.features, fresh.database.features)


def test_missing_corrupt_and_misplaced_sources_are_named(tmp_path):
    with pytest.raises(InvalidInputError, match="no CIFAR-10 python batches"):
        prepare("cifar10-q10000-db50000", tmp_path, tmp_path)
    miniatures.cifar10(tmp_path / "c", train_per_class=2, test_per_class=1)
    folder = tmp_path / "c" / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(InvalidInputError, match=r"data_batch_3.*does not exist"):
        prepare("cifar10-q10000-db50000", tmp_path / "c", tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x00 truncated")
    with pytest.raises(InvalidInputError, match=r"data_batch_3.*not a readable CIFAR-10 pickle"):
        prepare("cifar10-q10000-db50000", tmp_path / "c", tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]}))
    with pytest.raises(InvalidInputError, match="expected \\(n, 3072\\)"):
        prepare("cifar10-q10000-db50000", tmp_path / "c", tmp_path)
    with pytest.raises(InvalidInputError, match="not a MIRFLICKR-25000 folder"):
        prepare("flickr25k-q2000-t5000-db18015", tmp_path, tmp_path)
    with pytest.raises(InvalidInputError, match=r"wrong --root.*Imagelist.txt"):
        prepare("nuswide21-q2100-t10500", tmp_path, tmp_path)
    with pytest.raises(InvalidInputError, match=r"--root .* is not a folder"):
        prepare("coco-hashnet-q5000-t10000", tmp_path / "nowhere", tmp_path)
    miniatures.hashnet_lists(tmp_path / "lists", 80)
    (tmp_path / "lists" / "database.txt").unlink()
    with pytest.raises(InvalidInputError, match=r"database split.*database.txt.*does not exist"):
        prepare("coco-hashnet-q5000-t10000", tmp_path / "lists", tmp_path)
    miniatures.hashnet_lists(tmp_path / "lists2", 80)
    with pytest.raises(InvalidInputError, match="expected 100 labels"):
        prepare("imagenet100-hashnet-q5000-t13000", tmp_path / "lists2", tmp_path)
    with pytest.raises(InvalidInputError, match="--image-root"):
        prepare("coco-hashnet-q5000-t10000", tmp_path / "lists2", tmp_path, image_root=tmp_path)
    flickr = tmp_path / "flickr"
    miniatures.mirflickr(flickr, n_images=10)
    (flickr / "annotations" / "dog.txt").write_text("25001\n")
    with pytest.raises(InvalidInputError, match=r"dog.txt.*1..25000"):
        prepare("flickr25k-q2000-t5000-db18015", flickr, tmp_path)


def test_every_protocol_is_a_dataset_name_that_asks_to_be_prepared(tmp_path):
    names = hb.list_datasets()
    assert set(PROTOCOLS) <= set(names)
    with pytest.raises(InvalidInputError, match="hashbench prepare coco-hashnet-q5000-t10000 --root"):
        hb.load_dataset("coco-hashnet-q5000-t10000", data_dir=tmp_path)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbones_give_their_documented_width(name):
    torch.manual_seed(0)
    model = build_backbone(name, pretrained=False, image_size=64)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, BACKBONES[name].dim)
    assert not model.training


def test_weights_are_loaded_from_the_weights_dir_and_recorded(tmp_path):
    """ResNet-50 (the smallest of the four files, ~100 MB): a saved random state dict under
    torchvision's file name is what a pretrained build loads, and its SHA-256 is recorded."""
    torch.manual_seed(1)
    from torchvision import models

    reference = models.resnet50(weights=None)
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(reference.state_dict(), path)
    loaded = build_backbone("resnet50-pool", pretrained=True, weights_dir=tmp_path, allow_download=False)
    torch.testing.assert_close(loaded.conv1.weight, reference.conv1.weight)
    record = weights_provenance("resnet50-pool", True, tmp_path)
    assert record["file"] == path.name and record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_prepares_a_protocol_with_an_untrained_backbone(cifar, tmp_path, capsys):
    root, _ = cifar
    out = tmp_path / "cifar.npz"
    code = main(
        [
            "prepare",
            "cifar10-q1000-t5000-db59000",
            "--root",
            str(root),
            "--out",
            str(out),
            "--untrained",
            "--backbone",
            "alexnet-fc7",
            "--image-size",
            "64",
            "--query-size",
            "2",
            "--train-size",
            "4",
            "--quiet",
            "--no-download",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "train 40, query 20, database 220" in printed and "differ from the official release" in printed
    ds = hb.load_dataset(out)
    assert ds.train.features.shape[1] == 4096
    assert ds.info["backbone"]["backbone"] == "alexnet-fc7" and ds.info["backbone"]["pretrained"] is False
    assert "Resize(size=(64, 64)" in ds.info["preprocessing"]


def test_pretrained_vit_needs_its_input_size():
    with pytest.raises(HashbenchError, match="224x224 inputs, got --image-size 64"):
        build_backbone("vit-b16-cls", pretrained=True, image_size=64, allow_download=False)
