"""Fashion-MNIST item images: the vendored subset in ``hashbench/data`` or Debian's full copy.

Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; MIT licence, Zalando SE) holds 70,000 grey 28x28
images of 10 clothing classes. The package ships a stratified subset of 16,000 training images
(see ``hashbench/data/README.md``); Debian's ``dataset-fashion-mnist`` package, when installed,
provides all of them under ``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashbench.errors import InvalidInputError

CLASS_NAMES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
VENDORED_PATH = Path(__file__).resolve().parent.parent / "data" / "fashion_mnist_subset.npz"


@dataclass(frozen=True)
class ItemImages:
    images: np.ndarray  # (n, 28, 28) uint8
    labels: np.ndarray  # (n,) class index
    description: str
    source_indices: np.ndarray  # (n,) row in Fashion-MNIST's training file, 60,000 + row in its test file


def debian_available() -> bool:
    return all((DEBIAN_DIR / name).is_file() for pair in DEBIAN_FILES.values() for name in pair)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format: big-endian header of dimension sizes, then uint8 data), gzipped."""
    data = gzip.decompress(Path(path).read_bytes())
    n_dims = data[3]
    shape = np.frombuffer(data, ">u4", count=n_dims, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * n_dims).reshape(shape)


def load_items(source: str) -> ItemImages:
    """``source`` = "vendored" (16,000 packaged images) or "debian" (all 70,000; package required)."""
    if source == "vendored":
        with np.load(VENDORED_PATH) as data:
            images, labels, rows = data["images"], data["labels"], data["source_indices"].astype(np.int64)
        return ItemImages(images, labels, f"vendored Fashion-MNIST subset ({len(images)} of 70,000 images)", rows)
    if source == "debian":
        if not debian_available():
            raise InvalidInputError(
                f"source='debian' needs the Debian package dataset-fashion-mnist (files in {DEBIAN_DIR})"
            )
        parts = [[read_idx(DEBIAN_DIR / name) for name in DEBIAN_FILES[s]] for s in ("train", "test")]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        description = f"Debian dataset-fashion-mnist, {DEBIAN_DIR} ({len(images)} images)"
        return ItemImages(images, labels, description, np.arange(len(images)))
    raise InvalidInputError(f"source must be 'vendored', 'debian' or 'auto', got {source!r}")
