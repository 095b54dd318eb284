"""The real-dataset pipelines, end to end on tiny COCO- and NUS-WIDE-shaped trees made here,
with untrained torchvision models at a small input size."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hashbench as hb
from hashbench.cli import main
from hashbench.datasets.coco import prepare_coco, read_coco_labels
from hashbench.datasets.extract import Extractor, extract_all
from hashbench.datasets.extract_models import MissingWeightsError, build_extractor, load_weights
from hashbench.datasets.nuswide import nuswide_split, prepare_nuswide
from hashbench.errors import InvalidInputError

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]


def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _coco_tree(root: Path, n_train=10, n_val=3) -> dict:
    """Images and instances files; returns {(subset, image id): set of category ids}."""
    truth = {}
    rng = np.random.default_rng(1)
    for subset, n in (("train2017", n_train), ("val2017", n_val)):
        images, annotations = [], []
        for i in range(n):
            image_id = 1000 * (subset == "val2017") + 7 * i + 5  # ids not in file order
            name = f"{image_id:012d}.jpg"
            _jpeg(root / subset / name, image_id)
            images.append({"id": image_id, "file_name": name, "height": 40, "width": 48})
            cats = set(rng.choice([1, 3, 18], rng.integers(0, 3), replace=False).tolist())
            truth[subset, image_id] = cats
            for c in cats:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": c,
                        "bbox": [1, 1, 10, 10],
                        "area": 100,
                        "iscrowd": 0,
                    }
                )
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{subset}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES})
        )
    return truth


@pytest.fixture(scope="module")
def small_extractor_factory():
    """Untrained VGG16 and MobileNet Faster R-CNN at 32-pixel inputs, built once per module."""
    torch.manual_seed(0)
    cache = {}

    def factory(category_ids=()):
        if "extractor" not in cache:
            cache["extractor"] = build_extractor(
                category_ids,
                with_detector=True,
                pretrained=False,
                image_size=32,
                detector="fasterrcnn_mobilenet_v3_large_320_fpn",
                detector_min_size=64,
            )
        cache["extractor"].category_ids = list(category_ids)
        return cache["extractor"]

    return factory


def test_coco_pipeline_end_to_end(tmp_path, small_extractor_factory):
    truth = _coco_tree(tmp_path / "coco")
    (tmp_path / "coco" / "train2017" / f"{7 * 3 + 5:012d}.jpg").write_bytes(b"not a jpeg")  # one broken image
    out = tmp_path / "coco.npz"
    with pytest.warns(UserWarning, match="1 image"):
        prepare_coco(
            tmp_path / "coco",
            out,
            n_train=4,
            seed=0,
            extractor_factory=small_extractor_factory,
            work_dir=tmp_path / "parts",
            chunk_size=3,
            batch_size=2,
            quiet=True,
        )
    ds = hb.load_dataset(out)
    assert (len(ds.train), len(ds.database), len(ds.query)) == (4, 5, 3)  # 10 train2017 = 4 + 6, one broken
    assert ds.train.features.shape[1] == 4096 and ds.label_names == ["person", "car", "dog"]
    with np.load(out) as data:
        for split in ("train", "query", "database"):
            subset = "val2017" if split == "query" else "train2017"
            for row, image_id in enumerate(data[f"{split}_image_ids"]):
                expected = [int(c in truth[subset, int(image_id)]) for c in (1, 3, 18)]
                assert data[f"{split}_labels"][row].tolist() == expected
            scores = data[f"{split}_aux_scores"]
            np.testing.assert_array_equal(data[f"{split}_aux"], (scores >= 0.5).astype(np.float32))
        assert 7 * 3 + 5 not in set(data["train_image_ids"]) | set(data["database_image_ids"])


def test_detections_become_aux_columns_by_category_id():
    class FakeDetector(torch.nn.Module):
        def forward(self, images):
            return [
                {"labels": torch.tensor([18, 18, 3, 44]), "scores": torch.tensor([0.3, 0.9, 0.6, 0.99])} for _ in images
            ]

    extractor = Extractor(
        backbone=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2)),
        preprocess=lambda im: torch.zeros(3, 4, 4),
        detector=FakeDetector(),
        category_ids=[1, 3, 18],
    )
    out = extractor([Image.new("RGB", (8, 8))])
    np.testing.assert_allclose(out["aux_scores"], [[0.0, 0.6, 0.9]])  # id 44 is not a kept category


def test_extraction_resumes_after_interruption(tmp_path):
    paths = []
    for i in range(7):
        _jpeg(tmp_path / f"{i}.jpg", i)
        paths.append(tmp_path / f"{i}.jpg")
    calls = []

    class Interrupting(Extractor):
        def __call__(self, images):
            calls.append(len(images))
            if len(calls) == 3:
                raise KeyboardInterrupt
            return {"features": np.full((len(images), 2), float(len(calls)), np.float32)}

    extractor = Interrupting(backbone=torch.nn.Identity(), preprocess=None)
    with pytest.raises(KeyboardInterrupt):
        extract_all(paths, extractor, tmp_path / "work", chunk_size=3, batch_size=3, quiet=True)
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [
        "chunk_00000.npz",
        "chunk_00001.npz",
        "manifest.json",
    ]
    result = extract_all(paths, extractor, tmp_path / "work", chunk_size=3, batch_size=3, quiet=True)
    assert calls == [3, 3, 1, 1]  # the two finished chunks were not recomputed
    assert result["features"][:, 0].tolist() == [1, 1, 1, 2, 2, 2, 4] and result["ok"].all()


def test_missing_annotation_file_and_unknown_category(tmp_path, small_extractor_factory):
    with pytest.raises(InvalidInputError, match=r"instances_train2017.json.*does not exist"):
        prepare_coco(tmp_path, tmp_path / "x.npz", extractor_factory=small_extractor_factory, work_dir=tmp_path)
    _coco_tree(tmp_path / "coco", n_train=2, n_val=1)
    annotations = tmp_path / "coco" / "annotations" / "instances_val2017.json"
    data = json.loads(annotations.read_text())
    data["annotations"].append(
        {
            "id": 99,
            "image_id": data["images"][0]["id"],
            "category_id": 77,
            "bbox": [0, 0, 1, 1],
            "area": 1,
            "iscrowd": 0,
        }
    )
    annotations.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match="unknown category ids \\[77\\]"):
        read_coco_labels(annotations)


def test_missing_weights_error_names_the_file_and_where_to_put_it(tmp_path):
    from torchvision.models import VGG16_Weights

    with pytest.raises(MissingWeightsError, match=r"vgg16-397923af\.pth.*--weights-dir"):
        load_weights(VGG16_Weights.IMAGENET1K_V1, tmp_path, allow_download=False)


def test_weights_are_read_from_the_weights_dir(tmp_path, monkeypatch):
    from torchvision.models import VGG16_Weights

    torch.save({"w": torch.ones(2)}, tmp_path / "vgg16-397923af.pth")
    assert load_weights(VGG16_Weights.IMAGENET1K_V1, tmp_path, allow_download=False)["w"].tolist() == [1.0, 1.0]


def _nus_tree(root: Path, n=40, n_concepts=4, n_tags=6) -> np.ndarray:
    rng = np.random.default_rng(2)
    labels = (rng.random((n, n_concepts)) < [0.6, 0.3, 0.2, 0.05]).astype(int)
    concepts = [f"concept{j}" for j in range(n_concepts)]
    lines = []
    for i in range(n):
        _jpeg(root / "Flickr" / "folder" / f"{i:04d}.jpg", i)
        lines.append(f"C:\\ImageData\\Flickr\\folder\\{i:04d}.jpg")
    (root / "ImageList").mkdir(parents=True)
    (root / "ImageList" / "Imagelist.txt").write_text("\n".join(lines))
    (root / "Concepts81.txt").write_text("\n".join(concepts))
    (root / "Groundtruth" / "AllLabels").mkdir(parents=True)
    for j, c in enumerate(concepts):
        (root / "Groundtruth" / "AllLabels" / f"Labels_{c}.txt").write_text("\n".join(map(str, labels[:, j])))
    (root / "NUS_WID_Tags").mkdir()
    (root / "NUS_WID_Tags" / "TagList1k.txt").write_text("\n".join(f"tag{t}" for t in range(n_tags)))
    np.savetxt(root / "NUS_WID_Tags" / "AllTags1k.txt", rng.integers(0, 2, (n, n_tags)), fmt="%d")
    return labels


def test_nuswide_split_rules():
    labels = np.zeros((30, 3), np.uint8)
    labels[:20, 0] = 1
    labels[10:25, 1] = 1
    labels[28, 2] = 1  # rarest concept: dropped with n_concepts=2, row 28 then has no label
    kept, rows = nuswide_split(labels, n_concepts=2, queries_per_concept=3, n_train=5, seed=0)
    assert kept.tolist() == [0, 1]
    everything = np.concatenate(list(rows.values()))
    assert len(everything) == len(set(everything)) == 25  # disjoint, rows 25..29 unusable
    assert len(rows["train"]) == 5 and 3 <= len(rows["query"]) <= 6


def test_nuswide_pipeline_end_to_end(tmp_path, small_extractor_factory):
    labels = _nus_tree(tmp_path / "nus")
    out = tmp_path / "nus.npz"
    ds = prepare_nuswide(
        tmp_path / "nus",
        out,
        n_concepts=3,
        queries_per_concept=2,
        n_train=5,
        seed=1,
        extractor_factory=lambda: small_extractor_factory(),
        work_dir=tmp_path / "parts",
        quiet=True,
    )
    loaded = hb.load_dataset(out)
    assert loaded.label_names == ["concept0", "concept1", "concept2"] and loaded.aux_names[0] == "tag0"
    assert len(loaded.train) == 5 and loaded.train.aux.shape[1] == 6
    with np.load(out) as data:
        for split in ("train", "query", "database"):
            np.testing.assert_array_equal(data[f"{split}_labels"], labels[data[f"{split}_image_index"]][:, :3])
    assert len(ds.query) + len(ds.train) + len(ds.database) == int(labels[:, :3].any(axis=1).sum())


def test_cli_import_converts_a_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    arrays = {
        f"{s}_{k}": (
            rng.normal(size=(6, 4)).astype(np.float32)
            if k == "features"
            else rng.integers(0, 2, (6, 3)).astype(np.uint8)
        )
        for s in ("train", "query", "database")
        for k in ("features", "labels")
    }
    np.savez(tmp_path / "in.npz", **arrays)
    assert main(["prepare", "import", str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz")]) == 0
    assert "wrote" in capsys.readouterr().out
    np.testing.assert_array_equal(hb.load_dataset(tmp_path / "out.npz").query.labels, arrays["query_labels"])


def test_cli_reports_missing_root_without_traceback(tmp_path, capsys):
    code = main(
        ["prepare", "coco", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c.npz"), "--no-download"]
    )
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
