"""Feature and object extraction for the real datasets: VGG16 fc7 features, Faster R-CNN detections.

Used by ``hashbench prepare coco`` and ``hashbench prepare nuswide``. Extraction runs batched (on
CUDA when asked), shows progress, and resumes: images are processed in chunks whose results are
written atomically to a work folder, so a re-run continues after the last finished chunk. Images
that fail to decode are counted, reported and skipped, never silently kept.

Weights come from torchvision. An offline machine serves them from ``--weights-dir`` or torch's
hub cache (``torch.hub.get_dir()/checkpoints``) under torchvision's own file names; when neither
has the file and it cannot be downloaded, the error names the file, its URL and where to put it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import models, transforms
from torchvision.models import detection
from tqdm.auto import tqdm

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
        except Exception as error:  # no network, proxy, HTTP error: all end in the same advice
            reason = f"download failed ({error})"
    raise MissingWeightsError(
        f"weights file {filename!r} not found in {', '.join(map(str, places))} and {reason}; "
        f"download {weights.url} on a machine with internet and put it in --weights-dir DIR "
        f"(or in {places[-1]})"
    )


class VGG16Fc7(nn.Module):
    """VGG16 up to fc7 (after its ReLU): the 4096-d features of the paper and its baselines."""

    def __init__(self, vgg: models.VGG):
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


def vgg16_fc7(pretrained: bool, weights_dir=None, *, allow_download=True) -> VGG16Fc7:
    vgg = models.vgg16(weights=None)
    if pretrained:
        vgg.load_state_dict(load_weights(models.VGG16_Weights.IMAGENET1K_V1, weights_dir, allow_download=allow_download))
    return VGG16Fc7(vgg).eval()


#: detectors by name -> (constructor, COCO weights); tests use the light MobileNet one untrained
DETECTORS = {
    "fasterrcnn_resnet50_fpn": (detection.fasterrcnn_resnet50_fpn, detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        detection.fasterrcnn_mobilenet_v3_large_320_fpn,
        detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
    ),
}


def coco_detector(name: str, pretrained: bool, weights_dir=None, *, allow_download=True, min_size=800) -> nn.Module:
    """A torchvision Faster R-CNN whose labels are COCO category ids (1..90, torchvision's numbering)."""
    if name not in DETECTORS:
        raise HashbenchError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    build, weights = DETECTORS[name]
    model = build(weights=None, weights_backbone=None, num_classes=91, min_size=min_size)
    if pretrained:
        model.load_state_dict(load_weights(weights, weights_dir, allow_download=allow_download))
    return model.eval()


def fc7_preprocessing(image_size: int = 224) -> Callable:
    """The standard ImageNet evaluation transform (resize to 256/224 of the crop, centre crop)."""
    return transforms.Compose(
        [
            transforms.Resize(round(image_size * 256 / 224)),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


@dataclass
class Extractor:
    """What to compute per image: fc7 features and, optionally, detection scores per category.

    ``category_ids`` lists the detector label ids that become aux columns, in order; the aux score
    of an image for a category is the highest score among its detections of that category (0 if none).
    """

    fc7: nn.Module
    preprocess: Callable
    detector: nn.Module | None = None
    category_ids: Sequence[int] = ()
    device: str = "cpu"

    def signature(self) -> str:
        """Changes when the models or settings change, so stale chunks are never reused."""
        state = [self.fc7, self.detector]
        digest = hashlib.sha256(repr((self.preprocess, list(self.category_ids), [repr(m) for m in state])).encode())
        for module in state:
            for tensor in (module.state_dict().values() if module is not None else ()):
                digest.update(tensor.detach().cpu().flatten()[:64].numpy().tobytes())
        return digest.hexdigest()[:16]

    @torch.no_grad()
    def __call__(self, images: list[Image.Image]) -> dict[str, np.ndarray]:
        device = torch.device(self.device)
        self.fc7.to(device)
        batch = torch.stack([self.preprocess(im) for im in images]).to(device)
        out = {"features": self.fc7(batch).float().cpu().numpy()}
        if self.detector is not None:
            self.detector.to(device)
            tensors = [transforms.functional.to_tensor(im).to(device) for im in images]
            scores = np.zeros((len(images), len(self.category_ids)), np.float32)
            column = {cid: j for j, cid in enumerate(self.category_ids)}
            for i, det in enumerate(self.detector(tensors)):
                for label, score in zip(det["labels"].tolist(), det["scores"].tolist()):
                    j = column.get(label)
                    if j is not None:
                        scores[i, j] = max(scores[i, j], score)
            out["aux_scores"] = scores
        return out


def _open_rgb(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def extract_all(
    paths: Sequence[Path],
    extractor: Extractor,
    work_dir: Path,
    *,
    chunk_size: int = 2048,
    batch_size: int = 64,
    quiet: bool = False,
) -> dict[str, np.ndarray]:
    """Run ``extractor`` over every image, resuming from finished chunks in ``work_dir``.

    Returns the concatenated outputs plus ``ok`` (False for images that failed to decode, whose
    output rows are zeros and must be dropped by the caller).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"paths": hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest(),
                "extractor": extractor.signature(), "chunk_size": chunk_size}
    manifest_file = work_dir / "manifest.json"
    if manifest_file.exists() and json.loads(manifest_file.read_text()) != manifest:
        for stale in work_dir.glob("chunk_*.npz"):
            stale.unlink()
    manifest_file.write_text(json.dumps(manifest))

    starts = range(0, len(paths), chunk_size)
    chunks = []
    with tqdm(total=len(paths), desc="extracting", unit="img", disable=True if quiet else None) as bar:
        for number, start in enumerate(starts):
            chunk_file = work_dir / f"chunk_{number:05d}.npz"
            if not chunk_file.exists():
                _extract_chunk(paths[start : start + chunk_size], extractor, batch_size, chunk_file)
            with np.load(chunk_file) as data:
                chunks.append({key: data[key] for key in data.files})
            bar.update(min(chunk_size, len(paths) - start))
    result = _concatenate(chunks) if chunks else {"ok": np.zeros(0, bool)}
    failed = int((~result["ok"]).sum())
    if failed:
        bad = [str(p) for p, ok in zip(paths, result["ok"]) if not ok]
        warnings.warn(f"{failed} image(s) could not be decoded and are skipped, e.g. {bad[:3]}", stacklevel=2)
    return result


def _extract_chunk(paths, extractor: Extractor, batch_size: int, chunk_file: Path) -> None:
    ok = np.zeros(len(paths), bool)
    arrays: dict[str, np.ndarray] = {}
    for start in range(0, len(paths), batch_size):
        images = [_open_rgb(p) for p in paths[start : start + batch_size]]
        rows = [start + i for i, im in enumerate(images) if im is not None]
        if not rows:
            continue
        ok[rows] = True
        for key, values in extractor([im for im in images if im is not None]).items():
            arrays.setdefault(key, np.zeros((len(paths), values.shape[1]), values.dtype))[rows] = values
    tmp = chunk_file.with_name(chunk_file.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, ok=ok, **arrays)
    tmp.replace(chunk_file)


def _concatenate(chunks: list[dict]) -> dict[str, np.ndarray]:
    """Join chunk outputs; a chunk whose images all failed has only ``ok`` and gets zero rows."""
    widths = {key: (c[key].shape[1], c[key].dtype) for c in chunks for key in c if key != "ok"}
    joined = {"ok": np.concatenate([c["ok"] for c in chunks])}
    for key, (width, dtype) in widths.items():
        joined[key] = np.concatenate([c.get(key, np.zeros((len(c["ok"]), width), dtype)) for c in chunks])
    return joined
