"""Rows of float32 values kept exactly in a fraction of their memory when most entries are zero."""

from __future__ import annotations

import numpy as np


class PackedRows:
    """Rows of float32 values kept exactly in less memory when most entries are zero, as the outputs
    of a ReLU are: a bit mask of the entries that are not +0.0 and those entries' values in row
    order (a -0.0 counts as a value, so every row reads back bit for bit). ``rows(indices)`` gives
    the rows as a float32 array."""

    def __init__(self, batches):
        """``batches``: float32 arrays of consecutive rows, packed one after the other so that no
        unpacked copy of all the rows is ever held."""
        masks, values, counts = [], [], []
        for batch in batches:
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            flat = batch.reshape(len(batch), int(np.prod(batch.shape[1:])))
            kept = flat.view(np.uint32) != 0
            masks.append(np.packbits(kept, axis=1))
            values.append(flat[kept])
            counts.append(kept.sum(axis=1))
        self.row_shape = batch.shape[1:]
        self.width = flat.shape[1]
        self.mask = np.concatenate(masks)
        self.values = np.concatenate(values)
        self.starts = np.concatenate([[0], np.cumsum(np.concatenate(counts))])

    def __len__(self) -> int:
        return len(self.mask)

    def rows(self, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        kept = np.unpackbits(self.mask[indices], axis=1, count=self.width).view(bool)
        rows = np.zeros((len(indices), self.width), np.float32)
        if len(indices):
            rows[kept] = np.concatenate([self.values[self.starts[i] : self.starts[i + 1]] for i in indices])
        return rows.reshape(len(indices), *self.row_shape)
