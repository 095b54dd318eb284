"""Best and second best by a test, not by the printed digits: which table cells differ for real.

A table column ranks its cells by mean; the marks come from tiers built with a test:

- the best tier is the top cell and every cell that the top cell does not beat;
- the second tier is built the same way from the cells that remain, and is kept only when each
  of its cells is beaten by each cell of the best tier (else the column has no second best).

A tier of several cells is a tie. "A beats B" means: A's mean is the better one and a one-sided
test in that direction has p < ``ALPHA`` / 2, i.e. a two-sided test at ``ALPHA`` whose
direction agrees with the means (a rank test can disagree with the means when a few queries
carry a large difference).

- MAP cells: Wilcoxon's signed-rank test over queries (``scipy.stats.wilcoxon``), on the
  per-query AP of the seeds both cells ran, pooled: the pairs are (seed, query). Queries a
  protocol skips (NaN) drop out, and so do pairs with no difference (Wilcoxon's zero method).
  Two cells with no seed in common cannot be compared, so neither beats the other.
- Seconds: Welch's t-test over seeds (``scipy.stats.ttest_ind``, unequal variances) on the
  logarithm of the seconds, since timing noise is a factor rather than an offset (a method 80
  times faster stays faster whatever its spread); a cell with fewer than two seeds cannot be
  compared.
- The paper's columns hold one number per cell; there "beats" means a higher value at the printed
  precision, which gives the paper's own marks.

Per-query AP comes from the file the runner saves beside each record (``store.save_query_ap``);
records without it (made before it existed, or reported under another protocol or top-k) are
rescored from their saved codes and the dataset, and the result is saved for the next report.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from hashbench.codes import BinaryCodes
from hashbench.reporting.references import Unavailable, report_dataset
from hashbench.running import store

ALPHA = 0.05


# ----------------------------------------------------------------------------- tests
def ap_beats(a: Mapping[int, np.ndarray], b: Mapping[int, np.ndarray]) -> bool:
    """Whether per-query AP ``a`` (seed -> AP per query) is significantly higher than ``b``."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return False
    first = np.concatenate([a[s] for s in seeds])
    second = np.concatenate([b[s] for s in seeds])
    if first.shape != second.shape:
        raise ValueError("per-query AP of two cells on one dataset must have the same number of queries")
    both = ~(np.isnan(first) | np.isnan(second))
    difference = first[both] - second[both]
    difference = difference[difference != 0]
    if difference.size == 0 or difference.mean() <= 0:
        return False
    return bool(stats.wilcoxon(difference, alternative="greater").pvalue < ALPHA / 2)


def fewer_seconds(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether the times ``a`` (one per seed) are significantly shorter than ``b``."""
    if len(a) < 2 or len(b) < 2 or np.mean(a) >= np.mean(b):
        return False
    p = stats.ttest_ind(np.log(a), np.log(b), equal_var=False, alternative="less").pvalue
    return bool(np.isfinite(p) and p < ALPHA / 2)


# ----------------------------------------------------------------------------- tiers
def tiers(order: Sequence[int], beats: Callable[[int, int], bool]) -> tuple[list[int], list[int]]:
    """The best and second tiers (see the module docstring) of items ``order``ed best first."""
    if not order:
        return [], []
    beats = functools.cache(beats)
    best = [order[0]] + [i for i in order[1:] if not beats(order[0], i)]
    rest = [i for i in order if i not in best]
    if not rest:
        return best, []
    second = [rest[0]] + [i for i in rest[1:] if not beats(rest[0], i)]
    if not all(beats(i, j) for i in best for j in second):
        return best, []
    return best, second


# ----------------------------------------------------------------------------- per-query AP
def query_ap(record_file, protocol: str, topk: int | None) -> np.ndarray:
    """The per-query AP of a finished record under ``protocol`` and ``topk``: the saved file, or
    else rescored from the record's codes (and saved); raises Unavailable when neither is possible."""
    saved = store.load_query_ap(record_file, protocol, topk)
    if saved is not None:
        return saved
    codes = [store.codes_path(record_file, split) for split in ("query", "database")]
    if not all(c.is_file() for c in codes):
        raise Unavailable("its codes are not saved")
    dataset = report_dataset(store.read_record(record_file)["spec"])
    from hashbench.metrics import evaluate

    scores = evaluate(BinaryCodes.load(codes[0]), BinaryCodes.load(codes[1]), dataset.query.labels,
                      dataset.database.labels, topk=topk, protocol=protocol)  # fmt: skip
    store.save_query_ap(record_file, scores.ap, protocol, topk)
    return np.asarray(scores.ap, dtype=np.float64)
