"""Splits and datasets: what they print."""

import numpy as np

from hashbench.datasets.base import HashingDataset, Split


def split(n: int, name: str, aux: bool = True) -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.random((n, 6)), rng.integers(0, 2, (n, 3)), rng.random((n, 4)) if aux else None, name=name)


def test_repr_gives_sizes_not_arrays():
    ds = HashingDataset("toy", split(5, "train"), split(2, "query", aux=False), split(7, "database"))
    assert repr(ds.train) == "Split('train', 5 items, features 6, labels 3, aux 4)"
    assert repr(ds) == (
        "HashingDataset('toy'; train: 5 items, features 6, labels 3, aux 4; query: 2 items, features 6, labels 3; "
        "database: 7 items, features 6, labels 3, aux 4)"
    )
