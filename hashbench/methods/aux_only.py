"""Aux-only: ITQ codes from the auxiliary semantics alone (a fairness baseline).

Shows how far the auxiliary semantics (detected objects, user tags) go without any visual
feature: ITQ (Gong, Lazebnik, Gordo, Perronnin, TPAMI 2013) run on the aux matrix as it is.

Free choices and defaults: ITQ's own (``n_iter = 50``, random orthogonal init from ``seed``).
ITQ takes one bit per principal direction, so it gives at most as many bits as the aux has
columns (``c``: 10 on mosaic, 80 on COCO). Longer codes keep ITQ's ``c`` bits (the same codes as
``aux-only`` at ``c`` bits) and add ``n_bits - c`` signs of random Gaussian projections of the
centred aux (LSH's bits, N(0, 1) entries, drawn from ``seed`` apart from ITQ's rotation). The aux
holds no more than ``c`` directions, so the extra bits add resolution within them, not new
information; they let aux-only fill every code length of a table.
"""

from __future__ import annotations

import numpy as np

from hashbench._validation import check_positive_int
from hashbench.methods.itq import ITQ


class AuxOnly(ITQ):
    name = "aux-only"
    uses_aux = True
    citation = "Gong, Lazebnik, Gordo, Perronnin, TPAMI 2013 (on aux only)"
    max_bits_per_feature = None
    input_description = "aux semantics"

    def _inputs(self, split, rows: slice = slice(None)) -> np.ndarray:
        return split.aux[rows]

    def _fit(self, train, callback) -> None:
        check_positive_int(self.n_iter, "n_iter")
        data = self._inputs(train)
        width = data.shape[1]
        if self.n_bits <= width:
            self._fit_rotation(data, self.n_bits, callback)
            return
        random_bits = np.random.default_rng([self.seed, 1]).standard_normal((width, self.n_bits - width))
        self._fit_rotation(data, width, callback, extra_projection=random_bits)
