"""Pieces shared by the shallow hashers: PCA, row normalisation, blockwise encoding, and the base
class of every method whose codes are the signs of a centred linear projection.

PCA routes (:func:`principal_components`):

- exact: eigen-decomposition of the covariance matrix with ``scipy.linalg.eigh`` (only the top
  eigenpairs are computed); used for narrow data (at most ``EXACT_PCA_MAX_DIM`` columns) and
  whenever more components are asked for than a randomized solver handles well;
- randomized: ``sklearn.utils.extmath.randomized_svd`` (Halko, Martinsson and Tropp) of the
  centred data in float32, seeded from the method's ``seed``; used for wide data such as 4,096-d
  CNN features, where it is several times faster than the exact route. On 5,000 x 4,096
  CNN-like features it finds the same top directions (|cosine| > 0.99 for the first ~120 of
  128); the last few, whose variances nearly tie, come out rotated among themselves, where
  the exact directions are ill-determined anyway.

Each component's sign is fixed so that its largest-magnitude entry is positive, so codes do not
depend on which LAPACK routine (or which route) produced the eigenvectors.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import numpy as np
import scipy.linalg
from sklearn.utils.extmath import randomized_svd
from threadpoolctl import ThreadpoolController

from hashbench.errors import InvalidInputError
from hashbench.hasher import Hasher

#: widest data handled by the exact (covariance eigh) PCA route
EXACT_PCA_MAX_DIM = 1024
#: rows per block when encoding, so encoding a large database never copies it whole
ENCODE_BLOCK_ROWS = 16384


def principal_components(data: np.ndarray, n_components: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (d,), top principal directions (d, n_components) and their variances (n_components,),
    largest variance first. ``n_components`` may exceed the number of rows (the exact route then
    returns directions of zero variance) but not the number of columns."""
    data = np.asarray(data, dtype=np.float64)
    n, d = data.shape
    if n_components > d:
        raise InvalidInputError(f"PCA to {n_components} components needs as many input columns, got {d}")
    mean = data.mean(axis=0)
    centred = data - mean
    if d <= EXACT_PCA_MAX_DIM or 4 * n_components > min(n, d):
        covariance = centred.T @ centred / max(n - 1, 1)
        variances, components = scipy.linalg.eigh(covariance, subset_by_index=[d - n_components, d - 1])
        variances, components = variances[::-1], components[:, ::-1]
    else:
        # float32 halves memory traffic; the top directions agree with float64 to ~1e-6 in cosine
        _, singular_values, components_t = randomized_svd(centred.astype(np.float32), n_components, random_state=seed)
        variances, components = singular_values.astype(np.float64) ** 2 / (n - 1), components_t.T.astype(np.float64)
    largest = np.abs(components).argmax(axis=0)
    components = components * np.sign(components[largest, np.arange(n_components)])
    return mean, components, np.maximum(variances, 0.0)


def project(data: np.ndarray, mean: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(data - mean) @ matrix`` in float32, computed as ``data @ matrix - mean @ matrix`` so the
    (possibly very large) input is never copied."""
    matrix32 = np.asarray(matrix, dtype=np.float32)
    offset = (np.asarray(mean, dtype=np.float64) @ matrix).astype(np.float32)
    return np.asarray(data, dtype=np.float32) @ matrix32 - offset


def l2_normalise_rows(data: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm; all-zero rows stay zero (never NaN)."""
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    return data / np.where(norms > 0, norms, 1.0)


def row_blocks(n: int, block_rows: int = ENCODE_BLOCK_ROWS) -> Iterator[slice]:
    for start in range(0, n, block_rows):
        yield slice(start, min(start + block_rows, n))


@cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def single_threaded_blas():
    """Context manager for loops of small (e.g. 300 x 300 or n x 128 by 128 x 128) products:
    there BLAS threads only add synchronisation, several times slower on a busy 2-core machine.
    (The controller is built once: building it scans the loaded libraries.)"""
    return _blas_controller().limit(limits=1)


def check_bits_within_width(hasher: Hasher, width: int, what: str) -> None:
    """PCA-based codes take one bit per principal direction: no more bits than input columns."""
    if hasher.n_bits > width:
        raise InvalidInputError(
            f"{type(hasher).__name__} supports at most {width} bits for {width}-d {what}, got n_bits={hasher.n_bits}"
        )


class ProjectionHasher(Hasher):
    """Codes = sign((x - mean_) @ projection_), the form shared by LSH, PCAH and ITQ.

    A subclass sets ``mean_`` (d,) and ``projection_`` (d, n_bits) in ``_fit``; ``_inputs`` says
    which matrix the method reads (the features, unless overridden)."""

    fast = True

    def _inputs(self, split, rows: slice = slice(None)) -> np.ndarray:
        return split.features[rows]

    def _encode(self, split) -> np.ndarray:
        return np.concatenate(
            [project(self._inputs(split, rows), self.mean_, self.projection_) for rows in row_blocks(len(split))]
        )
