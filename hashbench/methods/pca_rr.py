"""PCA-RR: PCA followed by a random orthogonal rotation.

Gong, Lazebnik, Gordo and Perronnin, "Iterative Quantization: A Procrustean Approach to Learning
Binary Codes for Large-Scale Image Retrieval", TPAMI 2013 (first at CVPR 2011), where it is the
baseline that ITQ's learned rotation improves on; the rotation balances the variance across the
projected directions (Jégou, Douze, Schmid and Pérez, CVPR 2010), so every bit carries a share of
it rather than the first few bits most of it, as in PCAH.

Codes: ``sign((x - mean) @ components @ R)`` with the top ``n_bits`` principal directions and a
Haar-distributed random orthogonal ``n_bits x n_bits`` matrix ``R``. Training-free beyond the PCA:
ITQ without its iterations (``n_iter = 0``), which makes it a cheap first baseline on strong
pretrained features.

Free choices and defaults:
- R drawn from ``seed`` as the QR of a Gaussian matrix with signs fixed (the ITQ release's
  initialisation, shared with ``itq``);
- PCA route: exact covariance eigen-decomposition up to 1,024 input columns, randomized SVD
  (seeded) for wider inputs (see ``hashbench.methods._linear``);
- ``n_bits`` at most the input width (one bit per principal direction).
"""

from __future__ import annotations

from hashbench.methods._linear import ProjectionHasher, principal_components
from hashbench.methods.itq import random_rotation


class PCARR(ProjectionHasher):
    name = "pca-rr"
    input_kind = "features"
    uses_aux = False
    citation = "Gong, Lazebnik, Gordo, Perronnin, TPAMI 2013"
    max_bits_per_feature = 1

    def __init__(self, n_bits: int = 32, *, seed: int = 0, device: str = "cpu"):
        super().__init__(n_bits, seed=seed, device=device)

    def _fit(self, train, callback) -> None:
        self.mean_, components, self.explained_variance_ = principal_components(train.features, self.n_bits, self.seed)
        self.rotation_ = random_rotation(self.n_bits, self._rng())
        self.projection_ = components @ self.rotation_
