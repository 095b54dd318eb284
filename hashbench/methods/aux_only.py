"""Aux-only: ITQ codes from the auxiliary semantics alone (a fairness baseline).

Shows how far the auxiliary semantics (detected objects, user tags) go without any visual
feature: ITQ (Gong, Lazebnik, Gordo, Perronnin, TPAMI 2013) run on the aux matrix as it is.

Free choices and defaults: ITQ's own (``n_iter = 50``, random orthogonal init from ``seed``);
``n_bits`` at most the aux width (one bit per principal direction), e.g. 80 for COCO's 80
object classes.
"""

from __future__ import annotations

import numpy as np

from hashbench.methods.itq import ITQ


class AuxOnly(ITQ):
    name = "aux-only"
    uses_aux = True
    citation = "Gong, Lazebnik, Gordo, Perronnin, TPAMI 2013 (on aux only)"
    max_bits_per_feature = None
    input_description = "aux semantics"

    def _inputs(self, split, rows: slice = slice(None)) -> np.ndarray:
        return split.aux[rows]
