"""ITQ-aux: ITQ on visual features and auxiliary semantics together (a fairness baseline).

A method that sees the auxiliary semantics (detected objects, user tags) should be compared with a
plain learner that sees them too. ``itq-aux`` runs ITQ (Gong, Lazebnik, Gordo, Perronnin, TPAMI
2013) on the row-wise concatenation ``[features / ||features||, aux / ||aux||]``: each block is
L2-normalised per row so that neither dominates by its scale; an all-zero row of a block stays
zero (no NaN).

Free choices and defaults: the block normalisation above (L2 per row, equal weight), and ITQ's own
(``n_iter = 50``, random orthogonal init from ``seed``, ``n_bits`` at most the number of feature plus
aux columns).
"""

from __future__ import annotations

import numpy as np

from hashbench.methods._linear import l2_normalise_rows
from hashbench.methods.itq import ITQ


class ITQAux(ITQ):
    name = "itq-aux"
    uses_aux = True
    citation = "Gong, Lazebnik, Gordo, Perronnin, TPAMI 2013 (on features + aux)"
    max_bits_per_feature = None
    input_description = "features + aux columns"

    def _inputs(self, split, rows: slice = slice(None)) -> np.ndarray:
        return np.hstack([l2_normalise_rows(split.features[rows]), l2_normalise_rows(split.aux[rows])])
