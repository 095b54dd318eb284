"""Readers of the standard datasets' original distribution formats, for ``hashbench prepare PROTOCOL``.

Each reader returns a :class:`Source`: one image per item (a file, or pixels held in memory), the
items' multi-hot labels as the source gives them, the source's own index sets, and the files whose
SHA-256 the prepared data file records. A missing or unreadable file is an ``InvalidInputError``
naming it and what the folder should hold.

- ``cifar10``: the CIFAR-10 python version as torchvision's ``CIFAR10`` keeps it,
  ``ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` (or ``ROOT`` being that
  folder). Pickles read as torchvision reads them (``latin1``, rows of 3,072 bytes, channel-major).
  Items: the 50,000 training images in batch order, then the 10,000 test images. The files' MD5s
  are compared with torchvision's list of the release's (``matches_release``).
- ``nuswide``: the NUS-WIDE release (``ImageList/Imagelist.txt``, ``Concepts81.txt``,
  ``Groundtruth/AllLabels/Labels_*.txt``, ``Flickr/``), labels reduced to the 21 most frequent
  concepts (ties by concept order).
- ``mirflickr``: MIRFLICKR-25000: ``ROOT/mirflickr/im1.jpg .. im25000.jpg`` and the annotation
  files of its 24 labels (``animals.txt`` ... ``water.txt``, one 1-based image number per line;
  the ``*_r1.txt`` "relevant" subsets are not used) in ``ROOT/annotations/`` or
  ``ROOT/mirflickr25k_annotations_v080/``.
- ``mirflickr-bihalf``: MIRFLICKR-25000 as the Bi-half release ships its labels: ``ROOT/img.txt``
  (one image file name per line), ``ROOT/targets.txt`` (its 24 labels, one row of 0/1 per image)
  and the images in ``ROOT/images/``.
- ``hashnet-*``: a HashNet list folder (``train.txt``, ``test.txt``, ``database.txt``, each line
  ``path label label ...``) and the images under ``image_root``. The listed paths are those of the
  list authors' machines; each is found under ``image_root`` by the shortest tail of its path that
  names an existing file for the first listed image (``/home/x/dataset/coco/val2014/a.jpg`` ->
  ``val2014/a.jpg``), and the same tail length is used for every line.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashbench.datasets.extract import MemoryImage
from hashbench.datasets.extract_models import file_sha256
from hashbench.datasets.formats import read_list_file
from hashbench.errors import InvalidInputError

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)
MIRFLICKR_LABELS = (
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake", "male",
    "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures", "sunset", "transport",
    "tree", "water",
)  # fmt: skip
MIRFLICKR_IMAGES = 25000
NUSWIDE_CONCEPTS = 21


@dataclass
class Source:
    """Items of one dataset as its distribution gives them."""

    name: str
    items: list  # one Path or MemoryImage per item
    labels: np.ndarray  # (n, c) uint8 multi-hot
    label_names: list[str]
    files: list[Path]  # files whose checksums the prepared file records
    subsets: dict[str, np.ndarray] = field(default_factory=dict)  # the source's own index sets
    info: dict = field(default_factory=dict)

    def checksums(self, root: Path) -> dict[str, str]:
        return {_relative(path, root): file_sha256(path) for path in self.files}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InvalidInputError(f"{what}: {str(path)!r} does not exist")
    return path


# ---- CIFAR-10 -------------------------------------------------------------------------------------


def cifar_folder(root: Path) -> Path:
    """The folder holding the batches: ``ROOT/cifar-10-batches-py`` or ``ROOT`` itself."""
    for folder in (root / CIFAR_FOLDER, root):
        if (folder / "batches.meta").is_file():
            return folder
    raise InvalidInputError(
        f"no CIFAR-10 python batches under {str(root)!r}: expected {CIFAR_FOLDER}/batches.meta, data_batch_1..5 and "
        "test_batch there (the python version, cifar-10-python.tar.gz, unpacked), or pass --download"
    )


def _unpickle(path: Path) -> dict:
    _require(path, "CIFAR-10 batch")
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise InvalidInputError(
            f"{str(path)!r} is not a readable CIFAR-10 pickle ({type(error).__name__}: {error})"
        ) from None


def read_cifar10(root: Path, *, download: bool = False) -> Source:
    root = Path(root)
    if download:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=True, download=True)  # fetches and unpacks the release into ROOT/cifar-10-batches-py
    folder = cifar_folder(root)
    meta = _unpickle(folder / "batches.meta")
    names = meta.get("label_names") if isinstance(meta, dict) else None
    if not names:
        raise InvalidInputError(f"{str(folder / 'batches.meta')!r} has no 'label_names'")
    pixels, targets, keys = [], [], []
    for batch in CIFAR_TRAIN + CIFAR_TEST:
        entry = _unpickle(folder / batch)
        if not isinstance(entry, dict) or "data" not in entry or not ({"labels", "fine_labels"} & set(entry)):
            raise InvalidInputError(f"{str(folder / batch)!r} holds no 'data' and 'labels': not a CIFAR-10 batch")
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise InvalidInputError(f"{str(folder / batch)!r}: data of shape {data.shape}, expected (n, 3072)")
        batch_targets = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
        if (
            len(batch_targets) != len(data)
            or batch_targets.min(initial=0) < 0
            or batch_targets.max(initial=0) >= len(names)
        ):
            raise InvalidInputError(
                f"{str(folder / batch)!r}: labels do not match its {len(data)} images and {len(names)} classes"
            )
        pixels.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        targets.append(batch_targets)
        keys += [f"{batch}:{i}" for i in range(len(data))]
    n_train = sum(len(t) for t in targets[: len(CIFAR_TRAIN)])
    pixels, targets = np.concatenate(pixels), np.concatenate(targets)
    files = [folder / name for name in ("batches.meta", *CIFAR_TRAIN, *CIFAR_TEST)]
    return Source(
        "cifar10",
        [MemoryImage(k, p) for k, p in zip(keys, pixels)],
        np.eye(len(names), dtype=np.uint8)[targets],
        list(names),
        files,
        {"train": np.arange(n_train), "test": np.arange(n_train, len(targets))},
        info={"matches_release": _cifar_matches_release(folder)},
    )


def _cifar_matches_release(folder: Path) -> bool:
    """Whether every batch has the MD5 torchvision lists for the official release."""
    from torchvision.datasets import CIFAR10

    for name, md5 in CIFAR10.train_list + CIFAR10.test_list + [[CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]:
        if hashlib.md5((folder / name).read_bytes()).hexdigest() != md5:
            return False
    return True


# ---- NUS-WIDE (21 concepts) ---------------------------------------------------------------------


def read_nuswide21(root: Path) -> Source:
    from hashbench.datasets.nuswide import image_path

    root = Path(root)
    image_list = _require(root / "ImageList" / "Imagelist.txt", "NUS-WIDE image list (wrong --root?)")
    paths = [image_path(root, line.strip()) for line in image_list.read_text().splitlines() if line.strip()]
    concepts_file = _require(root / "Concepts81.txt", "NUS-WIDE concept list")
    concepts = [line.strip() for line in concepts_file.read_text().splitlines() if line.strip()]
    labels = np.zeros((len(paths), len(concepts)), np.uint8)
    files = [image_list, concepts_file]
    for j, concept in enumerate(concepts):
        path = _require(root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt", "NUS-WIDE label file")
        try:
            column = np.loadtxt(path, dtype=np.int64, ndmin=1)
        except ValueError as error:
            raise InvalidInputError(f"{str(path)!r}: not one 0/1 per line ({error})") from None
        if len(column) != len(paths) or not np.isin(column, (0, 1)).all():
            raise InvalidInputError(f"{str(path)!r}: expected {len(paths)} lines of 0/1 (one per Imagelist.txt line)")
        labels[:, j] = column
        files.append(path)
    kept = np.sort(np.argsort(-labels.sum(axis=0, dtype=np.int64), kind="stable")[:NUSWIDE_CONCEPTS])
    return Source("nuswide", paths, labels[:, kept], [concepts[j] for j in kept], files)


# ---- MIRFLICKR-25000 ----------------------------------------------------------------------------


def read_mirflickr(root: Path) -> Source:
    root = Path(root)
    folders = [root / "annotations", root / "mirflickr25k_annotations_v080"]
    annotations = next((f for f in folders if f.is_dir()), None)
    if annotations is None or not (root / "mirflickr").is_dir():
        raise InvalidInputError(
            f"{str(root)!r} is not a MIRFLICKR-25000 folder: expected mirflickr/im1.jpg .. im25000.jpg and the 24 "
            f"label files ({', '.join(MIRFLICKR_LABELS[:3])}, ...) in annotations/ or mirflickr25k_annotations_v080/"
        )
    labels = np.zeros((MIRFLICKR_IMAGES, len(MIRFLICKR_LABELS)), np.uint8)
    files = []
    for j, name in enumerate(MIRFLICKR_LABELS):
        path = _require(annotations / f"{name}.txt", "MIRFLICKR-25000 label file")
        try:  # a label no image holds has an empty file
            numbers = np.array(path.read_text().split(), dtype=np.int64)
        except ValueError as error:
            raise InvalidInputError(f"{str(path)!r}: not one image number per line ({error})") from None
        if numbers.size and (numbers.min() < 1 or numbers.max() > MIRFLICKR_IMAGES):
            raise InvalidInputError(f"{str(path)!r}: image numbers must lie in 1..{MIRFLICKR_IMAGES}")
        labels[numbers - 1, j] = 1
        files.append(path)
    items = [root / "mirflickr" / f"im{i}.jpg" for i in range(1, MIRFLICKR_IMAGES + 1)]
    return Source("mirflickr", items, labels, list(MIRFLICKR_LABELS), files)


def read_bihalf_flickr(root: Path) -> Source:
    root = Path(root)
    names_file = _require(root / "img.txt", "Bi-half FLICKR25K image list (wrong --root?)")
    targets_file = _require(root / "targets.txt", "Bi-half FLICKR25K label file")
    names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    try:
        targets = np.loadtxt(targets_file, dtype=np.int64, ndmin=2)
    except ValueError as error:
        raise InvalidInputError(f"{str(targets_file)!r}: not rows of 0/1 labels ({error})") from None
    if len(targets) != len(names) or targets.shape[1] != len(MIRFLICKR_LABELS) or not np.isin(targets, (0, 1)).all():
        raise InvalidInputError(
            f"{str(targets_file)!r}: expected {len(names)} rows of {len(MIRFLICKR_LABELS)} 0/1 "
            f"labels (one per img.txt line), got shape {targets.shape}"
        )
    items = [root / "images" / name for name in names]
    return Source(
        "mirflickr-bihalf",
        items,
        targets.astype(np.uint8),
        [f"label {j}" for j in range(targets.shape[1])],
        [names_file, targets_file],
    )


# ---- HashNet list folders -----------------------------------------------------------------------

LIST_FILES = {"train": "train.txt", "query": "test.txt", "database": "database.txt"}
LIST_LABELS = {"hashnet-coco": 80, "hashnet-nuswide81": 81, "hashnet-imagenet100": 100}


def read_hashnet_lists(root: Path, source: str, image_root: Path | None = None) -> Source:
    """The items of a list folder in the order train, test, database; an image listed in several
    files is one item (with one set of labels), so overlaps between the lists stay visible."""
    root = Path(root)
    image_root = Path(image_root) if image_root is not None else root
    listed, files = {}, []
    for split, name in LIST_FILES.items():
        path = _require(root / name, f"HashNet list file (the {split} split)")
        listed[split] = read_list_file(path)
        files.append(path)
    width = LIST_LABELS[source]
    index, items, rows, subsets = {}, [], [], {}
    for split, (paths, labels) in listed.items():
        if labels.shape[1] != width or not np.isin(labels, (0, 1)).all():
            raise InvalidInputError(
                f"{LIST_FILES[split]}: expected {width} labels of 0/1 per line for {source}, got {labels.shape[1]}"
            )
        members = []
        for path, row in zip(paths, labels):
            if path not in index:
                index[path] = len(items)
                items.append(path)
                rows.append(row)
            elif not np.array_equal(rows[index[path]], row):
                raise InvalidInputError(f"{path} is listed with two different label rows")
            members.append(index[path])
        subsets[split] = np.asarray(members, dtype=np.int64)
    tail = _tail_length(items, image_root)
    resolved = [image_root.joinpath(*_parts(p)[-tail:]) for p in items]
    return Source(
        source,
        resolved,
        np.asarray(rows, np.uint8).reshape(len(rows), width),
        [f"label {j}" for j in range(width)],
        files,
        subsets,
        info={"image_root": str(image_root), "path_tail_parts": tail},
    )


def _parts(listed: str) -> list[str]:
    return [part for part in listed.replace("\\", "/").split("/") if part not in ("", ".")]


def _tail_length(items: list[str], image_root: Path) -> int:
    parts = _parts(items[0]) if items else []
    for length in range(1, len(parts) + 1):
        if image_root.joinpath(*parts[-length:]).is_file():
            return length
    raise InvalidInputError(
        f"the first listed image {items[0] if items else '(none)'!r} is not under {str(image_root)!r} by any tail of "
        "its path; pass --image-root, the folder the list paths' tails are relative to"
    )


SOURCES = {
    "cifar10": read_cifar10,
    "nuswide": read_nuswide21,
    "mirflickr": read_mirflickr,
    "mirflickr-bihalf": read_bihalf_flickr,
    **dict.fromkeys(LIST_LABELS, read_hashnet_lists),
}
