"""The matrix runner: run cells, write their records, resume where a run stopped.

``run_cells(cells, out_dir)`` skips every cell that already has a finished record (``resume``),
runs the others through an executor (``executors``; each cell in ``worker.execute_cell``), and
returns one record per cell. A record is a JSON file written atomically (``store``); the cell's
codes are saved beside it, so ``rescore`` recomputes the metrics for another protocol or top-k
without retraining.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from hashbench.datasets.cache import DATA_DIR_VARIABLE
from hashbench.health import describe_health, is_degenerate
from hashbench.running.cell import Cell, canonical_json
from hashbench.running.config import Matrix, load_config
from hashbench.running.executors import make_executor
from hashbench.running.resume import copy_twin, plan
from hashbench.running.worker import (
    CellTask,
    load_cell_dataset,
    method_source,
    thawed_when_done,
    worker_failure_record,
)


def run_cells(
    cells: Iterable[Cell],
    out_dir,
    *,
    executor: str = "local",
    force: bool = False,
    quiet: bool = False,
    data_dir=None,
    workers: int = 2,
    threads: int = 1,
    **executor_options,
) -> list[dict]:
    """Run ``cells`` (skipping finished ones unless ``force``) and return their records, in order.

    ``executor`` is local, processes, ray or slurm; ``executor_options`` go to it (see
    ``executors``). Cells on an ``optional`` dataset that cannot be loaded are left out with a
    one-line note. ``quiet`` silences progress bars (``TQDM_DISABLE=1``, honoured by the epoch
    bars too) and prints nothing but errors. When standard output is not a terminal (a log file,
    a pipe) each finished cell prints one line there (:func:`cell_line`).
    """
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"
    if data_dir is not None:
        os.environ[DATA_DIR_VARIABLE] = str(data_dir)
    out_dir = Path(out_dir)
    cells = available_cells(unique_cells(cells), quiet)
    records, leaders, followers = plan(cells, out_dir, force)
    pool = make_executor(executor, workers=workers, out_dir=out_dir, **executor_options)
    tasks = [
        CellTask(
            c,
            str(out_dir),
            method_source(c.method),
            str(data_dir) if data_dir else None,
            pool.epoch_bars and not quiet,
            threads,
        )
        for c in sorted(leaders.values(), key=execution_order)
    ]
    log_lines = not quiet and not sys.stdout.isatty()  # a log file or a pipe: one line per finished cell
    counts = {"done": sum(r["status"] == "done" for r in records.values())}
    counts["failed"] = len(records) - counts["done"]
    with (
        thawed_when_done(),
        tqdm(total=len(cells), initial=len(records), desc="cells", unit="cell", disable=quiet or None) as bar,
    ):
        bar.set_postfix(**counts, left=len(cells) - len(records))
        for task, outcome in pool.run(tasks):
            record = outcome if isinstance(outcome, dict) else worker_failure_record(task, outcome)
            finished = [(task.cell, record)]
            finished += [
                (twin, copy_twin(record, task.record_path, twin, out_dir))
                for twin in followers[task.cell.computation_id]
            ]
            for cell, cell_record in finished:
                records[cell.id] = cell_record
                counts["done" if cell_record["status"] == "done" else "failed"] += 1
                message = outcome_message(cell, cell_record)
                if message:
                    (print if quiet else bar.write)(message, file=sys.stderr)
                if log_lines:
                    print(cell_line(cell, cell_record), flush=True)
                bar.update()
            bar.set_postfix(**counts, left=len(cells) - len(records))
    return [records[c.id] for c in cells]


def execution_order(cell: Cell) -> tuple[str, bool]:
    """Cells by dataset, so that a worker loads each dataset once per stretch of cells on it; on a
    dataset, the methods that read images last, so that the backbone outputs they cache and share
    (see ``hashbench.methods._cnn.frozen_outputs``) are not held through the other cells."""
    from hashbench.registry import method_class

    return canonical_json([cell.dataset_source, cell.dataset_options]), method_class(cell.method).input_kind == "images"


def cell_line(cell: Cell, record: dict) -> str:
    """One line for a finished cell: its status, MAP, fit seconds and code health."""
    if record["status"] != "done":
        return f"{record['status']}: {cell.describe()}"
    stats = record.get("code_stats")
    health = f", {describe_health(stats)}" if stats else ""
    return f"done: {cell.describe()}: MAP {record['metrics']['map']:.4f}, fit {record['timings']['fit']:.1f} s{health}"


def outcome_message(cell: Cell, record: dict) -> str | None:
    """The line printed for a cell that failed or whose codes are degenerate; None otherwise."""
    if record["status"] != "done":
        return f"{cell.describe()}: {record['status']}: {record['error']}"
    stats = record.get("code_stats")
    if stats and is_degenerate(stats):
        return f"warning: {cell.describe()}: degenerate codes ({describe_health(stats)})"
    return None


def run_config(
    config,
    out_dir,
    *,
    experiments=None,
    methods=None,
    datasets=None,
    bits=None,
    seeds=None,
    executor: str | None = None,
    force: bool = False,
    quiet: bool = False,
    data_dir=None,
) -> list[dict]:
    """Run (part of) a matrix file or ``Matrix``: the filters narrow it as in ``Matrix.cells``.
    Each experiment runs on its own executor settings unless ``executor`` overrides them."""
    matrix = config if isinstance(config, Matrix) else load_config(config)
    cells = matrix.cells(experiments, methods, datasets, bits, seeds)
    records = []
    for settings, group in group_by_executor(matrix, cells, executor):
        records += run_cells(group, out_dir, force=force, quiet=quiet, data_dir=data_dir, **settings)
    return records


def group_by_executor(matrix: Matrix, cells: list[Cell], executor: str | None) -> list[tuple[dict, list[Cell]]]:
    groups: dict[str, tuple[dict, list[Cell]]] = {}
    for cell in cells:
        s = matrix.experiment(cell.experiment).settings
        settings = {
            "executor": executor or s["executor"],
            "workers": s["workers"],
            "threads": s["threads"],
            **s["executor_options"],
        }
        groups.setdefault(canonical_json(settings), (settings, []))[1].append(cell)
    return list(groups.values())


def unique_cells(cells: Iterable[Cell]) -> list[Cell]:
    """``cells`` without repeats (the same cell selected twice runs once)."""
    seen = {}
    for cell in cells:
        seen.setdefault(cell.id, cell)
    return list(seen.values())


def available_cells(cells: list[Cell], quiet: bool) -> list[Cell]:
    """Leave out the cells of optional datasets that cannot be loaded, with one note for each."""
    missing = set()
    for cell in cells:
        key = (cell.dataset_source, canonical_json(cell.dataset_options))
        if cell.dataset_optional and key not in missing:
            try:
                load_cell_dataset(cell)
            except Exception as error:  # any reason a dataset cannot be loaded means: skip it
                missing.add(key)
                if not quiet:
                    print(f"note: skipping optional dataset {cell.dataset!r}: {error}", file=sys.stderr)
    return [c for c in cells if (c.dataset_source, canonical_json(c.dataset_options)) not in missing]
