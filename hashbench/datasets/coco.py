"""MS-COCO prepared as in LAGNH (MM 2021), Section 4.1.

Input: the COCO 2017 release under ``root``::

    root/train2017/*.jpg   root/val2017/*.jpg
    root/annotations/instances_train2017.json   root/annotations/instances_val2017.json

Split: ``n_train`` (5,000) images of train2017 drawn at random with ``seed`` for training, the other
113,287 train2017 images as the database, the 5,000 val2017 images as queries. Labels: multi-hot over
the 80 categories (columns in category-id order). Features: VGG16 fc7 (ImageNet weights), 4,096-d,
standard ImageNet preprocessing. Auxiliary semantics: objects found by torchvision's Faster R-CNN
(COCO weights); ``aux`` is 1 where the best detection score of a category reaches
``score_threshold`` (0.5), and the scores themselves are kept as ``{split}_aux_scores``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashbench.datasets.base import HashingDataset, Split
from hashbench.datasets.cache import prepared_dataset
from hashbench.errors import InvalidInputError
from hashbench.registry import register_dataset

register_dataset(
    "coco",
    prepared_dataset("coco"),
    "MS-COCO 2017 as in the paper (5,000 / 5,000 / 113,287), after `hashbench prepare coco`",
)


def read_coco_labels(annotation_file: Path) -> tuple[list[int], list[str], list[int], np.ndarray, list[str]]:
    """(category ids, category names, image ids, multi-hot labels, file names) of one COCO json."""
    from pycocotools.coco import COCO

    if not annotation_file.is_file():
        raise InvalidInputError(f"COCO annotation file {str(annotation_file)!r} does not exist")
    coco = COCO(str(annotation_file))
    category_ids = sorted(coco.getCatIds())
    unknown = sorted({a["category_id"] for a in coco.dataset.get("annotations", [])} - set(category_ids))
    if unknown:
        raise InvalidInputError(f"{annotation_file.name} has annotations with unknown category ids {unknown}")
    names = [c["name"] for c in coco.loadCats(category_ids)]
    image_ids = sorted(coco.getImgIds())
    column = {cid: j for j, cid in enumerate(category_ids)}
    row = {iid: i for i, iid in enumerate(image_ids)}
    labels = np.zeros((len(image_ids), len(category_ids)), np.uint8)
    for annotation in coco.dataset.get("annotations", []):
        labels[row[annotation["image_id"]], column[annotation["category_id"]]] = 1
    files = [coco.imgs[iid]["file_name"] for iid in image_ids]
    return category_ids, names, image_ids, labels, files


def prepare_coco(
    root,
    out,
    *,
    n_train=5000,
    seed=0,
    score_threshold=0.5,
    extractor_factory,
    work_dir,
    features_dtype=np.float32,
    **extract_options,
):
    """Build the COCO dataset file; ``extractor_factory(category_ids)`` gives the Extractor to run."""
    from hashbench.datasets import save_dataset
    from hashbench.datasets.extract import extract_all

    root = Path(root)
    parts = {}
    for subset in ("train2017", "val2017"):
        category_ids, names, image_ids, labels, files = read_coco_labels(
            root / "annotations" / f"instances_{subset}.json"
        )
        parts[subset] = (category_ids, names, np.asarray(image_ids), labels, [root / subset / f for f in files])
    if parts["train2017"][0] != parts["val2017"][0]:
        raise InvalidInputError("train2017 and val2017 annotation files list different categories")
    category_ids, names = parts["train2017"][:2]
    n_images = len(parts["train2017"][2])
    if not 1 <= n_train < n_images:
        raise InvalidInputError(f"n_train must be between 1 and {n_images - 1} (train2017 images), got {n_train}")

    extractor = extractor_factory(category_ids)
    order = np.random.default_rng(seed).permutation(n_images)
    selections = {
        "train": ("train2017", order[:n_train]),
        "database": ("train2017", order[n_train:]),
        "query": ("val2017", np.arange(len(parts["val2017"][2]))),
    }
    splits, extra, skipped = {}, {}, {}
    for split, (subset, rows) in selections.items():
        _, _, image_ids, labels, paths = parts[subset]
        rows = np.sort(rows)
        out_arrays = extract_all([paths[i] for i in rows], extractor, Path(work_dir) / split, **extract_options)
        ok = out_arrays["ok"]
        skipped[split] = int((~ok).sum())
        scores = out_arrays["aux_scores"][ok]
        splits[split] = Split(
            out_arrays["features"][ok], labels[rows][ok], (scores >= score_threshold).astype(np.float32), name=split
        )
        extra[f"{split}_aux_scores"] = scores
        extra[f"{split}_image_ids"] = image_ids[rows][ok]
    dataset = HashingDataset(
        "coco",
        **splits,
        label_names=names,
        aux_names=names,
        info={"source": str(root), "seed": seed, "score_threshold": score_threshold, "skipped_images": skipped},
    )
    save_dataset(dataset, out, extra=extra, features_dtype=features_dtype)
    return dataset
