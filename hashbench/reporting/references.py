"""The reference rows of the MAP tables, computed at report time from each dataset.

- ``random codes``: the MAP of uniformly random codes (every bit of every query and database item
  a fair coin, drawn from ``numpy.random.default_rng([seed, n_bits])``) under the table's protocol
  and top-k, one draw per seed that the table's cells ran. It is the floor: a method that does
  not beat it retrieves no better than chance, whatever its MAP looks like (label statistics
  alone make it far from 0 on multi-label data).
- ``raw features``: the MAP of the exact Euclidean ranking of the database by the raw features,
  no hashing, under the same conventions (normalisation and queries without relevant items).
  Real-valued distances do not tie, so the tie rule does not apply (ties, if any, keep database
  order). It is the reference a code of those features is measured against.

Both depend only on the dataset, the code length, the protocol and k, never on a method, so they
are not cells of a matrix: nothing trains, nothing is timed, nothing resumes. Computing them in the
report keeps them in step with the protocol the tables are printed in. Each value is cached in
``RESULTS_DIR/reference/cache.json`` under everything it depends on (dataset source and options,
code length, seed, protocol, k); delete the file to recompute. The dataset comes from the
``dataset_source`` and ``dataset_options`` that records store; where it cannot be loaded (e.g.
prepared COCO features on another machine), the rows read "—" and the caption says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashbench.errors import HashbenchError
from hashbench.metrics import Convention
from hashbench.running import store
from hashbench.running.cell import Cell, canonical_json

RANDOM_CODES = "random codes"
RAW_FEATURES = "raw features"
QUERY_CHUNK = 256  # queries per distance block: 256 x database float32 distances at a time


class Unavailable(Exception):
    """A number that a report cannot compute here (a reference, a record's per-query AP); the
    message says why."""


def report_dataset(spec: dict):
    """The dataset a record's spec names (loaded once per process, as the runner does); raises
    Unavailable when it cannot be loaded here."""
    from hashbench.running.worker import load_cell_dataset

    if not spec.get("dataset_source"):
        raise Unavailable("its records do not name the dataset's source")
    try:
        return load_cell_dataset(Cell.from_spec(spec))
    except HashbenchError as error:  # missing files, unknown names: the dataset is not here
        raise Unavailable(f"the dataset could not be loaded here ({error})") from None


class References:
    """Reference MAPs for the datasets of ``records`` (see the module docstring), cached under
    ``results_dir``."""

    def __init__(self, results_dir, records: list[dict]):
        self.cache_file = Path(results_dir) / "reference" / "cache.json"
        self.specs = {}  # dataset name in results -> a spec that says how to load it
        for record in records:
            if record["spec"].get("dataset_source"):
                self.specs.setdefault(record["spec"]["dataset"], record["spec"])
        self._cache = json.loads(self.cache_file.read_text()) if self.cache_file.is_file() else {}

    def random_codes(self, dataset: str, n_bits: int, seeds, protocol: str, topk: int | None) -> tuple[float, ...]:
        """MAP of random codes, one value per seed."""
        return tuple(self._value(RANDOM_CODES, dataset, protocol, topk, n_bits=n_bits, seed=int(s)) for s in seeds)

    def raw_features(self, dataset: str, protocol: str, topk: int | None) -> float:
        """MAP of the exact Euclidean ranking on the raw features."""
        return self._value(RAW_FEATURES, dataset, protocol, topk)

    def _value(self, kind: str, dataset: str, protocol: str, topk, **where) -> float:
        spec = self.specs.get(dataset)
        if spec is None:
            raise Unavailable("its records do not name the dataset's source")
        key = canonical_json(
            {
                "kind": kind,
                "source": spec.get("dataset_source"),
                "options": spec.get("dataset_options", {}),
                "protocol": protocol,
                "topk": topk,
                **where,
            }
        )
        if key not in self._cache:
            data = report_dataset(spec)
            if kind == RANDOM_CODES:
                value = random_codes_map(data, where["n_bits"], where["seed"], protocol, topk)
            else:
                value = raw_features_map(data, protocol, topk)
            self._cache[key] = value
            store.write_json_atomic(self.cache_file, self._cache)
        return self._cache[key]


def random_codes_map(dataset, n_bits: int, seed: int, protocol: str, topk: int | None) -> float:
    from hashbench.metrics import evaluate

    rng = np.random.default_rng([seed, n_bits])
    query = rng.integers(0, 2, (len(dataset.query.labels), n_bits), dtype=np.uint8)
    database = rng.integers(0, 2, (len(dataset.database.labels), n_bits), dtype=np.uint8)
    return float(evaluate(query, database, dataset.query.labels, dataset.database.labels, topk=topk,
                          protocol=protocol).map)  # fmt: skip


def raw_features_map(dataset, protocol: str, topk: int | None) -> float:
    query, database = dataset.query.features, dataset.database.features
    if query is None or database is None:
        raise Unavailable("the dataset has no features (images only)")
    convention = Convention.resolve(protocol)
    ap = euclidean_average_precision(
        np.asarray(query, np.float32), np.asarray(database, np.float32), dataset.query.labels,
        dataset.database.labels, topk, convention.normalise,
    )  # fmt: skip
    if convention.no_relevant == "skip":
        ap = ap[~np.isnan(ap)]
    return float(np.nan_to_num(ap).mean()) if len(ap) else float("nan")


def stable_top_k(distance: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest distances in ranking order, ties in index order."""
    if k < len(distance):
        kth = np.partition(distance, k - 1)[k - 1]
        candidates = np.flatnonzero(distance <= kth)  # every item tied with the k-th, in index order
    else:
        candidates = np.arange(len(distance))
    return candidates[np.argsort(distance[candidates], kind="stable")[:k]]


def euclidean_average_precision(
    query, database, query_labels, db_labels, topk: int | None, normalise: str
) -> np.ndarray:
    """AP@k per query of the database ranked by Euclidean distance (ties in database order), with
    AP's normaliser ``normalise`` (as in ``hashbench.evaluate``); NaN for a query with no
    relevant item in the database."""
    k = len(database) if topk is None else min(topk, len(database))
    db_norms = (database**2).sum(axis=1)
    db_labels_f = db_labels.astype(np.float32)
    ranks = np.arange(1, k + 1)
    out = np.empty(len(query))
    for start in range(0, len(query), QUERY_CHUNK):
        chunk = slice(start, start + QUERY_CHUNK)
        distance = db_norms[None, :] - 2.0 * (query[chunk] @ database.T)  # |q|^2 is the same along a row
        top = np.stack([stable_top_k(row, k) for row in distance])
        shared = query_labels[chunk].astype(np.float32) @ db_labels_f.T > 0
        relevant = np.take_along_axis(shared, top, axis=1)
        n_relevant = shared.sum(axis=1)
        hits = np.cumsum(relevant, axis=1)
        precision_sum = np.where(relevant, hits / ranks, 0.0).sum(axis=1)
        normaliser = {"retrieved": hits[:, -1], "min-r-k": np.minimum(n_relevant, k), "relevant": n_relevant}[normalise]
        ap = np.divide(precision_sum, normaliser, out=np.zeros(len(top)), where=normaliser > 0)
        out[chunk] = np.where(n_relevant > 0, ap, np.nan)
    return out
