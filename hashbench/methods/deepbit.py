"""DeepBit: K. Lin, J. Lu, C.-S. Chen, J. Zhou, "Learning Compact Binary Descriptors with
Unsupervised Deep Neural Networks", CVPR 2016.

A pretrained CNN whose fc8 is replaced by an ``n_bits`` code layer with a sigmoid, so that its
activations ``a`` lie in (0, 1) where the paper's bits ``b = [a > 0.5]`` do. Trained in two stages:

- stage 1 (``epochs``): quantisation loss ``1/2 sum_k (b_k - a_k)^2``, mean over the mini-batch,
  plus the even-distribution loss ``1/2 sum_k (mu_k - 0.5)^2`` of each bit's mean ``mu_k`` over
  the mini-batch;
- stage 2 (``rotation_epochs``): the same two losses on each image and on a rotated copy, plus
  ``rotation_weight`` times the rotation-invariance loss ``1/2 C(theta) ||a(x) - a(rot(x))||^2``
  with ``C(theta) = exp(-(theta / 5 deg)^2 / 2)``.

Codes: ``a > threshold``, by default the paper's ``b = [a > 0.5]``.

What the code layer learns: the quantisation loss pushes each activation away from 0.5, hardest for
the items nearest a bit's boundary, which moves every bit's hyperplane towards a low-density gap
between groups of items; the even-distribution loss moves it until it splits the items in half.
Both terms move and the codes leave those of the initial layer (tests/methods/test_deepbit.py).
Nothing in the objective decorrelates the bits, and each bit's terms are the same function of its
own hyperplane, so on features with one dominant gap many bits settle in it.

Where the hyperplanes go, on the fc7 mosaic (frozen mode, paper preset, 64 bits; its top three
principal directions hold 75% of the variance): the initial layer, random hyperplanes through the
features' mean, retrieves as LSH does. Training lowers the quantisation loss severalfold by turning
the hyperplanes towards the top principal directions, where the items fall into well separated
groups: the weights' energy in the top three grows from a negligible share to about a fifth. Many
bits then cut the same few gaps: the bits' mean |correlation| rises, the share of distinct codes
falls to a fraction of the initial layer's, and MAP@1000 falls below LSH's, most of it in the first
few epochs (the quick preset's codes too). This is the paper's objective at work, not its
optimisation: the lower the loss, the lower the MAP, so on such features the method cannot reach
LSH's level, and the paper's Table 3, which has DeepBit at LSH's level, matches the release's
backward pass (below), under which the code layer barely moves. On features without such a
dominant block the same training helps: on the generated fc7-like set (``load_dataset("fc7-like")``,
top three principal directions 22% of the variance) it lands well above LSH at 16, 32 and 64 bits.
On the pooled mosaic features (one shared component), paper preset, 64 bits, with the weight decay
of the VGG solver (below): every bit ended the same (mean |correlation| 1, MAP@1000 far below LSH's).

The authors' release (kevinlin311tw/cvpr16-deepbit, see the project's release notes) differs:
a ReLU after fc8, and one threshold for all bits at the mean of the ReLU'd outputs over the
database; its hand-written loss layers, by our reading, send no gradient to fc8 in stage 1.
``activation="relu", threshold="mean"`` gives the release's activation and binarisation (with
the losses' exact gradients: the quantisation loss then drives some ReLU units below zero for
every item, where they stay, so some bits end constant, as the release's did), and
``release_gradients=True`` its backward pass as we read it: the quantisation and even-distribution
losses are computed and reported but send no gradient, so in stage 1 the code layer moves only
under weight decay (next to nothing at the default), and in stage 2 only the rotation loss
trains it, its gradient without the angle weights (as the release's K3 layer; its forward value
keeps them). With all three the code
layer stays next to its random start: close to LSH, as the paper's Table 3 finds DeepBit (frozen
mode, paper preset, 64 bits, on the fc7 mosaic and on the fc7-like set), the one global threshold
leaving the bits unbalanced. ``configs/paper.toml`` runs it as the extra row
``deepbit-release``.

Free choices (default):
- ``preset="paper"``: the release's CIFAR-10 schedule in epochs of 50,000 images: stage 1 50,000
  iterations of 32 images = 32 ``epochs``, stage 2 5,000 iterations of 30 pairs = 3
  ``rotation_epochs``, ``batch_size=32``; ``preset="quick"``: 6 + 1 epochs of 64 images;
- ``lr=0.5`` on the normalised code-layer input (see :mod:`hashbench.methods._cnn`; our choice,
  as the release's 1e-3 acted on raw fc7), divided by 10 halfway through stage 1 and kept there in
  stage 2 (the release's step decay); SGD, momentum 0.9 (release solvers);
- ``weight_decay=1e-6``: the release's solvers decay by 5e-4 at lr 1e-3, a shrink of
  ``lr x weight_decay`` = 5e-7 of every weight per step, and 1e-6 at ``lr=0.5`` is the same
  shrink per step. The solvers' 5e-4 at ``lr=0.5`` shrinks 500 times faster (2.5e-4 per step,
  2.5e-3 as momentum accumulates it) and leaves only what the losses hold, the directions of
  the paragraph above, and a lower MAP@1000 than 1e-6 gives, on the fc7 mosaic and on the fc7-like
  set (64 bits);
- ``backbone_lr=0`` in image mode: only the code layer learns, the images pass through the
  pretrained backbone in training mode (dropout on), as the release's VGG16 at lr 0. Fine-tuning
  at 1e-3 gave a lower MAP@1000 on mosaic (quick preset, 32 bits, with ``weight_decay=5e-4``) than
  ``backbone_lr=0`` or ``frozen_backbone=True``, which scored alike;
- the code layer starts from unit-variance pre-activations and zero biases (see
  :mod:`hashbench.methods._cnn`; the release drew N(0, 0.01^2) weights for raw fc7);
- loss weights 1, 1 and ``rotation_weight=1e-3`` (release) and rotation angles -10, -5, 0, 5, 10
  degrees, one drawn per image and step (release);
- the even-distribution loss counts hard bits, which have no gradient; it passes its gradient to
  the activations straight through (each activation gets ``(mu_k - 0.5) / batch``);
- ``release_gradients=False`` (paper: every loss sends its exact gradient);
- ``threshold=0.5`` (paper; "mean": the release's one threshold at the mean over bits and training
  items; "bit-mean": the mean of each bit);
- image mode fine-tunes every backbone layer (the paper fine-tunes the network; the release froze
  every VGG layer, which is what ``frozen_backbone=True`` does); frozen mode has no images to
  rotate, so it trains stage 1 only.

Measured MAP, code health and seconds, the release's variant beside the paper's:
``docs/methods/deepbit.md``.
"""

from __future__ import annotations

import torch
from torch import nn

from hashbench._validation import check_choice
from hashbench.datasets.base import Split
from hashbench.methods._cnn import CNNHasher, load_images

LR = 0.5  # on centred features of unit RMS norm (see hashbench.methods._cnn)
#: the release's shrink per step, lr x weight_decay = 1e-3 x 5e-4, at LR
WEIGHT_DECAY = 1e-3 * 5e-4 / LR

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


def rotation_loss(
    activations: torch.Tensor, rotated: torch.Tensor, angles: torch.Tensor, *, weigh_gradient: bool = True
) -> torch.Tensor:
    """``1/2 C(theta) ||a - a_rot||^2``, mean over the pairs; ``weigh_gradient=False`` keeps that
    value but passes back the gradient of the unweighted loss (the release's K3 layer)."""
    weights = torch.exp(-0.5 * (angles / ROTATION_SIGMA) ** 2)
    squared = (activations - rotated).pow(2).sum(dim=1)
    weighted = 0.5 * (weights * squared).mean()
    if weigh_gradient:
        return weighted
    unweighted = 0.5 * squared.mean()
    return weighted.detach() + unweighted - unweighted.detach()


def rotate_each(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Each image rotated by its own angle (degrees), about its centre, zero-filled corners."""
    # imported here: torchvision adds hundreds of MB to a process, and only this stage needs it
    from torchvision.transforms.v2.functional import rotate

    rotated = torch.empty_like(images)
    for angle in angles.unique():
        chosen = angles == angle
        rotated[chosen] = rotate(images[chosen], float(angle))
    return rotated


class DeepBit(CNNHasher):
    name = "deepbit"
    citation = (
        "Lin, Lu, Chen, Zhou. Learning Compact Binary Descriptors with Unsupervised Deep Neural Networks. CVPR 2016"
    )
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
        lr: float = LR,
        backbone_lr: float = 0.0,
        weight_decay: float = WEIGHT_DECAY,
        rotation_weight: float = 1e-3,
        activation: str = "sigmoid",
        threshold: float | str = 0.5,
        release_gradients: bool = False,
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.frozen_backbone = frozen_backbone
        self.preset = preset
        self.epochs = epochs
        self.rotation_epochs = rotation_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.backbone_lr = backbone_lr
        self.weight_decay = weight_decay
        self.rotation_weight = rotation_weight
        self.activation = activation
        self.threshold = threshold
        self.release_gradients = release_gradients

    def _build(self, train: Split) -> None:
        check_choice(self.activation, ACTIVATIONS, "activation")
        self._build_network(train, ACTIVATIONS[self.activation]())
        self.rotating_ = False

    def _n_epochs(self) -> int:
        return self.settings_["epochs"] + (0 if self.frozen_backbone else self.settings_["rotation_epochs"])

    def _epoch(self, epoch: int) -> dict:
        stage1 = self.settings_["epochs"]
        self._decay_after_half(epoch, stage1)  # stage 2 stays at the decayed rate
        self.rotating_ = epoch > stage1
        return super()._epoch(epoch)

    def _loss_terms(self, rows: torch.Tensor) -> dict:
        activations = self._training_outputs(rows)[1]
        terms = {
            "quantization": quantization_loss(activations),
            "even_distribution": even_distribution_loss(activations),
        }
        if not self.rotating_:
            return terms
        # stage 2: the losses of a rotated copy of each image and the rotation-invariance loss
        choice = torch.randint(len(ROTATION_ANGLES), (len(rows),), generator=self.generator_)
        angles = torch.tensor(ROTATION_ANGLES)[choice].to(self.device_)
        rotated = self.network_(rotate_each(load_images(self._train, rows.numpy(), self.device_), angles))
        return {
            "quantization": terms["quantization"] + quantization_loss(rotated),
            "even_distribution": terms["even_distribution"] + even_distribution_loss(rotated),
            "rotation": rotation_loss(activations, rotated, angles, weigh_gradient=not self.release_gradients),
        }

    def _objective(self, terms: dict) -> torch.Tensor:
        """Loss weights 1, 1 and ``rotation_weight``; with ``release_gradients`` the first two weigh
        0 in the backward pass (the step then applies weight decay alone)."""
        code_weight = 0.0 if self.release_gradients else 1.0
        return sum(self.rotation_weight * v if k == "rotation" else code_weight * v for k, v in terms.items())
