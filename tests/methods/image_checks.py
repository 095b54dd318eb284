"""Small image data and a tiny CNN backbone for the tests of the image-based deep hashers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hashbench.datasets.base import ArrayImages, Split

SIDE = 16
N_CLASSES = 4


class TinyBackbone(nn.Module):
    """conv(4) - 4x4 average pooling - linear(16): 1x16x16 images in [0, 1] to 16 features.

    Every instance starts from the same weights, like a pretrained backbone loaded from a file.
    """

    def __init__(self):
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(1234)
        self.layers = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.AvgPool2d(4), nn.Flatten(), nn.Linear(64, 16, bias=False)
        )
        torch.random.set_rng_state(generator_state)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images - 0.5)


class NaNBackbone(TinyBackbone):
    """Features that are all NaN: training on them must stop with a clear error."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return super().forward(images) * float("nan")


def image_split(
    n: int = 96, *, seed: int = 0, features: bool = True, images: bool = True, backbone=TinyBackbone
) -> Split:
    """Noisy images of 4 classes, each a bright quadrant; features from the tiny backbone."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, N_CLASSES, n)
    templates = np.zeros((N_CLASSES, SIDE, SIDE))
    half = SIDE // 2
    for c in range(N_CLASSES):
        templates[c, (c // 2) * half : (c // 2 + 1) * half, (c % 2) * half : (c % 2 + 1) * half] = 200
    pixels = np.clip(templates[classes] + rng.normal(0, 40, (n, SIDE, SIDE)), 0, 255).astype(np.uint8)[:, None]
    with torch.no_grad():
        stored = TinyBackbone()(torch.as_tensor(pixels).float() / 255).numpy() if features else None
    return Split(
        features=stored,
        labels=np.eye(N_CLASSES, dtype=np.uint8)[classes],
        images=ArrayImages(pixels, backbone) if images else None,
        name="train",
    )


def parameter_gradients(network: nn.Module, loss: torch.Tensor) -> float:
    """Total absolute gradient that ``loss`` sends to the parameters of ``network``."""
    network.zero_grad()
    loss.backward()
    return sum(float(p.grad.abs().sum()) for p in network.parameters() if p.grad is not None)


class TrunkBackbone(TinyBackbone):
    """:class:`TinyBackbone` with a linear layer and dropout on top, split like the mosaic and VGG16
    backbones: ``forward_trunk`` (no randomness) then ``forward_top`` (dropout in training mode)."""

    def __init__(self):
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(4321)
        self.top = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.5))
        torch.random.set_rng_state(generator_state)

    def forward_trunk(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images - 0.5)

    def forward_top(self, trunk_outputs: torch.Tensor) -> torch.Tensor:
        return self.top(trunk_outputs)

    def trunk_parameters(self):
        return self.layers.parameters()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_top(self.forward_trunk(images))


class DrawingTrunkBackbone(TrunkBackbone):
    """:class:`TrunkBackbone` whose construction draws from torch's global generator, as a real
    backbone does when it initialises its layers before loading its weights."""

    def __init__(self):
        super().__init__()
        torch.rand(1)
