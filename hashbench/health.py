"""Code-health statistics: does a set of binary codes carry information at all?

A hashing method can fail silently: bits stuck at one value, or every item mapped to a handful of
codes, still give a MAP (that of near-random retrieval). ``code_stats`` measures the failure modes
directly, so every run record can show them beside the MAP:

- ``constant_bits``: fraction of bits on which at least 99% of the items agree
  (``max(p, 1 - p) >= 0.99``, p = fraction of ones of the bit);
- ``mean_abs_balance``: mean over bits of ``|2p - 1|`` (0 = every bit split half and half, 1 =
  every bit constant);
- ``distinct_fraction``: number of distinct codes / number of items;
- ``mean_abs_correlation``: mean absolute Pearson correlation over pairs of bits that are not
  exactly constant (their correlation is undefined otherwise); 0 when fewer than two such bits.

``is_degenerate`` is the runner's warning rule (``DEGENERATE_RULE``): more than 10% constant bits,
fewer distinct codes than 1% of the items, or a mean absolute bit correlation above 0.9. The last
catches codes whose bits are near-copies of one another: a few items on the other side of some
bits' hyperplanes give them more than 1% distinct codes, yet such a code carries little more than
one bit, while independent bits of any balance have correlations near 0.
"""

from __future__ import annotations

import numpy as np

from hashbench.codes import BinaryCodes
from hashbench.errors import InvalidInputError

CONSTANT_AGREEMENT = 0.99
DEGENERATE_CONSTANT_BITS = 0.1
DEGENERATE_DISTINCT_FRACTION = 0.01
DEGENERATE_CORRELATION = 0.9
DEGENERATE_RULE = (
    f"constant_bits > {DEGENERATE_CONSTANT_BITS}, distinct_fraction < {DEGENERATE_DISTINCT_FRACTION} "
    f"or mean_abs_correlation > {DEGENERATE_CORRELATION}"
)
STAT_KEYS = ("constant_bits", "mean_abs_balance", "distinct_fraction", "mean_abs_correlation")


def code_stats(codes) -> dict[str, float]:
    """The four health statistics of ``codes`` (BinaryCodes, or a ±1 / {0,1} array); see the module docstring."""
    codes = BinaryCodes.coerce(codes, "codes")
    if len(codes) == 0:
        raise InvalidInputError("code_stats needs at least one code, got 0 items")
    bits = codes.unpack()
    ones = bits.mean(axis=0, dtype=np.float64)
    agreement = np.maximum(ones, 1.0 - ones)
    return {
        "constant_bits": float((agreement >= CONSTANT_AGREEMENT).mean()),
        "mean_abs_balance": float(np.abs(2.0 * ones - 1.0).mean()),
        "distinct_fraction": len(np.unique(codes.packed, axis=0)) / len(codes),
        "mean_abs_correlation": _mean_abs_correlation(bits, ones),
    }


def _mean_abs_correlation(bits: np.ndarray, ones: np.ndarray) -> float:
    varying = (ones > 0.0) & (ones < 1.0)
    if varying.sum() < 2:
        return 0.0
    centred = bits[:, varying].astype(np.float64) - ones[varying]
    scale = np.sqrt(ones[varying] * (1.0 - ones[varying]))
    correlation = (centred.T @ centred) / len(bits) / np.outer(scale, scale)
    upper = np.triu_indices(len(correlation), k=1)
    return float(np.abs(correlation[upper]).mean())


def is_degenerate(stats: dict[str, float]) -> bool:
    """The warning rule of the runner and the reports (see the module docstring)."""
    return (
        stats["constant_bits"] > DEGENERATE_CONSTANT_BITS
        or stats["distinct_fraction"] < DEGENERATE_DISTINCT_FRACTION
        or stats["mean_abs_correlation"] > DEGENERATE_CORRELATION
    )


def describe_health(stats: dict[str, float]) -> str:
    """One line with the statistics, for warnings and footnotes."""
    return (
        f"constant_bits={stats['constant_bits']:.2f}, distinct_fraction={stats['distinct_fraction']:.4f}, "
        f"mean_abs_balance={stats['mean_abs_balance']:.2f}, mean_abs_correlation={stats['mean_abs_correlation']:.2f}"
    )
