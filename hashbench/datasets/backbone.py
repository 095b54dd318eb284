"""The CNNs behind the embedded "mosaic" datasets: stand-ins for ImageNet-pretrained VGG16.

Two networks, named by the features they give (the mosaic builder's ``features`` option):

- ``Fc7Backbone`` (``"fc7"``, the default) has VGG16's shape at the scale of a 56x56 mosaic: a conv
  trunk of three blocks (3x3 convolution with 32, 64 and 64 channels, 2x2 max-pooling, ReLU) down
  to 7x7x64, flattened, then fc6 and fc7 (1,024 units each, each followed by a ReLU and dropout
  0.5), then the class head. The features are fc7 after its ReLU, as VGG16 fc7 in the paper. Like
  VGG's, they are sparse (about half of them are zero) and depend on where an object is: the fully
  connected layers see every position of the image separately.
- ``PooledBackbone`` (``"pooled"``) is fully convolutional: 3x3 convolutions with stride 2 (32, 64,
  128 channels), a 1x1 convolution to 256, each with a ReLU, then global average pooling. Its 256
  features are the average over the whole mosaic, dominated by a component every mosaic shares.

``forward`` maps float images in [0, 1], shape (k, 1, 56, 56), to the features (the pixel
normalisation is inside); ``classify`` adds the linear class head, used in training and as the
object detector that produces the mosaics' auxiliary labels. Dropout is active in train mode only,
so in eval mode ``forward`` gives exactly the stored features. ``train_backbone`` trains either
with Adam on cross-entropy, batches of 128, at the network's learning rate (1e-3 for fc7; 4e-3
for pooled, as in earlier versions).

Image-mode methods (DeepBit, SSDH, SADH) put their code layer on the features (fc7 for
``Fc7Backbone``, where the papers replace VGG16's fc8) and may fine-tune it:
``split.images.backbone()`` returns a new instance holding the weights stored with the dataset, in
eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import nn

N_CLASSES = 10
# Pixels are normalised as (p - PIXEL_OFFSET) / PIXEL_DIVISOR: about Fashion-MNIST's mean and standard
# deviation (0.286 and 0.353 of 255), as integers so that the exact forward pass can use them.
PIXEL_OFFSET = 73
PIXEL_DIVISOR = 90
PIXEL_MEAN = PIXEL_OFFSET / 255
PIXEL_STD = PIXEL_DIVISOR / 255
# The thread count changes the order of floating-point sums in training, so builds fix it; two
# threads keep the default-size build short on small machines.
BUILD_THREADS = 2


def _normalised(images: torch.Tensor) -> torch.Tensor:
    # Inputs and convolution weights in channels_last let oneDNN run the convolutions 2-4 times
    # faster on CPU; the values are the same.
    return ((images - PIXEL_MEAN) / PIXEL_STD).contiguous(memory_format=torch.channels_last)


class _MosaicCNN(nn.Module):
    """What both backbones share: a name, the Adam learning rate that trains them, the class head."""

    kind: ClassVar[str]
    learning_rate: ClassVar[float]
    head: nn.Linear

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (k, n_classes)."""
        return self.head(self(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features (k, d) of float images in [0, 1], shape (k, 1, 56, 56)."""
        return self.forward_top(self.forward_trunk(images))

    def forward_trunk(self, images: torch.Tensor) -> torch.Tensor:
        """The layers before any dropout: the same in training and eval mode, so a fixed backbone's
        trunk outputs can be computed once and reused."""
        return self.trunk(_normalised(images))

    def forward_top(self, trunk_outputs: torch.Tensor) -> torch.Tensor:
        """The rest of ``forward`` (none for a network without dropout)."""
        return trunk_outputs

    def trunk_parameters(self):
        return self.trunk.parameters()


class Fc7Backbone(_MosaicCNN):
    """Conv trunk (3 x [3x3 conv, 2x2 max-pool, ReLU]) -> flatten -> fc6 -> fc7 (ReLU, dropout each) -> head."""

    kind = "fc7"
    learning_rate = 1e-3

    def __init__(
        self,
        n_classes: int = N_CLASSES,
        channels: tuple[int, ...] = (32, 64, 64),
        width: int = 1024,
        input_size: int = 56,
    ):
        super().__init__()
        layers, previous = [], 1
        for count in channels:
            # Pooling before the ReLU gives the same values as VGG's ReLU-then-pool (the ReLU is
            # monotone) with the ReLU applied to a quarter of them.
            layers += [nn.Conv2d(previous, count, 3, padding=1), nn.MaxPool2d(2), nn.ReLU()]
            previous = count
        side = input_size // 2 ** len(channels)
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Sequential(
            nn.Linear(previous * side * side, width),
            nn.ReLU(),
            nn.Dropout(0.5),  # fc6
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Dropout(0.5),  # fc7
        )
        self.head = nn.Linear(width, n_classes)
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> Fc7Backbone:
        convs = sorted(
            (k for k in state if k.startswith("trunk.") and k.endswith(".weight")), key=lambda k: int(k.split(".")[1])
        )
        channels = tuple(state[k].shape[0] for k in convs)
        side = math.isqrt(state["fc.0.weight"].shape[1] // channels[-1])
        return cls(state["head.weight"].shape[0], channels, state["fc.0.weight"].shape[0], side * 2 ** len(channels))

    def forward_top(self, trunk_outputs: torch.Tensor) -> torch.Tensor:
        """fc6 and fc7, with their dropout in training mode."""
        return self.fc(trunk_outputs)


class PooledBackbone(_MosaicCNN):
    """3x3 convs with stride 2 (32, 64, 128 channels), a 1x1 conv to 256, global average pooling; ReLUs."""

    kind = "pooled"
    learning_rate = 4e-3

    def __init__(self, n_classes: int = N_CLASSES, feature_dim: int = 256):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(128, feature_dim, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(feature_dim, n_classes)
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> PooledBackbone:
        return cls(*state["head.weight"].shape)


BACKBONES = {cls.kind: cls for cls in (Fc7Backbone, PooledBackbone)}


def backbone_class(state: dict[str, torch.Tensor]) -> type[_MosaicCNN]:
    """The network a state dict belongs to: only ``Fc7Backbone`` has fully connected ``fc.*`` layers."""
    return Fc7Backbone if any(k.startswith("fc.") for k in state) else PooledBackbone


def state_to_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's weights as numpy arrays (keys prefixed ``backbone.``) for storing in an .npz."""
    return {f"backbone.{k}": v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def arrays_to_state(arrays) -> dict[str, torch.Tensor]:
    """Inverse of :func:`state_to_arrays`, from any mapping holding those keys."""
    prefix = "backbone."
    return {k[len(prefix) :]: torch.from_numpy(np.asarray(arrays[k])) for k in arrays if k.startswith(prefix)}


class BackboneFactory:
    """A picklable callable returning a fresh backbone with fixed weights, in eval mode."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    def __call__(self) -> _MosaicCNN:
        module = backbone_class(self.state).from_state(self.state)
        module.load_state_dict(self.state)
        return module.eval()


def train_backbone(
    kind: str,
    labels: np.ndarray,
    render: Callable[[np.ndarray], np.ndarray],
    *,
    epochs: int,
    seed: int,
    batch_size: int = 128,
) -> _MosaicCNN:
    """Train a new ``kind`` backbone to classify ``len(labels)`` training images; deterministic in ``seed``.

    ``render(indices)`` returns the uint8 images (k, 1, H, W) of those training items for one
    mini-batch, so each epoch may show an item differently (another position, mirrored). Adam at
    the network's ``learning_rate``, cross-entropy, batches drawn in a seeded random order. Call
    it under :func:`deterministic_torch` for bit-identical weights across runs.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # parameter initialisation and dropout draw from the global generator
    model = BACKBONES[kind]()
    optimizer = torch.optim.Adam(model.parameters(), lr=model.learning_rate)
    y = torch.from_numpy(labels.astype(np.int64))
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(batch_size):
            images = torch.from_numpy(render(batch.numpy())).float() / 255
            loss = nn.functional.cross_entropy(model.classify(images), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


#: images per batch through a CNN in eval mode: at this size the convolutions' activations stay in
#: the CPU's caches, and the pass over mosaic's images ran about twice as fast as at 256, with the
#: same outputs
IMAGE_BATCH = 64


def apply_in_batches(function, n: int, load, batch_size: int = IMAGE_BATCH) -> np.ndarray:
    """``function`` (uint8 images -> tensor) over ``n`` images, ``load(slice)`` giving one batch (k, 1, H, W).

    Only one batch at a time is converted, so large splits never exist as float pixels.
    """
    outputs = [function(load(slice(start, start + batch_size))).numpy() for start in range(0, n, batch_size)]
    return np.concatenate(outputs).astype(np.float32, copy=False)


class deterministic_torch:
    """Context manager: ``BUILD_THREADS`` CPU threads and deterministic algorithms, so the same seed gives the same bits."""

    def __enter__(self):
        self._threads = torch.get_num_threads()
        self._deterministic = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(BUILD_THREADS)
        torch.use_deterministic_algorithms(True)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self._threads)
        torch.use_deterministic_algorithms(self._deterministic)
        return False
