"""SH: spectral hashing.

Weiss, Torralba and Fergus, "Spectral Hashing", NeurIPS 2008.

PCA to ``r = min(n_bits, d)`` directions; the data is assumed uniform on the box spanned by each
direction's training range ``[min_i, max_i]``. The Laplacian eigenfunctions of a uniform
distribution on an interval of length ``R_i`` are ``cos(k pi (x_i - min_i) / R_i)`` with
eigenvalue growing with ``(k / R_i)^2``; the ``n_bits`` single-direction modes with the smallest
eigenvalues (the constant mode k = 0 excluded) each give one bit:
``sign(cos(k pi (x_i - min_i) / R_i))``. Wide directions therefore get several bits (k = 1, 2, ...)
before narrow ones get any, so SH can give more bits than the feature width, as the paper defines.

Free choices and defaults (the release's):
- ranges from the training minimum and maximum of each principal projection, widened by machine
  epsilon;
- candidate modes per direction k = 1 .. ceil((n_bits + 1) R_i / max_j R_j) - 1 (so the widest
  direction alone offers n_bits modes); ties between equal eigenvalues broken by direction
  order, then by k (stable sort);
- PCA route: exact covariance eigen-decomposition up to 1,024 input columns, randomized SVD
  (seeded from ``seed``) for wider ones (see ``hashbench.methods._linear``); nothing else is random.
"""

from __future__ import annotations

import numpy as np

from hashbench.hasher import Hasher
from hashbench.methods._linear import principal_components, project, row_blocks


class SH(Hasher):
    fast = True
    name = "sh"
    input_kind = "features"
    uses_aux = False
    citation = "Weiss, Torralba, Fergus, NeurIPS 2008"

    def __init__(self, n_bits: int = 32, *, seed: int = 0, device: str = "cpu"):
        super().__init__(n_bits, seed=seed, device=device)

    def _fit(self, train, callback) -> None:
        features = train.features
        n_directions = min(self.n_bits, features.shape[1])
        self.mean_, self.components_, _ = principal_components(features, n_directions, self.seed)
        projected = project(features, self.mean_, self.components_).astype(np.float64)
        eps = np.finfo(np.float64).eps
        self.lower_ = projected.min(axis=0) - eps
        self.range_ = projected.max(axis=0) + eps - self.lower_
        self.modes_ = smallest_modes(self.range_, self.n_bits)

    def _encode(self, split) -> np.ndarray:
        return np.concatenate([self._eigenfunctions(split.features[rows]) for rows in row_blocks(len(split))])

    def _eigenfunctions(self, features: np.ndarray) -> np.ndarray:
        """(n, n_bits) values of the chosen eigenfunctions; each mode uses one direction."""
        unit = (project(features, self.mean_, self.components_) - self.lower_) / self.range_
        direction = self.modes_.argmax(axis=1)
        frequency = self.modes_.max(axis=1)
        return np.cos(np.pi * frequency * unit[:, direction])


def smallest_modes(ranges: np.ndarray, n_bits: int) -> np.ndarray:
    """(n_bits, r) integer frequencies: row b has a single non-zero entry k on the direction i of
    the b-th smallest eigenvalue (k / R_i)^2 among the candidate modes."""
    r = len(ranges)
    max_mode = np.ceil((n_bits + 1) * ranges / ranges.max()).astype(int) - 1
    direction = np.repeat(np.arange(r), max_mode)
    frequency = np.concatenate([np.arange(1, m + 1) for m in max_mode])
    order = np.argsort((frequency / ranges[direction]) ** 2, kind="stable")[:n_bits]
    modes = np.zeros((len(order), r), dtype=int)
    modes[np.arange(len(order)), direction[order]] = frequency[order]
    return modes
