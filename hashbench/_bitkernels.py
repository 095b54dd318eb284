"""Compiled (numba) loops over packed codes: Hamming distances and stable top-k ranking.

Each loop works on codes stored as uint64 words (``codes.as_words``) and releases the GIL, so
callers run several query chunks at once on Python threads without a second threading runtime
beside torch's.
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


@numba.njit(nogil=True, cache=True)
def rank_top_k(query_words, db_words_t, query_labels, db_labels_t, k, hist, top_relevant, top_distance):
    """Histogram every query's distances and list its k nearest items, ties in database order.

    Database words and label words come transposed, (words, items), so the per-word loops over
    items vectorise. ``hist[i, 2 * d + r]`` counts database items at distance ``d`` that are
    relevant (``r = 1``) or not (``r = 0``) to query ``i``; ``top_relevant[i]`` and
    ``top_distance[i]`` describe the items at ranks 1..k under the stable order (distance, then
    database index). The ranking is a counting sort: the histogram gives the distance of the k-th
    item and where each distance's block starts, and a scan drops items into their blocks in
    index order.
    """
    n_db = db_words_t.shape[1]
    n_groups = hist.shape[1] // 2
    key = np.empty(n_db, np.int32)  # 2 * distance + relevant
    common = np.empty(n_db, np.uint64)
    partial_hist = np.empty((4, hist.shape[1]), np.int64)  # 4 interleaved: fewer stalls on equal keys
    next_slot = np.empty(n_groups, np.int64)
    for i in range(query_words.shape[0]):
        key[:] = 0
        for w in range(query_words.shape[1]):
            word = query_words[i, w]
            for j in range(n_db):
                key[j] += _popcount(word ^ db_words_t[w, j])
        common[:] = 0
        for w in range(query_labels.shape[1]):
            word = query_labels[i, w]
            for j in range(n_db):
                common[j] |= word & db_labels_t[w, j]
        for j in range(n_db):
            key[j] = 2 * key[j] + (common[j] != 0)
        partial_hist[:] = 0
        for j in range(n_db):
            partial_hist[j & 3, key[j]] += 1
        for b in range(hist.shape[1]):
            hist[i, b] = partial_hist[0, b] + partial_hist[1, b] + partial_hist[2, b] + partial_hist[3, b]

        ranked = 0
        threshold = 0
        for d in range(n_groups):
            next_slot[d] = ranked
            ranked += hist[i, 2 * d] + hist[i, 2 * d + 1]
            threshold = d
            if ranked >= k:
                break
        placed = 0
        for j in range(n_db):
            d = key[j] >> 1
            if d > threshold or next_slot[d] >= k:
                continue
            slot = next_slot[d]
            next_slot[d] += 1
            top_relevant[i, slot] = key[j] & 1
            top_distance[i, slot] = d
            placed += 1
            if placed == k:
                break
