"""SADH: F. Shen, Y. Xu, L. Liu, Y. Yang, Z. Huang, H. T. Shen, "Unsupervised Deep Hashing with
Similarity-Adaptive and Discrete Optimization", TPAMI 2018.

Training alternates three modules, ``outer_iterations`` times:

1. similarity graph: an anchor graph ``A = Z diag(Z^T 1)^-1 Z^T`` on the current deep features
   (the pretrained CNN's in the first round, the fine-tuned backbone's afterwards);
2. binary codes: ``min_B -tr(B^T A' B) + mu/(4n) ||B^T B||_F^2`` over ``B`` in {-1, +1}^(n x r),
   ``A' = A - 11^T/n`` (removing A's constant eigenvector makes unbalanced bits worthless), solved
   directly on the binary set by ADMM over the l2-box reformulation {-1,1}^n = [-1,1]^n ∩ {||b||^2
   = n} (Wu & Ghanem, TPAMI 2018);
3. deep hash model: the CNN with fc8 replaced by a linear code layer regresses the codes
   (Euclidean loss: half the squared distance, averaged over items) for ``epochs`` epochs.

Codes: the network's outputs thresholded at their mean on the training items, stored.

Feature scale: the anchor graph's bandwidth comes from the data, so the graph and the codes do not
depend on the scale of the features; the code layer reads them centred and scaled to unit RMS norm
(see :mod:`hashbench.methods._cnn`), where the regression's gradient has Lipschitz constant at
most 1 in the code layer, so one step size trains features of any scale (the release's SGD step
1e-3 on raw features diverged on features of norm ~200, and on any features times 1e3).

Free choices (default):
- ``outer_iterations=3``; ``preset="paper"``: ``epochs=10`` per round, ``batch_size=64``;
  ``preset="quick"``: 2 rounds of 3 epochs of 64 images (our schedules);
- SGD, momentum 0.9, ``lr=0.5`` on the normalised input (our choice), a tenth of it in the second
  half of each round (the release's decay at 35,400 of 70,800 iterations), ``weight_decay=5e-4``;
  the code layer starts from unit-variance pre-activations (see :mod:`hashbench.methods._cnn`);
- ``backbone_lr=0`` in image mode: the backbone stays as pretrained, the images pass through it
  in training mode (dropout on), as the release's VGG16 at lr 0. The graph of rounds 2-3 is then
  round 1's, as in the release. Fine-tuning it (``backbone_lr > 0``, the paper's similarity-adaptive
  loop) broke the mosaic backbone: at the quick preset, 32 bits, every bit ended constant at 1e-3
  and most bits at 1e-4, and 1e-5 still scored below ``backbone_lr=0``, which scores as
  ``frozen_backbone=True`` does, at ITQ's level;
- anchor graph: ``n_anchors=300`` k-means centres (at most the number of items; one k-means run,
  seeded), each item linked to its ``anchor_neighbours=3`` nearest anchors with Gaussian weights
  of bandwidth the mean squared distance to them, rows normalised (the AGH convention);
- codes start from the signs of A's leading non-trivial eigenvectors, later rounds from the
  previous codes; ``decorrelation=1.0`` (mu); ADMM: ``admm_iterations=100`` of 3 gradient steps on
  B each (step 1 / a local Lipschitz bound), penalty rho from 0.5 growing 3% per iteration up to 10;
- ``threshold="mean"`` (over all bits; "bit-mean": per bit);
- with ``frozen_backbone=True`` (or ``backbone_lr=0``) the features do not change, so the graph
  is the same each round.

Measured MAP, code health and seconds: ``docs/methods/sadh.md``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.metrics.pairwise import euclidean_distances
from torch import nn

from hashbench._validation import check_positive_int
from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError
from hashbench.methods._cnn import CNNHasher

LR = 0.5  # on centred features of unit RMS norm (see hashbench.methods._cnn)
ADMM_INNER_STEPS = 3
RHO_START, RHO_GROWTH, RHO_MAX = 0.5, 1.03, 10.0


class AnchorGraph:
    """``A = Z Λ^-1 Z^T`` kept in factored form: ``Z`` is a sparse (n x m) matrix with
    ``n_neighbours`` entries per row, so products with A cost O(n r) per code column."""

    def __init__(self, features: np.ndarray, n_anchors: int, n_neighbours: int, seed: int):
        """``features``: float64, the graph's own copy (k-means shifts it in place and back)."""
        n, n_anchors = len(features), min(n_anchors, len(features))
        # copy_x=False: k-means centres the features in place and restores them, rather than copying them
        kmeans = KMeans(n_anchors, n_init=1, max_iter=50, random_state=seed, copy_x=False)
        anchors = kmeans.fit(features).cluster_centers_
        sq_dist = euclidean_distances(features, anchors, squared=True)
        nearest = np.argsort(sq_dist, axis=1)[:, :n_neighbours]
        near_sq = np.take_along_axis(sq_dist, nearest, axis=1)
        bandwidth = max(float(near_sq.mean()), 1e-12)
        weights = np.exp(-near_sq / bandwidth)
        weights /= weights.sum(axis=1, keepdims=True)
        rows = np.repeat(np.arange(n), n_neighbours)
        self.z = sparse.csr_matrix((weights.ravel(), (rows, nearest.ravel())), shape=(n, n_anchors))
        self.inv_degree = 1.0 / np.maximum(np.asarray(self.z.sum(axis=0)).ravel(), 1e-12)

    def centred_product(self, codes: np.ndarray) -> np.ndarray:
        """``(A - 11^T/n) codes``."""
        return self.z @ (self.inv_degree[:, None] * (self.z.T @ codes)) - codes.mean(axis=0, keepdims=True)

    def leading_eigenvectors(self, k: int) -> np.ndarray:
        """The k leading eigenvectors of ``A - 11^T/n``, as (n, k) columns.

        With ``P = Z Λ^-1/2`` and the unit vector ``u = Λ^1/2 1 / sqrt(n)`` (so ``P u`` is the
        constant vector over sqrt(n)), ``A - 11^T/n = (P Q)(P Q)^T`` with ``Q = I - u u^T``: its
        eigenvectors come from the m x m matrix ``(P Q)^T (P Q)``.
        """
        scaled = (self.z @ sparse.diags(np.sqrt(self.inv_degree))).toarray()
        u = np.sqrt(1.0 / self.inv_degree) / np.sqrt(self.z.shape[0])
        projected = scaled - np.outer(scaled @ u, u)
        values, vectors = np.linalg.eigh(projected.T @ projected)
        top = np.argsort(values)[::-1][:k]
        return projected @ vectors[:, top] / np.sqrt(np.maximum(values[top], 1e-12))


def signs(values: np.ndarray) -> np.ndarray:
    return np.where(values >= 0, 1.0, -1.0)


def discrete_codes(graph: AnchorGraph, start: np.ndarray, decorrelation: float, iterations: int) -> np.ndarray:
    """ADMM on the l2-box form of ``min -tr(B^T A' B) + mu/(4n) ||B^T B||^2`` from ``start``; ±1 codes."""
    n = len(start)
    b = np.array(start, dtype=np.float64)
    y_box, y_sphere = np.zeros_like(b), np.zeros_like(b)
    rho = RHO_START
    for _ in range(iterations):
        box = np.clip(b + y_box / rho, -1.0, 1.0)
        sphere = b + y_sphere / rho
        sphere *= np.sqrt(n) / np.maximum(np.linalg.norm(sphere, axis=0), 1e-12)
        for _ in range(ADMM_INNER_STEPS):
            gram = b.T @ b
            gradient = (
                -2.0 * graph.centred_product(b)
                + decorrelation / n * b @ gram
                + y_box
                + y_sphere
                + rho * (2.0 * b - box - sphere)
            )
            # 1 / (a bound on the gradient's Lipschitz constant near b): ||A'|| <= 1, and the
            # quartic term's Hessian is at most 3 mu ||B^T B|| / n
            b -= gradient / (2.0 + 3.0 * decorrelation * np.linalg.norm(gram, 2) / n + 2.0 * rho)
        y_box += rho * (b - box)
        y_sphere += rho * (b - sphere)
        rho = min(rho * RHO_GROWTH, RHO_MAX)
    return signs(b)


def code_objective(graph: AnchorGraph, codes: np.ndarray, decorrelation: float) -> float:
    """The value of the code objective at ``codes`` (lower is better)."""
    gram = codes.T @ codes
    return float(-(codes * graph.centred_product(codes)).sum() + decorrelation / (4 * len(codes)) * (gram**2).sum())


class SADH(CNNHasher):
    name = "sadh"
    citation = (
        "Shen, Xu, Liu, Yang, Huang, Shen. Unsupervised Deep Hashing with Similarity-Adaptive and "
        "Discrete Optimization. TPAMI 2018"
    )
    presets = {
        "paper": {"outer_iterations": 3, "epochs": 10, "batch_size": 64},
        "quick": {"outer_iterations": 2, "epochs": 3, "batch_size": 64},
    }

    def __init__(
        self,
        n_bits: int = 32,
        *,
        seed: int = 0,
        device: str = "cpu",
        frozen_backbone: bool = False,
        preset: str = "paper",
        outer_iterations: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float = LR,
        backbone_lr: float = 0.0,
        weight_decay: float = 5e-4,
        n_anchors: int = 300,
        anchor_neighbours: int = 3,
        decorrelation: float = 1.0,
        admm_iterations: int = 100,
        threshold: str = "mean",
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.frozen_backbone = frozen_backbone
        self.preset = preset
        self.outer_iterations = outer_iterations
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.backbone_lr = backbone_lr
        self.weight_decay = weight_decay
        self.n_anchors = n_anchors
        self.anchor_neighbours = anchor_neighbours
        self.decorrelation = decorrelation
        self.admm_iterations = admm_iterations
        self.threshold = threshold

    def _resolve_settings(self, train: Split) -> dict:
        settings = super()._resolve_settings(train)
        for key in ("outer_iterations", "n_anchors", "anchor_neighbours", "admm_iterations"):
            check_positive_int(settings[key], key)
        anchors = min(self.n_anchors, len(train))
        if anchors <= self.n_bits:
            raise InvalidInputError(
                f"SADH needs more anchors than bits: n_anchors={self.n_anchors} (capped at {len(train)} "
                f"training items) for n_bits={self.n_bits}"
            )
        if self.anchor_neighbours > anchors:
            raise InvalidInputError(f"anchor_neighbours={self.anchor_neighbours} exceeds the {anchors} anchors")
        return settings

    def _build(self, train: Split) -> None:
        self._build_network(train, nn.Identity())
        self.code_objective_ = []
        self.codes_ = None

    def _n_epochs(self) -> int:
        return self.settings_["outer_iterations"] * self.settings_["epochs"]

    def _epoch(self, epoch: int) -> dict:
        round_epoch = (epoch - 1) % self.settings_["epochs"] + 1
        self._decay_after_half(round_epoch, self.settings_["epochs"])
        if round_epoch == 1:  # a new round: update the graph, then the codes
            if epoch == 1 or self.frozen_backbone:
                features = self._pretrained_features()
            else:
                features = self._outputs(self.network_, self._train, features=True)
            self.codes_ = self._update_codes(features, self.codes_)
            self.targets_ = torch.as_tensor(self.codes_, dtype=torch.float32, device=self.device_)
        return super()._epoch(epoch)

    def _loss_terms(self, rows: torch.Tensor) -> dict:
        outputs = self._training_outputs(rows)[1]
        targets = self.targets_[rows.to(self.device_)]
        return {"regression": 0.5 * (outputs - targets).pow(2).sum(dim=1).mean()}

    def _update_codes(self, features: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
        graph = AnchorGraph(np.array(features, dtype=np.float64), self.n_anchors, self.anchor_neighbours, self.seed)
        start = signs(graph.leading_eigenvectors(self.n_bits)) if previous is None else previous
        codes = discrete_codes(graph, start, self.decorrelation, self.admm_iterations)
        self.code_objective_.append(code_objective(graph, codes, self.decorrelation))
        return codes
