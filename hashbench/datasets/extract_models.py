"""The networks that feature extraction runs (:mod:`hashbench.datasets.extract`), built from
torchvision: ImageNet backbones, COCO detectors, their weights and image preprocessing.

Backbones (``BACKBONES``, ``--backbone``), each torchvision's ImageNet model cut before its classifier:

- ``vgg16-fc7`` (default): VGG16's fc7 after its ReLU, 4,096-d; the features of LAGNH and of most
  unsupervised hashing papers since 2016 (weights ``IMAGENET1K_V1``, ``vgg16-397923af.pth``);
- ``alexnet-fc7``: AlexNet's fc7 after its ReLU, 4,096-d; the older literature's features
  (``IMAGENET1K_V1``, ``alexnet-owt-7be5be79.pth``);
- ``resnet50-pool``: ResNet-50's globally average-pooled last block, 2,048-d
  (``IMAGENET1K_V1``, ``resnet50-0676ba61.pth``, the original training recipe);
- ``vit-b16-cls``: ViT-B/16's class token after the final layer norm, 768-d, the input of its
  classification head (``IMAGENET1K_V1``, ``vit_b_16-c867db91.pth``), for the papers that hash
  the features of large pretrained transformers.

Each is evaluated in eval mode (no dropout). Every backbone's weights use the same ImageNet
evaluation preprocessing (resize to 256, centre crop 224, ImageNet mean and std), the transform
torchvision ships with each of these weights; ``image_preprocessing(resize="full")`` resizes the whole
image to the square instead (for CIFAR-10's 32x32 images, as the GreedyHash, CIBHash and
DeepHash-pytorch releases do).

Weights come from torchvision. An offline machine serves them from ``--weights-dir`` or torch's
hub cache (``torch.hub.get_dir()/checkpoints``) under torchvision's own file names; when neither
has the file and it cannot be downloaded, the error names the file, its URL and where to put it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hashbench.datasets.extract import Extractor
from hashbench.errors import HashbenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MissingWeightsError(HashbenchError):
    """Pretrained weights are neither on disk nor downloadable."""


def load_weights(weights, weights_dir: Path | None, *, allow_download: bool = True) -> dict:
    """The state dict of a torchvision ``weights`` enum member, from disk first, then the web."""
    filename = weights.url.rsplit("/", 1)[-1]
    places = ([Path(weights_dir)] if weights_dir else []) + [Path(torch.hub.get_dir()) / "checkpoints"]
    for place in places:
        if (place / filename).is_file():
            return torch.load(place / filename, map_location="cpu", weights_only=True)
    reason = "downloading is disabled"
    if allow_download:
        try:
            return weights.get_state_dict(progress=True, check_hash=True)
        except Exception as error:
            reason = f"download failed ({error})"
    raise MissingWeightsError(
        f"weights file {filename!r} not found in {', '.join(map(str, places))} and {reason}; "
        f"download {weights.url} on a machine with internet and put it in --weights-dir DIR "
        f"(or in {places[-1]})"
    )


class VGG16Fc7(nn.Module):
    """VGG16 up to fc7 (after its ReLU): the 4096-d features of the paper and its baselines."""

    def __init__(self, vgg: nn.Module):
        super().__init__()
        self.features, self.avgpool = vgg.features, vgg.avgpool
        self.fc7 = vgg.classifier[:5]  # fc6, ReLU, Dropout, fc7, ReLU

    def forward(self, x):
        return self.forward_top(self.forward_trunk(x))

    def forward_trunk(self, x):
        """The convolutional layers, pooled and flattened: no dropout, the same in training and eval mode."""
        return torch.flatten(self.avgpool(self.features(x)), 1)

    def forward_top(self, trunk_outputs):
        """fc6 and fc7, with fc6's dropout in training mode."""
        return self.fc7(trunk_outputs)

    def trunk_parameters(self):
        return self.features.parameters()


class AlexNetFc7(nn.Module):
    """AlexNet up to fc7 (after its ReLU), 4096-d."""

    def __init__(self, alexnet: nn.Module):
        super().__init__()
        self.features, self.avgpool = alexnet.features, alexnet.avgpool
        self.fc7 = alexnet.classifier[:6]  # dropout, fc6, ReLU, dropout, fc7, ReLU

    def forward(self, x):
        return self.fc7(torch.flatten(self.avgpool(self.features(x)), 1))


def _headless(model: nn.Module, head: str) -> nn.Module:
    """``model`` with its classification layer ``head`` replaced by the identity."""
    setattr(model, head, nn.Identity())
    return model


def torchvision_object(dotted: str):
    """An attribute of ``torchvision.models`` by dotted name, e.g. ``"VGG16_Weights.IMAGENET1K_V1"``.
    torchvision is imported here, on first use: it adds hundreds of MB to every process that
    imports it, and only feature extraction needs it (every ``hashbench`` command loads this module)."""
    from torchvision import models

    target = models
    for part in dotted.split("."):
        target = getattr(target, part)
    return target


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one feature extractor: the torchvision model, its weights, the cut, the width."""

    model: str  # the torchvision.models constructor
    weights_name: str  # its weights enum member, under torchvision.models
    cut: Callable  # cut(model) -> the module giving the features
    dim: int
    description: str
    sized: bool = False  # the constructor takes the input size (ViT fixes it at construction)

    def build(self, image_size: int) -> nn.Module:
        """The full torchvision model, untrained."""
        size = {"image_size": image_size} if self.sized else {}
        return torchvision_object(self.model)(weights=None, **size)

    @property
    def weights(self):
        return torchvision_object(self.weights_name)


BACKBONES = {
    "vgg16-fc7": BackboneSpec("vgg16", "VGG16_Weights.IMAGENET1K_V1", VGG16Fc7, 4096, "VGG16 fc7 after ReLU"),
    "alexnet-fc7": BackboneSpec("alexnet", "AlexNet_Weights.IMAGENET1K_V1", AlexNetFc7, 4096, "AlexNet fc7 after ReLU"),
    "resnet50-pool": BackboneSpec("resnet50", "ResNet50_Weights.IMAGENET1K_V1", lambda m: _headless(m, "fc"), 2048,
                                  "ResNet-50 global average pool"),
    # torchvision's ViT fixes its input size at construction (224 for the ImageNet weights)
    "vit-b16-cls": BackboneSpec("vit_b_16", "ViT_B_16_Weights.IMAGENET1K_V1", lambda m: _headless(m, "heads"), 768,
                                "ViT-B/16 class token after the final layer norm", sized=True),
}  # fmt: skip
DEFAULT_BACKBONE = "vgg16-fc7"


def build_backbone(
    name: str, pretrained: bool, weights_dir=None, *, allow_download=True, image_size: int = 224
) -> nn.Module:
    """The feature extractor ``name`` (see ``BACKBONES``) in eval mode, with ImageNet weights if ``pretrained``."""
    if name not in BACKBONES:
        raise HashbenchError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    if pretrained and name == "vit-b16-cls" and image_size != 224:
        raise HashbenchError(f"the ImageNet weights of {name} are for 224x224 inputs, got --image-size {image_size}")
    model = spec.build(image_size)
    if pretrained:
        model.load_state_dict(load_weights(spec.weights, weights_dir, allow_download=allow_download))
    return spec.cut(model).eval()


def weights_provenance(name: str, pretrained: bool, weights_dir=None) -> dict:
    """What a prepared file records about a backbone's weights: file name, URL, and the SHA-256 of
    the file that was read (None when untrained, or when the file is not on disk)."""
    spec = BACKBONES[name]
    filename = spec.weights.url.rsplit("/", 1)[-1]
    record = {
        "backbone": name,
        "description": spec.description,
        "dim": spec.dim,
        "pretrained": pretrained,
        "weights": str(spec.weights) if pretrained else None,
        "file": filename if pretrained else None,
        "url": spec.weights.url if pretrained else None,
        "sha256": None,
    }
    if pretrained:
        places = ([Path(weights_dir)] if weights_dir else []) + [Path(torch.hub.get_dir()) / "checkpoints"]
        found = next((place / filename for place in places if (place / filename).is_file()), None)
        if found is not None:
            record["sha256"] = file_sha256(found)
    return record


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: detectors by name -> (constructor, COCO weights); tests use the light MobileNet one untrained
DETECTORS = {
    "fasterrcnn_resnet50_fpn": (
        "detection.fasterrcnn_resnet50_fpn",
        "detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1",
    ),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        "detection.fasterrcnn_mobilenet_v3_large_320_fpn",
        "detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1",
    ),
}


def coco_detector(name: str, pretrained: bool, weights_dir=None, *, allow_download=True, min_size=800) -> nn.Module:
    """A torchvision Faster R-CNN whose labels are COCO category ids (1..90, torchvision's numbering)."""
    if name not in DETECTORS:
        raise HashbenchError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    build, weights = (torchvision_object(dotted) for dotted in DETECTORS[name])
    model = build(weights=None, weights_backbone=None, num_classes=91, min_size=min_size)
    if pretrained:
        model.load_state_dict(load_weights(weights, weights_dir, allow_download=allow_download))
    return model.eval()


#: how an image reaches the backbone's square input: resize the short side to 256/224 of it and
#: crop the centre (the ImageNet evaluation transform), or resize the whole image to the square
RESIZE_MODES = ("centre-crop", "full")


def image_preprocessing(image_size: int = 224, resize: str = "centre-crop") -> Callable:
    """The ImageNet evaluation transform (``resize="centre-crop"``), or a plain resize of the whole
    image to ``image_size`` squared (``"full"``), then ImageNet mean / std normalisation."""
    if resize not in RESIZE_MODES:
        raise HashbenchError(f"unknown resize mode {resize!r}; known: {', '.join(RESIZE_MODES)}")
    from torchvision import transforms

    steps = (
        [transforms.Resize(round(image_size * 256 / 224)), transforms.CenterCrop(image_size)]
        if resize == "centre-crop"
        else [transforms.Resize((image_size, image_size))]
    )
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def build_extractor(
    category_ids=(),
    *,
    with_detector,
    backbone=DEFAULT_BACKBONE,
    pretrained=True,
    weights_dir=None,
    allow_download=True,
    device="cpu",
    image_size=224,
    resize="centre-crop",
    detector="fasterrcnn_resnet50_fpn",
    detector_min_size=800,
) -> Extractor:
    """A ``backbone`` feature extractor (+ a COCO detector when ``with_detector``), pretrained unless told otherwise."""
    return Extractor(
        backbone=build_backbone(
            backbone, pretrained, weights_dir, allow_download=allow_download, image_size=image_size
        ),
        preprocess=image_preprocessing(image_size, resize),
        detector=coco_detector(
            detector, pretrained, weights_dir, allow_download=allow_download, min_size=detector_min_size
        )
        if with_detector
        else None,
        category_ids=list(category_ids),
        device=device,
    )
