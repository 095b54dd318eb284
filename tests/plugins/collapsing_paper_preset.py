"""A plugin for the conformance suite's own tests: healthy at its quick preset, collapsed at its
paper preset, as a method whose longer schedule drives every bit to the same split."""

import numpy as np

import hashbench as hb


class CollapsingPaperPreset(hb.Hasher):
    name = "collapsing-paper-preset"
    citation = "none: a hasher whose default schedule collapses"
    presets = {"paper": {"epochs": 50}, "quick": {"epochs": 2}}

    def __init__(self, n_bits=32, *, seed=0, device="cpu", preset="paper", epochs=None):
        super().__init__(n_bits, seed=seed, device=device)
        self.preset = preset
        self.epochs = epochs

    def _fit(self, train, callback):
        epochs = self.presets[self.preset]["epochs"] if self.epochs is None else self.epochs
        features = train.features
        self.mean_ = features.mean(axis=0)
        projection = np.random.default_rng(self.seed).normal(size=(features.shape[1], self.n_bits))
        if epochs > 10:  # "trained long": every bit becomes a copy of the first
            projection[:] = projection[:, :1]
        self.projection_ = projection
        for epoch in range(1, epochs + 1):
            if callback is not None:
                callback(epoch, self)

    def _encode(self, split):
        return (split.features - self.mean_) @ self.projection_
