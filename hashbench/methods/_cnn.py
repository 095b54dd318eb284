"""What the image-based deep methods (DeepBit, SSDH, SADH) share: a CNN with a code layer on top,
fine-tuned with it or kept fixed (``backbone_lr=0``), or, with ``frozen_backbone=True``, the code
layer alone on precomputed features.

Image mode builds the network from ``split.images.backbone()`` (the CNN that produced the split's
features: the small mosaic CNN or VGG16 up to fc7) followed by a new linear code layer, the
papers' replacement of fc8, and trains both (the backbone only when ``backbone_lr > 0``). Frozen
mode trains only the code layer on ``split.features``, which equal the backbone's outputs, so it
needs no images and is much faster.

The code layer reads the backbone's features centred and scaled: ``(x - m) s``, with ``m`` the mean
of the pretrained features over the training items and ``s`` one scalar that gives the centred rows
unit root mean square norm (both fixed when training starts). This is a reparametrisation of the
papers' fc8, which acts on raw fc7 (``W (x - m) s + b`` is an affine map of ``x`` like any other),
chosen for the optimiser: the releases' SGD step (1e-3) on raw features means a different thing on
every feature scale (features of norm ~200 made SADH diverge; on features a thousand times smaller
the gradient is a million times smaller), and the mean of non-negative CNN features is one direction
of far larger curvature than the rest, which limits the step while the informative directions hardly
move. On the centred, scaled inputs the regression-type losses have a gradient whose Lipschitz
constant with respect to the code layer is at most 1 (``E ||x - m||^2 s^2 = 1``), so one ``lr`` is
stable and equally fast on features of any scale and offset: the code layer's ``lr`` is a step on
that scale. In image mode the backbone trains at its own ``backbone_lr`` (the usual fine-tuning
step); ``backbone_lr=0`` keeps it fixed while the images still pass through it in training mode
(dropout active, as the releases' VGG16 at lr 0).

The code layer starts from N(0, 1) weights and zero biases: on the normalised input each unit's
initial pre-activation has unit variance and the hyperplanes pass through the features' mean. The
releases drew N(0, 0.01^2) (SSDH: 0.001^2) weights for raw fc7, a start next to the zero codes,
where SSDH's pairwise loss is flat: from there (weights of std 0.03 on the normalised input, the
release's on fc7 of norm ~30) its bits grew along the same few directions (on the conformance
data at 16 bits, quick preset, with SSDH's loss averaged over the known pairs: a fraction of the
distinct codes and a far lower MAP@100 than from the unit-variance start, whose final loss was also
lower).

Presets name the training lengths: ``preset="paper"`` (the default) uses each paper's or release's
values, ``preset="quick"`` a scaled-down schedule; an explicit argument overrides its preset value.
Every image method trains with SGD (momentum 0.9) with ``weight_decay``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from hashbench._validation import check_choice, is_number
from hashbench.datasets.backbone import IMAGE_BATCH
from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError
from hashbench.methods._packed_rows import PackedRows
from hashbench.methods._torch import (
    STATISTICS_ROWS,
    TorchHasher,
    Update,
    check_positive_number,
    encode_in_batches,
    forward_in_batches,
)

#: thresholds computed from the training outputs; a number is a fixed threshold
MEAN_THRESHOLDS = ("mean", "bit-mean")
#: which backbone layers image mode fine-tunes: all, or the top (the layers after the trunk: fc6 and
#: fc7; all of a backbone that declares no trunk)
FINE_TUNED_LAYERS = ("all", "top")


def load_images(split: Split, indices, device: torch.device) -> torch.Tensor:
    """Images ``indices`` of ``split`` as a float tensor in [0, 1], shape (k, C, H, W)."""
    pixels = split.images.load(np.asarray(indices))
    return torch.as_tensor(pixels, device=device).float().div_(255.0)


@dataclass(frozen=True)
class TrunkOutputs:
    """Network input: the frozen backbone's trunk outputs of a batch (its layers before any dropout)."""

    values: torch.Tensor

    def through(self, backbone: nn.Module) -> torch.Tensor:
        return backbone.forward_top(self.values)


@dataclass(frozen=True)
class BackboneOutputs:
    """Network input: the frozen backbone's eval-mode outputs of a batch."""

    values: torch.Tensor

    def through(self, backbone: nn.Module) -> torch.Tensor:
        return self.values


# (id of an image source, kind, device) -> (weak reference to the source, outputs of every image)
_FROZEN_OUTPUTS: dict[tuple, tuple[weakref.ref, PackedRows]] = {}


def frozen_outputs(split: Split, kind: str, device: torch.device) -> PackedRows:
    """What the split's frozen backbone computes for every image: ``"trunk"`` (deterministic in
    training mode too) or ``"eval"`` (the whole backbone in eval mode). Computed once per image
    source and device and kept while the source lives, so every method fitted and evaluated on a
    dataset in one process shares one pass of its images through the backbone's convolutions.
    Kept as :class:`PackedRows` in the CPU's memory (exact; CNN activations after a ReLU are
    mostly zeros, so the mask and the values take a fraction of the float32 array's memory).
    Computing them leaves torch's global generator as it was (building a backbone draws from it),
    so a fit that fills the cache gives the codes of one that reads it."""
    for key in [k for k, (source, _) in _FROZEN_OUTPUTS.items() if source() is None]:
        del _FROZEN_OUTPUTS[key]
    outputs = cached_outputs(split, kind, device)
    if outputs is None:
        with torch.random.fork_rng(devices=[]):
            outputs = PackedRows(forward_in_batches(frozen_forward(split, kind, device), len(split), IMAGE_BATCH))
        _FROZEN_OUTPUTS[(id(split.images), kind, str(device))] = (weakref.ref(split.images), outputs)
    return outputs


def frozen_rows(outputs: PackedRows, indices, device: torch.device) -> torch.Tensor:
    """Rows ``indices`` of cached :func:`frozen_outputs` as a float32 tensor on ``device``."""
    return torch.as_tensor(outputs.rows(indices), device=device)


def cached_outputs(split: Split, kind: str, device: torch.device) -> PackedRows | None:
    """:func:`frozen_outputs` of the split if they are cached, else None."""
    source, outputs = _FROZEN_OUTPUTS.get((id(split.images), kind, str(device)), (None, None))
    return outputs if source is not None and source() is split.images else None


def frozen_forward(split: Split, kind: str, device: torch.device) -> Callable[[np.ndarray], torch.Tensor]:
    """``indices -> outputs`` of the split's backbone in eval mode: its trunk, or all of it. The
    whole backbone's outputs read the trunk's from the cache when the trunk of the split is there
    (a training split), and otherwise run the images through the whole backbone without keeping the
    trunk's outputs, which are three times wider than the backbone's: in batches of the same rows,
    both give the same values."""
    backbone = split.images.backbone().to(device).eval()
    if kind == "trunk":
        return lambda indices: backbone.forward_trunk(load_images(split, indices, device))
    trunk = cached_outputs(split, "trunk", device) if hasattr(backbone, "forward_top") else None
    if trunk is None:
        return lambda indices: backbone(load_images(split, indices, device))
    return lambda indices: backbone.forward_top(frozen_rows(trunk, indices, device))


class CodeNetwork(nn.Module):
    """``backbone`` (None in frozen mode) followed by the code layer and an activation.

    The code layer reads ``(features - input_shift) * input_scale``. It is linear, starting from
    N(0, 1) weights and zero biases (``unit_start``, see the module docstring) or from torch's
    default initialisation, or with ``hidden_width`` a ReLU layer of that width and then a linear
    one (torch's default initialisation).
    ``forward`` returns the code-layer activations; ``features`` the backbone's outputs.
    """

    def __init__(
        self,
        backbone: nn.Module | None,
        n_features: int,
        n_bits: int,
        activation: nn.Module,
        input_shift: np.ndarray | None = None,
        input_scale: float = 1.0,
        *,
        hidden_width: int | None = None,
        unit_start: bool = True,
    ):
        super().__init__()
        self.backbone = backbone
        if hidden_width is None:
            self.code_layer = nn.Linear(n_features, n_bits)
            if unit_start:
                nn.init.normal_(self.code_layer.weight)
                nn.init.zeros_(self.code_layer.bias)
        else:
            hidden = nn.Linear(n_features, hidden_width)
            self.code_layer = nn.Sequential(hidden, nn.ReLU(), nn.Linear(hidden_width, n_bits))
        self.activation = activation
        shift = torch.zeros(n_features) if input_shift is None else torch.as_tensor(input_shift, dtype=torch.float32)
        self.register_buffer("input_shift", shift)
        self.register_buffer("input_scale", torch.tensor(float(input_scale)))

    def features(self, inputs) -> torch.Tensor:
        if isinstance(inputs, (TrunkOutputs, BackboneOutputs)):
            return inputs.through(self.backbone)
        return inputs if self.backbone is None else self.backbone(inputs)

    def pre_activations(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.code_layer((self.features(inputs) - self.input_shift) * self.input_scale)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.activation(self.pre_activations(inputs))


def standardisation(features: torch.Tensor, *, centre: bool, per_row: bool = False) -> tuple[torch.Tensor, float]:
    """``(shift, scale)`` that standardise ``features`` as ``(x - shift) * scale``: the mean row
    (zeros unless ``centre``) and one scalar that brings the shifted features to unit root mean
    square value per entry, or per row norm when ``per_row``. Sums run in float64 over blocks of
    rows, so no float64 copy of all the features is made."""
    shift = (
        features.mean(dim=0, dtype=torch.float64)
        if centre
        else features.new_zeros(features.shape[1], dtype=torch.float64)
    )
    square_sum = sum(float((block.double() - shift).square().sum()) for block in features.split(STATISTICS_ROWS))
    mean_square = square_sum / max(features.numel(), 1)
    if per_row:
        mean_square *= features.shape[1]
    if not mean_square > 0:  # also NaN
        raise InvalidInputError(
            f"the training features do not vary (mean square after the shift: {mean_square}); "
            "they are all equal or not finite"
        )
    return shift.float().cpu(), 1.0 / np.sqrt(mean_square)


class CNNHasher(TorchHasher):
    """Base of the image methods; subclasses store ``frozen_backbone``, ``preset``, ``lr``,
    ``backbone_lr``, ``weight_decay`` and the preset-able hyper-parameters named in ``presets``
    (None = take the preset's value), and build ``network_`` with :meth:`_build_network` in
    ``_build``."""

    input_kind = "images"
    #: binarise at a ``threshold`` hyper-parameter (a number, or a mean of the training outputs)
    #: rather than at 0
    thresholded: ClassVar[bool] = True
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

    #: whether training shows the network images changed in ways a cache cannot hold (augmentations)
    augments_images: ClassVar[bool] = False

    def _batch_inputs(self, split: Split, *, training: bool = True) -> Callable[[np.ndarray], torch.Tensor]:
        """``indices -> network input``: features in frozen mode; in image mode, images, or what the
        fixed part of the backbone computes from them, cached once per dataset: a fixed backbone's
        eval-mode outputs outside training, else a fixed trunk's outputs (the layers before any
        dropout, so dropout stays as random as with the images), except for training images that
        the method augments."""
        if self.frozen_backbone:
            features = torch.as_tensor(split.features)
            return lambda indices: features[torch.as_tensor(indices)].to(self.device_)
        cached = None
        if not training and self._fixed("backbone"):
            cached = "eval", BackboneOutputs
        elif self._fixed("trunk") and not (training and self.augments_images):
            cached = "trunk", TrunkOutputs
        if cached is None:
            return lambda indices: load_images(split, indices, self.device_)
        kind, wrap = cached
        if kind == "trunk" and not training and cached_outputs(split, kind, self.device_) is None:
            # a split only encoded: its trunk's outputs, three times wider than the backbone's, are not kept
            trunk = self.network_.backbone.forward_trunk
            return lambda indices: TrunkOutputs(trunk(load_images(split, indices, self.device_)))
        outputs = frozen_outputs(split, kind, self.device_)
        return lambda indices: wrap(frozen_rows(outputs, indices, self.device_))

    def _fixed(self, part: str) -> bool:
        """Image mode with a ``"backbone"`` that does not learn (``backbone_lr=0``, or frozen by the
        method), or a ``"trunk"`` that does not (``fine_tune="top"`` too), split from the rest."""
        backbone = getattr(getattr(self, "network_", None), "backbone", None)
        if backbone is None or (part == "trunk" and not hasattr(backbone, "trunk_parameters")):
            return False
        parameters = backbone.trunk_parameters() if part == "trunk" else backbone.parameters()
        return not any(p.requires_grad for p in parameters)

    # --- settings --------------------------------------------------------------------------------
    def _resolve_settings(self, train) -> dict:
        settings = super()._resolve_settings(train)
        if self.thresholded and not is_number(self.threshold):
            check_choice(self.threshold, MEAN_THRESHOLDS, "threshold (or a number)")
        if settings.get("backbone_lr") is None:
            settings["backbone_lr"] = settings["lr"]
        if settings["backbone_lr"] != 0:
            check_positive_number(settings["backbone_lr"], "backbone_lr (or 0)")
        check_choice(settings.get("fine_tune", "all"), FINE_TUNED_LAYERS, "fine_tune")
        if self.preset == "paper" and self.epochs is None and self.n_bits in self.paper_epochs_by_bits:
            settings["epochs"] = self.paper_epochs_by_bits[self.n_bits]
        return settings

    # --- network ---------------------------------------------------------------------------------
    def _build_network(
        self, train: Split, activation: nn.Module, *, standardised=None, hidden_width=None
    ) -> CodeNetwork:
        """The trainable network on ``device_``, kept as ``network_`` (its parts in ``networks_``).
        Its inputs are centred to unit RMS row norm and its linear code layer starts from unit
        variance, unless a method gives its own ``standardised = (shift, scale)`` (the code layer
        then starts from torch's default initialisation)."""
        if self.frozen_backbone:
            backbone, n_features = None, train.features.shape[1]
        else:
            backbone = train.images.backbone()
            n_features = self._feature_width(backbone, train)
        unit_start = standardised is None
        if unit_start:
            standardised = standardisation(self._pretrained_tensor(), centre=True, per_row=True)
        shift, scale = standardised
        self.network_ = CodeNetwork(
            backbone,
            n_features,
            self.n_bits,
            activation,
            shift,
            scale,
            hidden_width=hidden_width,
            unit_start=unit_start,
        )
        self.network_.to(self.device_)
        self.networks_ = {"code_layer": self.network_.code_layer}
        if backbone is not None:
            self.networks_["backbone"] = backbone
            # backbone_lr=0: the releases' VGG16 at lr 0, kept out of the backward pass
            backbone.requires_grad_(self.settings_["backbone_lr"] != 0)
            # a backbone that declares no trunk (no trunk_parameters) is all top
            if self.settings_.get("fine_tune", "all") == "top" and hasattr(backbone, "trunk_parameters"):
                for parameter in backbone.trunk_parameters():
                    parameter.requires_grad_(False)
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
        """SGD with momentum 0.9 (the releases' Caffe solver), for all three methods: the code layer
        at ``lr``, the backbone (image mode) at ``backbone_lr``."""
        groups = [{"params": self.network_.code_layer.parameters(), "lr": self.settings_["lr"]}]
        if self.network_.backbone is not None and self.settings_["backbone_lr"] != 0:
            learning = [p for p in self.network_.backbone.parameters() if p.requires_grad]
            groups.append({"params": learning, "lr": self.settings_["backbone_lr"]})
        optimiser = torch.optim.SGD(groups, lr=self.settings_["lr"], momentum=0.9, weight_decay=self.weight_decay)
        return [Update(optimiser, self._objective)]

    def _decay_after_half(self, epoch: int, epochs: int) -> None:
        """The releases' step decay: every rate at a tenth of its initial value after the first
        half of ``epochs`` (epoch counted from 1; a one-epoch schedule keeps its rate)."""
        factor = 0.1 if epoch > max(1, epochs // 2) else 1.0
        for group in self.updates_[0].optimiser.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    # --- outputs ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _outputs(self, network: nn.Module, split: Split, *, features: bool = False) -> np.ndarray:
        """Code-layer activations (or backbone features) of every item of ``split``, in eval mode."""
        network.eval()
        inputs = self._batch_inputs(split, training=False)
        forward = network.features if features else network
        return encode_in_batches(lambda idx: forward(inputs(idx)), len(split), IMAGE_BATCH)

    def _pretrained_features(self) -> np.ndarray:
        """The pretrained CNN's features of the training items being fitted: the stored ones, else
        computed once per dataset (:func:`frozen_outputs`)."""
        train = self._train
        if train.features is not None:
            return train.features
        return frozen_outputs(train, "eval", self.device_).rows(np.arange(len(train)))

    def _pretrained_tensor(self) -> torch.Tensor:
        """:meth:`_pretrained_features` on ``device_``, converted once per fit and not kept after it."""
        if "pretrained tensor" not in self._train_tensors:
            self._train_tensors["pretrained tensor"] = self._tensor(self._pretrained_features())
        return self._train_tensors["pretrained tensor"]

    def _ready_to_encode(self, train: Split) -> None:
        """Store the binarisation threshold: a fixed number, or the mean code-layer activation on
        the training items over all bits ("mean") or per bit ("bit-mean"); 0 for methods that take
        the sign."""
        super()._ready_to_encode(train)
        if not self.thresholded or is_number(self.threshold):
            value = self.threshold if self.thresholded else 0.0
            self.threshold_ = np.full(self.n_bits, value, dtype=np.float32)
            return
        outputs = self._outputs(self.network_, train)
        if self.threshold == "mean":
            self.threshold_ = np.full(self.n_bits, outputs.mean(), dtype=np.float32)
        else:
            self.threshold_ = outputs.mean(axis=0).astype(np.float32)

    def _encode(self, split: Split) -> np.ndarray:
        return self._outputs(self.network_, split) - self.threshold_
