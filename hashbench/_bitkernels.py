"""Compiled (numba) loops over packed codes: Hamming distances, exhaustive k-NN search, and the
stable top-k scoring of retrieval metrics.

Each loop works on codes stored as uint64 words (``codes.as_words``) and releases the GIL, so
callers run several query chunks at once on Python threads without a second threading runtime
beside torch's. The ranking loops take the database transposed, (words, items), so their
per-word loops over items vectorise. Rankings are counting sorts: a histogram of the distances
gives the distance of the k-th item and where each distance's block of ranks starts, and one scan
in database order drops items into their blocks, so ties keep database order (a stable sort).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic


@intrinsic
def _popcount(typingctx, word):
    """Population count of a uint64 (LLVM ``ctpop``: one instruction where the CPU has one)."""

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(types.uint64), codegen


@numba.njit(nogil=True, cache=True, inline="always")
def _distance(query_words, i, db_words, j):
    d = 0
    for w in range(query_words.shape[1]):
        d += _popcount(query_words[i, w] ^ db_words[j, w])
    return d


@numba.njit(nogil=True, cache=True)
def hamming_matrix(query_words, db_words, out):
    """Fill ``out[i, j]`` with the Hamming distance between query ``i`` and database item ``j``."""
    for i in range(query_words.shape[0]):
        for j in range(db_words.shape[0]):
            out[i, j] = _distance(query_words, i, db_words, j)


@numba.njit(nogil=True, cache=True, inline="always")
def _distances_to_all(query_words, i, db_words_t, out):
    """``out[j]`` = Hamming distance between query ``i`` and database item ``j``."""
    out[:] = 0
    for w in range(query_words.shape[1]):
        word = query_words[i, w]
        for j in range(out.shape[0]):
            out[j] += _popcount(word ^ db_words_t[w, j])


@numba.njit(nogil=True, cache=True, inline="always")
def _histogram(key, partial, out):
    """``out[b]`` = the number of entries of ``key`` equal to ``b``, counted in four interleaved
    ``partial`` tables so that runs of equal keys do not wait on each other's increments."""
    partial[:] = 0
    n = key.shape[0]
    for j in range(0, n - 3, 4):
        partial[0, key[j]] += 1
        partial[1, key[j + 1]] += 1
        partial[2, key[j + 2]] += 1
        partial[3, key[j + 3]] += 1
    for j in range(n - n % 4, n):
        partial[0, key[j]] += 1
    for b in range(out.shape[0]):
        out[b] = partial[0, b] + partial[1, b] + partial[2, b] + partial[3, b]


@numba.njit(nogil=True, cache=True, inline="always")
def _place(j, d, relevant, next_slot, hits_so_far, order, rank_relevant, rank_recall, weight):
    """Put item ``j`` at the next free rank of distance ``d``'s block; return the precision at
    that rank if the item is relevant, else 0 (see ``_stable_top_k``)."""
    slot = next_slot[d]
    next_slot[d] = slot + 1
    if order.shape[0]:
        order[slot] = j
    if not relevant:
        return 0.0
    hits_so_far[d] += 1
    rank_relevant[slot] += 1
    rank_recall[slot] += weight
    return hits_so_far[d] / (slot + 1)


@numba.njit(nogil=True, cache=True, inline="always")
def _stable_top_k(key, shift, n_at_distance, k, next_slot, hits_so_far, order, rank_relevant, rank_recall, weight):
    """Visit the database items at ranks 1..k, ranked by distance ``key >> shift`` with ties in
    database order, given the items at each distance; ``order[slot]`` receives the database index
    at rank slot + 1 unless ``order`` is empty.

    With ``shift = 1`` the low bit of ``key`` marks a relevant item and the visit scores the
    ranking: ``hits_so_far[d]`` starts as the relevant items at distances below d (it then counts
    those ranked before the next item at d), ``rank_relevant[slot]`` and ``rank_recall[slot]``
    gain 1 and ``weight`` per relevant item, and the sum of precisions at the relevant ranks and
    the number of relevant items are returned. Scoring on the way, in one scan, costs far less at
    large k than listing the ranking and reading it back.

    Each distance's block of ranks starts where the shorter distances' end; the scan in database
    order drops items into their blocks (only the last block can overflow rank k). Below the whole
    database it skips 16 items at a time while none is near enough, and stops once k items are
    placed.
    """
    ranked = 0
    threshold = 0  # the largest distance that reaches into the top k
    for d in range(n_at_distance.shape[0]):
        next_slot[d] = ranked
        ranked += n_at_distance[d]
        threshold = d
        if ranked >= k:
            break
    relevant_bit = (1 << shift) - 1
    total, found = 0.0, 0
    n = key.shape[0]
    if k == n:  # every item is ranked: nothing to test or skip
        for j in range(n):
            relevant = key[j] & relevant_bit
            total += _place(
                j, key[j] >> shift, relevant, next_slot, hits_so_far, order, rank_relevant, rank_recall, weight
            )
            found += relevant
        return total, found
    bound = ((threshold + 1) << shift) - 1  # the largest key in the top k
    placed = 0
    for block in range(0, n, 16):
        stop = min(block + 16, n)
        if stop - block == 16:
            candidates = 0  # a vectorised count: no branch per item
            for j in range(16):
                candidates += key[block + j] <= bound
            if not candidates:
                continue
        for j in range(block, stop):
            d = key[j] >> shift
            if key[j] > bound or next_slot[d] >= k:
                continue
            relevant = key[j] & relevant_bit
            total += _place(j, d, relevant, next_slot, hits_so_far, order, rank_relevant, rank_recall, weight)
            found += relevant
            placed += 1
        if placed == k:
            break
    return total, found


@numba.njit(nogil=True, cache=True)
def nearest_k(query_words, db_words_t, k, distances, indices):
    """Exhaustive k-NN: ``indices[i]`` and ``distances[i]`` list query ``i``'s k nearest database
    items by Hamming distance, ties in database order."""
    n_db = db_words_t.shape[1]
    distance = np.empty(n_db, np.int32)
    counts = np.empty(64 * query_words.shape[1] + 1, np.int64)
    partial = np.empty((4, counts.shape[0]), np.int64)
    next_slot, unused = np.empty_like(counts), np.empty(0, np.int64)
    order = np.empty(k, np.int64)
    for i in range(query_words.shape[0]):
        _distances_to_all(query_words, i, db_words_t, distance)
        _histogram(distance, partial, counts)
        _stable_top_k(distance, 0, counts, k, next_slot, unused, order, unused, unused, 0.0)
        for slot in range(k):
            indices[i, slot] = order[slot]
            distances[i, slot] = distance[order[slot]]


@numba.njit(nogil=True, cache=True)
def score_stable_top_k(
    query_words, db_words_t, query_labels, db_labels_t, k, hist, precision_sum, hits, rank_relevant, rank_recall
):
    """Histogram every query's distances and score its stable top-k ranking.

    ``hist[i, 2 * d + r]`` counts database items at distance ``d`` that are relevant (``r = 1``,
    sharing a label word bit) or not (``r = 0``) to query ``i``. Under the stable order (distance,
    then database index) ``precision_sum[i]`` is the sum of precisions at the relevant ranks
    <= k and ``hits[i]`` the relevant items in the top k. Over the chunk's queries,
    ``rank_relevant[j]`` adds up the relevant items at rank j + 1 and ``rank_recall[j]`` the
    same, each weighted by 1 / (the query's relevant items in the database).
    """
    n_db = db_words_t.shape[1]
    n_groups = hist.shape[1] // 2
    key = np.empty(n_db, np.int32)  # 2 * distance + relevant
    partial_hist = np.empty((4, hist.shape[1]), np.int64)
    n_at_distance = np.empty(n_groups, np.int64)
    next_slot, hits_so_far = np.empty_like(n_at_distance), np.empty_like(n_at_distance)
    no_order = np.empty(0, np.int64)
    for i in range(query_words.shape[0]):
        _distances_to_all(query_words, i, db_words_t, key)
        for j in range(n_db):
            key[j] *= 2
        for w in range(query_labels.shape[1]):
            word = query_labels[i, w]
            if word:  # most queries' labels lie in few words
                for j in range(n_db):
                    key[j] |= (word & db_labels_t[w, j]) != 0
        _histogram(key, partial_hist, hist[i])
        n_relevant = 0
        for d in range(n_groups):
            n_at_distance[d] = hist[i, 2 * d] + hist[i, 2 * d + 1]
            hits_so_far[d] = n_relevant
            n_relevant += hist[i, 2 * d + 1]
        weight = 1.0 / n_relevant if n_relevant else 0.0
        precision_sum[i], hits[i] = _stable_top_k(
            key, 1, n_at_distance, k, next_slot, hits_so_far, no_order, rank_relevant, rank_recall, weight
        )
