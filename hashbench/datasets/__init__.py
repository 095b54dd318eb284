"""Datasets: the data model, the embedded "mosaic" sets, and users' data files.

    load_dataset("mosaic")                 # a registered dataset (built and cached on first use)
    load_dataset("mosaic", size="tiny")    # builder options as keywords (see hashbench.datasets.mosaic)
    load_dataset("my_features.npz")        # or .mat, a folder of .npy, a folder of HashNet list files
    save_dataset(dataset, "out.npz")       # the common format (see hashbench.datasets.formats)

``data_dir`` (any loader accepts it) selects the cache directory of built datasets; files ignore it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashbench.datasets.base import HashingDataset, Split
from hashbench.datasets.cache import resolve_data_dir
from hashbench.errors import InvalidInputError

__all__ = ["HashingDataset", "Split", "load_dataset", "resolve_data_dir", "save_dataset"]


def load_dataset(name_or_path, **options) -> HashingDataset:
    """A registered dataset by name (``options`` go to its builder), or a data file or folder."""
    from hashbench.registry import dataset_entry, list_datasets

    text = str(name_or_path)
    if text in list_datasets() and not isinstance(name_or_path, Path):
        return dataset_entry(text).build(**options)
    path = Path(name_or_path).expanduser()
    if path.exists():
        options.pop("data_dir", None)
        if options:
            raise InvalidInputError(f"options {sorted(options)} apply to registered datasets, not to the file {text!r}")
        from hashbench.datasets.formats import read_path

        return read_path(path)
    if path.suffix or "/" in text:
        raise InvalidInputError(f"dataset file {text!r} does not exist")
    return dataset_entry(text).build(**options)  # raises, suggesting the closest registered name


def save_dataset(
    dataset: HashingDataset, path, *, images: bool = False, extra: dict | None = None, features_dtype=np.float32
) -> Path:
    """Write ``dataset`` as one compressed ``.npz`` in the common format; return the path.

    ``images=True`` also stores every split's pixels (``{split}_images``) and the backbone weights,
    so image-mode methods can run on the file; it is off by default because pixels are large.
    ``extra`` arrays (e.g. detection scores, image ids) are stored beside the common keys;
    ``features_dtype=np.float16`` halves the file (features are read back as float32).
    """
    from hashbench.datasets.cache import write_npz_atomic
    from hashbench.datasets.formats import dataset_to_arrays

    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = dataset_to_arrays(dataset, images=images)
    for key in [k for k in arrays if k.endswith("_features")]:
        arrays[key] = arrays[key].astype(features_dtype, copy=False)
    write_npz_atomic(path, {**arrays, **(extra or {})}, compress=True)
    return path
