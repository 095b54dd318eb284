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
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np
from scipy.special import gammaln

from hashbench._validation import check_binary_labels, check_choice, check_positive_int, check_same_rows
from hashbench.codes import BinaryCodes
from hashbench.errors import InvalidInputError
from hashbench.ranking import ChunkScores, LookupTables, chunk_scores, ranker_for

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
    ranker = ranker_for(device)
    k = len(database) if topk is None else min(topk, len(database))
    tables = LookupTables(
        log_factorial=gammaln(np.arange(len(database) + 1) + 1.0),
        harmonic=np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, k + 1))]),
    )
    score = partial(chunk_scores, k=k, convention=convention, tables=tables)
    totals = _Totals(k, query.n_bits, convention)
    for scored in ranker(query, database, query_labels, db_labels, k, score):
        totals.add(scored)
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
