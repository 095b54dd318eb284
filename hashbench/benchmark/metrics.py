"""Retrieval metrics for binary codes: MAP@k under three protocols, P@k / R@k curves, precision and
recall within a Hamming radius.

Ranking. Database items are ranked by Hamming distance to the query; items at equal distance keep
database order (a stable sort, as MATLAB's ``sort`` in the authors' ``fast_PR_MAP``). An item is
relevant to a query when they share at least one label.

Protocols (``Scores.maps`` holds all three, computed in one pass; ``protocol`` picks ``Scores.map``
and the query set and ranking behind the curves):

- ``official``: AP@k = (sum of precision at each relevant rank <= k) / (relevant items in the top
  k), 0 when none is found; queries with no relevant item in the whole database are skipped.
- ``deephash``: the same AP@k and ranking, averaged over all queries (skipped ones count 0), as
  DeepHash-pytorch's ``CalcTopMap`` does (which however breaks ties arbitrarily).
- ``tie_aware``: the expected official AP@k when items at equal distance come in a uniformly random
  order (McSherry & Najork, ECIR 2008), in closed form from the per-distance counts. Only the group
  of tied items straddling rank k is partly retrieved; the number of its relevant items that make it
  into the top k is hypergeometric and the expectation is taken exactly over it. Its curves are the
  expected P@k and R@k. Queries are skipped as in ``official``.

Conventions (free choices, here and in the MATLAB code unless noted):

- P@k = relevant items in the top k / k. When k exceeds the database size, ranks beyond the
  database count as not retrieved, so P@k = relevant items in the whole database / k.
- R@k = relevant items in the top k / relevant items in the database; 0 for a query with none
  (such queries enter the curves only under ``deephash``).
- Precision within Hamming radius r = relevant items at distance <= r / items at distance <= r,
  and 0 when no item lies within r; recall within r likewise over all relevant items.
- A mean over an empty query set (every query skipped) is NaN, written as null by ``to_dict``.

Speed and memory. Queries are processed in chunks; per chunk only (queries x distances)
histograms and (queries x k) rankings are kept, never a queries x database matrix. On CPU a
compiled loop (numba) histograms the distances and ranks the top k by counting sort on several
threads (``torch.get_num_threads()``); on a CUDA device the same quantities come from torch ops
(a matmul of +-1 codes and ``topk`` on the key distance * n + index).
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np
from scipy.special import gammaln

from hashbench._validation import check_binary_labels, check_choice, check_positive_int, check_same_rows
from hashbench.codes import BinaryCodes, as_words
from hashbench.errors import InvalidInputError

PROTOCOLS = ("official", "deephash", "tie_aware")
SUMMARY_KS = (50, 100, 500, 1000)
HAMMING_RADIUS = 2
QUERY_CHUNK = 256  # queries per compiled-loop task; small enough to spread over threads
TORCH_CHUNK_BYTES = 256 * 2**20  # device memory for one chunk's queries x database temporaries


# --- results -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Scores:
    """Retrieval scores of one query set against one database (see the module docstring)."""

    protocol: str
    topk: int
    maps: dict[str, float]
    precision_curve: np.ndarray  # P@k for k = 1..topk (index k - 1)
    recall_curve: np.ndarray  # R@k for k = 1..topk
    pr_curve: dict[str, np.ndarray]  # "radius" 0..n_bits, "precision", "recall" within that radius
    n_queries: int
    n_queries_skipped: int  # queries with no relevant item in the database
    ap: np.ndarray  # (n_queries,) AP@topk per query under ``protocol``, NaN where the query is skipped

    @property
    def map(self) -> float:
        """MAP@topk under ``protocol``."""
        return self.maps[self.protocol]

    @property
    def precision_radius2(self) -> float:
        """Precision within Hamming radius 2 (radius n_bits when codes are shorter)."""
        radius = min(HAMMING_RADIUS, len(self.pr_curve["radius"]) - 1)
        return float(self.pr_curve["precision"][radius])

    def precision_at(self, k: int) -> float:
        return float(self.precision_curve[self._curve_index(k)])

    def recall_at(self, k: int) -> float:
        return float(self.recall_curve[self._curve_index(k)])

    def _curve_index(self, k) -> int:
        k = check_positive_int(k, "k")
        if k > self.topk:
            raise InvalidInputError(f"k must be at most topk={self.topk}, got {k}")
        return k - 1

    def _summary_ks(self) -> list[int]:
        return sorted({k for k in SUMMARY_KS if k <= self.topk} | {self.topk})

    def to_dict(self) -> dict:
        """A JSON-able dict (NaN written as None)."""
        return {
            "protocol": self.protocol,
            "topk": self.topk,
            "map": _json_float(self.map),
            "maps": {name: _json_float(value) for name, value in self.maps.items()},
            "precision_curve": _json_list(self.precision_curve),
            "recall_curve": _json_list(self.recall_curve),
            "pr_curve": {
                "radius": [int(r) for r in self.pr_curve["radius"]],
                "precision": _json_list(self.pr_curve["precision"]),
                "recall": _json_list(self.pr_curve["recall"]),
            },
            "precision_radius2": _json_float(self.precision_radius2),
            "n_queries": self.n_queries,
            "n_queries_skipped": self.n_queries_skipped,
        }

    def summary(self) -> str:
        counted = self.n_queries - self.n_queries_skipped
        lines = [
            f"{self.n_queries} queries ({counted} with relevant items); MAP@{self.topk} by protocol:",
            *(
                f"  {name:<10} {value:.4f}" + ("  <- reported" if name == self.protocol else "")
                for name, value in self.maps.items()
            ),
            f"P@k ({self.protocol}): "
            + ", ".join(f"P@{k} {self.precision_at(k):.4f}" for k in self._summary_ks()),
            f"precision within Hamming radius 2: {self.precision_radius2:.4f}",
        ]
        return "\n".join(lines)


def _json_float(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _json_list(values) -> list:
    return [_json_float(v) for v in values]


# --- entry point -------------------------------------------------------------------------------
def evaluate(
    query_codes, db_codes, query_labels, db_labels, topk=1000, protocol="official", device="auto"
) -> Scores:
    """Score retrieval of ``db_codes`` items for each of ``query_codes`` (see the module docstring).

    Codes are ``BinaryCodes`` or (n, n_bits) arrays of -1/+1 or 0/1; labels are multi-hot 0/1
    arrays (n, c). ``device``: "auto" (CUDA when torch sees it, else CPU), "cpu", "cuda[:i]" or
    a ``torch.device``.
    """
    protocol = check_choice(protocol, PROTOCOLS, "protocol")
    topk = check_positive_int(topk, "topk")
    query, database, query_labels, db_labels = _check_inputs(query_codes, db_codes, query_labels, db_labels)
    ranker = _ranker_for(device)
    k = min(topk, len(database))
    log_factorial = gammaln(np.arange(len(database) + 1) + 1.0)
    score = partial(_chunk_scores, k=k, topk=topk, protocol=protocol, log_factorial=log_factorial)
    totals = _Totals(topk, query.n_bits, protocol)
    for chunk_scores in ranker(query, database, query_labels, db_labels, k, score):
        totals.add(chunk_scores)
    return totals.scores()


def _check_inputs(query_codes, db_codes, query_labels, db_labels):
    query = BinaryCodes.coerce(query_codes, "query_codes")
    database = BinaryCodes.coerce(db_codes, "db_codes")
    for name, codes in (("query_codes", query), ("db_codes", database)):
        if len(codes) == 0:
            raise InvalidInputError(f"{name} has zero rows")
    if query.n_bits != database.n_bits:
        raise InvalidInputError(
            f"query_codes have {query.n_bits} bits but db_codes have {database.n_bits}; they must match"
        )
    query_labels = check_binary_labels(query_labels, "query_labels")
    db_labels = check_binary_labels(db_labels, "db_labels")
    check_same_rows({"query_codes": query.packed, "query_labels": query_labels})
    check_same_rows({"db_codes": database.packed, "db_labels": db_labels})
    if query_labels.shape[1] != db_labels.shape[1] or query_labels.shape[1] == 0:
        raise InvalidInputError(
            f"query_labels and db_labels must have the same number (>= 1) of label columns, "
            f"got {query_labels.shape[1]} and {db_labels.shape[1]}"
        )
    return query, database, query_labels, db_labels


# --- ranking backends: per query chunk, distance histograms and the stable top k -----------------
class RankedChunk(NamedTuple):
    """One chunk of queries: per-distance counts over the whole database and the top-k ranking."""

    n_items: np.ndarray  # (q, n_bits + 1) database items at each distance
    n_relevant: np.ndarray  # (q, n_bits + 1) relevant items at each distance
    top_relevant: np.ndarray  # (q, k) bool: relevance at ranks 1..k (stable order)
    top_distance: np.ndarray  # (q, k) distance at ranks 1..k


def _ranker_for(device):
    import torch

    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidInputError(f"device must be 'auto', 'cpu' or 'cuda[:index]', got {device!r}") from error
    if device.type == "cpu":
        return rank_on_cpu
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {device} requested but torch sees no CUDA device")
    return TorchRanker(device)


def rank_on_cpu(query, database, query_labels, db_labels, k, score):
    """Yield ``score(RankedChunk)`` per QUERY_CHUNK queries, ranked by the compiled loop and scored
    on several threads."""
    import torch

    from hashbench._bitkernels import rank_top_k

    q_words, db_words_t = as_words(query), np.ascontiguousarray(as_words(database).T)
    q_label_words, db_label_words_t = _label_words(query_labels), np.ascontiguousarray(_label_words(db_labels).T)
    n_groups = query.n_bits + 1

    def rank(start):
        stop = min(start + QUERY_CHUNK, len(query))
        hist = np.zeros((stop - start, 2 * n_groups), np.int64)
        top_relevant = np.zeros((stop - start, k), np.bool_)
        top_distance = np.zeros((stop - start, k), np.int64)
        rank_top_k(
            q_words[start:stop], db_words_t, q_label_words[start:stop], db_label_words_t, k,
            hist, top_relevant, top_distance,
        )
        return score(RankedChunk(hist[:, 0::2] + hist[:, 1::2], hist[:, 1::2], top_relevant, top_distance))

    n_threads = max(1, torch.get_num_threads())
    with ThreadPoolExecutor(n_threads) as pool:
        yield from _in_order(pool, rank, range(0, len(query), QUERY_CHUNK), window=2 * n_threads)


def _in_order(pool, function, items, window):
    """``pool.map`` with at most ``window`` results waiting, so memory stays bounded."""
    pending = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _label_words(labels: np.ndarray) -> np.ndarray:
    return as_words(BinaryCodes(np.packbits(labels, axis=1, bitorder="little"), labels.shape[1]))


class TorchRanker:
    """``score(RankedChunk)`` per query chunk, ranked by torch ops on ``device`` (used for CUDA)."""

    def __init__(self, device):
        self.device = device

    def __call__(self, query, database, query_labels, db_labels, k, score):
        import torch

        def tensor(array):
            return torch.as_tensor(np.asarray(array, np.float32), device=self.device)

        n_bits, n_db = query.n_bits, len(database)
        db_signs, db_label_t = tensor(database.to_signs()), tensor(db_labels)
        index = torch.arange(n_db, device=self.device)
        chunk = max(1, TORCH_CHUNK_BYTES // (32 * n_db))  # about 32 bytes per (query, item) pair
        for start in range(0, len(query), chunk):
            signs = tensor(query[start : start + chunk].to_signs())
            labels = tensor(query_labels[start : start + chunk])
            # +-1 products and 0/1 label products are exact in float32 (also under TF32)
            distance = ((n_bits - signs @ db_signs.T) / 2).round().long()
            relevant = (labels @ db_label_t.T) > 0
            hist = torch.zeros(len(signs), 2 * (n_bits + 1), dtype=torch.int64, device=self.device)
            hist.scatter_add_(1, 2 * distance + relevant, torch.ones_like(distance))
            top = torch.topk(distance * n_db + index, k, dim=1, largest=False, sorted=True).indices
            hist = hist.cpu().numpy()
            yield score(
                RankedChunk(
                    hist[:, 0::2] + hist[:, 1::2],
                    hist[:, 1::2],
                    relevant.gather(1, top).cpu().numpy(),
                    distance.gather(1, top).cpu().numpy(),
                )
            )


# --- scores from a ranked chunk ----------------------------------------------------------------
class ChunkScores(NamedTuple):
    n_relevant: np.ndarray  # (q,) relevant items in the database
    ap: np.ndarray  # (q,) AP@k under the stable ranking
    ap_tie_aware: np.ndarray  # (q,) expected AP@k over random orders of ties
    curves: dict[str, np.ndarray]  # (q, topk) precision and recall, (q, n_bits + 1) within radius


def _chunk_scores(chunk: RankedChunk, k: int, topk: int, protocol: str, log_factorial: np.ndarray) -> ChunkScores:
    n_relevant = chunk.n_relevant.sum(axis=1)
    stable_hits = np.cumsum(chunk.top_relevant, axis=1)
    if protocol == "tie_aware":
        group_rate = chunk.n_relevant / np.maximum(chunk.n_items, 1)
        hits = np.cumsum(np.take_along_axis(group_rate, chunk.top_distance, axis=1), axis=1)
    else:
        hits = stable_hits
    hits = hits[:, np.minimum(np.arange(topk), k - 1)]  # ranks beyond the database add nothing
    relevant_within = np.cumsum(chunk.n_relevant, axis=1)
    return ChunkScores(
        n_relevant=n_relevant,
        ap=_average_precision(chunk.top_relevant, stable_hits),
        ap_tie_aware=tie_aware_average_precision(chunk.n_items, chunk.n_relevant, k, log_factorial),
        curves={
            "precision": hits / np.arange(1, topk + 1),
            "recall": _ratio(hits, n_relevant[:, None]),
            "pr_precision": _ratio(relevant_within, np.cumsum(chunk.n_items, axis=1)),
            "pr_recall": _ratio(relevant_within, n_relevant[:, None]),
        },
    )


def _ratio(numerator, denominator) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, np.float64), denominator)
    return np.divide(numerator, denominator, out=np.zeros(numerator.shape), where=denominator > 0)


def _average_precision(relevant: np.ndarray, hits: np.ndarray) -> np.ndarray:
    ranks = np.arange(1, relevant.shape[1] + 1)
    precision_sum = np.where(relevant, hits / ranks, 0.0).sum(axis=1)
    return _ratio(precision_sum, hits[:, -1])


def tie_aware_average_precision(
    n_items: np.ndarray, n_relevant: np.ndarray, k: int, log_factorial: np.ndarray
) -> np.ndarray:
    """Expected AP@k (official normalisation) per query when ties are ordered uniformly at random.

    ``n_items`` and ``n_relevant`` are (q, groups) counts per distance in ranking order. A group of
    n tied items with r relevant, placed after s items of which c are relevant, adds to the sum of
    precisions sum_{i=1..n} (r / n) (c + 1 + (i - 1)(r - 1)/(n - 1)) / (s + i) in expectation; the sums
    of 1/(s + i) are differences of harmonic numbers. The group straddling rank k is cut to its
    first m = k - s items, of which X ~ Hypergeometric(n, r, m) are relevant; given X = x the cut
    is a group of m items with x relevant, and the AP's denominator is c + x, so the expectation is
    a sum over x. ``log_factorial[n]`` = log(n!) for n up to the database size.
    """
    n_items = n_items.astype(np.float64)
    n_relevant = n_relevant.astype(np.float64)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, k + 1))])
    start = np.cumsum(n_items, axis=1) - n_items
    relevant_before = np.cumsum(n_relevant, axis=1) - n_relevant
    complete = start + n_items <= k
    inverse_rank_sum = (
        harmonic[np.minimum(start + n_items, k).astype(np.int64)] - harmonic[np.minimum(start, k).astype(np.int64)]
    )
    group_sums = _tied_precision_sum(n_items, n_relevant, start, relevant_before, inverse_rank_sum)
    full_sum = np.where(complete, group_sums, 0.0).sum(axis=1)
    full_hits = np.where(complete, n_relevant, 0.0).sum(axis=1)
    expected = _ratio(full_sum, full_hits)

    rows, group = np.nonzero(~complete & (start < k))  # at most one cut group per query
    if len(rows):
        # one entry per (query, possible x), flattened: the ranges of x differ in length
        n, r, s, c = (a[rows, group].astype(np.int64) for a in (n_items, n_relevant, start, relevant_before))
        m = k - s
        low, high = np.maximum(0, m - (n - r)), np.minimum(m, r)
        counts = high - low + 1
        owner = np.repeat(np.arange(len(rows)), counts)
        x = low[owner] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        n, r, s, c, m = (a[owner] for a in (n, r, s, c, m))
        weight = _hypergeometric_pmf(x, n, r, m, log_factorial)
        cut_sum = _tied_precision_sum(m, x, s, c, harmonic[k] - harmonic[s])
        ap_given_x = _ratio(full_sum[rows][owner] + cut_sum, c + x)
        expected[rows] = np.bincount(owner, weights=weight * ap_given_x, minlength=len(rows))
    return expected


def _hypergeometric_pmf(x, n, r, m, log_factorial):
    """P(x relevant among m drawn without replacement from n items of which r are relevant)."""

    def log_binomial(a, b):
        return log_factorial[a] - log_factorial[b] - log_factorial[a - b]

    return np.exp(log_binomial(r, x) + log_binomial(n - r, m - x) - log_binomial(n, m))


def _tied_precision_sum(n, r, s, c, inverse_rank_sum):
    """Expected sum of precisions at the relevant ranks of a randomly ordered tie group.

    ``inverse_rank_sum`` = sum_{i=1..n} 1/(s + i); sum_{i=1..n} (i - 1)/(s + i) follows from it.
    """
    offset_sum = n - (s + 1) * inverse_rank_sum
    pair_rate = _ratio(r - 1, n - 1)  # chance that another given slot holds a relevant item
    return _ratio(r, n) * ((c + 1) * inverse_rank_sum + pair_rate * offset_sum)


# --- accumulation over chunks ------------------------------------------------------------------
class _Totals:
    """Per-query APs, and the curves summed over the queries that ``protocol`` averages."""

    def __init__(self, topk: int, n_bits: int, protocol: str):
        self.topk, self.n_bits, self.protocol = topk, n_bits, protocol
        self.n_relevant, self.ap, self.ap_tie_aware = [], [], []
        self.curve_sums: dict[str, np.ndarray] = {}

    def add(self, chunk: ChunkScores) -> None:
        self.n_relevant.append(chunk.n_relevant)
        self.ap.append(chunk.ap)
        self.ap_tie_aware.append(chunk.ap_tie_aware)
        averaged = self._averaged(chunk.n_relevant)
        for name, values in chunk.curves.items():
            self.curve_sums[name] = self.curve_sums.get(name, 0.0) + values[averaged].sum(axis=0)

    def _averaged(self, n_relevant: np.ndarray) -> np.ndarray:
        return np.ones_like(n_relevant, bool) if self.protocol == "deephash" else n_relevant > 0

    def scores(self) -> Scores:
        n_relevant = np.concatenate(self.n_relevant)
        counted = n_relevant > 0
        ap, ap_tie_aware = np.concatenate(self.ap), np.concatenate(self.ap_tie_aware)
        averaged = self._averaged(n_relevant)
        n_averaged = int(averaged.sum())
        with np.errstate(invalid="ignore", divide="ignore"):  # no query averaged: NaN curves
            curves = {name: total / n_averaged for name, total in self.curve_sums.items()}
        return Scores(
            protocol=self.protocol,
            topk=self.topk,
            maps={
                "official": _mean(ap[counted]),
                "deephash": _mean(ap),
                "tie_aware": _mean(ap_tie_aware[counted]),
            },
            precision_curve=curves["precision"],
            recall_curve=curves["recall"],
            pr_curve={
                "radius": np.arange(self.n_bits + 1),
                "precision": curves["pr_precision"],
                "recall": curves["pr_recall"],
            },
            n_queries=len(n_relevant),
            n_queries_skipped=int((~counted).sum()),
            ap=np.where(averaged, ap_tie_aware if self.protocol == "tie_aware" else ap, np.nan),
        )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")
