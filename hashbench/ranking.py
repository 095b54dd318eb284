"""Ranking and the per-chunk arithmetic behind ``metrics.evaluate``: for each chunk of queries, the
Hamming-distance histograms over the whole database and the stable top k (a compiled loop on CPU,
torch ops on CUDA), and from them every query's AP under each tie rule and the per-rank sums of
the precision and recall curves. The conventions these follow are written in ``metrics``.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from hashbench.codes import BinaryCodes, as_words
from hashbench.errors import InvalidInputError

QUERY_CHUNK = 256  # queries per compiled-loop task; small enough to spread over threads
TORCH_CHUNK_BYTES = 256 * 2**20  # device memory for one chunk's temporaries


# --- ranking backends: per query chunk, distance histograms and the stable top k -----------------
class RankedChunk(NamedTuple):
    """One chunk of queries: per-distance counts over the whole database and the stable top k."""

    n_items: np.ndarray  # (q, n_bits + 1) database items at each distance
    n_relevant: np.ndarray  # (q, n_bits + 1) relevant items at each distance
    precision_sum: np.ndarray  # (q,) sum of precisions at the relevant ranks <= k, ties in database order
    hits: np.ndarray  # (q,) relevant items in that top k
    rank_relevant: np.ndarray  # (k,) relevant items at each rank, summed over the chunk's queries
    rank_recall: np.ndarray  # (k,) the same, each query's weighted by 1 / its relevant items


def ranker_for(device):
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
        return score(
            RankedChunk(hist[:, 0::2] + hist[:, 1::2], hist[:, 1::2], precision_sum, hits, rank_relevant, rank_recall)
        )

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
class LookupTables(NamedTuple):
    log_factorial: np.ndarray  # log(n!) for n up to the database size
    harmonic: np.ndarray  # H_n = sum_{i=1..n} 1/i for n up to k


class ChunkScores(NamedTuple):
    n_relevant: np.ndarray  # (q,) relevant items in the database
    ap: dict[str, np.ndarray]  # (q,) AP@k: "chosen", "pessimistic", "optimistic" (the convention's
    # normalisation) and "official", "tie_aware" (the presets' ranking and normalisation)
    curve_sums: dict[str, np.ndarray]  # per rank (k,) and per radius (n_bits + 1,), summed over queries


def chunk_scores(chunk: RankedChunk, k: int, convention, tables: LookupTables) -> ChunkScores:
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


def tie_order_average_precisions(n_items, n_relevant, k, normalisations, tables: LookupTables) -> dict:
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
