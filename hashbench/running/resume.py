"""Resuming a matrix: which cells already have a finished record under the results folder, which
must run, and which can take the outcome of a finished cell that computed the same thing.

A finished record is reused as it is, rescored from its codes when the cell asks for another
protocol or top-k, and relabelled when only its experiment's role changed. A failed record is
run again only when its failure was transient; a timed-out one only when the limit was raised.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from hashbench.running import store
from hashbench.running.cell import Cell
from hashbench.running.rescore import rescore_record


def plan(cells: list[Cell], out_dir: Path, force: bool) -> tuple[dict, dict, dict]:
    """Split ``cells`` into finished records (by cell id), the cells to run (one per
    computation, by computation_id) and, per computation, the other cells that share it."""
    records, pending = {}, []
    for cell in cells:
        path = store.record_path(out_dir, cell)
        existing = None if force else store.read_record(path)
        if existing is None or needs_run(existing, cell):
            pending.append(cell)
        else:
            records[cell.id] = finished_record(existing, path, cell)
    twins = {} if force else finished_twins(pending, out_dir)
    leaders, followers = {}, defaultdict(list)
    for cell in pending:
        if cell.computation_id in twins:
            copy = copy_twin(*twins[cell.computation_id], cell, out_dir)
            records[cell.id] = finished_record(copy, store.record_path(out_dir, cell), cell)
        elif cell.computation_id in leaders:
            followers[cell.computation_id].append(cell)
        else:
            leaders[cell.computation_id] = cell
    return records, leaders, followers


def needs_run(record: dict, cell: Cell) -> bool:
    """Whether an existing record must be computed again (not finished, or worth a retry)."""
    status = record["status"]
    if status == "failed":
        return record.get("transient", False)
    if status == "timeout":
        previous = record["spec"].get("timeout_s")
        return cell.timeout_s is None or previous is None or cell.timeout_s > previous
    return status != "done"


def needs_rescore(record: dict, cell: Cell) -> bool:
    spec = record["spec"]
    return record["status"] == "done" and (spec.get("protocol"), spec.get("topk")) != (cell.protocol, cell.topk)


def finished_record(record: dict, path: Path, cell: Cell) -> dict:
    """A finished record as the cell wants it: rescored from its codes if the cell asks for
    another protocol or top-k, and relabelled if its experiment's role changed (a role is not part
    of what a cell computes, so changing it in the config must not recompute the cell)."""
    if needs_rescore(record, cell):
        record = rescore_record(record, path, cell.protocol, cell.topk)
    if record["spec"].get("role") != cell.role:
        record = {**record, "spec": {**record["spec"], "role": cell.role}}
        store.write_json_atomic(path, record)
    return record


def finished_twins(cells: list[Cell], out_dir: Path) -> dict[str, tuple[dict, Path]]:
    """Finished records under ``out_dir`` that computed what some of ``cells`` compute (same
    computation_id, e.g. the table3 cells that figure2 plots), by computation_id."""
    wanted = {c.computation_id: c for c in cells}
    folders = {store.record_path(out_dir, c).parent for c in cells}
    twins = {}
    for folder in folders:
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            record = store.read_record(path)
            cell = wanted.get(record.get("computation")) if record else None
            if cell is not None and not needs_run(record, cell):
                twins.setdefault(cell.computation_id, (record, path))
    return twins


def copy_twin(record: dict, path: Path, cell: Cell, out_dir: Path) -> dict:
    """Give ``cell`` the outcome of ``record`` (at ``path``), which computed the same thing in
    another experiment or under another label: the codes are linked, the record rewritten."""
    target = store.record_path(out_dir, cell)
    target.parent.mkdir(parents=True, exist_ok=True)
    for split in ("query", "database"):
        source = store.codes_path(path, split)
        if source.is_file():
            store.link_atomic(source, store.codes_path(target, split))
    protocol, topk = record["spec"]["protocol"], record["spec"]["topk"]
    if store.query_ap_path(path, protocol, topk).is_file():
        store.link_atomic(store.query_ap_path(path, protocol, topk), store.query_ap_path(target, protocol, topk))
    spec = {
        **record["spec"],
        "experiment": cell.experiment,
        "role": cell.role,
        "label": cell.label,
        "timeout_s": cell.timeout_s,
    }
    copy = {**record, "id": cell.id, "spec": spec, "reused_from": str(path)}
    store.write_json_atomic(target, copy)
    return copy
