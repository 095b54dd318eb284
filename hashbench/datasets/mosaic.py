"""The embedded multi-label "mosaic" datasets, built from real Fashion-MNIST images.

    import hashbench as hb
    ds = hb.load_dataset("mosaic")                  # 5,000 train / 1,000 query / 20,000 database
    ds = hb.load_dataset("mosaic", size="tiny")     # 500 / 100 / 1,000: quick to build, weak detector
    ds = hb.load_dataset("mosaic-tags")             # aux = noisy user tags (NUS-WIDE-like)
    ds = hb.load_dataset("mosaic-coco")             # the paper's MS-COCO sizes 5,000 / 5,000 / 113,287

How it is made (every random choice flows from ``seed``):
- The item images are split into two disjoint pools. Pool A (``backbone_items`` single items) trains
  the backbone CNN (:mod:`hashbench.datasets.backbone`) on its class labels; the mosaics and their
  labels are never seen by it. Pool B is split again, in proportion to the split sizes, into
  disjoint item pools for train, query and database, so no item photo appears in two splits.
- Each 56x56 grey mosaic is a 2x2 grid; each cell holds an item with probability
  ``cell_probability`` (0.5; at least one per mosaic), of a class drawn with weights
  ``1 / (rank + 1) ** class_skew`` (0.5: frequent and rare classes, as in COCO), mirrored
  left-right with probability 1/2. Ground truth ``labels`` = multi-hot over the 10 classes present
  (about 2 per mosaic on average).
- The backbone is trained for ``backbone_epochs`` epochs on the pool-A items, each mini-batch
  showing every item alone in a random cell of an empty 56x56 canvas, mirrored with probability
  1/2 (Adam at the network's learning rate, batches of 128, cross-entropy).
- ``features``: what the backbone gives for the whole mosaic, the stand-in for VGG16 fc7.
  ``"fc7"`` (the default): the 1,024 fc7 activations of ``Fc7Backbone`` (conv trunk, flatten, fc6,
  fc7), sparse and spread over many directions like VGG16's. ``"pooled"``: the 256 globally
  average-pooled features of the fully convolutional ``PooledBackbone``, the features of format
  2, nearly parallel for all mosaics (a component shared by every mosaic dominates them). Training
  and detection are the same for both; the two differ in the network only.
- ``aux="objects"`` (``mosaic``, COCO-like): the backbone's classifier used as a detector on each
  non-empty cell shown alone at its position on an empty canvas, keeping the classes whose
  softmax probability is at least ``detector_threshold`` (0.4), so ``aux`` is a multi-hot that is
  informative but imperfect. ``aux="tags"`` (``mosaic-tags``, NUS-WIDE-like): noisy user tags, see
  :mod:`hashbench.datasets.tags`; everything else is the objects build with the same options
  (shared through the cache).
- ``web`` split (for WSIH): ``n_web`` single pool-A items, each alone in a random cell of an empty
  canvas and mirrored with probability 1/2, one-hot labels; its features come from the same
  backbone as the mosaics'.
- ``info`` holds the aux precision / recall against the true labels, the backbone's accuracy on
  the distinct pool-B cells shown alone, the statistics of the train features
  (:mod:`hashbench.datasets.statistics`), the build time, all parameters and the image source.
- The build runs torch on a fixed number of CPU threads with deterministic algorithms, so a seed
  gives byte-identical arrays on every run on a machine. Across machines it need not: torch picks
  its CPU kernels by the instruction set (AVX2, AVX-512, ...), whose floating-point sums differ in
  the last bits, and training the backbone amplifies that (the tiny build's features differ under
  ``ATEN_CPU_CAPABILITY=avx2`` or ``ONEDNN_MAX_CPU_ISA=AVX2`` from the same machine's AVX-512
  build; on the default build, LSH at 32 bits with one method seed scored 0.781 on one machine and
  0.798 on another). ``dataset.fingerprint`` (printed by ``hashbench datasets describe``, kept in
  every run record) tells builds apart, and reports warn when records mix them.

Options of ``load_dataset("mosaic", ...)``:
- ``size``: "tiny" (500 / 100 / 1,000, web 200), "default" (5,000 / 1,000 / 20,000, web 2,000) or
  "coco" (5,000 / 5,000 / 113,287, web 5,000); ``n_train``, ``n_query``, ``n_database``, ``n_web``
  override single counts.
- ``aux``: "objects" or "tags"; ``features``: "fc7" or "pooled"; ``seed`` (0).
- ``source``: "vendored" (the 16,000 packaged images; the default, so every machine starts from the
  same images), "debian" (all 70,000 images of the Debian package dataset-fashion-mnist) or "auto"
  (Debian when installed; the default of ``mosaic-coco``). Items are reused across mosaics of a split;
  how often is recorded in ``info["item_reuse"]``.
- ``data_dir``: cache directory (see :mod:`hashbench.datasets.cache`); ``cache=False`` builds
  without reading or writing the cache.
- ``cell_probability``, ``class_skew``, ``detector_threshold``, ``backbone_items``,
  ``backbone_epochs``: the free choices above; the backbone's defaults depend on the size (tiny:
  1,500 items, 3 epochs; default and coco: 8,000 items, 3 epochs).

Images are stored compactly: the item pixels once, and per mosaic the item index and mirror flag of
each cell; ``split.images.load(indices)`` renders mosaics on demand and ``split.images.backbone()``
returns the trained backbone, so image-mode methods fine-tune the network behind ``features``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import torch

from hashbench._validation import check_choice, check_positive_int
from hashbench.datasets import backbone as bb
from hashbench.datasets import cache as cache_files
from hashbench.datasets.base import SPLIT_NAMES, ArrayImages, HashingDataset, Split
from hashbench.datasets.fashion import CLASS_NAMES, debian_available, load_items
from hashbench.datasets.statistics import feature_statistics
from hashbench.errors import InvalidInputError
from hashbench.registry import register_dataset

FORMAT_VERSION = 3
ITEM_SIZE = 28
MOSAIC_SIZE = 2 * ITEM_SIZE
CELL_OFFSETS = ((0, 0), (0, ITEM_SIZE), (ITEM_SIZE, 0), (ITEM_SIZE, ITEM_SIZE))
SIZES = {
    "tiny": {"n_train": 500, "n_query": 100, "n_database": 1000, "n_web": 200},
    "default": {"n_train": 5000, "n_query": 1000, "n_database": 20000, "n_web": 2000},
    "coco": {"n_train": 5000, "n_query": 5000, "n_database": 113287, "n_web": 5000},
}
# Backbone training effort per size: the tiny size trades detector quality (about half its cells
# are classified right) for a build of well under a minute.
BACKBONE_DEFAULTS = {
    "tiny": {"backbone_items": 1500, "backbone_epochs": 3},
    "default": {"backbone_items": 8000, "backbone_epochs": 3},
    "coco": {"backbone_items": 8000, "backbone_epochs": 3},
}
AUX_KINDS = ("objects", "tags")


@dataclass(frozen=True)
class MosaicImages:
    """ImageSource rendering 2x2 mosaics on demand from item pixels and per-cell (item, mirror) choices."""

    items: np.ndarray  # (n_items, 28, 28) uint8
    cells: np.ndarray  # (n, 4) item index per cell, -1 = empty
    flips: np.ndarray  # (n, 4) bool, mirror the cell's item left-right
    backbone: bb.BackboneFactory

    def __len__(self) -> int:
        return len(self.cells)

    def load(self, indices) -> np.ndarray:
        if isinstance(indices, (int, np.integer)):
            return render_mosaics(self.items, self.cells[[indices]], self.flips[[indices]])[0]
        return render_mosaics(self.items, self.cells[indices], self.flips[indices])


def render_mosaics(items: np.ndarray, cells: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """uint8 mosaics (n, 1, 56, 56) from item pixels and (n, 4) cell choices."""
    mosaics = np.zeros((len(cells), 1, MOSAIC_SIZE, MOSAIC_SIZE), np.uint8)
    for k, (top, left) in enumerate(CELL_OFFSETS):
        rows = np.flatnonzero(cells[:, k] >= 0)
        tiles = items[cells[rows, k]]
        mirrored = flips[rows, k]
        tiles[mirrored] = tiles[mirrored, :, ::-1]
        mosaics[rows, 0, top : top + ITEM_SIZE, left : left + ITEM_SIZE] = tiles
    return mosaics


def build_mosaic(
    *,
    size: str = "default",
    n_train: int | None = None,
    n_query: int | None = None,
    n_database: int | None = None,
    n_web: int | None = None,
    aux: str = "objects",
    features: str = "fc7",
    seed: int = 0,
    source: str = "vendored",
    cell_probability: float = 0.5,
    class_skew: float = 0.5,
    detector_threshold: float = 0.4,
    backbone_items: int | None = None,
    backbone_epochs: int | None = None,
    data_dir=None,
    cache: bool = True,
    name: str = "mosaic",
) -> HashingDataset:
    """Build (or read from the cache) a mosaic dataset; the options are described in the module docstring."""
    params = _resolve_params(
        size=size, n_train=n_train, n_query=n_query, n_database=n_database, n_web=n_web, aux=aux, features=features,
        seed=seed,
        source=source, cell_probability=cell_probability, class_skew=class_skew,
        detector_threshold=detector_threshold, backbone_items=backbone_items, backbone_epochs=backbone_epochs,
    )
    # Tags are drawn on top of the objects build (same mosaics, features and backbone), in
    # milliseconds, so only the objects build is cached and both variants share it.
    objects_params = {**params, "aux": "objects"}
    path = None
    if cache:
        path = cache_files.resolve_data_dir(data_dir) / f"mosaic-{cache_files.cache_key(objects_params)}.npz"
    arrays = cache_files.read_npz_whole(path) if path is not None and path.exists() else None
    if arrays is None or json.loads(str(arrays["meta"]))["params"] != objects_params:
        arrays = _build_arrays(objects_params)
        if path is not None:
            cache_files.write_npz_atomic(path, arrays)
    if params["aux"] == "tags":
        arrays = _with_tags(arrays, params)
    dataset = dataset_from_arrays(arrays, name)
    if path is not None:
        dataset.info["cache_file"] = str(path)
    return dataset


def _with_tags(arrays: dict[str, np.ndarray], params: dict) -> dict[str, np.ndarray]:
    """A copy of an objects build whose aux are user tags; tags draw from their own seeded stream."""
    from hashbench.datasets.tags import add_tags

    arrays = dict(arrays)
    arrays["aux_names"] = np.array(add_tags(arrays, np.random.default_rng([params["seed"], 1])))
    info = json.loads(str(arrays["meta"]))["info"]
    info.update(params=params, **aux_quality(arrays, aux_kind="tags"))
    arrays["meta"] = np.array(json.dumps({"params": params, "info": info}))
    return arrays


def _resolve_params(*, size, aux, features, seed, source, **options) -> dict:
    size = check_choice(size, SIZES, "size")
    aux = check_choice(aux, AUX_KINDS, "aux")
    features = check_choice(features, bb.BACKBONES, "features")
    source = check_choice(source, ("vendored", "debian", "auto"), "source")
    if source == "auto":
        source = "debian" if debian_available() else "vendored"
    params = {**SIZES[size], **BACKBONE_DEFAULTS[size]}
    for key, value in options.items():
        if value is not None:
            params[key] = value
    for key in (*SIZES[size], *BACKBONE_DEFAULTS[size]):
        params[key] = check_positive_int(params[key], key)
    for key in ("cell_probability", "detector_threshold"):
        if not 0 < params[key] <= 1:
            raise InvalidInputError(f"{key} must be in (0, 1], got {params[key]!r}")
    if params["class_skew"] < 0:
        raise InvalidInputError(f"class_skew must be >= 0, got {params['class_skew']!r}")
    if params["n_web"] > params["backbone_items"]:
        raise InvalidInputError(
            f"n_web ({params['n_web']}) must not exceed backbone_items ({params['backbone_items']}): "
            "web images come from the backbone's item pool"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be an integer >= 0, got {seed!r}")
    return {**params, "aux": aux, "features": features, "seed": int(seed), "source": source,
            "format_version": FORMAT_VERSION}


def _build_arrays(params: dict) -> dict[str, np.ndarray]:
    """Every array of the dataset (the cache file's content), deterministic in ``params``."""
    started = time.perf_counter()
    rng = np.random.default_rng(params["seed"])
    items = load_items(params["source"])
    n_classes = len(CLASS_NAMES)
    order = rng.permutation(len(items.labels))
    pool_a, pool_b = order[: params["backbone_items"]], order[params["backbone_items"] :]
    if len(pool_b) < 3 * n_classes:
        raise InvalidInputError(f"backbone_items={params['backbone_items']} leaves too few items for the mosaics")

    with bb.deterministic_torch():
        model = _train_backbone(items.images[pool_a], items.labels[pool_a], params)
        counts = {s: params[f"n_{s}"] for s in SPLIT_NAMES}
        pools = _partition(pool_b, counts)
        layouts = {s: _sample_layout(rng, pools[s], items.labels, counts[s], params) for s in SPLIT_NAMES}
        used_items, layouts = _compact_items(layouts)
        item_pixels = items.images[used_items]
        item_labels = items.labels[used_items]
        detections, cell_accuracy = _detect_cells(model, item_pixels, item_labels, layouts, params)
        web_items = pool_a[: params["n_web"]]
        web_pixels = render_mosaics(items.images[web_items], *_single_item_layout(rng, len(web_items)))
        arrays = {"web_images": web_pixels, "web_labels": _one_hot(items.labels[web_items], n_classes)}
        arrays["web_features"] = bb.apply_in_batches(model, len(web_pixels), lambda s: web_pixels[s])
        for split, (cells, flips) in layouts.items():
            arrays[f"{split}_cells"], arrays[f"{split}_flips"] = cells, flips
            arrays[f"{split}_labels"] = _cell_labels(cells, item_labels, n_classes)
            arrays[f"{split}_features"] = bb.apply_in_batches(
                model, len(cells), lambda s, c=cells, f=flips: render_mosaics(item_pixels, c[s], f[s])
            )
            arrays[f"{split}_aux"] = _aux_from_detections(cells, flips, detections)
    arrays.update(bb.state_to_arrays(model))
    arrays["items"] = item_pixels
    arrays["label_names"] = np.array(CLASS_NAMES)
    arrays["aux_names"] = np.array([f"detected {c}" for c in CLASS_NAMES])
    info = {
        "params": params,
        "image_source": items.description,
        "item_reuse": {s: round(float((c >= 0).sum() / max(len(np.unique(c[c >= 0])), 1)), 2)
                       for s, (c, _) in layouts.items()},
        "backbone_accuracy_on_pool_b_cells": round(cell_accuracy, 4),
        **aux_quality(arrays, aux_kind="objects"),
        "feature_statistics": feature_statistics(arrays["train_features"]),
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    if params["source"] == "vendored" and params["n_database"] > SIZES["default"]["n_database"]:
        info["note"] = (
            "built from the vendored subset: items are reused (and mirrored) across many mosaics; "
            "install dataset-fashion-mnist and use source='debian' or 'auto' for more distinct items"
        )
    arrays["meta"] = np.array(json.dumps({"params": params, "info": info}))
    return arrays


def _single_item_layout(rng, n: int):
    """(cells, flips) of ``n`` images each showing item i alone in a random cell, mirrored with probability 1/2."""
    cells = np.full((n, 4), -1, np.int64)
    cells[np.arange(n), rng.integers(0, 4, n)] = np.arange(n)
    return cells, rng.random((n, 4)) < 0.5


def _train_backbone(images: np.ndarray, labels: np.ndarray, params: dict):
    """The ``params["features"]`` backbone trained on single items, each batch showing every item
    alone in a random cell of an empty canvas, mirrored at random (its own seeded stream)."""
    rng = np.random.default_rng([params["seed"], 2])

    def render(indices):
        cells, flips = _single_item_layout(rng, len(indices))
        return render_mosaics(images[indices], cells, flips)

    return bb.train_backbone(params["features"], labels, render, epochs=params["backbone_epochs"], seed=params["seed"])


def _partition(pool: np.ndarray, counts: dict[str, int]) -> dict[str, np.ndarray]:
    """Disjoint item pools for the splits, sized in proportion to the number of mosaics."""
    total = sum(counts.values())
    bounds = np.cumsum([0] + [round(len(pool) * n / total) for n in counts.values()])
    bounds[-1] = len(pool)
    return {s: pool[bounds[i] : bounds[i + 1]] for i, s in enumerate(counts)}


def _sample_layout(rng, pool: np.ndarray, labels: np.ndarray, n: int, params: dict):
    """(cells, flips) of ``n`` mosaics drawing items from ``pool`` (indices into the item set)."""
    n_classes = len(CLASS_NAMES)
    occupied = rng.random((n, 4)) < params["cell_probability"]
    blank = np.flatnonzero(~occupied.any(axis=1))
    occupied[blank, rng.integers(0, 4, len(blank))] = True
    weights = 1.0 / (np.arange(n_classes) + 1.0) ** params["class_skew"]
    classes = rng.choice(n_classes, size=(n, 4), p=weights / weights.sum())
    by_class = pool[np.argsort(labels[pool], kind="stable")]
    class_counts = np.bincount(labels[pool], minlength=n_classes)
    if (class_counts == 0).any():
        raise InvalidInputError("an item pool lacks a class; use more items (a larger source or fewer backbone_items)")
    starts = np.concatenate([[0], np.cumsum(class_counts)[:-1]])
    picks = starts[classes] + (rng.random((n, 4)) * class_counts[classes]).astype(np.int64)
    cells = np.where(occupied, by_class[picks], -1).astype(np.int64)
    flips = rng.random((n, 4)) < 0.5
    return cells, flips


def _compact_items(layouts):
    """Renumber cell items 0..m-1 over the items actually used, so the cache stores only those."""
    used = np.unique(np.concatenate([c[c >= 0] for c, _ in layouts.values()]))
    compact = {}
    for split, (cells, flips) in layouts.items():
        renumbered = np.where(cells >= 0, np.searchsorted(used, cells), -1).astype(np.int32)
        compact[split] = (renumbered, flips)
    return used, compact


def _cell_codes(cells: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """What each cell shows, as one integer: (2 x item + mirrored) x 4 + position; -1 = empty."""
    positions = np.arange(cells.shape[1])
    return np.where(cells >= 0, (2 * cells + flips) * cells.shape[1] + positions, -1)


def _detect_cells(model, item_pixels, item_labels, layouts, params):
    """Detector output per distinct cell content (item, mirror, position): a bool (m, 10) table and its codes.

    The detector is the backbone's classifier shown the cell alone at its position on an empty
    canvas; running it once per distinct content equals running it on every non-empty cell.
    """
    codes = np.unique(np.concatenate([_cell_codes(c, f).ravel() for c, f in layouts.values()]))
    codes = codes[codes >= 0]
    n_cells = len(CELL_OFFSETS)
    items, flips, positions = codes // (2 * n_cells), (codes // n_cells) % 2 == 1, codes % n_cells
    alone = np.full((len(codes), n_cells), -1, np.int64)
    alone[np.arange(len(codes)), positions] = items
    mirrored = np.broadcast_to(flips[:, None], alone.shape)
    probabilities = bb.apply_in_batches(
        lambda x: torch.softmax(model.classify(x), 1), len(codes),
        lambda s: render_mosaics(item_pixels, alone[s], mirrored[s]),
    )
    accuracy = float((probabilities.argmax(1) == item_labels[items]).mean())
    return (codes, probabilities >= params["detector_threshold"]), accuracy


def _aux_from_detections(cells, flips, detections) -> np.ndarray:
    codes, detected = detections
    cell_codes = _cell_codes(cells, flips)
    aux = np.zeros((len(cells), detected.shape[1]), bool)
    for k in range(cells.shape[1]):
        rows = np.flatnonzero(cell_codes[:, k] >= 0)
        aux[rows] |= detected[np.searchsorted(codes, cell_codes[rows, k])]
    return aux.astype(np.float32)


def _cell_labels(cells, item_labels, n_classes) -> np.ndarray:
    labels = np.zeros((len(cells), n_classes), np.uint8)
    rows, ks = np.nonzero(cells >= 0)
    labels[rows, item_labels[cells[rows, ks]]] = 1
    return labels


def _one_hot(classes, n_classes) -> np.ndarray:
    return np.eye(n_classes, dtype=np.uint8)[classes]


def aux_quality(arrays, *, aux_kind: str) -> dict:
    """Micro-averaged precision and recall of the aux labels (tags mapped to classes) vs the true labels."""
    true = np.concatenate([arrays[f"{s}_labels"] for s in SPLIT_NAMES]).astype(bool)
    if aux_kind == "tags":
        from hashbench.datasets.tags import tags_to_classes

        predicted = np.concatenate([tags_to_classes(arrays[f"{s}_aux"]) for s in SPLIT_NAMES])
    else:
        predicted = np.concatenate([arrays[f"{s}_aux"] for s in SPLIT_NAMES]).astype(bool)
    hits = (true & predicted).sum()
    return {
        "aux_precision": round(float(hits / max(predicted.sum(), 1)), 4),
        "aux_recall": round(float(hits / max(true.sum(), 1)), 4),
        "label_cardinality": round(float(true.sum(1).mean()), 3),
    }


def dataset_from_arrays(arrays: dict[str, np.ndarray], name: str) -> HashingDataset:
    """The HashingDataset over the arrays of a (cached) build."""
    backbone = bb.BackboneFactory(bb.arrays_to_state(arrays))
    items = arrays["items"]
    splits = {
        s: Split(
            arrays[f"{s}_features"],
            arrays[f"{s}_labels"],
            arrays[f"{s}_aux"],
            images=MosaicImages(items, arrays[f"{s}_cells"], arrays[f"{s}_flips"], backbone),
            name=s,
        )
        for s in SPLIT_NAMES
    }
    web = Split(arrays["web_features"], arrays["web_labels"], images=ArrayImages(arrays["web_images"], backbone), name="web")
    meta = json.loads(str(arrays["meta"]))
    return HashingDataset(
        name,
        **splits,
        web=web,
        label_names=[str(n) for n in arrays["label_names"]],
        aux_names=[str(n) for n in arrays["aux_names"]],
        info=dict(meta["info"]),
    )


register_dataset(
    "mosaic",
    lambda **options: build_mosaic(**{"name": "mosaic", **options}),
    "2x2 mosaics of Fashion-MNIST items, 10 classes, fc7 features of a small VGG-shaped CNN, aux = detected objects; "
    "5,000/1,000/20,000 (size='tiny': 500/100/1,000)",
)
register_dataset(
    "mosaic-tags",
    lambda **options: build_mosaic(**{"name": "mosaic-tags", "aux": "tags", **options}),
    "mosaic with aux = noisy user tags over a vocabulary of a few hundred words (NUS-WIDE-like)",
)
register_dataset(
    "mosaic-coco",
    lambda **options: build_mosaic(**{"name": "mosaic-coco", "size": "coco", "source": "auto", **options}),
    "mosaic at the paper's MS-COCO sizes 5,000/5,000/113,287; all of Debian's Fashion-MNIST when installed",
)
