"""What the image-based deep methods (DeepBit, SSDH, SADH, GreedyHash, Bi-half, CIBHash) share: a
CNN that is fine-tuned with a code layer on top, or, with ``frozen_backbone=True``, the code layer
alone on precomputed features.

Image mode builds the network from ``split.images.backbone()`` (the CNN that produced the split's
features: the small mosaic CNN or VGG16 up to fc7) followed by a new linear code layer, the
papers' replacement of fc8, and trains both. Frozen mode trains only the code layer on
``split.features``, which equal the backbone's outputs, so it needs no images and is much faster.

Presets name the training lengths: ``preset="paper"`` (the default) uses each paper's or release's
values, ``preset="quick"`` a scaled-down schedule; an explicit argument overrides its preset value.
A release that trains longer at some code lengths says so in ``paper_epochs_by_bits``.
Image methods train with SGD (momentum 0.9) at ``lr`` with ``weight_decay`` unless they say otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from hashbench._validation import check_choice
from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError
from hashbench.methods._torch import TorchHasher, Update, encode_in_batches

THRESHOLDS = ("mean", "bit-mean")
ENCODE_BATCH = 256


def load_images(split: Split, indices, device: torch.device) -> torch.Tensor:
    """Images ``indices`` of ``split`` as a float tensor in [0, 1], shape (k, C, H, W)."""
    pixels = split.images.load(np.asarray(indices))
    return torch.as_tensor(pixels, device=device).float().div_(255.0)


def standardisation(features: torch.Tensor, *, centre: bool) -> tuple[torch.Tensor, float]:
    """``(shift, scale)`` that standardise ``features`` as ``(x - shift) * scale``: the mean row
    (zeros unless ``centre``) and one scalar that brings the shifted features to unit
    root-mean-square value."""
    features = features.double()
    shift = features.mean(dim=0) if centre else torch.zeros_like(features[0])
    rms = float((features - shift).square().mean().sqrt())
    if not rms > 0:
        raise InvalidInputError("the training features are all equal; they carry nothing to hash")
    return shift.float(), 1.0 / rms


class CodeNetwork(nn.Module):
    """``backbone`` (None in frozen mode) followed by the code layer and an activation.

    The code layer is linear, or with ``hidden_width`` a ReLU layer of that width and then a linear
    one; its inputs are the backbone's features standardised as ``(features - input_shift) *
    input_scale`` (by default as they are). ``forward`` returns the code-layer activations;
    ``features`` the backbone's outputs.
    """

    def __init__(
        self,
        backbone: nn.Module | None,
        n_features: int,
        n_bits: int,
        activation: nn.Module,
        *,
        hidden_width: int | None = None,
        input_shift: torch.Tensor | None = None,
        input_scale: float = 1.0,
    ):
        super().__init__()
        self.backbone = backbone
        if hidden_width is None:
            self.code_layer = nn.Linear(n_features, n_bits)
        else:
            hidden = nn.Linear(n_features, hidden_width)
            self.code_layer = nn.Sequential(hidden, nn.ReLU(), nn.Linear(hidden_width, n_bits))
        self.activation = activation
        self.register_buffer("input_shift", torch.zeros(n_features) if input_shift is None else input_shift.clone())
        self.register_buffer("input_scale", torch.tensor(float(input_scale)))

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs if self.backbone is None else self.backbone(inputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.activation(self.code_layer((self.features(inputs) - self.input_shift) * self.input_scale))


class CNNHasher(TorchHasher):
    """Base of the image methods; subclasses store ``frozen_backbone``, ``preset``, ``lr``,
    ``weight_decay`` and the preset-able hyper-parameters named in ``presets`` (None = take the
    preset's value), and build ``network_`` with :meth:`_build_network` in ``_build``."""

    input_kind = "images"
    #: binarise at the mean activation (a ``threshold`` hyper-parameter says which) or at 0
    thresholds_at_mean: ClassVar[bool] = True
    #: {n_bits: epochs}: where the paper preset trains longer than its ``epochs`` (as a release does
    #: for short codes); an explicit ``epochs`` wins
    paper_epochs_by_bits: ClassVar[dict[int, int]] = {}

    # --- inputs ----------------------------------------------------------------------------------
    def _reads(self) -> str:
        return "features" if self.frozen_backbone else "images"

    def _check_inputs(self, split: Split, *, fitting: bool) -> None:
        if self.frozen_backbone and split.features is None:
            raise InvalidInputError(
                f"{type(self).__name__} with frozen_backbone=True trains a code layer on precomputed "
                f"features, but the {split.name} split has none; use frozen_backbone=False to fine-tune "
                "the CNN on its images"
            )
        super()._check_inputs(split, fitting=fitting)

    def _batch_inputs(self, split: Split) -> Callable[[np.ndarray], torch.Tensor]:
        """``indices -> network input``: images in image mode, features in frozen mode."""
        if self.frozen_backbone:
            features = torch.as_tensor(split.features)
            return lambda indices: features[torch.as_tensor(indices)].to(self.device_)
        return lambda indices: load_images(split, indices, self.device_)

    # --- settings --------------------------------------------------------------------------------
    def _resolve_settings(self, train) -> dict:
        settings = super()._resolve_settings(train)
        if self.thresholds_at_mean:
            check_choice(self.threshold, THRESHOLDS, "threshold")
        if self.preset == "paper" and self.epochs is None and self.n_bits in self.paper_epochs_by_bits:
            settings["epochs"] = self.paper_epochs_by_bits[self.n_bits]
        return settings

    # --- network ---------------------------------------------------------------------------------
    def _build_network(self, train: Split, activation: nn.Module, **code_layer) -> CodeNetwork:
        """The trainable network on ``device_``, kept as ``network_`` (its parts in ``networks_``);
        ``code_layer``: :class:`CodeNetwork`'s ``hidden_width``, ``input_shift`` and ``input_scale``."""
        if self.frozen_backbone:
            backbone, n_features = None, train.features.shape[1]
        else:
            backbone = train.images.backbone()
            n_features = self._feature_width(backbone, train)
        self.network_ = CodeNetwork(backbone, n_features, self.n_bits, activation, **code_layer).to(self.device_)
        self.networks_ = {"code_layer": self.network_.code_layer}
        if backbone is not None:
            self.networks_["backbone"] = backbone
        return self.network_

    def _training_outputs(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's inputs (images or features) for training items ``rows``, and its outputs."""
        inputs = self._batch_inputs(self._train)(rows.numpy())
        return inputs, self.network_(inputs)

    def _feature_width(self, backbone: nn.Module, train: Split) -> int:
        if train.features is not None:
            return train.features.shape[1]
        with torch.no_grad():
            return backbone.eval()(load_images(train, [0], torch.device("cpu"))).shape[1]

    def _updates(self) -> list[Update]:
        """SGD with momentum 0.9 (the DeepBit release's Caffe solver), for all three methods."""
        optimiser = torch.optim.SGD(
            self.network_.parameters(), lr=self.settings_["lr"], momentum=0.9, weight_decay=self.weight_decay
        )
        return [Update(optimiser, self._objective)]

    # --- outputs ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _outputs(self, network: nn.Module, split: Split, *, features: bool = False) -> np.ndarray:
        """Code-layer activations (or backbone features) of every item of ``split``, in eval mode."""
        network.eval()
        inputs = self._batch_inputs(split)
        forward = network.features if features else network
        return encode_in_batches(lambda idx: forward(inputs(idx)), len(split), ENCODE_BATCH)

    def _pretrained_features(self, train: Split) -> np.ndarray:
        """The pretrained CNN's features of the training items: stored ones, else computed."""
        if train.features is not None:
            return train.features
        backbone = train.images.backbone().to(self.device_).eval()
        with torch.no_grad():
            return encode_in_batches(
                lambda idx: backbone(load_images(train, idx, self.device_)), len(train), ENCODE_BATCH
            )

    def _pretrained_tensor(self) -> torch.Tensor:
        """:meth:`_pretrained_features` of the split being fitted, on ``device_``, computed once per
        fit and not kept after it."""
        key = ("pretrained features",)
        if key not in self._train_tensors:
            self._train_tensors[key] = self._tensor(self._pretrained_features(self._train))
        return self._train_tensors[key]

    def _ready_to_encode(self, train: Split) -> None:
        """Store the binarisation threshold: the mean code-layer activation on the training items
        over all bits ("mean") or per bit ("bit-mean"); 0 for methods that take the sign."""
        super()._ready_to_encode(train)
        if not self.thresholds_at_mean:
            self.threshold_ = np.zeros(self.n_bits, dtype=np.float32)
            return
        outputs = self._outputs(self.network_, train)
        if self.threshold == "mean":
            self.threshold_ = np.full(self.n_bits, outputs.mean(), dtype=np.float32)
        else:
            self.threshold_ = outputs.mean(axis=0).astype(np.float32)

    def _encode(self, split: Split) -> np.ndarray:
        return self._outputs(self.network_, split) - self.threshold_
