"""NUS-WIDE prepared as in LAGNH (MM 2021), Section 4.1.

Input: the NUS-WIDE release under ``root``::

    root/Flickr/<concept folder>/<image>.jpg            the images
    root/ImageList/Imagelist.txt                        one image path per line (C:\\ImageData\\Flickr\\...)
    root/Concepts81.txt                                 the 81 concept names
    root/Groundtruth/AllLabels/Labels_<concept>.txt     one 0/1 per image, in Imagelist order
    root/NUS_WID_Tags/TagList1k.txt                     the 1,000-tag vocabulary
    root/NUS_WID_Tags/AllTags1k.txt                     one row of 1,000 0/1 tag indicators per image

Ground truth: the 81 concepts reduced to the ``n_concepts`` (21) most frequent, images without any of
them removed. Queries: ``queries_per_concept`` (200) random images per kept concept, de-duplicated
(3,156 in the paper). Training: ``n_train`` (5,000) random non-query images. Database: the remaining
non-query images. Features: VGG16 fc7 as for COCO. Auxiliary semantics: the user tags as a binary bag
of words over the 1,000-tag vocabulary (the release does not say how the authors reduced the tags;
this is the standard 1k-tag file of the dataset). Everything random flows from ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashbench.datasets.base import HashingDataset, Split
from hashbench.datasets.cache import prepared_dataset
from hashbench.errors import InvalidInputError
from hashbench.registry import register_dataset

register_dataset(
    "nuswide", prepared_dataset("nuswide"), "NUS-WIDE, 21 concepts, as in the paper, after `hashbench prepare nuswide`"
)


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise InvalidInputError(f"NUS-WIDE file {str(path)!r} does not exist")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def image_path(root: Path, listed: str) -> Path:
    """Map an Imagelist entry (Windows path ending in Flickr\\<folder>\\<file>) to root/Flickr/..."""
    parts = listed.replace("\\", "/").split("/")
    tail = parts[parts.index("Flickr") + 1 :] if "Flickr" in parts else parts
    return root.joinpath("Flickr", *tail)


def read_nuswide(root: Path):
    """(image paths, concept names, labels (n, 81), tag names, tags (n, 1000)) in Imagelist order."""
    paths = [image_path(root, line) for line in _lines(root / "ImageList" / "Imagelist.txt")]
    concepts = _lines(root / "Concepts81.txt")
    labels = np.zeros((len(paths), len(concepts)), np.uint8)
    for j, concept in enumerate(concepts):
        column = np.array(_lines(root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt"), dtype=np.int64)
        if len(column) != len(paths):
            raise InvalidInputError(f"Labels_{concept}.txt has {len(column)} rows but Imagelist.txt has {len(paths)}")
        labels[:, j] = column
    tag_names = _lines(root / "NUS_WID_Tags" / "TagList1k.txt")
    tags = np.loadtxt(root / "NUS_WID_Tags" / "AllTags1k.txt", dtype=np.uint8, ndmin=2)
    if tags.shape != (len(paths), len(tag_names)):
        raise InvalidInputError(f"AllTags1k.txt has shape {tags.shape}, expected ({len(paths)}, {len(tag_names)})")
    return paths, concepts, labels, tag_names, tags


def nuswide_split(labels: np.ndarray, *, n_concepts, queries_per_concept, n_train, seed):
    """Kept concept columns and the row indices of train / query / database (see module docstring)."""
    rng = np.random.default_rng(seed)
    kept = np.sort(np.argsort(-labels.sum(axis=0, dtype=np.int64), kind="stable")[:n_concepts])
    labels = labels[:, kept]
    usable = np.flatnonzero(labels.any(axis=1))
    query = set()
    for j in range(len(kept)):
        members = usable[labels[usable, j] == 1]
        query.update(rng.choice(members, min(queries_per_concept, len(members)), replace=False).tolist())
    query = np.array(sorted(query))
    rest = np.setdiff1d(usable, query)
    if n_train >= len(rest):
        raise InvalidInputError(f"n_train={n_train} leaves no database: only {len(rest)} non-query images")
    train = np.sort(rng.choice(rest, n_train, replace=False))
    return kept, {"train": train, "query": query, "database": np.setdiff1d(rest, train)}


def prepare_nuswide(
    root,
    out,
    *,
    n_concepts=21,
    queries_per_concept=200,
    n_train=5000,
    seed=0,
    extractor_factory,
    work_dir,
    features_dtype=np.float32,
    **extract_options,
):
    """Build the NUS-WIDE dataset file; ``extractor_factory()`` gives the feature Extractor."""
    from hashbench.datasets import save_dataset
    from hashbench.datasets.extract import extract_all

    root = Path(root)
    paths, concepts, labels, tag_names, tags = read_nuswide(root)
    kept, rows = nuswide_split(
        labels, n_concepts=n_concepts, queries_per_concept=queries_per_concept, n_train=n_train, seed=seed
    )
    extractor = extractor_factory()
    splits, skipped, extra = {}, {}, {}
    for split, index in rows.items():
        result = extract_all([paths[i] for i in index], extractor, Path(work_dir) / split, **extract_options)
        ok = result["ok"]
        skipped[split] = int((~ok).sum())
        splits[split] = Split(result["features"][ok], labels[index][ok][:, kept], tags[index][ok], name=split)
        extra[f"{split}_image_index"] = index[ok]
    dataset = HashingDataset(
        "nuswide",
        **splits,
        label_names=[concepts[j] for j in kept],
        aux_names=tag_names,
        info={"source": str(root), "seed": seed, "skipped_images": skipped},
    )
    save_dataset(dataset, out, extra=extra, features_dtype=features_dtype)
    return dataset
