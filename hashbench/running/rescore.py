"""Rescoring: the metrics of finished records recomputed from their saved codes (no retraining),
for another protocol or top-k."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from hashbench.codes import BinaryCodes
from hashbench.errors import InvalidInputError
from hashbench.health import code_stats
from hashbench.running import store
from hashbench.running.cell import Cell, canonical_json
from hashbench.running.timing import Stopwatch
from hashbench.running.worker import load_cell_dataset, score


def rescore(results_dir, *, protocol: str | None = None, topk: int | None = None, quiet: bool = False) -> list[dict]:
    """Recompute the metrics of every finished record under ``results_dir`` from its saved codes
    (no retraining), with another ``protocol`` / ``topk`` when given; records are rewritten
    atomically. MAPs recorded along training (``epochs``) keep the protocol they were made with."""
    records = [r for r in store.load_records(results_dir) if r["status"] == "done"]
    records.sort(key=lambda r: canonical_json([r["spec"].get("dataset_source"), r["spec"].get("dataset_options")]))
    updated = []
    for record in tqdm(records, desc="rescore", unit="record", disable=quiet or None):
        path = Path(record.pop("path"))
        spec = record["spec"]
        updated.append(rescore_record(record, path, protocol or spec["protocol"], topk or spec["topk"]))
    return updated


def rescore_record(record: dict, path: Path, protocol: str, topk: int) -> dict:
    spec = record["spec"]
    cell = Cell.from_spec(spec, protocol=protocol, topk=topk)
    codes = {}
    for split in ("query", "database"):
        codes_file = store.codes_path(path, split)
        if not codes_file.is_file():
            raise InvalidInputError(f"{path}: its {split} codes ({codes_file.name}) are missing; run the cell again")
        codes[split] = BinaryCodes.load(codes_file)
    clock = Stopwatch("cpu")
    with clock.running():
        scores = score(cell, codes["query"], codes["database"], load_cell_dataset(cell))
    store.save_query_ap(path, scores.ap, protocol, topk)
    updated = {
        **record,
        "spec": {**spec, "protocol": protocol, "topk": topk},
        "metrics": scores.to_dict(),
        "code_stats": code_stats(codes["database"]),
        "timings": {**record["timings"], "evaluate": clock.seconds},
    }
    store.write_json_atomic(path, updated)
    return updated
