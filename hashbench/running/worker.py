"""One cell, start to finish, in whatever process runs it (every executor calls ``execute_cell``).

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
``transient`` and retried by the next run; other failures are deterministic and kept. The per-cell
time limit uses ``SIGALRM`` in the process running the cell (where that is its main thread); it
interrupts Python code, so a single long native call finishes before the cell stops.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import inspect
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hashbench.datasets import load_dataset
from hashbench.datasets.cache import DATA_DIR_VARIABLE
from hashbench.errors import UnknownNameError
from hashbench.health import code_stats
from hashbench.methods._torch import flush_subnormals_in_process
from hashbench.metrics import evaluate
from hashbench.running import store
from hashbench.running.cell import Cell, canonical_json
from hashbench.running.environment import environment, iso_now
from hashbench.running.timing import Stopwatch, peak_memory, reset_peak_memory, warm_up_device

WARM_UP_ITEMS = 2


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
        start_rss_mb = reset_peak_memory(cell.device)
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
        record["memory"] = peak_memory(cell.device, start_rss_mb)
    record["finished"] = iso_now()
    store.write_json_atomic(task.record_path, record)
    release_freed_memory()
    return record


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
    return create_method(
        cell.method, n_bits=cell.n_bits, **{k: v for k, v in settings.items() if k in accepted}, **cell.params
    )


def score(cell: Cell, query_codes, database_codes, dataset, *, protocol=None, topk=None):
    return evaluate(
        query_codes, database_codes, dataset.query.labels, dataset.database.labels,
        topk=topk or cell.topk, protocol=protocol or cell.protocol,
    )  # fmt: skip


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


def worker_failure_record(task: CellTask, error: BaseException) -> dict:
    """A transient ``failed`` record for a cell whose worker failed before writing one."""
    now = iso_now()
    record = new_record(task.cell, started=now)
    record.update(
        status="failed", error=f"worker failed: {type(error).__name__}: {error}", transient=True, finished=now
    )
    store.write_json_atomic(task.record_path, record)
    return record


def release_freed_memory(*, everything: bool = False) -> None:
    """Hand the memory a finished cell freed back to the system. glibc keeps freed blocks of the
    heap for reuse, and cells of different sizes in one process leave it fragmented, so without
    this the process' resident memory grows cell after cell to well above any one cell's need.

    The objects that survive the collection are then frozen (``gc.freeze``): the next collection
    looks only at what later cells create, instead of again at the few hundred thousand objects of
    the imported libraries, a sizable fraction of a second each time. ``everything`` unfreezes
    them first, so that an object frozen earlier and garbage now (a dataset replaced by the next
    one) is collected too."""
    if everything:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass  # not glibc: nothing to trim


@contextmanager
def thawed_when_done():
    """Undo :func:`release_freed_memory`'s freezing when the block ends, so that a process that goes
    on after its cells (a notebook, a script) collects its own cyclic garbage as usual."""
    try:
        yield
    finally:
        gc.unfreeze()


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


def method_source(name: str) -> tuple[str, str] | None:
    """Module and file of a method defined outside hashbench, so a fresh worker can import it."""
    from hashbench.registry import method_class

    cls = method_class(name)
    if cls.__module__.split(".")[0] == "hashbench":
        return None
    return cls.__module__, inspect.getfile(cls)


def prepare_worker(task: CellTask) -> None:
    # a worker of any executor (processes, Ray, Slurm) gets here before its first torch work
    flush_subnormals_in_process()
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


_dataset_cache: dict[str, object] = {}


def load_cell_dataset(cell: Cell):
    """The cell's dataset, loaded once per process; only the latest is kept, since cells are
    ordered by dataset and full-size datasets are large."""
    key = canonical_json([cell.dataset_source, cell.dataset_options])
    if key not in _dataset_cache:
        _dataset_cache.clear()
        _dataset_cache[key] = load_dataset(cell.dataset_source, **cell.dataset_options)
        release_freed_memory(everything=True)  # the previous dataset, what a build freed: before the peak is measured
    return _dataset_cache[key]


def forget_datasets() -> None:
    _dataset_cache.clear()
