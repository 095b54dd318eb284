"""hashbench: a benchmark suite for unsupervised learning-to-hash image retrieval.

import hashbench as hb
ds = hb.load_dataset("mosaic")
m = hb.create_method("itq", n_bits=32, seed=0).fit(ds.train)
scores = hb.evaluate(m.encode(ds.query), m.encode(ds.database),
                     ds.query.labels, ds.database.labels, topk=1000)
"""

from hashbench.checks import check_method
from hashbench.codes import BinaryCodes
from hashbench.datasets import load_dataset, save_dataset
from hashbench.datasets.base import HashingDataset, Split
from hashbench.errors import HashbenchError, InvalidInputError, NotFittedError, TrainingDivergedError
from hashbench.hasher import Hasher
from hashbench.health import code_stats
from hashbench.metrics import Scores, evaluate
from hashbench.registry import create_method, list_datasets, list_methods, load_plugin

__version__ = "0.1.0"


def __getattr__(name: str):
    # the torch base is imported on first use, so `import hashbench` does not load torch
    if name == "TorchHasher":
        from hashbench.methods._torch import TorchHasher

        return TorchHasher
    raise AttributeError(f"module 'hashbench' has no attribute {name!r}")


__all__ = [
    "BinaryCodes",
    "HashbenchError",
    "Hasher",
    "HashingDataset",
    "InvalidInputError",
    "NotFittedError",
    "Scores",
    "Split",
    "TorchHasher",
    "TrainingDivergedError",
    "check_method",
    "code_stats",
    "create_method",
    "evaluate",
    "list_datasets",
    "list_methods",
    "load_dataset",
    "load_plugin",
    "save_dataset",
]
