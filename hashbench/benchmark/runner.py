"""The matrix runner: run cells, write their records, resume where a run stopped.

``run_cells(cells, out_dir)`` skips every cell that already has a finished record (done, or
failed in a way that would fail again), runs the others through an executor (see
``executors``), and returns one record per cell. A record is a JSON file written atomically
(``store``); the cell's codes are saved beside it, so ``rescore`` recomputes the metrics for
another protocol or top-k without retraining. A cell whose record was scored with another
protocol or top-k than asked for is rescored from its codes, not retrained.

What one cell does (``execute_cell``, the same in every executor):

1. load its dataset (cached per process, so consecutive cells on one dataset share it);
2. build the method with the cell's hyper-parameters, ``seed = cell.method_seed``;
3. time ``fit`` (minus the time spent in the epoch callback, which at ``record_epochs`` encodes
   query and database and records their MAP);
4. warm-up: encode the first two query items untimed, so one-time costs of a first call (lazy
   initialisation, CUDA kernel selection, allocator growth) are not charged to encoding; then time
   the query and database encodings separately, then the evaluation;
5. save the codes and the per-query AP, then the record (status ``done``, ``failed`` with the
   error, or ``timeout``).

Errors of the method are recorded and the matrix goes on. Running out of memory and failures of
the infrastructure (a worker that died, a dataset that could not be loaded) are recorded as
``transient`` and retried by the next run; other failures are deterministic and kept. A timed-out
cell is retried only when the limit is raised. The per-cell time limit uses ``SIGALRM`` in the
process running the cell (where that is its main thread); it interrupts Python code, so a single
long native call finishes before the cell stops.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import importlib
import importlib.metadata
import inspect
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hashbench.benchmark import store
from hashbench.benchmark.config import Cell, Matrix, canonical_json, load_config
from hashbench.benchmark.timing import Stopwatch, peak_memory, reset_peak_memory, uses_cuda, warm_up_device
from hashbench.codes import BinaryCodes
from hashbench.datasets.cache import DATA_DIR_VARIABLE
from hashbench.errors import InvalidInputError, UnknownNameError
from hashbench.health import code_stats, describe_health, is_degenerate

WARM_UP_ITEMS = 2
VERSIONED_PACKAGES = ("hashbench", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "pandas")


class CellTimeout(BaseException):
    """Raised inside a cell when its time limit passes (a BaseException, so that a method's own
    ``except Exception`` cannot swallow it)."""


@dataclass(frozen=True)
class CellTask:
    """What a worker needs to run one cell."""

    cell: Cell
    out_dir: str
    method_source: tuple[str, str] | None = None  # (module, file) of a method defined outside hashbench
    data_dir: str | None = None
    epoch_bars: bool = True
    threads: int = 1  # torch's CPU threads in the cell (0: torch's default)

    @property
    def record_path(self) -> Path:
        return store.record_path(self.out_dir, self.cell)


# --- the parent side -----------------------------------------------------------------------------
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
    from hashbench.benchmark.executors import make_executor

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
            c, str(out_dir), method_source(c.method), str(data_dir) if data_dir else None, pool.epoch_bars and not quiet, threads
        )
        for c in sorted(leaders.values(), key=lambda c: canonical_json([c.dataset_source, c.dataset_options]))
    ]  # ordered by dataset: each worker loads a dataset once per stretch of cells on it
    log_lines = not quiet and not sys.stdout.isatty()  # a log file or a pipe: one line per finished cell
    counts = {"done": sum(r["status"] == "done" for r in records.values())}
    counts["failed"] = len(records) - counts["done"]
    with tqdm(total=len(cells), initial=len(records), desc="cells", unit="cell", disable=quiet or None) as bar:
        bar.set_postfix(**counts, left=len(cells) - len(records))
        for task, outcome in pool.run(tasks):
            record = outcome if isinstance(outcome, dict) else worker_failure_record(task, outcome)
            finished = [(task.cell, record)]
            finished += [(twin, copy_twin(record, task.record_path, twin, out_dir)) for twin in followers[task.cell.computation_id]]
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
        settings = {"executor": executor or s["executor"], "workers": s["workers"], "threads": s["threads"], **s["executor_options"]}
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
    spec = {**record["spec"], "experiment": cell.experiment, "role": cell.role, "label": cell.label,
            "timeout_s": cell.timeout_s}
    copy = {**record, "id": cell.id, "spec": spec, "reused_from": str(path)}
    store.write_json_atomic(target, copy)
    return copy


def worker_failure_record(task: CellTask, error: BaseException) -> dict:
    """A transient ``failed`` record for a cell whose worker failed before writing one."""
    now = iso_now()
    record = new_record(task.cell, started=now)
    record.update(status="failed", error=f"worker failed: {type(error).__name__}: {error}", transient=True, finished=now)
    store.write_json_atomic(task.record_path, record)
    return record


def method_source(name: str) -> tuple[str, str] | None:
    """Module and file of a method defined outside hashbench, so a fresh worker can import it."""
    from hashbench.registry import method_class

    cls = method_class(name)
    if cls.__module__.split(".")[0] == "hashbench":
        return None
    return cls.__module__, inspect.getfile(cls)


# --- the worker side -----------------------------------------------------------------------------
def execute_cell(task: CellTask) -> dict:
    """Run one cell, write its codes and record, return the record (every executor calls this)."""
    prepare_worker(task)
    cell = task.cell
    record = new_record(cell, started=iso_now())
    record["environment"]["threads"] = task.threads or torch.get_num_threads()
    try:
        dataset = load_cell_dataset(cell)
    except Exception as error:
        record.update(status="failed", error=f"could not load dataset: {describe_error(error)}", transient=True)
    else:
        reset_peak_memory(cell.device)
        try:
            with time_limit(cell.timeout_s), cpu_threads(task.threads):
                outcome, codes, ap = measure_cell(cell, dataset)
            task.record_path.parent.mkdir(parents=True, exist_ok=True)
            for split, split_codes in codes.items():
                split_codes.save(store.codes_path(task.record_path, split))
            store.save_query_ap(task.record_path, ap, cell.protocol, cell.topk)
            record.update(outcome)
        except CellTimeout:
            record.update(status="timeout", error=f"the cell ran longer than timeout_s={cell.timeout_s}")
        except Exception as error:
            record.update(status="failed", error=describe_error(error), transient=is_transient(error))
        record["memory"] = peak_memory(cell.device)
    record["finished"] = iso_now()
    store.write_json_atomic(task.record_path, record)
    release_freed_memory()
    return record


def release_freed_memory() -> None:
    """Hand the memory a finished cell freed back to the system. glibc keeps freed blocks of the
    heap for reuse, and cells of different sizes in one process leave it fragmented, so without
    this the process' resident memory grows cell after cell to well above any one cell's need."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass  # not glibc: nothing to trim


@contextmanager
def cpu_threads(threads: int):
    """torch's CPU thread count set to ``threads`` for the block (0 leaves it as it is)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def new_record(cell: Cell, *, started: str) -> dict:
    return {
        "schema": store.SCHEMA,
        "id": cell.id,
        "computation": cell.computation_id,
        "spec": {**cell.spec(), "dataset_source": cell.dataset_source},
        "status": "failed",
        "error": None,
        "transient": False,
        "metrics": None,
        "code_stats": None,
        "epochs": [],
        "timings": {},
        "memory": {},
        "environment": environment(cell.device),
        "started": started,
        "finished": None,
    }


def measure_cell(cell: Cell, dataset) -> tuple[dict, dict, np.ndarray]:
    """Fit, encode and evaluate one cell; returns the record's fields, the codes and the per-query AP."""
    hasher = build_method(cell)
    warm_up_device(cell.device)
    fit_clock = Stopwatch(cell.device)
    epochs = []
    wanted = set(cell.record_epochs)

    def record_epoch(epoch: int, model) -> None:
        if epoch in wanted:
            with fit_clock.paused():
                scores = score(cell, model.encode(dataset.query), model.encode(dataset.database), dataset)
                epochs.append({"epoch": epoch, "map": scores.map, "seconds": fit_clock.seconds})

    with fit_clock.running():
        hasher.fit(dataset.train, callback=record_epoch)
    hasher.encode(dataset.query.subset(np.arange(min(WARM_UP_ITEMS, len(dataset.query)))))
    timings = {"fit": fit_clock.seconds}
    codes = {}
    for split in ("query", "database"):
        clock = Stopwatch(cell.device)
        with clock.running():
            codes[split] = hasher.encode(getattr(dataset, split))
        timings[f"encode_{split}"] = clock.seconds
    clock = Stopwatch(cell.device)
    with clock.running():
        scores = score(cell, codes["query"], codes["database"], dataset)
    timings["evaluate"] = clock.seconds
    outcome = {
        "status": "done",
        "metrics": scores.to_dict(),
        "code_stats": code_stats(codes["database"]),
        "dataset_fingerprint": dataset.fingerprint,
        "epochs": epochs,
        "timings": timings,
    }
    return outcome, codes, scores.ap


def build_method(cell: Cell):
    from hashbench.registry import create_method, method_class

    accepted = method_class(cell.method)().get_params()
    settings = {"seed": cell.method_seed, "device": cell.device}
    return create_method(cell.method, n_bits=cell.n_bits, **{k: v for k, v in settings.items() if k in accepted}, **cell.params)


def score(cell: Cell, query_codes, database_codes, dataset, *, protocol=None, topk=None):
    from hashbench import evaluate

    return evaluate(
        query_codes, database_codes, dataset.query.labels, dataset.database.labels,
        topk=topk or cell.topk, protocol=protocol or cell.protocol,
    )  # fmt: skip




def prepare_worker(task: CellTask) -> None:
    if not task.epoch_bars:
        os.environ["TQDM_DISABLE"] = "1"
    if task.data_dir:
        os.environ[DATA_DIR_VARIABLE] = task.data_dir
    if task.method_source is not None:
        ensure_method(task.cell.method, *task.method_source)


def ensure_method(name: str, module: str, file: str) -> None:
    """Make a method defined outside hashbench known in this process: import its module, or
    load its file as a plugin when the module is not importable here."""
    from hashbench.registry import load_plugin, method_class

    try:
        method_class(name)
        return
    except UnknownNameError:
        pass
    try:
        importlib.import_module(module)
    except ImportError:
        load_plugin(file)


# --- datasets, cached per process ----------------------------------------------------------------
_dataset_cache: dict[str, object] = {}


def load_cell_dataset(cell: Cell):
    """The cell's dataset, loaded once per process; only the latest is kept, since cells are
    ordered by dataset and full-size datasets are large."""
    from hashbench import load_dataset

    key = canonical_json([cell.dataset_source, cell.dataset_options])
    if key not in _dataset_cache:
        _dataset_cache.clear()
        _dataset_cache[key] = load_dataset(cell.dataset_source, **cell.dataset_options)
    return _dataset_cache[key]


def forget_datasets() -> None:
    _dataset_cache.clear()


# --- rescoring -----------------------------------------------------------------------------------
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


# --- time limit, errors, environment -------------------------------------------------------------
@contextmanager
def time_limit(seconds: float | None):
    """Raise CellTimeout in this block after ``seconds`` (no limit for None, or off the main thread,
    where signals cannot be delivered)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise CellTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def is_transient(error: BaseException) -> bool:
    """Failures that depend on the machine's state rather than on the cell: retried next run."""
    return isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError))


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def environment(device: str) -> dict:
    return {**static_environment(), "device_name": device_name(device)}


@functools.cache
def static_environment() -> dict:
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    commit, dirty = git_state()
    return {
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": commit,
        "git_dirty": dirty,
    }


def git_state() -> tuple[str | None, bool | None]:
    """The commit of the source tree hashbench runs from, and whether it has local changes."""
    root = Path(__file__).resolve().parents[2]

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None, None
        status = git("status", "--porcelain", "--untracked-files=no")
        return head.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None


@functools.cache
def device_name(device: str) -> str:
    if uses_cuda(device):
        index = torch.device("cuda" if device == "auto" else device).index
        return torch.cuda.get_device_name(index or 0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
