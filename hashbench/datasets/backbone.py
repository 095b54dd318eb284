"""The small CNN behind the embedded "mosaic" datasets: the stand-in for ImageNet-pretrained VGG16.

``MosaicBackbone`` is fully convolutional with global average pooling, so one network handles the
28x28 single items it is trained on and the 56x56 mosaics whose features it extracts. Its
``forward`` maps float images in [0, 1], shape (k, 1, H, W), to ``FEATURE_DIM`` non-negative
features (normalisation inside); ``classify`` adds the linear class head used during training and
as the object detector that produces the mosaics' auxiliary labels.

Image-mode methods (DeepBit, SSDH, SADH) fine-tune it: ``split.images.backbone()`` returns a new
instance holding the weights stored with the dataset, in eval mode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

FEATURE_DIM = 256
N_CLASSES = 10
# Mean and standard deviation of Fashion-MNIST pixels scaled to [0, 1].
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530


class MosaicBackbone(nn.Module):
    """3x3 convs with stride 2 (32, 64, 128 channels), a 1x1 conv to 256, global average pooling; ReLUs."""

    def __init__(self, n_classes: int = N_CLASSES, feature_dim: int = FEATURE_DIM):
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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features (k, feature_dim) of float images in [0, 1], shape (k, 1, H, W)."""
        return self.trunk((images - PIXEL_MEAN) / PIXEL_STD)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (k, n_classes)."""
        return self.head(self(images))


def state_to_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's weights as numpy arrays (keys prefixed ``backbone.``) for storing in an .npz."""
    return {f"backbone.{k}": v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def arrays_to_state(arrays) -> dict[str, torch.Tensor]:
    """Inverse of :func:`state_to_arrays`, from any mapping holding those keys."""
    prefix = "backbone."
    return {k[len(prefix):]: torch.from_numpy(np.asarray(arrays[k])) for k in arrays if k.startswith(prefix)}


class BackboneFactory:
    """A picklable callable returning a fresh ``MosaicBackbone`` with fixed weights, in eval mode."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    def __call__(self) -> MosaicBackbone:
        head_shape = self.state["head.weight"].shape
        module = MosaicBackbone(n_classes=head_shape[0], feature_dim=head_shape[1])
        module.load_state_dict(self.state)
        return module.eval()


def train_backbone(
    images: np.ndarray, labels: np.ndarray, *, epochs: int, seed: int, batch_size: int = 128, lr: float = 4e-3
) -> MosaicBackbone:
    """Train a new backbone to classify uint8 images (n, 1, H, W), mirrored at random; deterministic in ``seed``.

    Call it under :func:`deterministic_torch` for bit-identical weights across runs.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # parameter initialisation draws from the global generator
    model = MosaicBackbone()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x = torch.from_numpy(images)
    y = torch.from_numpy(labels.astype(np.int64))
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            images = x[batch].float() / 255
            # Mosaic cells may hold mirrored items: mirror half the training images too.
            mirrored = torch.rand(len(batch), generator=generator) < 0.5
            images[mirrored] = images[mirrored].flip(-1)
            loss = nn.functional.cross_entropy(model.classify(images), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def apply_in_batches(function, n: int, load, batch_size: int = 500) -> np.ndarray:
    """``function`` (a tensor map) over ``n`` uint8 images, ``load(slice)`` giving one batch (k, 1, H, W).

    Only one batch at a time is converted to float, so large splits never exist as float pixels.
    """
    outputs = [
        function(torch.from_numpy(np.ascontiguousarray(load(slice(start, start + batch_size)))).float() / 255).numpy()
        for start in range(0, n, batch_size)
    ]
    return np.concatenate(outputs).astype(np.float32, copy=False)


class deterministic_torch:
    """Context manager: one CPU thread and deterministic algorithms, so the same seed gives the same bits.

    Thread count changes the order of floating-point reductions, hence one thread.
    """

    def __enter__(self):
        self._threads = torch.get_num_threads()
        self._deterministic = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self._threads)
        torch.use_deterministic_algorithms(self._deterministic)
        return False
