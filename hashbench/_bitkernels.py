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


@numba.njit(nogil=True, cache=True, inline="always")
def _shares_label(query_labels, i, db_labels, j):
    common = np.uint64(0)
    for w in range(query_labels.shape[1]):
        common |= query_labels[i, w] & db_labels[j, w]
    return common != 0


@numba.njit(nogil=True, cache=True)
def hamming_matrix(query_words, db_words, out):
    """Fill ``out[i, j]`` with the Hamming distance between query ``i`` and database item ``j``."""
    for i in range(query_words.shape[0]):
        for j in range(db_words.shape[0]):
            out[i, j] = _distance(query_words, i, db_words, j)


@numba.njit(nogil=True, cache=True)
def rank_top_k(query_words, db_words, query_labels, db_labels, k, hist, top_relevant, top_distance):
    """Histogram every query's distances and list its k nearest items, ties in database order.

    ``hist[i, 2 * d + r]`` counts database items at distance ``d`` that are relevant (``r = 1``) or
    not (``r = 0``) to query ``i``; ``top_relevant[i]`` and ``top_distance[i]`` describe the items at
    ranks 1..k under the stable order (distance, then database index). The ranking is a counting
    sort: the histogram gives the distance ``t`` of the k-th item and where each distance's block
    starts, and a second scan drops every item into its block in index order.
    """
    n_groups = hist.shape[1] // 2
    next_slot = np.empty(n_groups, np.int64)
    for i in range(query_words.shape[0]):
        for j in range(db_words.shape[0]):
            d = _distance(query_words, i, db_words, j)
            hist[i, 2 * d + _shares_label(query_labels, i, db_labels, j)] += 1
        ranked = 0
        threshold = 0
        for d in range(n_groups):
            next_slot[d] = ranked
            ranked += hist[i, 2 * d] + hist[i, 2 * d + 1]
            threshold = d
            if ranked >= k:
                break
        placed = 0
        for j in range(db_words.shape[0]):
            d = _distance(query_words, i, db_words, j)
            if d > threshold or next_slot[d] >= k:
                continue
            slot = next_slot[d]
            next_slot[d] += 1
            top_relevant[i, slot] = _shares_label(query_labels, i, db_labels, j)
            top_distance[i, slot] = d
            placed += 1
            if placed == k:
                break
