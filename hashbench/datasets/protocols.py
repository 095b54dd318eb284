"""The standard evaluation protocols of the unsupervised-hashing literature, by ids that say what they are.

Papers name their splits "CIFAR-10 (I)" or "cifar10-1", and the same name means different splits in
different papers. Each id here fixes what a reported number depends on: the source dataset, the query,
training and database sizes, whether the training images are inside the database, how items are
drawn (per class or at random, from ``seed``), the image preprocessing, and the default ``topk`` of
MAP@k. ``hashbench prepare ID --root DIR`` builds the id's data file, and the id is then a dataset
name (``hashbench run --datasets ID``); docs/datasets.md tabulates the ids with their sources.

Draw rules (``Protocol.draw``), always in this order from one ``numpy.random.default_rng(seed)``:

- ``per-class`` (single-label sources): the training and test sets pooled; for each class in label
  order, a random permutation of its items gives ``query_size`` queries, then ``train_size``
  training items; the rest of the class is database. With ``train_in_database`` the training items
  join the database too (the DeepHash-pytorch ``cifar10`` / ``cifar10-1`` splits).
- ``test-set``: the source's test set is the query set and its training set the database; training
  is the whole database (``train_size`` None) or ``train_size`` random items per class of it.
- ``per-concept`` (multi-label sources): items with none of the kept labels are dropped; for each
  label in order, ``query_size`` random items holding it among those not drawn yet are queries;
  the rest is database, from which ``train_size`` items per label are drawn the same way. Every
  label thus has at least ``query_size`` queries, and queries are never in the database.
- ``random`` (multi-label sources): items with no label are dropped; ``query_size`` random items are
  queries, the rest database, and ``train_size`` random database items are the training set.
  ``random-all`` draws the same way from every item, labelled or not.
- ``lists``: the split is the one a published list folder gives (``train.txt``, ``test.txt``,
  ``database.txt``); nothing is drawn.

``query_size`` and ``train_size`` are counts per class (per label) for the per-class rules and totals
otherwise. ``hashbench prepare`` can override them (``--query-size``, ``--train-size``) to prepare a
miniature or an ablation; the file then records that its sizes depart from the protocol's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hashbench._validation import unknown_name_message
from hashbench.datasets.cache import prepared_dataset
from hashbench.errors import InvalidInputError
from hashbench.registry import register_dataset

DRAWS = ("per-class", "test-set", "per-concept", "random", "random-all", "lists")


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: a source dataset and how it is split and scored."""

    id: str
    source: str  # key of SOURCES: which reader builds the items
    title: str
    draw: str  # one of DRAWS
    query_size: int | None  # per class for per-class draws, else the total; None: as the lists give it
    train_size: int | None  # as query_size; None for "test-set": the whole database trains
    train_in_database: bool
    expected: dict  # split sizes on the full source: {"query": n, "train": n, "database": n or None}
    topk: int  # the default k of MAP@k
    also_reported: str  # the other score papers report on the protocol ("MAP@all"), or ""
    resize: str  # "centre-crop" (ImageNet evaluation transform) or "full" (whole image resized)
    used_by: str  # who reports on it
    sources: str  # where the counts were checked

    def describe(self) -> dict:
        return asdict(self)


_CIFAR_SOURCES = "DeepHash-pytorch utils/tools.py cifar_dataset() and README (swuxyj/DeepHash-pytorch @ab14068)"
_HASHNET = "thuml/HashNet @85387b8, pytorch/data/*/{train,test}.txt (lines counted)"

PROTOCOLS = {
    p.id: p
    for p in [
        Protocol(
            "cifar10-q1000-t5000-db54000",
            "cifar10",
            "CIFAR-10: 100 queries and 500 training images per class, the other 54,000 as database",
            "per-class",
            100,
            500,
            False,
            {"query": 1000, "train": 5000, "database": 54000},
            1000,
            "MAP@all",
            "full",
            "DeepHash-pytorch `cifar10`; papers' 'CIFAR-10 (I)' in the supervised literature",
            _CIFAR_SOURCES,
        ),
        Protocol(
            "cifar10-q1000-t5000-db59000",
            "cifar10",
            "CIFAR-10: 100 queries per class, the other 59,000 as "
            "database, 500 training images per class drawn from it",
            "per-class",
            100,
            500,
            True,
            {"query": 1000, "train": 5000, "database": 59000},
            1000,
            "MAP@all",
            "full",
            "DPSH, DSDH; DeepHash-pytorch `cifar10-1`",
            _CIFAR_SOURCES,
        ),
        Protocol(
            "cifar10-q10000-db50000",
            "cifar10",
            "CIFAR-10: the 10,000 test images as queries, the 50,000 training images as database and training set",
            "test-set",
            None,
            None,
            True,
            {"query": 10000, "train": 50000, "database": 50000},
            1000,
            "MAP@all",
            "full",
            "GreedyHash (unsupervised), TBH, CIBHash's database and training pool",
            "ssppp/GreedyHash @e5089b2 unsupervised_vgg.py (torchvision's 50,000 / 10,000); ymcidence/TBH @778dd1c "
            "(cifar10_fc7_{train,test}.mat, 50,000 / 10,000)",
        ),
        Protocol(
            "cifar10-q10000-db50000-drawn",
            "cifar10",
            "CIFAR-10: 1,000 queries and 5,000 database (= training) images per class, drawn from the 60,000 "
            "pooled rather than taken from the official test / training sets",
            "per-class",
            1000,
            5000,
            True,
            {"query": 10000, "train": 50000, "database": 50000},
            1000,
            "MAP@all",
            "full",
            "Bi-half 'CIFAR-10 (I)' (seeded per-class split); DeepHash-pytorch `cifar10-2`",
            _CIFAR_SOURCES + "; liyunqianggyn/Deep-Unsupervised-Image-Hashing @1cd671a ImageHashing/Cifar10_I.py",
        ),
        Protocol(
            "cifar10-q10000-t5000-db50000",
            "cifar10",
            "CIFAR-10: the 10,000 test images as queries, the "
            "50,000 training images as database, 500 per class of them as training set",
            "test-set",
            None,
            500,
            True,
            {"query": 10000, "train": 5000, "database": 50000},
            1000,
            "MAP@all",
            "full",
            "Bi-half 'CIFAR-10 (II)'; CIBHash trains on the same 5,000 (its queries are 5,000 of the test set)",
            "liyunqianggyn/Deep-Unsupervised-Image-Hashing @1cd671a ImageHashing/Cifar10_II.py; zexuanqiu/CIBHash "
            "@4c896ee utils/data.py (500 training images per class)",
        ),
        Protocol(
            "nuswide21-q2100-t10500",
            "nuswide",
            "NUS-WIDE, 21 most frequent concepts: 100 queries per concept, "
            "the rest as database, 500 training images per concept drawn from it",
            "per-concept",
            100,
            500,
            True,
            {"query": 2100, "train": 10500, "database": 193734},
            5000,
            "",
            "centre-crop",
            "DPSH, DSDH, and the deep hashing papers after them; DeepHash-pytorch `nuswide_21`",
            "DeepHash-pytorch README (195,834 images with the 21 concepts) and data/nuswide_21/{test,train}.txt "
            "(2,100 / 10,500 lines)",
        ),
        Protocol(
            "nuswide81-hashnet-q5000-t10000",
            "hashnet-nuswide81",
            "NUS-WIDE, 81 concepts, HashNet's lists: 5,000 queries, 10,000 training images, database.txt as database",
            "lists",
            None,
            None,
            True,
            {"query": 5000, "train": 10000, "database": None},
            5000,
            "",
            "centre-crop",
            "HashNet and the papers using its lists; DeepHash-pytorch `nuswide_81_m`",
            _HASHNET + "; database.txt not readable there",
        ),
        Protocol(
            "coco-hashnet-q5000-t10000",
            "hashnet-coco",
            "MS-COCO 2014, HashNet's lists: 5,000 queries, 10,000 training images, database.txt as database",
            "lists",
            None,
            None,
            False,
            {"query": 5000, "train": 10000, "database": None},
            5000,
            "",
            "centre-crop",
            "HashNet, Bi-half, CIBHash and most deep hashing papers since 2017",
            _HASHNET + "; the caffe/ lists' database holds 112,218 images (counted), none of them training "
            "images but all 5,000 queries; pytorch/data/coco/database.txt not readable there",
        ),
        Protocol(
            "flickr25k-q2000-t5000-db18015",
            "mirflickr",
            "MIRFLICKR-25000, 24 labels: 2,000 random queries, "
            "the other 18,015 as database, 5,000 training images drawn from it",
            "random",
            2000,
            5000,
            True,
            {"query": 2000, "train": 5000, "database": 18015},
            5000,
            "MAP@all",
            "centre-crop",
            "the 20,015 labelled images of SSDH's lists (2,000 / 18,015) with 5,000 training images, the sizes "
            "Bi-half's script draws",
            "yangerkun/IJCAI2018_SSDH @49d1938 flickr/img_{test,database}.txt (2,000 / 18,015 lines, 24 labels; "
            "counted); training size from Bi-half's ImageHashing/Flickr25k.py (num_train = 5000)",
        ),
        Protocol(
            "flickr25k-q2000-t5000-db23000",
            "mirflickr-bihalf",
            "MIRFLICKR-25000 as the Bi-half release lists it (img.txt, targets.txt: all 25,000 images, 24 labels): "
            "2,000 random queries, the other 23,000 as database, 5,000 training images drawn from it",
            "random-all",
            2000,
            5000,
            True,
            {"query": 2000, "train": 5000, "database": 23000},
            5000,
            "MAP@all",
            "centre-crop",
            "Bi-half (FLICKR25K; its script reports MAP@all)",
            "liyunqianggyn/Deep-Unsupervised-Image-Hashing @1cd671a: ImageHashing/data/flickr25k.py (2,000 queries, "
            "5,000 training, database = all non-queries) and data/Flickr25k/{img,targets}.txt (25,000 lines, 24 labels, "
            "419 rows without a label; counted)",
        ),
        Protocol(
            "flickr25k-q2000-t10000-db18015",
            "mirflickr",
            "MIRFLICKR-25000, 24 labels: as flickr25k-q2000-t5000-db18015 with 10,000 training images",
            "random",
            2000,
            10000,
            True,
            {"query": 2000, "train": 10000, "database": 18015},
            1000,
            "MAP@all",
            "centre-crop",
            "SSDH (its release: 10,000 / 2,000 / 18,015, MAP@1000 and MAP@all)",
            "yangerkun/IJCAI2018_SSDH @49d1938: main.py (n_train 10000, n_test 2000, n_db 18015, n_label 24) and "
            "flickr/img_{train,test,database}.txt (10,000 / 2,000 / 18,015 lines, the training images among the "
            "database's; counted)",
        ),
        Protocol(
            "imagenet100-hashnet-q5000-t13000",
            "hashnet-imagenet100",
            "ImageNet-100, HashNet's lists: 5,000 "
            "validation images as queries, 13,000 training images, 128,503 as database",
            "lists",
            None,
            None,
            True,
            {"query": 5000, "train": 13000, "database": 128503},
            1000,
            "",
            "centre-crop",
            "HashNet and the deep hashing papers after it; DeepHash-pytorch `imagenet`",
            _HASHNET + "; caffe/data/imagenet/test/database*.txt: 128,503 lines, the 13,000 training images among them",
        ),
    ]
}


def protocol(protocol_id: str) -> Protocol:
    if protocol_id not in PROTOCOLS:
        raise InvalidInputError(unknown_name_message("protocol", protocol_id, PROTOCOLS))
    return PROTOCOLS[protocol_id]


def draw_split(
    spec: Protocol,
    labels: np.ndarray,
    subsets: dict[str, np.ndarray],
    seed: int,
    *,
    query_size: int | None = None,
    train_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Row indices (sorted) of query / train / database under ``spec``'s draw rule.

    ``labels`` (n, c) are the source's labels; ``subsets`` names the source's own index sets
    (``train`` / ``test`` for CIFAR-10, ``train`` / ``query`` / ``database`` for list folders).
    ``query_size`` / ``train_size`` override the protocol's (same units).
    """
    fixed = {"lists": ("query_size", "train_size"), "test-set": ("query_size",)}.get(spec.draw, ())
    given = [name for name, value in (("query_size", query_size), ("train_size", train_size)) if value is not None]
    if set(given) & set(fixed):
        raise InvalidInputError(
            f"{spec.id} takes its {' and '.join(f.split('_')[0] for f in fixed)} split from the "
            f"source; {', '.join(given)} cannot change it"
        )
    q = spec.query_size if query_size is None else query_size
    t = spec.train_size if train_size is None else train_size
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    if spec.draw == "lists":
        return {name: np.sort(subsets[name]) for name in ("query", "train", "database")}
    if spec.draw == "per-class":
        query, train, database = [], [], []
        for c in range(labels.shape[1]):
            members = rng.permutation(np.flatnonzero(labels[:, c]))
            _need(len(members), q + t, f"class {c}", "queries and training items")
            query.append(members[:q])
            train.append(members[q : q + t])
            database.append(members[q + t :])
        query, train, database = map(np.concatenate, (query, train, database))
        if spec.train_in_database:
            database = np.concatenate([database, train])
    elif spec.draw == "test-set":
        query, database = subsets["test"], subsets["train"]
        train = database if t is None else _per_label(labels, database, t, rng)
    elif spec.draw == "per-concept":
        usable = np.flatnonzero(labels.any(axis=1))
        query = _per_label(labels, usable, q, rng)
        database = np.setdiff1d(usable, query)
        train = _per_label(labels, database, t, rng)
    elif spec.draw in ("random", "random-all"):
        usable = np.flatnonzero(labels.any(axis=1)) if spec.draw == "random" else np.arange(len(labels))
        _need(len(usable), q + 1, "the labelled items", "queries and a database")
        query = rng.choice(usable, q, replace=False)
        database = np.setdiff1d(usable, query)
        _need(len(database), t, "the database", "training items")
        train = rng.choice(database, t, replace=False)
    else:
        raise InvalidInputError(f"unknown draw rule {spec.draw!r}; known: {', '.join(DRAWS)}")
    return {"query": np.sort(query), "train": np.sort(train), "database": np.sort(database)}


def _per_label(labels: np.ndarray, pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random items of ``pool`` holding each label in turn, none drawn twice."""
    taken = np.zeros(len(labels), bool)
    for c in range(labels.shape[1]):
        candidates = pool[(labels[pool, c] == 1) & ~taken[pool]]
        _need(len(candidates), count, f"label {c}", "distinct items")
        taken[rng.choice(candidates, count, replace=False)] = True
    return np.flatnonzero(taken)


def _need(available: int, needed: int, where: str, what: str) -> None:
    if available < needed:
        raise InvalidInputError(f"{where} has {available} items, fewer than the {needed} {what} the protocol draws")


def check_disjoint(spec: Protocol, rows: dict[str, np.ndarray]) -> dict[str, int]:
    """Items shared by two splits; an overlap the protocol forbids is an error, except in list
    folders, whose split is the published one (the caller reports it)."""
    overlaps = {
        "query&train": len(np.intersect1d(rows["query"], rows["train"])),
        "query&database": len(np.intersect1d(rows["query"], rows["database"])),
        "train&database": len(np.intersect1d(rows["train"], rows["database"])),
    }
    if spec.draw != "lists":
        train_overlap = overlaps["train&database"]
        wrong = (
            overlaps["query&train"]
            or overlaps["query&database"]
            or (train_overlap != (len(rows["train"]) if spec.train_in_database else 0))
        )
        if wrong:
            raise InvalidInputError(f"{spec.id}: split overlaps {overlaps} break the protocol")
    return overlaps


for _spec in PROTOCOLS.values():
    register_dataset(_spec.id, prepared_dataset(_spec.id), f"{_spec.title}, after `hashbench prepare {_spec.id}`")
