"""The embedded multi-label "mosaic" datasets, built from real Fashion-MNIST images.

    import hashbench as hb
    ds = hb.load_dataset("mosaic")                  # 5,000 train / 1,000 query / 20,000 database
    ds = hb.load_dataset("mosaic", size="tiny")     # 500 / 100 / 1,000: quick to build
    ds = hb.load_dataset("mosaic-tags")             # aux = noisy user tags (NUS-WIDE-like)
    ds = hb.load_dataset("mosaic-coco")             # the paper's MS-COCO sizes 5,000 / 5,000 / 113,287

How it is made (every random choice flows from ``seed``):
- The backbone CNN (:mod:`hashbench.datasets.backbone`) is shipped in ``hashbench/data``
  (``mosaic_backbone_fc7.npz``, ``mosaic_backbone_pooled.npz``, see
  :mod:`hashbench.datasets.backbone_shipped`), as VGG16's weights come with torchvision: trained
  once on 8,000 single vendored items (``SHIPPED_TRAINING``: drawn by ``default_rng(0)``, 3
  epochs, each mini-batch showing every item alone in a random cell of an empty 56x56 canvas,
  mirrored with probability 1/2; Adam at the network's learning rate, batches of 128,
  cross-entropy), its weights rounded to 8-bit integers times a power of two per output unit.
  ``hashbench datasets backbone --features fc7`` retrains it from the same items, seed and
  epochs. Those items ("pool A") never appear in a mosaic: the mosaics draw from the
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
  integer forward pass (:class:`~hashbench.datasets.backbone_exact.ExactBackbone`): every layer's
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
  without reading or writing the cache. A cached build of at least ``OWN_PROCESS_IMAGES`` images
  runs in a process of its own that writes the cache file and ends, so what it allocates (hundreds
  of megabytes at the default size) is not kept by the process that goes on to train and measure
  methods. Smaller builds (a child's imports would cost more than they) run in the calling
  process, as all do where ``sys.executable`` is unknown.
- ``cell_probability``, ``class_skew``, ``detector_threshold``: the free choices above.
- ``backbone_items``, ``backbone_epochs``: train a backbone here instead of the shipped one, on
  that many items drawn by ``seed`` (default 8,000) for that many epochs (default 3).

Images are stored compactly: the item pixels once, and per mosaic the item index and mirror flag of
each cell; ``split.images.load(indices)`` renders mosaics on demand and ``split.images.backbone()``
returns the trained backbone, so image-mode methods fine-tune the network behind ``features``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hashbench._validation import check_choice, check_positive_int
from hashbench.datasets import backbone as bb
from hashbench.datasets import cache as cache_files
from hashbench.datasets.backbone_shipped import SHIPPED_TRAINING, load_shipped_backbone, train_mosaic_backbone
from hashbench.datasets.base import SPLIT_NAMES, ArrayImages, HashingDataset, Split
from hashbench.datasets.fashion import CLASS_NAMES, debian_available, load_items
from hashbench.datasets.mosaic_detector import aux_from_detections, detect_cells
from hashbench.datasets.mosaic_layout import (
    MosaicImages,
    compact_items,
    partition,
    render_mosaics,
    sample_layout,
    single_item_layout,
)
from hashbench.datasets.statistics import feature_statistics
from hashbench.errors import HashbenchError, InvalidInputError
from hashbench.registry import register_dataset

FORMAT_VERSION = 3
SIZES = {
    "tiny": {"n_train": 500, "n_query": 100, "n_database": 1000, "n_web": 200},
    "default": {"n_train": 5000, "n_query": 1000, "n_database": 20000, "n_web": 2000},
    "coco": {"n_train": 5000, "n_query": 5000, "n_database": 113287, "n_web": 5000},
}
AUX_KINDS = ("objects", "tags")
OWN_PROCESS_IMAGES = 10_000  # cached builds of this many images (every split's and web) run in a process of their own


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
            own_process = sys.executable and _n_images(objects_params) >= OWN_PROCESS_IMAGES
            if arrays is None and path is not None and own_process:
                _build_in_own_process(objects_params, path)
                arrays = cached()
            elif arrays is None:
                arrays = _build_arrays(objects_params)
                if path is not None:
                    cache_files.write_npz_atomic(path, arrays)
    if params["aux"] == "tags":
        arrays = _with_tags(arrays, params)
    dataset = dataset_from_arrays(arrays, name)
    if path is not None:
        dataset.info["cache_file"] = str(path)
    return dataset


def _n_images(params: dict) -> int:
    return sum(params[f"n_{split}"] for split in (*SPLIT_NAMES, "web"))


def _build_in_own_process(params: dict, path) -> None:
    """Build in a new Python process that writes the cache file ``path`` and ends; its progress
    and any error are printed on this process' stderr. A plain subprocess rather than
    multiprocessing, whose new processes import the caller's main module again (which fails for
    a script without a main guard, or one read from stdin)."""
    command = [sys.executable, "-c", BUILD_COMMAND, json.dumps(params), str(path)]
    returncode = subprocess.run(command, stdin=subprocess.DEVNULL, check=False).returncode
    if returncode != 0:
        raise HashbenchError(
            f"the mosaic build in its own process failed (exit code {returncode}; its output is above)"
        )


BUILD_COMMAND = "import sys; from hashbench.datasets.mosaic import build_and_write; build_and_write(*sys.argv[1:])"


def build_and_write(params_json: str, path: str) -> None:
    """The build's own process: every array of ``params`` (JSON) into the cache file ``path``."""
    cache_files.write_npz_atomic(Path(path), _build_arrays(json.loads(params_json)))


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
        pools = partition(pool_b, counts)
        layouts = {s: sample_layout(rng, pools[s], items.labels, counts[s], params) for s in SPLIT_NAMES}
        used_items, layouts = compact_items(layouts)
        item_pixels = items.images[used_items]
        item_labels = items.labels[used_items]
        item_rows = items.source_indices[used_items]
        detections, cell_accuracy, margin = detect_cells(trained, item_pixels, item_rows, item_labels, layouts, params)
        _log(f"detector: {len(detections[0])} distinct cells", started)
        web_items = rng.permutation(pool_a)[: params["n_web"]]
        web_pixels = render_mosaics(items.images[web_items], *single_item_layout(rng, len(web_items)))
        arrays = {"web_images": web_pixels, "web_labels": _one_hot(items.labels[web_items], n_classes)}
        arrays["web_features"] = bb.apply_in_batches(model.features, len(web_pixels), lambda s: web_pixels[s])
        for split, (cells, flips) in layouts.items():
            arrays[f"{split}_cells"], arrays[f"{split}_flips"] = cells, flips
            arrays[f"{split}_labels"] = _cell_labels(cells, item_labels, n_classes)
            arrays[f"{split}_features"] = bb.apply_in_batches(
                model.features, len(cells), lambda s, c=cells, f=flips: render_mosaics(item_pixels, c[s], f[s])
            )
            arrays[f"{split}_aux"] = aux_from_detections(cells, flips, detections)
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
