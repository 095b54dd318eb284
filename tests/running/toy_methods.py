"""Small plugin methods and a small dataset file for the runner's tests.

``toy-projection`` is a random-projection hasher defined outside hashbench (as a user's plugin
would be) with knobs the tests need: iterative epochs (the epoch callback), a deliberate failure
at some code length, a pause inside fit (to interrupt or time out a running cell), and bits
forced constant (degenerate codes).
"""

from __future__ import annotations

import time

import numpy as np

from hashbench.datasets.base import HashingDataset, Split
from hashbench.hasher import Hasher


class ToyProjection(Hasher):
    name = "toy-projection"

    def __init__(self, n_bits=32, *, seed=0, device="cpu", n_epochs=1, fail_at_bits=0, sleep_s=0.0, constant_bits=0):
        super().__init__(n_bits, seed=seed, device=device)
        self.n_epochs = n_epochs
        self.fail_at_bits = fail_at_bits
        self.sleep_s = sleep_s
        self.constant_bits = constant_bits

    def _fit(self, train, callback):
        if self.n_bits == self.fail_at_bits:
            raise ValueError(f"toy-projection refuses {self.n_bits} bits")
        rng = self._rng()
        self.mean_ = train.features.mean(axis=0)
        self.projection_ = rng.normal(size=(train.features.shape[1], self.n_bits))
        for epoch in range(1, self.n_epochs + 1):
            time.sleep(self.sleep_s)
            # each epoch nudges the projection towards the top principal directions
            centred = train.features - self.mean_
            self.projection_ = centred.T @ (centred @ self.projection_)
            self.projection_ /= np.linalg.norm(self.projection_, axis=0)
            if callback is not None:
                callback(epoch, self)

    def _encode(self, split):
        outputs = (split.features - self.mean_) @ self.projection_
        outputs[:, : self.constant_bits] = 1.0
        return outputs


def write_toy_dataset(path, seed=0, n_train=120, n_query=30, n_database=200, dim=12, classes=4) -> str:
    """A clustered multi-label dataset as the common .npz format; returns the path."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))

    def split(n, name):
        cluster = rng.integers(0, classes, n)
        features = centres[cluster] + rng.normal(0, 1, (n, dim))
        labels = np.eye(classes, dtype=np.uint8)[cluster]
        return Split(features, labels, labels.astype(np.float32), name=name)

    dataset = HashingDataset("toy", split(n_train, "train"), split(n_query, "query"), split(n_database, "database"))
    from hashbench import save_dataset

    save_dataset(dataset, path)
    return str(path)


def write_config(path, text: str) -> str:
    """Write a matrix file and return its path."""
    path.write_text(text)
    return str(path)
