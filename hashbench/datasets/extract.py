"""Feature and object extraction for the real datasets: CNN / ViT features, Faster R-CNN detections.

Used by ``hashbench prepare``. Extraction runs batched (on CUDA when asked), shows progress, and
resumes: images are processed in chunks whose results are written atomically to a work folder, so
a re-run continues after the last finished chunk. Images that fail to decode are counted, reported
and skipped, never silently kept. An image is a file (a ``Path``) or a :class:`MemoryImage` (pixels
read from an archive such as CIFAR-10's pickles).

The networks and their weights are built by :mod:`hashbench.datasets.extract_models`.
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
from tqdm.auto import tqdm


@dataclass
class Extractor:
    """What to compute per image: backbone features and, optionally, detection scores per category.

    ``category_ids`` lists the detector label ids that become aux columns, in order; the aux score
    of an image for a category is the highest score among its detections of that category (0 if none).
    """

    backbone: nn.Module
    preprocess: Callable
    detector: nn.Module | None = None
    category_ids: Sequence[int] = ()
    device: str = "cpu"

    def signature(self) -> str:
        """Changes when the models or settings change, so stale chunks are never reused."""
        state = [self.backbone, self.detector]
        digest = hashlib.sha256(repr((self.preprocess, list(self.category_ids), [repr(m) for m in state])).encode())
        for module in state:
            for tensor in module.state_dict().values() if module is not None else ():
                digest.update(tensor.detach().cpu().flatten()[:64].numpy().tobytes())
        return digest.hexdigest()[:16]

    @torch.no_grad()
    def __call__(self, images: list[Image.Image]) -> dict[str, np.ndarray]:
        device = torch.device(self.device)
        self.backbone.to(device)
        batch = torch.stack([self.preprocess(im) for im in images]).to(device)
        out = {"features": self.backbone(batch).float().cpu().numpy()}
        if self.detector is not None:
            from torchvision.transforms.functional import to_tensor

            self.detector.to(device)
            tensors = [to_tensor(im).to(device) for im in images]
            scores = np.zeros((len(images), len(self.category_ids)), np.float32)
            column = {cid: j for j, cid in enumerate(self.category_ids)}
            for i, det in enumerate(self.detector(tensors)):
                for label, score in zip(det["labels"].tolist(), det["scores"].tolist()):
                    j = column.get(label)
                    if j is not None:
                        scores[i, j] = max(scores[i, j], score)
            out["aux_scores"] = scores
        return out


@dataclass(frozen=True)
class MemoryImage:
    """An image held in memory, uint8 (H, W, 3), named by ``key`` (e.g. ``data_batch_1:17``) so a
    resumed extraction can tell whether its chunks belong to the same images."""

    key: str
    pixels: np.ndarray

    def __str__(self) -> str:
        return self.key


def _open_rgb(item: Path | MemoryImage) -> Image.Image | None:
    if isinstance(item, MemoryImage):
        return Image.fromarray(item.pixels).convert("RGB")
    try:
        with Image.open(item) as image:
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
    """Run ``extractor`` over every image (files or :class:`MemoryImage`), resuming from finished
    chunks in ``work_dir``.

    Returns the concatenated outputs plus ``ok`` (False for images that failed to decode, whose
    output rows are zeros and must be dropped by the caller).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "paths": hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest(),
        "extractor": extractor.signature(),
        "chunk_size": chunk_size,
    }
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
