"""SGH: scalable graph hashing with feature transformation.

Jiang and Li, "Scalable Graph Hashing with Feature Transformation", IJCAI 2015.

The target similarity of two L2-normalised points is ``S_ij = 2 exp(-||x_i - x_j||^2 / rho) - 1``.
A feature transformation (a first-order expansion of ``exp`` on [-1, 1]) writes it as
``S ~ P(X) Q(X)^T`` with (n, d + 2) factors, so the n x n graph is never built. Hash functions are
``sign(k(x) . w)`` on Gaussian kernel features ``k(x)`` to m random training anchors (centred by
their training column means); the bits are learned one after another, each the top generalised
eigenvector of ``(K^T R K) w = lambda (K^T K + ridge I) w`` where ``R`` starts at ``n_bits * S`` and
loses what every learned bit explains (``R <- R - b b^T``); a refinement pass then re-learns each
bit, in random order, against all the others.

Free choices and defaults (the authors' release):
- input centred by the training mean, then rows L2-normalised;
- ``n_anchors = 300`` anchors drawn from the training rows with ``seed`` (all rows if fewer);
- kernel ``exp(-||x - a||^2 / (2 delta))`` with ``delta`` = mean squared distance from the
  training rows to the anchors; kernel features centred by their training column means;
- ``rho = 2``; ``ridge = 1e-6``; ``n_refinements = 1`` pass, bit order drawn from ``seed``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from hashbench._validation import check_positive_int
from hashbench.errors import InvalidInputError
from hashbench.hasher import Hasher
from hashbench.methods._linear import l2_normalise_rows, row_blocks, single_threaded_blas


class SGH(Hasher):
    fast = True
    name = "sgh"
    input_kind = "features"
    uses_aux = False
    citation = "Jiang, Li, IJCAI 2015"

    def __init__(
        self,
        n_bits: int = 32,
        *,
        seed: int = 0,
        device: str = "cpu",
        n_anchors: int = 300,
        rho: float = 2.0,
        ridge: float = 1e-6,
        n_refinements: int = 1,
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.n_anchors = n_anchors
        self.rho = rho
        self.ridge = ridge
        self.n_refinements = n_refinements

    def _fit(self, train, callback) -> None:
        check_positive_int(self.n_anchors, "n_anchors")
        if not (np.isfinite(self.rho) and self.rho > 0 and np.isfinite(self.ridge) and self.ridge > 0):
            raise InvalidInputError(
                f"rho and ridge must be positive numbers, got rho={self.rho!r}, ridge={self.ridge!r}"
            )
        if self.n_refinements != 0:
            check_positive_int(self.n_refinements, "n_refinements")
        rng = self._rng()
        features = train.features.astype(np.float64)
        self.mean_ = features.mean(axis=0)
        data = l2_normalise_rows(features - self.mean_)
        anchor_rows = rng.choice(len(data), min(self.n_anchors, len(data)), replace=False)
        self.anchors_ = data[np.sort(anchor_rows)]
        squared = squared_distances_to_anchors(features, self.mean_, self.anchors_)
        del features  # the n x d arrays are the fit's memory: each is freed once it has served
        self.bandwidth_ = squared.mean()
        kernel = np.exp(-squared / (2 * self.bandwidth_))
        self.kernel_bias_ = kernel.mean(axis=0)
        kernel -= self.kernel_bias_
        self.weights_ = self._learn_bits(kernel, *similarity_factors(data, self.rho), rng)

    def _learn_bits(self, kernel, left, right, rng) -> np.ndarray:
        """Sequential learning of the (m, n_bits) projection, then the refinement passes.

        Solved in whitened coordinates: with K^T K + ridge I = L L^T and K' = K L^-T, each
        generalised eigenproblem becomes the standard one for K'^T R K', and w = L^-T u."""
        gram = kernel.T @ kernel + self.ridge * np.eye(kernel.shape[1])
        cholesky = scipy.linalg.cholesky(gram, lower=True)
        whitened = scipy.linalg.solve_triangular(cholesky, kernel.T, lower=True).T
        residual = self.n_bits * (whitened.T @ left) @ (whitened.T @ right).T
        residual = (residual + residual.T) / 2  # S = P Q^T is symmetric; remove rounding asymmetry
        m = kernel.shape[1]

        def top_direction(matrix):
            return scipy.linalg.eigh(matrix, subset_by_index=[m - 1, m - 1])[1][:, 0]

        def explained(u):
            spread = whitened.T @ np.sign(whitened @ u)
            return np.outer(spread, spread)

        directions = np.zeros((m, self.n_bits))
        with single_threaded_blas():
            for bit in range(self.n_bits):
                directions[:, bit] = top_direction(residual)
                residual -= explained(directions[:, bit])
            for _ in range(self.n_refinements):
                for bit in rng.permutation(self.n_bits):
                    residual += explained(directions[:, bit])
                    directions[:, bit] = top_direction(residual)
                    residual -= explained(directions[:, bit])
        return scipy.linalg.solve_triangular(cholesky.T, directions, lower=False)

    def _encode(self, split) -> np.ndarray:
        blocks = [self._kernel_features(split.features[rows]) @ self.weights_ for rows in row_blocks(len(split))]
        return np.concatenate(blocks)

    def _kernel_features(self, features: np.ndarray) -> np.ndarray:
        squared = squared_distances_to_anchors(features, self.mean_, self.anchors_)
        return np.exp(-squared / (2 * self.bandwidth_)) - self.kernel_bias_


def squared_distances_to_anchors(features: np.ndarray, mean: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(n, m) squared distances between the rows of ``features``, centred by ``mean`` and
    L2-normalised, and the (centred, normalised) anchors. Computed from one product of the raw
    rows with [anchors; mean], in the rows' precision, so a large input is never copied."""
    products = features @ np.vstack([anchors, mean]).T.astype(features.dtype)
    centred_products = products[:, :-1] - (anchors @ mean).astype(features.dtype)
    squared_norms = np.einsum("ij,ij->i", features, features) - 2 * products[:, -1] + mean @ mean
    centred_norms = np.sqrt(np.maximum(squared_norms, 0))
    nonzero = centred_norms > 0  # a row equal to the mean stays the zero vector, as in fitting
    cosines = centred_products / np.where(nonzero, centred_norms, 1)[:, None]
    return np.maximum(nonzero[:, None] + np.einsum("ij,ij->i", anchors, anchors) - 2 * cosines, 0)


def similarity_factors(data: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """P, Q (n, d + 2) with P Q^T ~ 2 exp(-||x_i - x_j||^2 / rho) - 1 for L2-normalised rows:
    exp(2 x.y / rho) is replaced by its chord on [-1, 1] (exact at the ends)."""
    decay = np.exp(-np.einsum("ij,ij->i", data, data) / rho)[:, None]
    scaled = np.sqrt(2 * (np.e - 1 / np.e) / rho) * data * decay
    left = np.hstack([scaled, np.sqrt(np.e + 1 / np.e) * decay, np.ones((len(data), 1))])
    del scaled
    right = left.copy()
    right[:, -1] = -1.0
    return left, right
