"""SKLSH: locality-sensitive binary codes from shift-invariant kernels.

Raginsky and Lazebnik, "Locality-Sensitive Binary Codes from Shift-Invariant Kernels",
NeurIPS 2009.

Bit j = ``sign(cos(w_j . x + b_j) + t_j)`` with random Fourier frequencies ``w_j ~ N(0, gamma I)``
of the Gaussian kernel ``K(x, y) = exp(-gamma ||x - y||^2 / 2)``, phases ``b_j ~ U[0, 2 pi]`` and
thresholds ``t_j ~ U[-1, 1]``. The expected normalised Hamming distance between two codes is a
known increasing function of the kernel distance (the paper's Lemma 2, checked in the tests).

Free choices and defaults:
- ``gamma``: kernel precision. ``None`` (default) sets it from the data scale, ``gamma = 1 /
  sigma^2`` with ``sigma`` the mean distance from a training point to its
  ``bandwidth_neighbor``-th nearest training neighbour (default 50, the rule used for SKLSH in
  the ITQ paper's experiments), estimated on up to 1,000 training rows drawn from ``seed``;
- w, b, t distributions as above (the release's), all drawn from ``seed``;
- no centring (the kernel is shift-invariant, so a shift only changes the phases); no limit on
  ``n_bits``.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import pairwise_distances

from hashbench._validation import check_positive_int, is_number
from hashbench.errors import InvalidInputError
from hashbench.hasher import Hasher

#: training rows whose neighbour distances estimate the bandwidth
BANDWIDTH_SAMPLE_ROWS = 1000


class SKLSH(Hasher):
    fast = True
    name = "sklsh"
    input_kind = "features"
    uses_aux = False
    citation = "Raginsky, Lazebnik, NeurIPS 2009"

    def __init__(
        self,
        n_bits: int = 32,
        *,
        seed: int = 0,
        device: str = "cpu",
        gamma: float | None = None,
        bandwidth_neighbor: int = 50,
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.gamma = gamma
        self.bandwidth_neighbor = bandwidth_neighbor

    def _fit(self, train, callback) -> None:
        rng = self._rng()
        features = train.features
        self.gamma_ = self._kernel_precision(features, rng)
        self.frequencies_ = rng.standard_normal((features.shape[1], self.n_bits)) * np.sqrt(self.gamma_)
        self.phases_ = rng.uniform(0.0, 2 * np.pi, self.n_bits)
        self.thresholds_ = rng.uniform(-1.0, 1.0, self.n_bits)

    def _kernel_precision(self, features: np.ndarray, rng: np.random.Generator) -> float:
        if self.gamma is not None:
            if not (is_number(self.gamma) and np.isfinite(self.gamma) and self.gamma > 0):
                raise InvalidInputError(f"gamma must be a positive number or None, got {self.gamma!r}")
            return float(self.gamma)
        neighbor = min(check_positive_int(self.bandwidth_neighbor, "bandwidth_neighbor"), len(features) - 1)
        sample = rng.choice(len(features), min(len(features), BANDWIDTH_SAMPLE_ROWS), replace=False)
        distances = pairwise_distances(features[sample].astype(np.float64), features.astype(np.float64))
        # column 0 of the partition is the row itself (distance 0)
        sigma = np.partition(distances, neighbor, axis=1)[:, neighbor].mean()
        if sigma <= 0:
            raise InvalidInputError(
                "SKLSH cannot set gamma from the data: training points coincide with their "
                f"{neighbor}-th nearest neighbour; give gamma explicitly"
            )
        return 1.0 / sigma**2

    def _encode(self, split) -> np.ndarray:
        phases = split.features @ self.frequencies_.astype(np.float32) + self.phases_.astype(np.float32)
        return np.cos(phases, out=phases) + self.thresholds_.astype(np.float32)
