"""Retrieval metrics (first version: official protocol only, per-query loop; being replaced)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hashbench.codes import BinaryCodes, hamming_distances


@dataclass
class Scores:
    map: float
    precision_curve: np.ndarray
    protocol: str


def evaluate(query_codes, db_codes, query_labels, db_labels, topk=1000, protocol="official") -> Scores:
    q = BinaryCodes.coerce(query_codes, "query_codes")
    db = BinaryCodes.coerce(db_codes, "db_codes")
    dist = hamming_distances(q, db)
    rel_all = (np.asarray(query_labels) @ np.asarray(db_labels).T) > 0
    aps, precs = [], []
    k = min(topk, len(db))
    for i in range(len(q)):
        if not rel_all[i].any():
            continue
        order = np.argsort(dist[i], kind="stable")[:k]
        rel = rel_all[i, order]
        hits = np.cumsum(rel)
        ranks = np.arange(1, k + 1)
        aps.append((hits / ranks)[rel].sum() / max(rel.sum(), 1))
        precs.append(hits / ranks)
    return Scores(float(np.mean(aps)), np.mean(precs, axis=0), protocol)
