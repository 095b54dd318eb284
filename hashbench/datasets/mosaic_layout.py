"""The mosaics' layout and pixels: the 2x2 grid, which item each cell shows (drawn per split), and
the rendering of a layout into 56x56 images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hashbench.datasets.backbone import BackboneFactory
from hashbench.datasets.fashion import CLASS_NAMES
from hashbench.errors import InvalidInputError

ITEM_SIZE = 28
MOSAIC_SIZE = 2 * ITEM_SIZE
CELL_OFFSETS = ((0, 0), (0, ITEM_SIZE), (ITEM_SIZE, 0), (ITEM_SIZE, ITEM_SIZE))


@dataclass(frozen=True)
class MosaicImages:
    """ImageSource rendering 2x2 mosaics on demand from item pixels and per-cell (item, mirror) choices."""

    items: np.ndarray  # (n_items, 28, 28) uint8
    cells: np.ndarray  # (n, 4) item index per cell, -1 = empty
    flips: np.ndarray  # (n, 4) bool, mirror the cell's item left-right
    backbone: BackboneFactory

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


def single_item_layout(rng, n: int):
    """(cells, flips) of ``n`` images each showing item i alone in a random cell, mirrored with probability 1/2."""
    cells = np.full((n, 4), -1, np.int64)
    cells[np.arange(n), rng.integers(0, 4, n)] = np.arange(n)
    return cells, rng.random((n, 4)) < 0.5


def partition(pool: np.ndarray, counts: dict[str, int]) -> dict[str, np.ndarray]:
    """Disjoint item pools for the splits, sized in proportion to the number of mosaics."""
    total = sum(counts.values())
    bounds = np.cumsum([0] + [round(len(pool) * n / total) for n in counts.values()])
    bounds[-1] = len(pool)
    return {s: pool[bounds[i] : bounds[i + 1]] for i, s in enumerate(counts)}


def sample_layout(rng, pool: np.ndarray, labels: np.ndarray, n: int, params: dict):
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


def compact_items(layouts):
    """Renumber cell items 0..m-1 over the items actually used, so the cache stores only those."""
    used = np.unique(np.concatenate([c[c >= 0] for c, _ in layouts.values()]))
    compact = {}
    for split, (cells, flips) in layouts.items():
        renumbered = np.where(cells >= 0, np.searchsorted(used, cells), -1).astype(np.int32)
        compact[split] = (renumbered, flips)
    return used, compact
