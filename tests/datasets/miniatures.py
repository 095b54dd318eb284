"""Miniatures of the standard datasets in their original distribution formats, written here: CIFAR-10
python pickles, a MIRFLICKR-25000 folder, a NUS-WIDE release tree, HashNet list folders. Each
returns what the test needs to check the prepared file against (labels as written)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from hashbench.datasets.sources import CIFAR_FOLDER, CIFAR_TEST, CIFAR_TRAIN, MIRFLICKR_LABELS

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def jpeg(path: Path, seed: int, size=(20, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def cifar10(root: Path, train_per_class: int = 20, test_per_class: int = 4, seed: int = 0) -> dict:
    """CIFAR-10 pickles as the python release lays them out (5 training batches, one test batch);
    returns {"batch:row": (label, pixels (32, 32, 3))}."""
    rng = np.random.default_rng(seed)
    folder = root / CIFAR_FOLDER
    folder.mkdir(parents=True)
    truth = {}

    def write(name, labels):
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump(
                {
                    "batch_label": name,
                    "labels": labels,
                    "data": data,
                    "filenames": [f"{i}.png" for i in range(len(labels))],
                },
                f,
            )
        for i, label in enumerate(labels):
            truth[f"{name}:{i}"] = (label, data[i].reshape(3, 32, 32).transpose(1, 2, 0))

    train = rng.permutation(np.repeat(np.arange(10), train_per_class)).tolist()
    for b, name in enumerate(CIFAR_TRAIN):
        write(name, train[b :: len(CIFAR_TRAIN)])
    write(CIFAR_TEST[0], rng.permutation(np.repeat(np.arange(10), test_per_class)).tolist())
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_NAMES, "num_cases_per_batch": 40, "num_vis": 3072}, f)
    return truth


def mirflickr(root: Path, n_images: int = 120, seed: int = 0) -> np.ndarray:
    """``n_images`` images im1.jpg ... and the 24 label files; images past ``n_images`` are absent
    and unlabelled (so never drawn). Returns the (25000, 24) labels written; about a fifth of the
    images have no label, as in the release."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((25000, len(MIRFLICKR_LABELS)), np.uint8)
    labels[:n_images] = rng.random((n_images, len(MIRFLICKR_LABELS))) < 0.08
    labels[:n_images:5] = 0
    (root / "annotations").mkdir(parents=True)
    for j, name in enumerate(MIRFLICKR_LABELS):
        (root / "annotations" / f"{name}.txt").write_text("".join(f"{i + 1}\n" for i in np.flatnonzero(labels[:, j])))
    for i in range(n_images):
        jpeg(root / "mirflickr" / f"im{i + 1}.jpg", i)
    return labels


def nuswide(root: Path, n: int = 150, n_concepts: int = 24, seed: int = 0) -> np.ndarray:
    """A NUS-WIDE tree with ``n_concepts`` concepts whose counts fall strictly with their number
    (50 items down to 3), so the 21 kept are the first 21; returns the (n, n_concepts) labels written."""
    rng = np.random.default_rng(seed)
    counts = np.linspace(50, 3, n_concepts).astype(int)
    labels = np.stack([rng.permutation(n) < count for count in counts], axis=1).astype(np.uint8)
    concepts = [f"concept{j:02d}" for j in range(n_concepts)]
    (root / "ImageList").mkdir(parents=True)
    (root / "ImageList" / "Imagelist.txt").write_text(
        "\n".join(f"C:\\ImageData\\Flickr\\folder\\{i:04d}.jpg" for i in range(n))
    )
    (root / "Concepts81.txt").write_text("\n".join(concepts))
    (root / "Groundtruth" / "AllLabels").mkdir(parents=True)
    for j, concept in enumerate(concepts):
        (root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt").write_text("\n".join(map(str, labels[:, j])))
    for i in range(n):
        jpeg(root / "Flickr" / "folder" / f"{i:04d}.jpg", i)
    return labels


def hashnet_lists(
    root: Path,
    n_labels: int,
    sizes=(30, 12, 60),
    train_in_database=True,
    seed: int = 0,
    prefix="/home/someone/dataset/set/images",
) -> dict[str, list[tuple[str, list[int]]]]:
    """train.txt, test.txt, database.txt with paths under a foreign ``prefix`` (as the published
    lists have) and the images under ROOT/images/; returns each split's (path, labels) lines."""
    rng = np.random.default_rng(seed)
    n_train, n_query, n_database = sizes
    total = n_query + n_database + (0 if train_in_database else n_train)
    labels = np.zeros((total, n_labels), int)
    labels[np.arange(total), rng.integers(0, n_labels, total)] = 1
    names = [f"img_{i:05d}.jpg" for i in range(total)]
    query = list(range(n_query))
    database = list(range(n_query, n_query + n_database))
    train = (
        rng.choice(database, n_train, replace=False).tolist()
        if train_in_database
        else list(range(n_query + n_database, total))
    )
    lines = {}
    for split, file, rows in (
        ("train", "train.txt", train),
        ("query", "test.txt", query),
        ("database", "database.txt", database),
    ):
        lines[split] = [(f"{prefix}/{names[i]}", labels[i].tolist()) for i in rows]
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).write_text("".join(f"{p} {' '.join(map(str, lab))}\n" for p, lab in lines[split]))
    for i, name in enumerate(names):
        jpeg(root / "images" / name, i)
    return lines


def bihalf_flickr(root: Path, n_images: int = 60, seed: int = 0) -> np.ndarray:
    """Bi-half's FLICKR25K layout: img.txt, targets.txt (24 labels, a tenth of the rows without one)
    and images/; returns the labels written."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n_images, len(MIRFLICKR_LABELS))) < 0.1).astype(int)
    labels[::10] = 0
    names = [f"im{i + 1}.jpg" for i in range(n_images)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "img.txt").write_text("".join(f"{name}\n" for name in names))
    np.savetxt(root / "targets.txt", labels, fmt="%d")
    for i, name in enumerate(names):
        jpeg(root / "images" / name, i)
    return labels
