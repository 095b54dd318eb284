"""Bi-half: Y. Li, J. van Gemert, "Deep Unsupervised Image Hashing by Maximizing Bit Entropy",
AAAI 2021. As the authors' release (``ImageHashing/Mscoco.py``) trains it without labels.

A linear code layer ``U = W x + b`` on the pretrained CNN's features. The bi-half layer binarises
each bit over the mini-batch so that half of the items get +1 and half -1: per bit, the items are
ranked by ``U`` and the upper half set to +1 (the optimal transport of the bit's values onto a
half/half distribution, which maximises the bit's entropy). Backward, the gradient passes
straight through, plus ``gamma (U - B) / (n r)``: the gradient of ``gamma / 2 * mean (U - B)^2``
with ``B`` held fixed, which pulls ``U`` towards its balanced codes. The objective is GreedyHash's
unsupervised one without its cubic term: over the batch's half pairs (i, i + n/2), the codes'
cosine similarity regresses the features'. Codes: ``sign(U)`` (balance needs a batch; an item's
code must not depend on the others).

Free choices (default):
- ``frozen_backbone=True``: the code layer learns from the precomputed features (the release
  freezes VGG16 and trains the code layer alone); ``False`` fine-tunes the dataset's backbone on
  its images with the code layer, the cosine targets staying those of the pretrained features;
- ``preset="paper"``: the release's MS-COCO schedule (of its CIFAR-10, FLICKR25K and MS-COCO
  ones, the dataset this benchmark compares on), ``epochs=150`` of batches of 32, SGD, momentum
  0.9, ``weight_decay=5e-4``, ``lr=1e-3`` divided by 10 every ``lr_step_epochs=60``;
  ``preset="quick"``: 20 epochs of 32, the rate divided by 10 after 15;
- ``gamma=6`` (release);
- in a batch of odd size the -1 half holds the extra item (as the release);
- ``centre=True``: the features are centred on their training mean, as the code layer's inputs
  and in the cosine targets, and the inputs divided by their root-mean-square value (as in
  :mod:`hashbench.methods.greedyhash`; the release used fc7 as it is, ``centre=False``). Balanced
  codes have pairwise cosines averaging about 0, which the positive cosines of uncentred ReLU
  features (0.95 +- 0.05 for the mosaic's) can never match;
- the release's MS-COCO training flipped and cropped images at random before the frozen VGG16
  (in training mode, so with dropout); precomputed features carry neither, and image mode here
  fine-tunes the backbone on the images as they are;
- training never sees labels and keeps the last epoch's model (the release evaluated on the test
  set every 10 epochs).

Like GreedyHash's, the objective preserves the features' cosines, so the codes retrieve about as
well as that similarity does, which on mosaic leaves them close to LSH (see
:mod:`hashbench.methods.greedyhash`). Tuned on validation queries (``configs/tuning.toml``, 64 bits),
Bi-half takes the quick schedule at ``lr=1e-4``. Measured MAP, code health and seconds:
``docs/methods/bihalf.md``.
"""

from __future__ import annotations

import torch

from hashbench._validation import check_positive_int
from hashbench.datasets.base import Split
from hashbench.methods.greedyhash import PairwiseCosineHasher, half_pair_similarity_loss


def bi_half_codes(values: torch.Tensor) -> torch.Tensor:
    """Per column, the ``n // 2`` largest of the n rows set to +1 and the rest to -1 (ties broken
    by row order); no gradient."""
    order = values.detach().argsort(dim=0, descending=True, stable=True)
    ranked = torch.ones_like(values)
    ranked[len(values) // 2 :] = -1.0
    return torch.empty_like(values).scatter_(0, order, ranked)


def bi_half(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bi-half codes of ``values`` with a straight-through gradient, and
    ``mean (values - codes)^2`` (codes held fixed), whose ``gamma / 2`` multiple gives the layer's
    extra gradient ``gamma (U - B) / numel``."""
    codes = bi_half_codes(values)
    return values + (codes - values).detach(), (values - codes).pow(2).mean()


class BiHalf(PairwiseCosineHasher):
    name = "bihalf"
    citation = "Li, van Gemert. Deep Unsupervised Image Hashing by Maximizing Bit Entropy. AAAI 2021"
    presets = {
        "paper": {"epochs": 150, "batch_size": 32, "lr_step_epochs": 60},
        "quick": {"epochs": 20, "batch_size": 32, "lr_step_epochs": 15},
    }

    def __init__(
        self,
        n_bits: int = 32,
        *,
        seed: int = 0,
        device: str = "cpu",
        frozen_backbone: bool = True,
        preset: str = "paper",
        epochs: int | None = None,
        batch_size: int | None = None,
        lr_step_epochs: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        backbone_lr: float | None = None,
        gamma: float = 6.0,
        centre: bool = True,
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.frozen_backbone = frozen_backbone
        self.preset = preset
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_step_epochs = lr_step_epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.backbone_lr = backbone_lr
        self.gamma = gamma
        self.centre = centre

    def _resolve_settings(self, train: Split) -> dict:
        settings = super()._resolve_settings(train)
        check_positive_int(settings["lr_step_epochs"], "lr_step_epochs")
        return settings

    def _epoch(self, epoch: int) -> dict:
        decays = (epoch - 1) // self.settings_["lr_step_epochs"]
        for group in self.updates_[0].optimiser.param_groups:  # the code layer's rate and the backbone's
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * 0.1**decays
        return super()._epoch(epoch)

    def _loss_terms(self, rows: torch.Tensor) -> dict:
        u, features = self._codes_and_targets(rows)
        codes, distance = bi_half(u)
        return {"similarity": half_pair_similarity_loss(codes, features), "bi_half": 0.5 * self.gamma * distance}
