"""The data model every method and the runner share: ``Split`` and ``HashingDataset``.

A dataset has three splits (``train``, ``query``, ``database``) and, for WSIH, an optional
labelled ``web`` split. Methods learn from ``train`` without ever reading its ``labels``; labels
are for evaluation only (and for the ``web`` split, whose labels are the web query words).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, runtime_checkable

import numpy as np

from hashbench._validation import check_binary_labels, check_matrix, check_same_rows
from hashbench.errors import InvalidInputError

SPLIT_NAMES = ("train", "query", "database")


@runtime_checkable
class ImageSource(Protocol):
    """Pixels of a split, loaded lazily, plus the CNN that produced the split's features.

    ``load(indices)`` returns a uint8 array (k, C, H, W). ``backbone()`` builds a fresh
    ``torch.nn.Module`` mapping a float tensor of images scaled to [0, 1], shape (k, C, H, W), to
    the features stored in the split (its own normalisation included), so image-mode methods
    fine-tune exactly the network behind the feature-based methods' inputs.
    """

    def __len__(self) -> int: ...

    def load(self, indices) -> np.ndarray: ...

    backbone: Callable[[], object]


@dataclass(frozen=True)
class ArrayImages:
    """An ImageSource over a uint8 array (n, C, H, W) held in memory (or memory-mapped)."""

    pixels: np.ndarray
    backbone: Callable[[], object]

    def __post_init__(self):
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 4:
            raise InvalidInputError(
                f"images must be a uint8 array (n, C, H, W), got {self.pixels.dtype} {self.pixels.shape}"
            )

    def __len__(self) -> int:
        return len(self.pixels)

    def load(self, indices) -> np.ndarray:
        return self.pixels[indices]


@dataclass
class Split:
    """One of train / query / database / web.

    features: (n, d) float32, e.g. VGG16 fc7 or the embedded dataset's backbone features.
    labels:   (n, c) uint8 multi-hot ground truth; evaluation only.
    aux:      (n, c_aux) float32 auxiliary semantics (detected objects, user tags), or None.
    images:   an ImageSource for image-mode methods, or None.
    web:      the dataset's labelled web split, carried by the training split so that methods
              learning from web data (WSIH) receive it through ``fit(train)``; None elsewhere.
    """

    features: np.ndarray | None
    labels: np.ndarray | None = None
    aux: np.ndarray | None = None
    images: ImageSource | None = None
    name: str = "split"
    web: Split | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.features is not None:
            self.features = check_matrix(self.features, f"{self.name} features").astype(np.float32, copy=False)
        if self.labels is not None:
            self.labels = check_binary_labels(self.labels, f"{self.name} labels")
        if self.aux is not None:
            self.aux = check_matrix(self.aux, f"{self.name} aux").astype(np.float32, copy=False)
        if self.features is None and self.images is None:
            raise InvalidInputError(f"{self.name} split has neither features nor images")
        check_same_rows(
            {
                f"{self.name} features": self.features,
                f"{self.name} labels": self.labels,
                f"{self.name} aux": self.aux,
                f"{self.name} images": self.images,
            }
        )

    def __len__(self) -> int:
        return len(self.features) if self.features is not None else len(self.images)

    def __repr__(self) -> str:
        return f"Split({self.name!r}, {self._sizes()})"

    def _sizes(self) -> str:
        """Sizes only (the arrays are far too long to print): items, widths, what the split carries."""
        parts = [f"{len(self)} items"]
        for kind in ("features", "labels", "aux"):
            array = getattr(self, kind)
            if array is not None:
                parts.append(f"{kind} {array.shape[1]}")
        if self.images is not None:
            parts.append("images")
        return ", ".join(parts)

    def subset(self, indices) -> Split:
        """The rows ``indices`` of every array (images are re-indexed lazily)."""
        indices = np.asarray(indices)
        return Split(
            features=None if self.features is None else self.features[indices],
            labels=None if self.labels is None else self.labels[indices],
            aux=None if self.aux is None else self.aux[indices],
            images=None if self.images is None else _SubsetImages(self.images, indices),
            name=self.name,
            web=self.web,
        )


@dataclass(frozen=True)
class _SubsetImages:
    source: ImageSource
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, indices) -> np.ndarray:
        return self.source.load(self.indices[indices])

    @property
    def backbone(self):
        return self.source.backbone


@dataclass
class HashingDataset:
    """train / query / database splits (+ optional labelled ``web`` split) and their metadata."""

    name: str
    train: Split
    query: Split
    database: Split
    web: Split | None = None
    label_names: list[str] | None = None
    aux_names: list[str] | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        splits = {n: getattr(self, n) for n in (*SPLIT_NAMES, "web") if getattr(self, n) is not None}
        for kind in ("features", "labels", "aux"):
            widths = {n: getattr(s, kind).shape[1] for n, s in splits.items() if getattr(s, kind) is not None}
            if len(set(widths.values())) > 1:
                detail = ", ".join(f"{n}: {w}" for n, w in widths.items())
                raise InvalidInputError(f"{kind} widths differ between splits ({detail})")
        if self.web is not None and self.train.web is None:
            self.train.web = self.web

    def __repr__(self) -> str:
        splits = "; ".join(f"{name}: {split._sizes()}" for name, split in self.splits().items())
        return f"HashingDataset({self.name!r}; {splits})"

    def splits(self) -> dict[str, Split]:
        return {n: getattr(self, n) for n in (*SPLIT_NAMES, "web") if getattr(self, n) is not None}

    @cached_property
    def fingerprint(self) -> str:
        """16 hex digits of a SHA-256 over every split's features, labels and aux (name, dtype,
        shape and bytes; images are not read): two loads with one fingerprint hold the same
        numbers. Run records keep it, so results computed on different builds of a dataset (a
        built dataset can differ between machines, see :mod:`hashbench.datasets.mosaic`) are told
        apart."""
        digest = hashlib.sha256()
        for name, split in self.splits().items():
            for kind in ("features", "labels", "aux"):
                values = getattr(split, kind)
                if values is not None:
                    values = np.ascontiguousarray(values)
                    digest.update(f"{name}.{kind}:{values.dtype.str}:{values.shape}".encode())
                    digest.update(values.data)
        return digest.hexdigest()[:16]
