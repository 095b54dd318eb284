"""CIBHash: Z. Qiu, Q. Su, Z. Ou, J. Yu, C. Chen, "Unsupervised Hashing with Contrastive
Information Bottleneck", IJCAI 2021. As the authors' release (``model/CIBHash.py``) trains it.

Two augmented views of each training item pass through the backbone and an encoder (a ReLU layer
of ``hidden_width`` units, then a linear layer to ``n_bits`` logits ``l``); ``p = sigmoid(l)`` are
the bits' probabilities and the codes ``b = sign(p - 1/2)`` (``stochastic=True``: ``sign(p - u)``
with ``u ~ U(0, 1)``, the paper's Bernoulli sampling), whose gradient passes straight through to
``p``. The loss of a batch of n items is

    NT-Xent(b', b'') + beta * (KL(p' || p'') + KL(p'' || p')) / 2

- NT-Xent: over the 2n codes, cosine similarities divided by ``temperature``; each code's positive
  is the other view of its item, the other 2n - 2 codes are its negatives; cross-entropy averaged
  over the 2n codes;
- KL: between the views' per-bit Bernoulli distributions, summed over bits, averaged over items,
  the second argument held fixed (the information-bottleneck term).

Codes: ``sign(l)`` of the un-augmented item.

Free choices (default):
- ``frozen_backbone=False``: views are augmented images and pass through the dataset's backbone,
  which stays frozen (as the release's VGG16; it runs in training mode, so a backbone with dropout,
  like VGG16's fc6 and fc7, applies it to each view, as there); only the encoder learns.
  ``frozen_backbone=True`` needs no images: views of the precomputed features, see below;
- image augmentations, two independent draws per item, each image its own parameters (the release's
  list, fitted to 56x56 grey 2x2 mosaics): a random resized crop of area fraction U(0.7, 1) (the
  release: 0.5; a crop that small can cut most of a corner cell, and with it a label) and aspect
  ratio log-uniform in [3/4, 4/3], resized back bilinearly; a horizontal flip with probability 1/2
  (mosaic cells already hold mirrored items); with probability 0.7 brightness and contrast factors
  U(0.6, 1.4) (the release's colour jitter without saturation and hue, which grey images lack;
  its grey-scale conversion is a no-op); with probability 0.5 a 3x3 Gaussian blur of sigma
  U(0.1, 2) (release); pixels clipped to [0, 1]. No rotations or vertical flips: the backbone saw
  upright items only;
- feature views (``frozen_backbone=True``, our choice): the stored features with an independent
  dropout mask per view, rate ``feature_dropout=0.5``, the kept values scaled by 2: the part of the
  release's views that its frozen VGG16's fc7 dropout made; image augmentations have no
  counterpart on features;
- ``hidden_width=1024``, ``temperature=0.3``, ``beta=1e-3``, ``stochastic=False`` (release);
- ``preset="paper"``: the release's schedule, ``epochs=60`` (80 at 16 bits) of batches of 64,
  Adam, ``lr=1e-3``; ``preset="quick"``: 2 epochs of 64 (on mosaic, 32 bits, the run's seeds
  0, 1, 2, MAP@1000 was 0.8036 on average after one epoch, 0.8048 after two and 0.7911 after
  three, against 0.7967 for the paper preset's 60, seed 0). Every epoch runs two freshly augmented
  views of each training image through the whole backbone: an augmentation changes the pixels, so
  no part of the backbone's work can be computed once (as it is for DeepBit's and SADH's fixed
  backbones), and an epoch in image mode costs two forward passes of the CNN over the training set;
- the encoder's inputs are the features divided by their root-mean-square value on the training
  items (one scalar, stored), so that a rescaling of the features changes nothing; the release fed
  fc7 as it is (VGG16 fc7 has an RMS of order one). Unlike GreedyHash's targets, nothing here
  compares raw cosines, so the features are not centred;
- the KL term is computed from the logits (log-sigmoids), exact where the release added 1e-8
  inside its logarithms;
- training never sees labels and keeps the last epoch's model (the release kept the best of its
  validation-set evaluations every 20 epochs).

On the embedded mosaic (paper preset, 64 bits) image views land below LSH and feature views
(``frozen_backbone=True``) at ITQ's level. What costs the image views their MAP is the image
augmentations, not the backbone's dropout (15 epochs, 64 bits): without the blur, or without crops
and flips, the codes scored a little higher than with the default views; with no image augmentation
at all, the views differing only by the dropout of fc6 and fc7, they came close to the feature
views'; with the augmentations and the backbone in eval mode (no dropout) they fell further. The
augmented views stay close to their own image (centred fc7 cosine 0.64 on average; crops alone 0.70,
flips 0.84, against 0.27 for two mosaics sharing a label and 0.0 for random pairs), so the
invariances they teach are not the labels'; the defaults keep the release's augmentations all the
same, as the method is contrastive learning over augmented images. Tuned on validation queries
(``configs/tuning.toml``, 64 bits): 15 epochs at ``lr=3e-4`` (the longer schedules scored lower).
Measured MAP, code health and seconds, image and feature views: ``docs/methods/cibhash.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hashbench._validation import check_positive_int
from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError
from hashbench.methods._cnn import CNNHasher, standardisation
from hashbench.methods._torch import Update, adam, check_positive_number
from hashbench.methods.greedyhash import greedy_sign

CROP_AREA = (0.7, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
FLIP_PROBABILITY = 0.5
JITTER_PROBABILITY, JITTER_RANGE = 0.7, (0.6, 1.4)
BLUR_PROBABILITY, BLUR_SIGMA = 0.5, (0.1, 2.0)


# --- the losses --------------------------------------------------------------------------------
def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of two views (rows of ``first`` and ``second`` paired), averaged over the 2n rows."""
    n = len(first)
    unit = F.normalize(torch.cat([first, second]), dim=1)
    logits = unit @ unit.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=logits.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(logits.device)
    return F.cross_entropy(logits, positives)


def bernoulli_kl(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(logits)) || Bernoulli(sigmoid(reference_logits))), summed over bits and
    averaged over rows; the reference is held fixed."""
    reference_logits = reference_logits.detach()
    p = torch.sigmoid(logits)
    kl = p * (F.logsigmoid(logits) - F.logsigmoid(reference_logits)) + (1 - p) * (
        F.logsigmoid(-logits) - F.logsigmoid(-reference_logits)
    )
    return kl.sum(dim=1).mean()


# --- the views ---------------------------------------------------------------------------------
def _uniform_draws(n: int, bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=generator)


def _chosen(n: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < probability


def random_resized_crops(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image cropped (area fraction ``CROP_AREA``, aspect ``CROP_ASPECT``), mirrored with
    probability ``FLIP_PROBABILITY`` and resized back to its size, by one affine resampling."""
    n = len(images)
    area = _uniform_draws(n, CROP_AREA, generator)
    log_aspect = _uniform_draws(n, (math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1])), generator)
    width = (area * log_aspect.exp()).sqrt().clamp(max=1.0)  # fractions of the image's sides
    height = (area / log_aspect.exp()).sqrt().clamp(max=1.0)
    # crop centres uniform over the positions that keep the crop inside the image ([-1, 1] coordinates)
    centre_x = (1 - width) * (2 * torch.rand(n, generator=generator) - 1)
    centre_y = (1 - height) * (2 * torch.rand(n, generator=generator) - 1)
    mirror = torch.where(_chosen(n, FLIP_PROBABILITY, generator), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width * mirror, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def brightness_contrast(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """With probability ``JITTER_PROBABILITY`` per image, brightness then contrast (about the
    image's mean) scaled by factors drawn from ``JITTER_RANGE``."""
    n = len(images)
    jittered = _chosen(n, JITTER_PROBABILITY, generator)
    brightness, contrast = (
        torch.where(jittered, _uniform_draws(n, JITTER_RANGE, generator), 1.0).view(n, 1, 1, 1).to(images.device)
        for _ in range(2)
    )
    brighter = (images * brightness).clamp(0, 1)
    mean = brighter.mean(dim=(1, 2, 3), keepdim=True)
    return ((brighter - mean) * contrast + mean).clamp(0, 1)


def gaussian_blur(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """With probability ``BLUR_PROBABILITY`` per image, a 3x3 Gaussian blur of sigma drawn from
    ``BLUR_SIGMA`` (reflected borders); the other images unchanged."""
    n, channels = images.shape[:2]
    sigma = _uniform_draws(n, BLUR_SIGMA, generator)
    taps = torch.exp(-torch.tensor([1.0, 0.0, 1.0])[None, :] / (2 * sigma[:, None] ** 2))
    taps = torch.where(_chosen(n, BLUR_PROBABILITY, generator)[:, None], taps / taps.sum(dim=1, keepdim=True),
                       torch.tensor([0.0, 1.0, 0.0]))  # fmt: skip
    kernels = (taps[:, :, None] * taps[:, None, :]).repeat_interleave(channels, dim=0)[:, None].to(images.device)
    padded = F.pad(images.reshape(1, n * channels, *images.shape[2:]), (1, 1, 1, 1), mode="reflect")
    return F.conv2d(padded, kernels, groups=n * channels).reshape(images.shape)


def augment_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One augmented view of float images in [0, 1], shape (n, C, H, W); see the module docstring."""
    return gaussian_blur(brightness_contrast(random_resized_crops(images, generator), generator), generator).clamp(0, 1)


def dropout_view(features: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """``features`` with each entry zeroed with probability ``rate``, the others divided by 1 - rate."""
    kept = (torch.rand(features.shape, generator=generator) >= rate).to(features.device)
    return features * kept / (1.0 - rate)


class CIBHash(CNNHasher):
    name = "cibhash"
    citation = "Qiu, Su, Ou, Yu, Chen. Unsupervised Hashing with Contrastive Information Bottleneck. IJCAI 2021"
    thresholded = False  # codes are sign(logit)
    augments_images = True  # crops and brightness / contrast: every view is new pixels, no trunk cache
    presets = {"paper": {"epochs": 60, "batch_size": 64}, "quick": {"epochs": 2, "batch_size": 64}}
    paper_epochs_by_bits = {16: 80}

    def __init__(
        self,
        n_bits: int = 32,
        *,
        seed: int = 0,
        device: str = "cpu",
        frozen_backbone: bool = False,
        preset: str = "paper",
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float = 1e-3,
        hidden_width: int = 1024,
        temperature: float = 0.3,
        beta: float = 1e-3,
        stochastic: bool = False,
        feature_dropout: float = 0.5,
    ):
        super().__init__(n_bits, seed=seed, device=device)
        self.frozen_backbone = frozen_backbone
        self.preset = preset
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.hidden_width = hidden_width
        self.temperature = temperature
        self.beta = beta
        self.stochastic = stochastic
        self.feature_dropout = feature_dropout

    def _check_inputs(self, split: Split, *, fitting: bool) -> None:
        if not self.frozen_backbone and split.images is None:
            raise InvalidInputError(
                f"CIBHash contrasts augmented views of images, but the {split.name} split has none; use "
                "frozen_backbone=True (views of the precomputed features) or a dataset with images"
            )
        super()._check_inputs(split, fitting=fitting)

    def _resolve_settings(self, train: Split) -> dict:
        settings = super()._resolve_settings(train)
        check_positive_int(self.hidden_width, "hidden_width")
        check_positive_number(self.temperature, "temperature")
        if not 0 <= self.beta:
            raise InvalidInputError(f"beta must be >= 0, got {self.beta!r}")
        if not 0 <= self.feature_dropout < 1:
            raise InvalidInputError(f"feature_dropout must be in [0, 1), got {self.feature_dropout!r}")
        return settings

    def _build(self, train: Split) -> None:
        shift, scale = standardisation(self._pretrained_tensor(), centre=False)
        network = self._build_network(train, nn.Identity(), hidden_width=self.hidden_width, standardised=(shift, scale))
        if network.backbone is not None:
            network.backbone.requires_grad_(False)

    def _updates(self) -> list[Update]:
        """Adam on the encoder alone (the release's optimiser)."""
        optimiser = adam(self.network_.code_layer.parameters(), lr=self.settings_["lr"])
        return [Update(optimiser, self._objective)]

    def _view(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.frozen_backbone:
            return dropout_view(inputs, self.feature_dropout, self.generator_)
        return augment_images(inputs, self.generator_)

    def _codes(self, logits: torch.Tensor) -> torch.Tensor:
        probabilities = torch.sigmoid(logits)
        thresholds = self._uniform(tuple(logits.shape)) if self.stochastic else 0.5
        return greedy_sign(probabilities - thresholds)

    def _loss_terms(self, rows: torch.Tensor) -> dict:
        inputs = self._batch_inputs(self._train)(rows.numpy())
        first, second = (self.network_(self._view(inputs)) for _ in range(2))
        kl = 0.5 * (bernoulli_kl(first, second) + bernoulli_kl(second, first))
        return {
            "contrastive": nt_xent(self._codes(first), self._codes(second), self.temperature),
            "kl": self.beta * kl,
        }
