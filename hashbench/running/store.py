"""The result store: one JSON record per cell, its codes beside it, and the tidy results table.

Layout under a results folder: ``<dataset>/<method>/<cell id>.json`` plus
``<cell id>.query.codes.npz`` and ``<cell id>.database.codes.npz`` (``BinaryCodes.save``), and
the per-query AP behind the record's MAP, ``<cell id>.ap.<protocol>.top<k>.npy`` (float64, one
value per query, NaN for a query the protocol skips), which the reports' significance tests read.
Every file is written to a temporary name in the same folder and renamed into place, and a
record is written only after its codes, so a record on disk is always complete and so are the
codes it points to, whenever the writing process is killed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from hashbench.errors import InvalidInputError
from hashbench.health import STAT_KEYS
from hashbench.running.cell import DEFAULT_ROLE, Cell, canonical_json

SCHEMA = 1
RESULT_COLUMNS = [
    "experiment", "role", "label", "method", "params", "dataset", "n_bits", "seed", "protocol", "topk", "device",
    "status", "error", "map", "map_official", "map_deephash", "map_tie_aware", "map_pessimistic", "map_optimistic",
    "normalise", "ties", "no_relevant", "precision_radius2", *STAT_KEYS,
    "fit_s", "encode_query_s", "encode_database_s", "evaluate_s", "peak_rss_mb", "start_rss_mb",
    "cuda_max_allocated_mb",
    "device_name", "git_commit", "dataset_fingerprint", "record",
]  # fmt: skip


def record_path(out_dir, cell: Cell) -> Path:
    return Path(out_dir) / safe_name(cell.dataset) / safe_name(cell.method) / f"{cell.id}.json"


def codes_path(record_file, split: str) -> Path:
    """Where the ``split`` ("query" or "database") codes of the record at ``record_file`` live."""
    record_file = Path(record_file)
    return record_file.with_name(f"{record_file.stem}.{split}.codes.npz")


def query_ap_path(record_file, protocol: str, topk: int | None) -> Path:
    """Where the per-query AP@``topk`` under ``protocol`` of the record at ``record_file`` lives."""
    record_file = Path(record_file)
    return record_file.with_name(f"{record_file.stem}.ap.{protocol}.top{topk or 'all'}.npy")


def save_query_ap(record_file, ap, protocol: str, topk: int | None) -> Path:
    """Write a record's per-query AP atomically beside it; return the path."""
    path = query_ap_path(record_file, protocol, topk)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(ap, dtype=np.float64))
    tmp.replace(path)
    return path


def load_query_ap(record_file, protocol: str, topk: int | None) -> np.ndarray | None:
    """The per-query AP saved beside a record, or None when there is none or it is older than the
    record's database codes (the cell was computed again after the AP was saved)."""
    path = query_ap_path(record_file, protocol, topk)
    codes = codes_path(record_file, "database")
    try:
        if codes.is_file() and codes.stat().st_mtime > path.stat().st_mtime:
            return None
        return np.load(path)
    except FileNotFoundError:
        return None


def safe_name(name: str) -> str:
    """A folder name for a dataset or method label (path separators replaced)."""
    return name.replace("/", "_").replace("\\", "_") or "_"


def write_json_atomic(path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, allow_nan=True)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def link_atomic(source, target) -> None:
    """Make ``target`` a hard link to ``source`` (a copy where links are not possible), atomically."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    tmp.replace(target)


def read_record(path) -> dict | None:
    """The record at ``path``, or None if there is none (or the file is not a record)."""
    path = Path(path)
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"{path} is not valid JSON ({error}); delete it to recompute the cell") from None
    return record if is_record(record) else None


def is_record(data) -> bool:
    return isinstance(data, dict) and data.get("schema") == SCHEMA and "spec" in data and "status" in data


def load_records(results_dir) -> list[dict]:
    """Every record under ``results_dir`` (sorted by path), each with its file in ``"path"``."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InvalidInputError(f"results folder {str(results_dir)!r} does not exist")
    records = []
    for path in sorted(results_dir.rglob("*.json")):
        record = read_record(path)
        if record is not None:
            records.append({**record, "path": str(path)})
    return records


def mixed_builds(records: list[dict]) -> list[str]:
    """A warning per dataset whose finished records were computed on different builds of it
    (different ``dataset_fingerprint``s): their numbers compare different data. Records made
    before fingerprints are left out of the count."""
    builds = defaultdict(Counter)
    for record in records:
        if record["status"] == "done" and record.get("dataset_fingerprint"):
            builds[record["spec"]["dataset"]][record["dataset_fingerprint"]] += 1
    return [
        f"warning: the records of dataset {dataset!r} come from {len(counts)} different builds of it ("
        + ", ".join(f"{n} on {fingerprint}" for fingerprint, n in counts.most_common())
        + "): numbers from different builds are not comparable; run them again on one build"
        for dataset, counts in builds.items()
        if len(counts) > 1
    ]


def load_results(results_dir) -> pd.DataFrame:
    """All records under ``results_dir`` as one tidy table, one row per record.

    Columns: ``RESULT_COLUMNS`` (``params`` as JSON with sorted keys; ``record`` the record's
    path), then one ``param_<name>`` column per hyper-parameter found in any record.
    """
    rows = [result_row(record) for record in load_records(results_dir)]
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    param_columns = sorted(c for c in table.columns if c.startswith("param_"))
    return table[RESULT_COLUMNS + param_columns]


def result_row(record: dict) -> dict:
    spec = record["spec"]
    metrics = record.get("metrics") or {}
    maps = metrics.get("maps") or {}
    map_range = metrics.get("map_range") or [None, None]  # records written before tie ranges have none
    timings = record.get("timings") or {}
    memory = record.get("memory") or {}
    environment = record.get("environment") or {}
    stats = record.get("code_stats") or {}
    row = {
        key: spec.get(key)
        for key in ("experiment", "label", "method", "dataset", "n_bits", "seed", "protocol", "topk", "device")
    }
    row.update(
        role=spec.get("role", DEFAULT_ROLE),  # records made before roles existed count as main
        params=canonical_json(spec.get("params", {})),
        status=record["status"],
        error=record.get("error"),
        map=metrics.get("map"),
        map_pessimistic=map_range[0],  # the tie range of ``map``: its convention's worst and best tie orders
        map_optimistic=map_range[1],
        normalise=metrics.get("normalise"),
        ties=metrics.get("ties"),
        no_relevant=metrics.get("no_relevant"),
        map_official=maps.get("official"),
        map_deephash=maps.get("deephash"),
        map_tie_aware=maps.get("tie_aware"),
        precision_radius2=metrics.get("precision_radius2"),
        **{key: stats.get(key) for key in STAT_KEYS},
        fit_s=timings.get("fit"),
        encode_query_s=timings.get("encode_query"),
        encode_database_s=timings.get("encode_database"),
        evaluate_s=timings.get("evaluate"),
        peak_rss_mb=memory.get("peak_rss_mb"),
        start_rss_mb=memory.get("start_rss_mb"),  # None in records made before it was kept
        cuda_max_allocated_mb=memory.get("cuda_max_allocated_mb"),
        device_name=environment.get("device_name"),
        git_commit=environment.get("git_commit"),
        dataset_fingerprint=record.get("dataset_fingerprint"),  # None in records made before fingerprints
        record=record.get("path"),
    )
    for name, value in spec.get("params", {}).items():
        row[f"param_{name}"] = value
    return row
