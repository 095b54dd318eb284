"""The mosaic build's backbone as trained and as shipped in ``hashbench/data``
(``mosaic_backbone_FEATURES.npz``): training it, the file's form, reading and rewriting it."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hashbench.datasets.backbone import deterministic_torch, train_backbone
from hashbench.datasets.backbone_exact import ExactBackbone, quantise_weights, weight_exponents
from hashbench.datasets.cache import write_npz_atomic
from hashbench.datasets.fashion import load_items
from hashbench.datasets.mosaic_detector import detection_table
from hashbench.datasets.mosaic_layout import render_mosaics, single_item_layout

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

    def exact(self) -> ExactBackbone:
        return ExactBackbone(self.state, self.steps)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The shipped file's content (:func:`load_shipped_backbone` reads it back exactly)."""
        return {
            **pack_state(self.state),
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
            unpack_state(arrays),
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
        return render_mosaics(items.images[pool[indices]], *single_item_layout(rng, len(indices)))

    with deterministic_torch():
        model = train_backbone(features, items.labels[pool], render, epochs=epochs, seed=seed)
        state = quantise_weights(model.state_dict())
        steps = ExactBackbone.calibrate(state, render(np.arange(len(pool))))
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
    with deterministic_torch():
        table = detection_table(trained, items, others)
    trained = dataclasses.replace(trained, detection_rows=items.source_indices[others], detections=table)
    write_npz_atomic(Path(path or shipped_backbone_path(features)), trained.to_arrays(), compress=True)
    return trained


def pack_state(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The quantised weights as int8 integers and int8 row exponents, the rest as float32: the
    shipped file's form, a quarter of the float32 size; :func:`unpack_state` inverts it exactly."""
    arrays = {}
    for key, value in quantise_weights(state).items():
        if key.endswith(".weight"):
            exponents = weight_exponents(value)
            view = (-1, *[1] * (value.dim() - 1))
            arrays[f"int8:{key}"] = (value.double() / torch.exp2(exponents).view(view)).round().to(torch.int8).numpy()
            arrays[f"exponent:{key}"] = exponents.to(torch.int8).numpy()
        else:
            arrays[f"float:{key}"] = value.float().numpy()
    return arrays


def unpack_state(arrays) -> dict[str, torch.Tensor]:
    """The float32 state of :func:`pack_state`'s arrays (any mapping holding them)."""
    state = {}
    for name in arrays:
        kind, _, key = name.partition(":")
        if kind == "int8":
            integers = torch.from_numpy(np.asarray(arrays[name])).double()
            exponents = torch.from_numpy(np.asarray(arrays[f"exponent:{key}"])).double()
            state[key] = (integers * torch.exp2(exponents).view(-1, *[1] * (integers.dim() - 1))).float()
        elif kind == "float":
            state[key] = torch.from_numpy(np.array(arrays[name]))
    return state
