"""LSH: random-projection locality-sensitive hashing.

Gionis, Indyk and Motwani, "Similarity Search in High Dimensions via Hashing", VLDB 1999; the
sign-of-random-projection form used as a hashing baseline (Charikar, STOC 2002), as in the
baselines of LAGNH's Table 3.

Codes: ``sign((x - mean) @ W)`` with ``W`` a (d, n_bits) matrix of independent N(0, 1) entries.

Free choices and defaults:
- projection entries ~ N(0, 1) (the release's choice), drawn from ``seed``;
- data centred by the training mean; no random offset (the release's choice);
- no limit on ``n_bits``.
"""

from __future__ import annotations

import numpy as np

from hashbench.methods._linear import ProjectionHasher


class LSH(ProjectionHasher):
    name = "lsh"
    input_kind = "features"
    uses_aux = False
    citation = "Gionis, Indyk, Motwani, VLDB 1999"

    def __init__(self, n_bits: int = 32, *, seed: int = 0, device: str = "cpu"):
        super().__init__(n_bits, seed=seed, device=device)

    def _fit(self, train, callback) -> None:
        features = train.features
        self.mean_ = features.mean(axis=0, dtype=np.float64)
        self.projection_ = self._rng().standard_normal((features.shape[1], self.n_bits))
