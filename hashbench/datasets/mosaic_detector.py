"""The mosaics' object detector: the backbone's classifier on each cell shown alone, its
probabilities looked up in the shipped table or computed, thresholded into the aux labels."""

from __future__ import annotations

import warnings

import numpy as np

from hashbench.datasets.backbone import apply_in_batches
from hashbench.datasets.backbone_exact import ExactBackbone
from hashbench.datasets.fashion import CLASS_NAMES
from hashbench.datasets.mosaic_layout import CELL_OFFSETS, render_mosaics


def _cell_codes(cells: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """What each cell shows, as one integer: (2 x item + mirrored) x 4 + position; -1 = empty."""
    positions = np.arange(cells.shape[1])
    return np.where(cells >= 0, (2 * cells + flips) * cells.shape[1] + positions, -1)


def detect_cells(trained, item_pixels, item_rows, item_labels, layouts, params):
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


def _alone_probabilities(model: ExactBackbone, pixels, items, flips, positions) -> np.ndarray:
    """The classifier's float32 probabilities for item ``items[i]`` alone at cell ``positions[i]``."""
    n_cells = len(CELL_OFFSETS)
    if len(items) == 0:
        return np.zeros((0, len(CLASS_NAMES)), np.float32)
    alone = np.full((len(items), n_cells), -1, np.int64)
    alone[np.arange(len(items)), positions] = items
    mirrored = np.broadcast_to(flips[:, None] == 1, alone.shape)
    return apply_in_batches(model.probabilities, len(items), lambda s: render_mosaics(pixels, alone[s], mirrored[s]))


def detection_table(trained, items, rows: np.ndarray) -> np.ndarray:
    """The classifier's probabilities (n, 2, 4, n_classes) for the items of ``rows`` (indices into
    ``items``) alone in each cell, plain and mirrored: shipped with a backbone, so a build looks the
    detector up instead of running it."""
    n, n_cells = len(rows), len(CELL_OFFSETS)
    grid = np.stack(np.meshgrid(np.arange(n), np.arange(2), np.arange(n_cells), indexing="ij"), -1).reshape(-1, 3)
    probabilities = _alone_probabilities(trained.exact(), items.images[rows], grid[:, 0], grid[:, 1], grid[:, 2])
    return probabilities.reshape(n, 2, n_cells, -1)


def aux_from_detections(cells, flips, detections) -> np.ndarray:
    codes, detected = detections
    cell_codes = _cell_codes(cells, flips)
    aux = np.zeros((len(cells), detected.shape[1]), bool)
    for k in range(cells.shape[1]):
        rows = np.flatnonzero(cell_codes[:, k] >= 0)
        aux[rows] |= detected[np.searchsorted(codes, cell_codes[rows, k])]
    return aux.astype(np.float32)
