"""The embedded multi-label "mosaic" datasets, built from real Fashion-MNIST images.

    import hashbench as hb
    ds = hb.load_dataset("mosaic")                  # 5,000 train / 1,000 query / 20,000 database
    ds = hb.load_dataset("mosaic", size="tiny")     # 500 / 100 / 1,000: quick to build
    ds = hb.load_dataset("mosaic-tags")             # aux = noisy user tags (NUS-WIDE-like)
    ds = hb.load_dataset("mosaic-coco")             # the paper's MS-COCO sizes 5,000 / 5,000 / 113,287

How it is made (every random choice flows from ``seed``):
- The backbone CNN (:mod:`hashbench.datasets.backbone`) is shipped in ``hashbench/data``
  (``mosaic_backbone_fc7.npz``, ``mosaic_backbone_pooled.npz``), as VGG16's weights come with
  torchvision: trained once on 8,000 single vendored items (``SHIPPED_TRAINING``: drawn by
  ``default_rng(0)``, 3 epochs, each mini-batch showing every item alone in a random cell of an
  empty 56x56 canvas, mirrored with probability 1/2; Adam at the network's learning rate,
  batches of 128, cross-entropy), its weights rounded to 8-bit integers times a power of two per
  output unit. ``hashbench datasets backbone --features fc7`` retrains it from the same items,
  seed and epochs. Those items ("pool A") never appear in a mosaic: the mosaics draw from the
  other items ("pool B"), split in a seeded order, in proportion to the split sizes, into disjoint
  item pools for train, query and database, so no item photo appears in two splits.
- Each 56x56 grey mosaic is a 2x2 grid; each cell holds an item with probability
  ``cell_probability`` (0.5; at least one per mosaic), of a class drawn with weights
  ``1 / (rank + 1) ** class_skew`` (0.5: frequent and rare classes, as in COCO), mirrored
  left-right with probability 1/2. Ground truth ``labels`` = multi-hot over the 10 classes present
  (about 2 per mosaic on average).
- ``features``: what the backbone gives for the whole mosaic, the stand-in for VGG16 fc7.
  ``"fc7"`` (the default): the 1,024 fc7 activations of ``Fc7Backbone`` (conv trunk, flatten, fc6,
  fc7), sparse and spread over many directions like VGG16's. ``"pooled"``: the 256 globally
  average-pooled features of the fully convolutional ``PooledBackbone``, nearly parallel for all
  mosaics (a component shared by every mosaic dominates them).
- ``aux="objects"`` (``mosaic``, COCO-like): the backbone's classifier used as a detector on each
  non-empty cell shown alone at its position on an empty canvas, keeping the classes whose
  softmax probability is at least ``detector_threshold`` (0.4), so ``aux`` is a multi-hot that is
  informative but imperfect. The shipped backbone carries the detector's probabilities for every
  vendored pool-B item in each cell, plain and mirrored, so a build looks them up; other items
  (``source="debian"``) are run through it. ``aux="tags"`` (``mosaic-tags``, NUS-WIDE-like): noisy
  user tags, see :mod:`hashbench.datasets.tags`; everything else is the objects build with the
  same options (shared through the cache).
- ``web`` split (for WSIH): ``n_web`` single pool-A items, each alone in a random cell of an empty
  canvas and mirrored with probability 1/2, one-hot labels; its features come from the same
  backbone as the mosaics'.
- ``info`` holds the aux precision / recall against the true labels, the backbone's accuracy on
  the distinct pool-B cells shown alone, the statistics of the train features
  (:mod:`hashbench.datasets.statistics`), the build time, all parameters and the image source.
- **The same arrays on every machine.** Features and detections come from the backbone's exact
  integer forward pass (:class:`~hashbench.datasets.backbone.ExactBackbone`): every layer's
  sums are integers small enough for float32 to hold exactly, so no CPU kernel (AVX2, AVX-512,
  scalar) can change a bit. The build's fingerprint is the same under ``ATEN_CPU_CAPABILITY=avx2``
  and ``ONEDNN_MAX_CPU_ISA=AVX2`` as natively (a slow test checks it). The one inexact step is the
  softmax of detections that are not looked up: ``info["detector_threshold_margin"]`` is the
  smallest distance of such a probability to the threshold, and the build warns if it is under
  1e-6. A backbone trained here (``backbone_items`` or ``backbone_epochs`` given) is trained in
  float arithmetic, whose last bits depend on the CPU, so such builds match on one machine only;
  ``dataset.fingerprint`` tells builds apart, and reports warn when records mix them.

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
- ``cell_probability``, ``class_skew``, ``detector_threshold``: the free choices above.
- ``backbone_items``, ``backbone_epochs``: train a backbone here instead of the shipped one, on
  that many items drawn by ``seed`` (default 8,000) for that many epochs (default 3).

Images are stored compactly: the item pixels once, and per mosaic the item index and mirror flag of
each cell; ``split.images.load(indices)`` renders mosaics on demand and ``split.images.backbone()``
returns the trained backbone, so image-mode methods fine-tune the network behind ``features``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

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
AUX_KINDS = ("objects", "tags")
#: How the shipped backbones were trained (``hashbench datasets backbone`` retrains them): on these
#: many vendored items, drawn by ``default_rng(seed).permutation``, for this many epochs.
SHIPPED_TRAINING = {"backbone_items": 8000, "backbone_epochs": 3, "seed": 0}
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data"


def shipped_backbone_path(features: str) -> Path:
    return SHIPPED_DIR / f"mosaic_backbone_{features}.npz"


@dataclass(frozen=True)
class TrainedBackbone:
    """A mosaic backbone: float32 weights (already quantised), the activation steps of its exact
    forward pass, the Fashion-MNIST rows it was trained on, and how it was made."""

    state: dict
    steps: np.ndarray
    source_indices: np.ndarray
    meta: dict
    # the detection table (see detection_table): sorted source rows of its items, and its probabilities
    detection_rows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    detections: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2, 4, 10), np.float32))

    def exact(self) -> bb.ExactBackbone:
        return bb.ExactBackbone(self.state, self.steps)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The shipped file's content (:func:`load_shipped_backbone` reads it back exactly)."""
        return {
            **bb.pack_state(self.state),
            "steps": self.steps,
            "source_indices": self.source_indices.astype(np.int32),
            "detection_rows": self.detection_rows.astype(np.int32),
            "detections": self.detections,
            "meta": np.array(json.dumps(self.meta)),
        }


@functools.cache
def load_shipped_backbone(features: str) -> TrainedBackbone:
    """The backbone shipped in ``hashbench/data`` for ``features`` ("fc7" or "pooled")."""
    path = shipped_backbone_path(features)
    with np.load(path) as arrays:
        meta = json.loads(str(arrays["meta"]))
        meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        return TrainedBackbone(
            bb.unpack_state(arrays),
            arrays["steps"].copy(),
            arrays["source_indices"].astype(np.int64),
            meta,
            arrays["detection_rows"].astype(np.int64),
            arrays["detections"].copy(),
        )


def train_mosaic_backbone(features: str, items, pool: np.ndarray, *, epochs: int, seed: int) -> TrainedBackbone:
    """Train a ``features`` backbone on the items ``pool`` (indices into ``items``), each shown alone
    in a random cell, mirrored at random (its own seeded stream), and calibrate its exact forward
    pass on one such rendering of every item. Deterministic on one machine; across machines the
    training's float sums differ in the last bits, which is why a trained backbone is shipped."""
    rng = np.random.default_rng([seed, 2])

    def render(indices):
        return render_mosaics(items.images[pool[indices]], *_single_item_layout(rng, len(indices)))

    with bb.deterministic_torch():
        model = bb.train_backbone(features, items.labels[pool], render, epochs=epochs, seed=seed)
        state = bb.quantise_weights(model.state_dict())
        steps = bb.ExactBackbone.calibrate(state, render(np.arange(len(pool))))
    meta = {
        "features": features,
        "items": len(pool),
        "epochs": epochs,
        "seed": seed,
        "image_source": items.description,
        "torch": torch.__version__,
    }
    return TrainedBackbone(state, steps, items.source_indices[pool], meta)


def write_shipped_backbone(features: str, path: Path | None = None) -> TrainedBackbone:
    """Retrain the shipped ``features`` backbone as described by ``SHIPPED_TRAINING`` and write it."""
    items = load_items("vendored")
    order = np.random.default_rng(SHIPPED_TRAINING["seed"]).permutation(len(items.labels))
    pool = order[: SHIPPED_TRAINING["backbone_items"]]
    trained = train_mosaic_backbone(
        features, items, pool, epochs=SHIPPED_TRAINING["backbone_epochs"], seed=SHIPPED_TRAINING["seed"]
    )
    others = np.setdiff1d(np.arange(len(items.labels)), pool)  # sorted, as their rows are
    with bb.deterministic_torch():
        table = detection_table(trained, items, others)
    trained = dataclasses.replace(trained, detection_rows=items.source_indices[others], detections=table)
    cache_files.write_npz_atomic(Path(path or shipped_backbone_path(features)), trained.to_arrays(), compress=True)
    return trained


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
        size=size,
        n_train=n_train,
        n_query=n_query,
        n_database=n_database,
        n_web=n_web,
        aux=aux,
        features=features,
        seed=seed,
        source=source,
        cell_probability=cell_probability,
        class_skew=class_skew,
        detector_threshold=detector_threshold,
        backbone_items=backbone_items,
        backbone_epochs=backbone_epochs,
    )
    # Tags are drawn on top of the objects build (same mosaics, features and backbone), in
    # milliseconds, so only the objects build is cached and both variants share it.
    objects_params = {**params, "aux": "objects"}
    path = None
    if cache:
        path = cache_files.resolve_data_dir(data_dir) / f"mosaic-{cache_files.cache_key(objects_params)}.npz"

    def cached():
        arrays = cache_files.read_npz_whole(path) if path is not None and path.exists() else None
        return arrays if arrays is not None and json.loads(str(arrays["meta"]))["params"] == objects_params else None

    arrays = cached()
    if arrays is None:
        with cache_files.build_lock(path):
            arrays = cached()  # built by another process while this one waited
            if arrays is None:
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
    params = dict(SIZES[size])
    trains_backbone = options["backbone_items"] is not None or options["backbone_epochs"] is not None
    if trains_backbone:
        params.update({k: SHIPPED_TRAINING[k] for k in ("backbone_items", "backbone_epochs")})
    else:
        params["backbone"] = load_shipped_backbone(features).meta["sha256"]
    for key, value in options.items():
        if value is not None:
            params[key] = value
    for key in (*SIZES[size], *(("backbone_items", "backbone_epochs") if trains_backbone else ())):
        params[key] = check_positive_int(params[key], key)
    for key in ("cell_probability", "detector_threshold"):
        if not 0 < params[key] <= 1:
            raise InvalidInputError(f"{key} must be in (0, 1], got {params[key]!r}")
    if params["class_skew"] < 0:
        raise InvalidInputError(f"class_skew must be >= 0, got {params['class_skew']!r}")
    backbone_items = params.get("backbone_items", SHIPPED_TRAINING["backbone_items"])
    if params["n_web"] > backbone_items:
        raise InvalidInputError(
            f"n_web ({params['n_web']}) must not exceed backbone_items ({backbone_items}): "
            "web images come from the backbone's item pool"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be an integer >= 0, got {seed!r}")
    return {
        **params,
        "aux": aux,
        "features": features,
        "seed": int(seed),
        "source": source,
        "format_version": FORMAT_VERSION,
    }


def _build_arrays(params: dict) -> dict[str, np.ndarray]:
    """Every array of the dataset (the cache file's content), deterministic in ``params``."""
    started = time.perf_counter()
    rng = np.random.default_rng(params["seed"])
    items = load_items(params["source"])
    n_classes = len(CLASS_NAMES)
    pool_a, pool_b, trained = _backbone_and_pools(items, params, rng)
    if len(pool_b) < 3 * n_classes:
        raise InvalidInputError(f"backbone_items={len(pool_a)} leaves too few items for the mosaics")
    _log(
        f"backbone: {trained.meta['items']} items, {trained.meta['epochs']} epochs"
        f" ({'shipped' if 'backbone' in params else 'trained here'})",
        started,
    )
    model = trained.exact()
    with bb.deterministic_torch():
        counts = {s: params[f"n_{s}"] for s in SPLIT_NAMES}
        pools = _partition(pool_b, counts)
        layouts = {s: _sample_layout(rng, pools[s], items.labels, counts[s], params) for s in SPLIT_NAMES}
        used_items, layouts = _compact_items(layouts)
        item_pixels = items.images[used_items]
        item_labels = items.labels[used_items]
        item_rows = items.source_indices[used_items]
        detections, cell_accuracy, margin = _detect_cells(trained, item_pixels, item_rows, item_labels, layouts, params)
        _log(f"detector: {len(detections[0])} distinct cells", started)
        web_items = rng.permutation(pool_a)[: params["n_web"]]
        web_pixels = render_mosaics(items.images[web_items], *_single_item_layout(rng, len(web_items)))
        arrays = {"web_images": web_pixels, "web_labels": _one_hot(items.labels[web_items], n_classes)}
        arrays["web_features"] = bb.apply_in_batches(model.features, len(web_pixels), lambda s: web_pixels[s])
        for split, (cells, flips) in layouts.items():
            arrays[f"{split}_cells"], arrays[f"{split}_flips"] = cells, flips
            arrays[f"{split}_labels"] = _cell_labels(cells, item_labels, n_classes)
            arrays[f"{split}_features"] = bb.apply_in_batches(
                model.features, len(cells), lambda s, c=cells, f=flips: render_mosaics(item_pixels, c[s], f[s])
            )
            arrays[f"{split}_aux"] = _aux_from_detections(cells, flips, detections)
            _log(f"{split}: {len(cells)} mosaics", started)
    arrays.update({f"backbone.{k}": v.numpy() for k, v in trained.state.items()})
    arrays["backbone_steps"] = trained.steps
    arrays["items"] = item_pixels
    arrays["label_names"] = np.array(CLASS_NAMES)
    arrays["aux_names"] = np.array([f"detected {c}" for c in CLASS_NAMES])
    info = {
        "params": params,
        "image_source": items.description,
        "item_reuse": {
            s: round(float((c >= 0).sum() / max(len(np.unique(c[c >= 0])), 1)), 2) for s, (c, _) in layouts.items()
        },
        "backbone": trained.meta,
        "backbone_accuracy_on_pool_b_cells": round(cell_accuracy, 4),
        "detector_threshold_margin": margin,
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


def _backbone_and_pools(items, params: dict, rng):
    """(pool A, pool B, backbone): the backbone's training items, the others in a seeded order, and
    the backbone, shipped or (when ``backbone_items`` or ``backbone_epochs`` is given) trained here."""
    if "backbone" in params:
        trained = load_shipped_backbone(params["features"])
        seen = np.isin(items.source_indices, trained.source_indices)
        return np.flatnonzero(seen), rng.permutation(np.flatnonzero(~seen)), trained
    order = rng.permutation(len(items.labels))
    pool_a, pool_b = order[: params["backbone_items"]], order[params["backbone_items"] :]
    trained = train_mosaic_backbone(
        params["features"], items, pool_a, epochs=params["backbone_epochs"], seed=params["seed"]
    )
    return pool_a, pool_b, trained


def _log(message: str, started: float) -> None:
    """One line per build phase on stderr, so a long first build shows where it is."""
    print(f"mosaic build: {message} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)


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


def _detect_cells(trained, item_pixels, item_rows, item_labels, layouts, params):
    """Detector output per distinct cell content (item, mirror, position): a bool (m, 10) table and
    its codes, the detector's accuracy on those cells, and the smallest distance of a computed
    probability to the threshold.

    The detector is the backbone's classifier shown the cell alone at its position on an empty
    canvas; running it once per distinct content equals running it on every non-empty cell. Items
    in the backbone's table (:func:`detection_table`) are looked up, the others computed.
    """
    codes = np.unique(np.concatenate([_cell_codes(c, f).ravel() for c, f in layouts.values()]))
    codes = codes[codes >= 0]
    n_cells = len(CELL_OFFSETS)
    items, flips, positions = codes // (2 * n_cells), (codes // n_cells) % 2, codes % n_cells
    table_rows = trained.detection_rows
    in_table = np.isin(item_rows[items], table_rows)
    probabilities = np.empty((len(codes), len(CLASS_NAMES)), np.float32)
    where = np.searchsorted(table_rows, item_rows[items[in_table]])
    probabilities[in_table] = trained.detections[where, flips[in_table], positions[in_table]]
    computed = np.flatnonzero(~in_table)
    probabilities[computed] = _alone_probabilities(
        trained.exact(), item_pixels, items[computed], flips[computed], positions[computed]
    )
    accuracy = float((probabilities.argmax(1) == item_labels[items]).mean()) if len(codes) else 1.0
    # The logits are exact, their softmax is not (exp's last bit may differ between CPUs): a
    # computed decision could differ between machines only within ~1e-7 (float32) of the threshold.
    margin = float(np.abs(probabilities[computed] - params["detector_threshold"]).min()) if len(computed) else 1.0
    if margin < 1e-6:
        warnings.warn(
            f"a detector probability lies within {margin:.1e} of detector_threshold; builds on other CPUs may differ",
            stacklevel=2,
        )
    return (codes, probabilities >= params["detector_threshold"]), accuracy, margin


def _alone_probabilities(model: bb.ExactBackbone, pixels, items, flips, positions) -> np.ndarray:
    """The classifier's float32 probabilities for item ``items[i]`` alone at cell ``positions[i]``."""
    n_cells = len(CELL_OFFSETS)
    if len(items) == 0:
        return np.zeros((0, len(CLASS_NAMES)), np.float32)
    alone = np.full((len(items), n_cells), -1, np.int64)
    alone[np.arange(len(items)), positions] = items
    mirrored = np.broadcast_to(flips[:, None] == 1, alone.shape)
    return bb.apply_in_batches(model.probabilities, len(items), lambda s: render_mosaics(pixels, alone[s], mirrored[s]))


def detection_table(trained, items, rows: np.ndarray) -> np.ndarray:
    """The classifier's probabilities (n, 2, 4, n_classes) for the items of ``rows`` (indices into
    ``items``) alone in each cell, plain and mirrored: shipped with a backbone, so a build looks the
    detector up instead of running it."""
    n, n_cells = len(rows), len(CELL_OFFSETS)
    grid = np.stack(np.meshgrid(np.arange(n), np.arange(2), np.arange(n_cells), indexing="ij"), -1).reshape(-1, 3)
    probabilities = _alone_probabilities(trained.exact(), items.images[rows], grid[:, 0], grid[:, 1], grid[:, 2])
    return probabilities.reshape(n, 2, n_cells, -1)


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
    web = Split(
        arrays["web_features"], arrays["web_labels"], images=ArrayImages(arrays["web_images"], backbone), name="web"
    )
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
