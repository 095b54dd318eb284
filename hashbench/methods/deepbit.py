"""DeepBit: K. Lin, J. Lu, C.-S. Chen, J. Zhou, "Learning Compact Binary Descriptors with
Unsupervised Deep Neural Networks", CVPR 2016.

A pretrained CNN whose fc8 is replaced by an ``n_bits`` code layer with a ReLU (as in the authors'
Caffe release; ``activation="sigmoid"`` bounds it to (0, 1) instead), trained in two stages:

- stage 1 (``epochs``): quantisation loss ``1/2 sum_k (b_k - a_k)^2`` between the activations
  ``a`` and their bits ``b = [a > 0.5]``, plus the even-distribution loss ``1/2 sum_k (mu_k -
  0.5)^2`` of each bit's mean ``mu_k`` over the mini-batch;
- stage 2 (``rotation_epochs``): the same two losses on each image and on a rotated copy, plus
  ``rotation_weight`` times the rotation-invariance loss ``1/2 C(theta) ||a(x) - a(rot(x))||^2``
  with ``C(theta) = exp(-(theta / 5 deg)^2 / 2)``.

Codes: activations thresholded at their mean over all bits and training items, computed after
training and stored (the release's ``run_cifar10.m``).

Free choices (default):
- ``preset="paper"``: the release's CIFAR-10 schedule in epochs of 50,000 images: stage 1 50,000
  iterations of 32 images = 32 ``epochs``, stage 2 5,000 iterations of 30 pairs = 3
  ``rotation_epochs``, ``batch_size=32``; ``preset="quick"``: 6 + 1 epochs of 64 images;
- ``lr=1e-3`` (stage 1, divided by 10 halfway), stage 2 at a tenth of it; SGD,
  momentum 0.9, ``weight_decay=5e-4`` (release solvers);
- the code layer starts from torch's default initialisation (the release drew N(0, 0.01^2)
  weights and zero biases, which left more constant bits in our trials);
- ``rotation_weight=1e-3`` and rotation angles -10, -5, 0, 5, 10 degrees, one drawn per image and
  step (release);
- the even-distribution loss counts hard bits, which have no gradient; it passes its gradient to
  the activations straight through (the release's layer spreads it evenly over all activations);
- ``threshold="mean"`` (release; "bit-mean": the mean of each bit);
- ``activation="relu"`` (release). With the exact gradients of the losses, the quantisation loss
  drives some ReLU units below zero for every item, where they stay (constant bits); the
  release's hand-written backward passes spread one scalar over all activations instead, so its
  code layer stays close to its random start. ``"sigmoid"`` keeps every bit alive and balanced,
  but nothing in the objective then keeps the codes close to the features' neighbourhoods;
- image mode fine-tunes every backbone layer (the paper fine-tunes the network; the release froze
  every VGG layer, which is what ``frozen_backbone=True`` does); frozen mode has no images to
  rotate, so it trains stage 1 only.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms.v2.functional import rotate

from hashbench._validation import check_choice
from hashbench.datasets.base import Split
from hashbench.methods._cnn import CNNHasher

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}
ROTATION_ANGLES = (-10.0, -5.0, 0.0, 5.0, 10.0)
ROTATION_SIGMA = 5.0


def quantization_loss(activations: torch.Tensor) -> torch.Tensor:
    bits = (activations > 0.5).float()
    return 0.5 * (bits - activations).pow(2).sum(dim=1).mean()


def even_distribution_loss(activations: torch.Tensor) -> torch.Tensor:
    hard = (activations > 0.5).float()
    bits = hard + activations - activations.detach()  # straight-through: value of hard bits
    return 0.5 * (bits.mean(dim=0) - 0.5).pow(2).sum()


def rotation_loss(activations: torch.Tensor, rotated: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    weights = torch.exp(-0.5 * (angles / ROTATION_SIGMA) ** 2)
    return 0.5 * (weights * (activations - rotated).pow(2).sum(dim=1)).mean()


def rotate_each(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Each image rotated by its own angle (degrees), about its centre, zero-filled corners."""
    rotated = torch.empty_like(images)
    for angle in angles.unique():
        chosen = angles == angle
        rotated[chosen] = rotate(images[chosen], float(angle))
    return rotated


class DeepBit(CNNHasher):
    name = "deepbit"
    citation = "Lin, Lu, Chen, Zhou. Learning Compact Binary Descriptors with Unsupervised Deep Neural Networks. CVPR 2016"
    presets = {
        "paper": {"epochs": 32, "rotation_epochs": 3, "batch_size": 32},
        "quick": {"epochs": 6, "rotation_epochs": 1, "batch_size": 64},
    }

    def __init__(
        self,
        n_bits: int = 32,
        *,
        seed: int = 0,
        device: str = "cpu",
        frozen_backbone: bool = False,
        preset: str = "paper",
        epochs: int | None = None,
        rotation_epochs: int | None = None,
        batch_size: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        rotation_weight: float = 1e-3,
        activation: str = "relu",
        threshold: str = "mean",
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.frozen_backbone = frozen_backbone
        self.preset = preset
        self.epochs = epochs
        self.rotation_epochs = rotation_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.rotation_weight = rotation_weight
        self.activation = activation
        self.threshold = threshold

    def _build(self, train: Split) -> None:
        check_choice(self.activation, ACTIVATIONS, "activation")
        self._build_network(train, ACTIVATIONS[self.activation]())
        self.rotating_ = False

    def _n_epochs(self) -> int:
        return self.settings_["epochs"] + (0 if self.frozen_backbone else self.settings_["rotation_epochs"])

    def _epoch(self, epoch: int) -> dict:
        stage1 = self.settings_["epochs"]
        # the release's step decay: a tenth of the rate from halfway through stage 1 on
        decayed = epoch > max(1, stage1 // 2)
        for group in self.updates_[0].optimiser.param_groups:
            group["lr"] = self.settings_["lr"] / 10 if decayed else self.settings_["lr"]
        self.rotating_ = epoch > stage1
        return super()._epoch(epoch)

    def _loss_terms(self, rows: torch.Tensor) -> dict:
        images, activations = self._training_outputs(rows)
        terms = {"quantization": quantization_loss(activations), "even_distribution": even_distribution_loss(activations)}
        if not self.rotating_:
            return terms
        # stage 2: the losses of a rotated copy of each image and the rotation-invariance loss
        choice = torch.randint(len(ROTATION_ANGLES), (len(images),), generator=self.generator_)
        angles = torch.tensor(ROTATION_ANGLES)[choice].to(images.device)
        rotated = self.network_(rotate_each(images, angles))
        return {
            "quantization": terms["quantization"] + quantization_loss(rotated),
            "even_distribution": terms["even_distribution"] + even_distribution_loss(rotated),
            "rotation": rotation_loss(activations, rotated, angles),
        }

    def _objective(self, terms: dict) -> torch.Tensor:
        return sum(self.rotation_weight * v if k == "rotation" else v for k, v in terms.items())
