"""PCAH: PCA hashing.

Wang, Kumar and Chang, "Semi-Supervised Hashing for Large-Scale Search", TPAMI 2012 (the
unsupervised PCA baseline of that paper).

Codes: the signs of the top ``n_bits`` principal projections of the centred data.

Free choices and defaults:
- PCA route: exact covariance eigen-decomposition for inputs up to 1,024 columns, randomized SVD
  (seeded from ``seed``) for wider ones (see ``hashbench.methods._linear``);
- ``n_bits`` at most the feature width (one bit per principal direction; the paper defines no
  more), enforced through ``max_bits_per_feature = 1``.
"""

from __future__ import annotations

from hashbench.methods._linear import ProjectionHasher, principal_components


class PCAH(ProjectionHasher):
    name = "pcah"
    input_kind = "features"
    uses_aux = False
    citation = "Wang, Kumar, Chang, TPAMI 2012"
    max_bits_per_feature = 1

    def __init__(self, n_bits: int = 32, *, seed: int = 0, device: str = "cpu"):
        super().__init__(n_bits, seed=seed, device=device)

    def _fit(self, train, callback) -> None:
        self.mean_, self.projection_, self.explained_variance_ = principal_components(
            train.features, self.n_bits, self.seed
        )
