"""Retrieval metrics for binary codes: MAP@k under every published convention with its tie range,
P@k / R@k curves, precision and recall within a Hamming radius.

Ranking. Database items are ranked by Hamming distance to the query. An item is relevant to a
query when they share at least one label; R is the number of items relevant to the query in the
whole database. AP@k = (sum of the precisions at the relevant ranks <= k) / (a normaliser), and
MAP@k is its mean over queries. ``topk=None`` means k = the database size (MAP@all); a larger
``topk`` is clamped to the database size, and ``Scores.topk`` is the k actually used.

Conventions (``evaluate`` options; each is a free choice that changes the number):

- ``normalise``, the normaliser of AP@k: ``"retrieved"``, the relevant items in the top k (0 when
  none is found); ``"min-r-k"``, min(R, k); ``"relevant"``, R. At k = the database size all three
  are R.
- ``ties``, the order of items at equal distance:
  ``"stable"``, database order (a stable sort, as MATLAB's ``sort``);
  ``"optimistic"``, the order that gives the highest AP@k; ``"pessimistic"``, the lowest;
  ``"expected"``, the expectation over uniformly random orders of the tied items (McSherry &
  Najork, ECIR 2008), in closed form. The best order puts relevant items first within every
  distance and the worst puts them last, with one exception under ``"retrieved"``: the group of
  tied items straddling rank k can do best with fewer relevant items in the top k (or worst with
  more), because its normaliser counts them. So the optimum is taken over the number x of its
  relevant items that make it into the top k, relevant first (or last) among them; for P@k and R@k,
  optimistic and pessimistic are relevant first and last in every group.
- ``no_relevant``, queries with no relevant item in the database (R = 0): ``"skip"`` leaves them
  out of every mean; ``"zero"`` counts their AP as 0 (and their P@k, R@k as 0).
- ``protocol`` names a preset of the three (``PRESETS``); an explicit option overrides it:
  ``official`` = retrieved / stable / skip, the authors' MATLAB ``fast_PR_MAP``;
  ``deephash`` = retrieved / stable / zero, DeepHash-pytorch's ``CalcTopMap`` (which however
  breaks ties by ``np.argsort``'s unstable order); ``tie_aware`` = retrieved / expected / skip.

Every score carries its tie range ``Scores.map_range`` = (MAP under ``"pessimistic"``, MAP under
``"optimistic"``) for the same normalisation, k and query set: the MAP of any order of tied
items, the stable one and the expected one included, lies inside it. ``Scores.maps`` holds the
MAP@k of each preset at the same k, so results scored under any convention can be compared by
preset.

Expected AP. A group of n tied items with r relevant, placed after s items of which c are
relevant, adds sum_{i=1..n} (r / n) (c + 1 + (i - 1)(r - 1)/(n - 1)) / (s + i) to the sum of
precisions in expectation; sums of 1/(s + i) are differences of harmonic numbers. The group
straddling rank k is cut to its first m = k - s items, of which X ~ Hypergeometric(n, r, m) are
relevant. Given X = x the cut is a random order of m items with x relevant, and the normaliser is
fixed (c + x under ``"retrieved"``), so E[AP@k] is a sum over x; the optimistic and pessimistic APs
are the maximum and minimum over the same x. The closed forms are exact up to float64 rounding
(absolute error far below 1e-9 at a million items).

Other scores (free choices, here and in the MATLAB code unless noted):

- P@k = relevant items in the top k / k; R@k = relevant items in the top k / R (0 for R = 0). Both
  follow ``ties``: under ``"expected"`` they are expectations over tie orders. The curves are
  means over the queries that the MAP averages.
- Precision within Hamming radius r = relevant items at distance <= r / items at distance <= r,
  and 0 when no item lies within r; recall within r likewise over all relevant items. Neither
  depends on tie order.
- A mean over an empty query set (every query skipped) is NaN, written as null by ``to_dict``.

Speed and memory. Queries are processed in chunks; per chunk only (queries x distances)
histograms, per-query sums and per-rank sums over the chunk's queries are kept, never a
(queries x database) or (queries x k) array, so MAP@all costs about what MAP@1000 does. On CPU a
compiled loop (numba) histograms the distances and scores the stable top k on several threads
(``torch.get_num_threads()``); on a CUDA device the same quantities come from torch ops (a matmul
of +-1 codes and ``topk`` on the key distance * n + index). Everything else derives from the
histograms.
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

NORMALISATIONS = ("retrieved", "min-r-k", "relevant")
TIE_RULES = ("stable", "optimistic", "pessimistic", "expected")
NO_RELEVANT_RULES = ("skip", "zero")
PRESETS = {  # protocol -> (normalise, ties, no_relevant)
    "official": ("retrieved", "stable", "skip"),
    "deephash": ("retrieved", "stable", "zero"),
    "tie_aware": ("retrieved", "expected", "skip"),
}
PROTOCOLS = tuple(PRESETS)
SUMMARY_KS = (50, 100, 500, 1000)
HAMMING_RADIUS = 2
QUERY_CHUNK = 256  # queries per compiled-loop task; small enough to spread over threads
TORCH_CHUNK_BYTES = 256 * 2**20  # device memory for one chunk's temporaries


class Convention(NamedTuple):
    """The resolved components of a MAP: ``protocol`` with any explicit overrides applied."""

    protocol: str
    normalise: str
    ties: str
    no_relevant: str

    @classmethod
    def resolve(cls, protocol, normalise=None, ties=None, no_relevant=None) -> Convention:
        protocol = check_choice(protocol, PROTOCOLS, "protocol")
        preset = PRESETS[protocol]
        return cls(
            protocol,
            check_choice(preset[0] if normalise is None else normalise, NORMALISATIONS, "normalise"),
            check_choice(preset[1] if ties is None else ties, TIE_RULES, "ties"),
            check_choice(preset[2] if no_relevant is None else no_relevant, NO_RELEVANT_RULES, "no_relevant"),
        )

    def __str__(self) -> str:
        return f"{self.normalise} / {self.ties} / {self.no_relevant}"


# --- results -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Scores:
    """Retrieval scores of one query set against one database (see the module docstring).

    ``ap`` holds every query's AP@topk under ``convention``, in query order, NaN for the queries
    the convention leaves out (no relevant item in the database under ``no_relevant="skip"``);
    ``map`` is ``np.nanmean(ap)``. Two methods scored on the same queries give paired per-query
    samples, e.g. for a signed-rank test.
    """

    convention: Convention
    topk: int  # k after clamping to the database size
    map: float  # MAP@topk under ``convention``
    map_range: tuple[float, float]  # (pessimistic, optimistic) MAP@topk: the tie range
    maps: dict[str, float]  # MAP@topk of each preset protocol (official, deephash, tie_aware)
    ap: np.ndarray  # (n_queries,) AP@topk per query under ``convention``, NaN for skipped queries
    precision_curve: np.ndarray  # P@k for k = 1..topk (index k - 1)
    recall_curve: np.ndarray  # R@k for k = 1..topk
    pr_curve: dict[str, np.ndarray]  # "radius" 0..n_bits, "precision", "recall" within that radius
    n_queries: int
    n_queries_skipped: int  # queries with no relevant item in the database

    @property
    def protocol(self) -> str:
        return self.convention.protocol

    @property
    def normalise(self) -> str:
        return self.convention.normalise

    @property
    def ties(self) -> str:
        return self.convention.ties

    @property
    def no_relevant(self) -> str:
        return self.convention.no_relevant

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
        """A JSON-able dict (NaN written as None) of everything but the per-query ``ap``."""
        return {
            "protocol": self.protocol,
            "normalise": self.normalise,
            "ties": self.ties,
            "no_relevant": self.no_relevant,
            "topk": self.topk,
            "map": _json_float(self.map),
            "map_range": _json_list(self.map_range),
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
        low, high = self.map_range
        return "\n".join(
            [
                (
                    f"{self.n_queries} queries ({counted} with relevant items); protocol {self.protocol} "
                    f"({self.convention}: normalise / ties / no_relevant)"
                ),
                f"MAP@{self.topk} {self.map:.4f} [{low:.4f}, {high:.4f}] (tie range: worst and best order of tied items)",
                f"MAP@{self.topk} by preset: " + ", ".join(f"{name} {value:.4f}" for name, value in self.maps.items()),
                f"P@k ({self.ties} ties): "
                + ", ".join(f"P@{k} {self.precision_at(k):.4f}" for k in self._summary_ks()),
                f"precision within Hamming radius 2: {self.precision_radius2:.4f}",
            ]
        )


def _json_float(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _json_list(values) -> list:
    return [_json_float(v) for v in values]


# --- entry point -------------------------------------------------------------------------------
def evaluate(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    topk=1000,
    protocol="official",
    normalise=None,
    ties=None,
    no_relevant=None,
    device="auto",
) -> Scores:
    """Score retrieval of ``db_codes`` items for each of ``query_codes`` (see the module docstring).

    Codes are ``BinaryCodes`` or (n, n_bits) arrays of -1/+1 or 0/1; labels are multi-hot 0/1
    arrays (n, c). ``topk``: an integer >= 1 (clamped to the database size) or None for the whole
    database. ``protocol`` picks a preset of ``normalise`` (retrieved / min-r-k / relevant),
    ``ties`` (stable / optimistic / pessimistic / expected) and ``no_relevant`` (skip / zero);
    those given explicitly override it. ``device``: "auto" (CUDA when torch sees it, else CPU),
    "cpu", "cuda[:i]" or a ``torch.device``.
    """
    convention = Convention.resolve(protocol, normalise, ties, no_relevant)
    if topk is not None:
        topk = check_positive_int(topk, "topk")
    query, database, query_labels, db_labels = _check_inputs(query_codes, db_codes, query_labels, db_labels)
    ranker = _ranker_for(device)
    k = len(database) if topk is None else min(topk, len(database))
    tables = _Tables(
        log_factorial=gammaln(np.arange(len(database) + 1) + 1.0),
        harmonic=np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, k + 1))]),
    )
    score = partial(_chunk_scores, k=k, convention=convention, tables=tables)
    totals = _Totals(k, query.n_bits, convention)
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
    """One chunk of queries: per-distance counts over the whole database and the stable top k."""

    n_items: np.ndarray  # (q, n_bits + 1) database items at each distance
    n_relevant: np.ndarray  # (q, n_bits + 1) relevant items at each distance
    precision_sum: np.ndarray  # (q,) sum of precisions at the relevant ranks <= k, ties in database order
    hits: np.ndarray  # (q,) relevant items in that top k
    rank_relevant: np.ndarray  # (k,) relevant items at each rank, summed over the chunk's queries
    rank_recall: np.ndarray  # (k,) the same, each query's weighted by 1 / its relevant items


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

    from hashbench._bitkernels import score_stable_top_k

    q_words, db_words_t = as_words(query), np.ascontiguousarray(as_words(database).T)
    q_label_words, db_label_words_t = _label_words(query_labels), np.ascontiguousarray(_label_words(db_labels).T)
    n_groups = query.n_bits + 1

    def rank(start):
        stop = min(start + QUERY_CHUNK, len(query))
        hist = np.zeros((stop - start, 2 * n_groups), np.int64)
        precision_sum, hits = np.zeros(stop - start), np.zeros(stop - start, np.int64)
        rank_relevant, rank_recall = np.zeros(k, np.int64), np.zeros(k)
        score_stable_top_k(
            q_words[start:stop], db_words_t, q_label_words[start:stop], db_label_words_t, k,
            hist, precision_sum, hits, rank_relevant, rank_recall,
        )  # fmt: skip
        return score(RankedChunk(hist[:, 0::2] + hist[:, 1::2], hist[:, 1::2], precision_sum, hits, rank_relevant, rank_recall))

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
        ranks = torch.arange(1, k + 1, device=self.device, dtype=torch.float64)
        # about 32 bytes per (query, item) pair and 48 per (query, rank)
        chunk = max(1, TORCH_CHUNK_BYTES // (32 * n_db + 48 * k))
        for start in range(0, len(query), chunk):
            signs = tensor(query[start : start + chunk].to_signs())
            labels = tensor(query_labels[start : start + chunk])
            # +-1 products and 0/1 label products are exact in float32 (also under TF32)
            distance = ((n_bits - signs @ db_signs.T) / 2).round().long()
            relevant = (labels @ db_label_t.T) > 0
            hist = torch.zeros(len(signs), 2 * (n_bits + 1), dtype=torch.int64, device=self.device)
            hist.scatter_add_(1, 2 * distance + relevant, torch.ones_like(distance))
            top = torch.topk(distance * n_db + index, k, dim=1, largest=False, sorted=True).indices
            top_relevant = relevant.gather(1, top)
            del distance, relevant
            hits = torch.cumsum(top_relevant, dim=1)
            n_relevant = hist[:, 1::2].sum(dim=1)
            weight = torch.where(n_relevant > 0, 1.0 / n_relevant.clamp(min=1).double(), 0.0)
            hist = hist.cpu().numpy()
            yield score(
                RankedChunk(
                    hist[:, 0::2] + hist[:, 1::2],
                    hist[:, 1::2],
                    torch.where(top_relevant, hits / ranks, 0.0).sum(dim=1).cpu().numpy(),
                    hits[:, -1].cpu().numpy(),
                    top_relevant.sum(dim=0).cpu().numpy(),
                    (top_relevant * weight[:, None]).sum(dim=0).cpu().numpy(),
                )
            )


# --- scores from a ranked chunk ----------------------------------------------------------------
class _Tables(NamedTuple):
    log_factorial: np.ndarray  # log(n!) for n up to the database size
    harmonic: np.ndarray  # H_n = sum_{i=1..n} 1/i for n up to k


class ChunkScores(NamedTuple):
    n_relevant: np.ndarray  # (q,) relevant items in the database
    ap: dict[str, np.ndarray]  # (q,) AP@k: "chosen", "pessimistic", "optimistic" (the convention's
    # normalisation) and "official", "tie_aware" (the presets' ranking and normalisation)
    curve_sums: dict[str, np.ndarray]  # per rank (k,) and per radius (n_bits + 1,), summed over queries


def _chunk_scores(chunk: RankedChunk, k: int, convention: Convention, tables: _Tables) -> ChunkScores:
    n_relevant = chunk.n_relevant.sum(axis=1)
    normalisations = dict.fromkeys([convention.normalise, "retrieved"])
    aps = tie_order_average_precisions(chunk.n_items, chunk.n_relevant, k, normalisations, tables)
    for normalise in normalisations:
        aps[normalise, "stable"] = _ratio(chunk.precision_sum, _normaliser(normalise, chunk.hits, n_relevant, k))
    weight = _ratio(1.0, n_relevant)
    if convention.ties == "stable":
        rank_relevant, rank_recall = chunk.rank_relevant, chunk.rank_recall
    else:
        rank_relevant, rank_recall = (
            _rank_relevance(chunk.n_items, chunk.n_relevant, k, convention.ties, w) for w in (1.0, weight[:, None])
        )
    relevant_within = np.cumsum(chunk.n_relevant, axis=1)
    return ChunkScores(
        n_relevant=n_relevant,
        ap={
            "chosen": aps[convention.normalise, convention.ties],
            "pessimistic": aps[convention.normalise, "pessimistic"],
            "optimistic": aps[convention.normalise, "optimistic"],
            "official": aps["retrieved", "stable"],
            "tie_aware": aps["retrieved", "expected"],
        },
        curve_sums={
            "rank_relevant": rank_relevant,
            "rank_recall": rank_recall,
            "pr_precision": _ratio(relevant_within, np.cumsum(chunk.n_items, axis=1)).sum(axis=0),
            "pr_recall": (relevant_within * weight[:, None]).sum(axis=0),
        },
    )


def _ratio(numerator, denominator) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, np.float64), denominator)
    return np.divide(numerator, denominator, out=np.zeros(numerator.shape), where=denominator > 0)


def _normaliser(normalise: str, hits, n_relevant, k: int):
    """The denominator of AP@k given the relevant items in the top k and in the database."""
    if normalise == "retrieved":
        return hits
    if normalise == "min-r-k":
        return np.minimum(n_relevant, k)
    return n_relevant


def tie_order_average_precisions(n_items, n_relevant, k, normalisations, tables: _Tables) -> dict:
    """AP@k per query for the orders of tied items that only the counts decide, from the (q, groups)
    counts per distance in ranking order: ``{(normalise, ties): (q,) array}`` for each of
    ``normalisations`` and ties "expected", "optimistic", "pessimistic" (module docstring).

    Complete groups (inside the top k) add their precision sums with relevant items first, last or
    at random. The group straddling rank k (at most one per query) is enumerated over x, the
    number of its relevant items in the top k: one entry per (query, possible x), flattened, since
    the ranges of x differ in length.
    """
    n_items, n_relevant = n_items.astype(np.float64), n_relevant.astype(np.float64)
    harmonic = tables.harmonic
    total_relevant = n_relevant.sum(axis=1)
    start = np.cumsum(n_items, axis=1) - n_items
    before = np.cumsum(n_relevant, axis=1) - n_relevant
    complete = start + n_items <= k

    def harmonic_at(index):
        return harmonic[np.minimum(index, k).astype(np.int64)]  # beyond k only where masked out

    group_sums = {
        "expected": _tied_precision_sum(
            n_items, n_relevant, start, before, harmonic_at(start + n_items) - harmonic_at(start)
        ),
        "optimistic": _block_precision_sum(n_relevant, 0, start, before, harmonic_at),
        "pessimistic": _block_precision_sum(n_relevant, n_items - n_relevant, start, before, harmonic_at),
    }
    full_sums = {ties: np.where(complete, sums, 0.0).sum(axis=1) for ties, sums in group_sums.items()}
    full_hits = np.where(complete, n_relevant, 0.0).sum(axis=1)
    aps = {
        (normalise, ties): _ratio(full_sums[ties], _normaliser(normalise, full_hits, total_relevant, k))
        for normalise in normalisations
        for ties in group_sums
    }

    rows, group = np.nonzero(~complete & (start < k))
    if len(rows):
        n, r, s, c = (a[rows, group].astype(np.int64) for a in (n_items, n_relevant, start, before))
        m = k - s
        low, high = np.maximum(0, m - (n - r)), np.minimum(m, r)
        counts = high - low + 1
        first = np.cumsum(counts) - counts
        owner = np.repeat(np.arange(len(rows)), counts)
        x = low[owner] + np.arange(counts.sum()) - first[owner]
        n, r, s, c, m = (a[owner] for a in (n, r, s, c, m))
        weight = _hypergeometric_pmf(x, n, r, m, tables.log_factorial)
        cut_sums = {
            "expected": _tied_precision_sum(m, x, s, c, harmonic[k] - harmonic[s]),
            "optimistic": _block_precision_sum(x, 0, s, c, harmonic_at),
            "pessimistic": _block_precision_sum(x, m - x, s, c, harmonic_at),
        }
        sums = {ties: full_sums[ties][rows][owner] + cut_sums[ties] for ties in cut_sums}
        hits, relevant = full_hits[rows][owner] + x, total_relevant[rows][owner]
        for normalise in normalisations:
            denominator = _normaliser(normalise, hits, relevant, k)
            ap_given_x = {ties: _ratio(sums[ties], denominator) for ties in sums}
            aps[normalise, "expected"][rows] = np.bincount(owner, weights=weight * ap_given_x["expected"])
            aps[normalise, "optimistic"][rows] = np.maximum.reduceat(ap_given_x["optimistic"], first)
            aps[normalise, "pessimistic"][rows] = np.minimum.reduceat(ap_given_x["pessimistic"], first)
    return aps


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


def _block_precision_sum(x, gap, s, c, harmonic_at):
    """Sum of precisions at ranks s + gap + 1 .. s + gap + x, all relevant, after c relevant items:
    sum_i (c + i) / (s + gap + i) = x - (s + gap - c) sum_i 1 / (s + gap + i)."""
    offset = s + gap
    return x - (offset - c) * (harmonic_at(offset + x) - harmonic_at(offset))


def _rank_relevance(n_items, n_relevant, k, ties, weight):
    """Per rank 1..k, the relevant items there under ``ties`` (optimistic: relevant first in every
    group; pessimistic: last; expected: the chance r / n at each of a group's ranks), each query's
    weighted by ``weight`` and summed over queries.

    Per (query, group) the relevance is constant over one range of ranks, so it is summed as
    +value at the range's start and -value at its end, accumulated over ranks.
    """
    start = np.cumsum(n_items, axis=1) - n_items
    if ties == "optimistic":
        low, high, value = start, start + n_relevant, 1.0
    elif ties == "pessimistic":
        low, high, value = start + n_items - n_relevant, start + n_items, 1.0
    else:
        low, high, value = start, start + n_items, _ratio(n_relevant, n_items)
    value = np.broadcast_to(value * weight, n_items.shape).ravel()
    steps = np.bincount(np.minimum(low, k).ravel(), value, minlength=k + 1)
    steps -= np.bincount(np.minimum(high, k).ravel(), value, minlength=k + 1)
    return np.cumsum(steps[:k])


# --- accumulation over chunks ------------------------------------------------------------------
class _Totals:
    """Per-query APs, and the curves summed over every query (queries with no relevant item add
    nothing to them, so only the number of averaged queries depends on ``no_relevant``)."""

    def __init__(self, k: int, n_bits: int, convention: Convention):
        self.k, self.n_bits, self.convention = k, n_bits, convention
        self.n_relevant: list[np.ndarray] = []
        self.aps: dict[str, list[np.ndarray]] = {}
        self.curve_sums: dict[str, np.ndarray] = {}

    def add(self, chunk: ChunkScores) -> None:
        self.n_relevant.append(chunk.n_relevant)
        for name, values in chunk.ap.items():
            self.aps.setdefault(name, []).append(values)
        for name, values in chunk.curve_sums.items():
            self.curve_sums[name] = self.curve_sums.get(name, 0.0) + values

    def scores(self) -> Scores:
        n_relevant = np.concatenate(self.n_relevant)
        aps = {name: np.concatenate(parts) for name, parts in self.aps.items()}
        counted = n_relevant > 0
        averaged = counted if self.convention.no_relevant == "skip" else np.ones_like(counted)
        n_averaged = int(averaged.sum())
        with np.errstate(invalid="ignore", divide="ignore"):  # no query averaged: NaN curves
            curves = {name: total / n_averaged for name, total in self.curve_sums.items()}
        return Scores(
            convention=self.convention,
            topk=self.k,
            map=_mean(aps["chosen"][averaged]),
            map_range=(_mean(aps["pessimistic"][averaged]), _mean(aps["optimistic"][averaged])),
            maps={
                "official": _mean(aps["official"][counted]),
                "deephash": _mean(aps["official"]),
                "tie_aware": _mean(aps["tie_aware"][counted]),
            },
            ap=np.where(averaged, aps["chosen"], np.nan),
            precision_curve=np.cumsum(curves["rank_relevant"]) / np.arange(1, self.k + 1),
            recall_curve=np.cumsum(curves["rank_recall"]),
            pr_curve={
                "radius": np.arange(self.n_bits + 1),
                "precision": curves["pr_precision"],
                "recall": curves["pr_recall"],
            },
            n_queries=len(n_relevant),
            n_queries_skipped=int((~counted).sum()),
        )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")
