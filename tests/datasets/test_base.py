"""Splits and datasets: what they print, and their fingerprints."""

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


def dataset(**database_changes) -> HashingDataset:
    database = split(7, "database")
    for kind, values in database_changes.items():
        setattr(database, kind, values)
    return HashingDataset("toy", split(5, "train"), split(2, "query", aux=False), database)


def test_fingerprint_follows_the_numbers_not_the_objects():
    reference = dataset().fingerprint
    assert len(reference) == 16 and int(reference, 16) >= 0
    assert dataset().fingerprint == reference  # equal arrays, new objects
    assert dataset(name="other").fingerprint == reference  # names are not numbers
    features = split(7, "database").features.copy()
    features[3, 2] = np.nextafter(features[3, 2], 2.0)  # one value, one unit in the last place
    assert dataset(features=features).fingerprint != reference
    assert dataset(features=features.astype(np.float32)).fingerprint != reference  # dtype counts
    assert dataset(aux=None).fingerprint != reference
    train, query, database = split(5, "train"), split(2, "query", aux=False), split(7, "database")
    swapped = HashingDataset("toy", database, query, train)  # the same arrays under other split names
    assert swapped.fingerprint != reference
