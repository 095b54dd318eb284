"""ITQ: iterative quantisation.

Gong, Lazebnik, Gordo and Perronnin, "Iterative Quantization: A Procrustean Approach to Learning
Binary Codes for Large-Scale Image Retrieval", TPAMI 2013 (first at CVPR 2011).

PCA to ``n_bits`` dimensions (V), then alternate ``B = sign(V R)`` and the orthogonal Procrustes
update of the rotation R minimising the quantisation loss ``||B - V R||_F^2``
(``scipy.linalg.orthogonal_procrustes``). Codes: ``sign((x - mean) @ components @ R)``.
``quantization_loss_`` holds the loss after each iteration (it never increases), and
``callback(iteration, hasher)`` is called after each iteration with an encodable model.

Free choices and defaults:
- ``n_iter = 50`` iterations (the release's choice);
- R initialised as a random orthogonal matrix (QR of a Gaussian matrix, Haar-distributed; the
  release's choice), drawn from ``seed``;
- PCA route: exact covariance eigen-decomposition up to 1,024 input columns, randomized SVD
  (seeded) for wider inputs (see ``hashbench.methods._linear``);
- ``n_bits`` at most the input width (one bit per principal direction; the paper defines no more).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from hashbench._validation import check_positive_int
from hashbench.methods._linear import (
    ProjectionHasher,
    check_bits_within_width,
    principal_components,
    project,
    single_threaded_blas,
)


class ITQ(ProjectionHasher):
    name = "itq"
    input_kind = "features"
    uses_aux = False
    citation = "Gong, Lazebnik, Gordo, Perronnin, TPAMI 2013"
    max_bits_per_feature = 1
    #: what ``_inputs`` reads, for error messages
    input_description = "features"

    def __init__(self, n_bits: int = 32, *, seed: int = 0, device: str = "cpu", n_iter: int = 50):
        super().__init__(n_bits, seed=seed, device=device)
        self.n_iter = n_iter

    def _fit(self, train, callback) -> None:
        check_positive_int(self.n_iter, "n_iter")
        data = self._inputs(train)
        check_bits_within_width(self, data.shape[1], self.input_description)
        self._fit_rotation(data, self.n_bits, callback)

    def _fit_rotation(
        self, data: np.ndarray, n_bits: int, callback, extra_projection: np.ndarray | None = None
    ) -> None:
        """ITQ's ``n_bits`` bits of ``data``; the columns of ``extra_projection`` (applied to the
        centred data too) are appended to the projection after every iteration."""
        mean, components, _ = principal_components(data, n_bits, self.seed)
        projected = project(data, mean, components).astype(np.float64)
        rotation = random_rotation(n_bits, self._rng())
        rotated = projected @ rotation
        self.mean_ = mean
        self.quantization_loss_ = np.empty(self.n_iter)
        for iteration in range(self.n_iter):
            with single_threaded_blas():
                codes = np.where(rotated >= 0, 1.0, -1.0)
                rotation, _ = scipy.linalg.orthogonal_procrustes(projected, codes)
                rotated = projected @ rotation
                self.quantization_loss_[iteration] = np.square(codes - rotated).sum()
            self.projection_ = components @ rotation
            if extra_projection is not None:
                self.projection_ = np.hstack([self.projection_, extra_projection])
            if callback is not None:
                callback(iteration + 1, self)
        self.rotation_ = rotation


def random_rotation(size: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((size, size)))
    return q * np.sign(np.diag(r))
