"""Datasets: the data model, the embedded "mosaic" set, file formats (first version: .npz only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashbench.datasets.base import HashingDataset, Split


def load_dataset(name_or_path, **options) -> HashingDataset:
    path = Path(name_or_path)
    if path.suffix == ".npz" and path.exists():
        with np.load(path) as data:
            splits = {
                s: Split(data[f"{s}_features"], data[f"{s}_labels"], data.get(f"{s}_aux"), name=s)
                for s in ("train", "query", "database")
            }
        return HashingDataset(path.stem, **splits)
    from hashbench.registry import dataset_entry

    return dataset_entry(str(name_or_path)).build(**options)


def save_dataset(dataset: HashingDataset, path) -> None:
    arrays = {}
    for s, split in dataset.splits().items():
        for kind in ("features", "labels", "aux"):
            if getattr(split, kind) is not None:
                arrays[f"{s}_{kind}"] = getattr(split, kind)
    np.savez_compressed(path, **arrays)
