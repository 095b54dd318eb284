"""A validation view of a dataset: queries carved from its training split, for tuning.

    import hashbench as hb
    view = hb.load_dataset("validation", dataset="mosaic")            # any registered name or path
    view = hb.load_dataset("validation", dataset="mosaic", size="tiny", fraction=0.2, split_seed=1)

The training split is divided at random (``split_seed``) into ``fraction`` of its items (at least one,
and at least one left) as the view's queries and the rest, which is both the view's training
split and its database: a method is fitted on the rest and scored by how it retrieves the
held-out training items among them. The dataset's own query and database splits are never read,
so a choice made on this view cannot have seen the test queries. The labelled web split (WSIH) is
kept. Other options (``size``, ``aux``, ...) go to the dataset's own loader.

In a run matrix: ``datasets = [{ name = "validation", dataset = "mosaic" }]``; ``hashbench tune``
builds these views itself from the datasets of a tuning matrix.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hashbench.datasets.base import HashingDataset
from hashbench.errors import InvalidInputError
from hashbench.registry import register_dataset

DEFAULT_FRACTION = 0.1


def validation_view(
    dataset: HashingDataset, *, fraction: float = DEFAULT_FRACTION, split_seed: int = 0
) -> HashingDataset:
    """The view of the module docstring, built from a loaded dataset."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise InvalidInputError(f"fraction must be a number strictly between 0 and 1, got {fraction!r}")
    train = dataset.train
    if len(train) < 2:
        raise InvalidInputError(f"a validation view needs at least 2 training items, {dataset.name} has {len(train)}")
    n_queries = min(max(round(fraction * len(train)), 1), len(train) - 1)
    order = np.random.default_rng(split_seed).permutation(len(train))
    rest = np.sort(order[n_queries:])
    kept = train.subset(rest)
    return HashingDataset(
        f"{dataset.name}[validation]",
        train=dataclasses.replace(kept, name="train"),
        query=dataclasses.replace(train.subset(np.sort(order[:n_queries])), name="query", web=None),
        database=dataclasses.replace(kept, name="database", web=None),
        web=dataset.web,
        label_names=dataset.label_names,
        aux_names=dataset.aux_names,
        info={"validation_of": dataset.name, "fraction": fraction, "split_seed": split_seed, "queries": n_queries},
    )


def build_validation(
    *, dataset=None, fraction: float = DEFAULT_FRACTION, split_seed: int = 0, **options
) -> HashingDataset:
    from hashbench.datasets import load_dataset

    if dataset is None:
        raise InvalidInputError(
            'the validation view needs dataset=NAME (e.g. load_dataset("validation", dataset="mosaic"))'
        )
    if dataset == "validation":
        raise InvalidInputError("a validation view of a validation view is not supported")
    return validation_view(load_dataset(dataset, **options), fraction=fraction, split_seed=split_seed)


register_dataset(
    "validation",
    build_validation,
    "queries carved from another dataset's training split, for tuning: option dataset=NAME (fraction=0.1, split_seed=0)",
)
