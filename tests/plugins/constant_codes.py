"""A broken plugin for the conformance suite's own tests: every item gets the same code."""

import numpy as np

import hashbench as hb


class ConstantCodes(hb.Hasher):
    name = "constant-codes"
    citation = "none: a deliberately degenerate hasher"
    fast = True

    def _fit(self, train, callback):
        self.width_ = train.features.shape[1]

    def _encode(self, split):
        return np.ones((len(split), self.n_bits))
