"""Executors: where the cells of a matrix run. Every executor calls ``worker.execute_cell`` on
each task, so a cell gives the same record (metrics and codes) wherever it runs.

- ``local``: one cell after another in this process (the default).
- ``processes``: a pool of ``workers`` fresh processes on this machine; when torch sees GPUs and
  the cells run on CUDA, one worker per GPU, each pinned to its GPU via ``CUDA_VISIBLE_DEVICES``.
- ``ray``: one Ray task per cell. Options: ``address`` (else ``RAY_ADDRESS``, else a local Ray
  started with ``num_cpus`` CPUs, default ``workers``), ``num_gpus`` and ``num_cpus`` per task,
  ``method_resources = { lagnh = { num_gpus = 1 } }`` per method.
- ``slurm``: submitit job arrays, one per method. Options: ``folder`` (logs; default
  ``<out>/.submitit``), ``cluster`` (``None`` detects Slurm; ``"local"`` runs jobs as local
  processes), ``poll_s``, ``method_resources``; any other key is a submitit parameter
  (``timeout_min``, ``gpus_per_node``, ``cpus_per_task``, ``mem_gb``, ``slurm_partition``,
  ``slurm_array_parallelism``, ...).

``run(tasks)`` yields ``(task, record)`` as cells finish, or ``(task, exception)`` when the worker
itself failed; the runner records the latter as transient failures. Ray and submitit are optional
extras (``pip install hashbench[ray]`` / ``hashbench[slurm]``).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from hashbench.errors import InvalidInputError
from hashbench.running.config import EXECUTORS
from hashbench.running.worker import CellTask, execute_cell


def make_executor(name: str, *, workers: int = 2, out_dir=".", **options):
    kinds = {"local": LocalExecutor, "processes": ProcessesExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}
    if name not in kinds:
        raise InvalidInputError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    return kinds[name](workers=workers, out_dir=Path(out_dir), **options)


def check_no_options(kind: str, options: dict) -> None:
    if options:
        raise InvalidInputError(f"the {kind} executor takes no executor_options, got {sorted(options)}")


class LocalExecutor:
    epoch_bars = True

    def __init__(self, *, workers: int, out_dir: Path, **options):
        check_no_options("local", options)

    def run(self, tasks: list[CellTask]) -> Iterator[tuple[CellTask, dict | BaseException]]:
        for task in tasks:
            yield task, execute_cell(task)


class ProcessesExecutor:
    epoch_bars = False  # concurrent epoch bars would garble the matrix bar

    def __init__(self, *, workers: int, out_dir: Path, **options):
        check_no_options("processes", options)
        self.workers = workers

    def run(self, tasks):
        if not tasks:
            return
        context = multiprocessing.get_context("spawn")  # forking a process that holds torch threads can hang
        gpus = torch.cuda.device_count() if any(t.cell.device != "cpu" for t in tasks) else 0
        gpu_queue = context.Queue()
        for gpu in range(gpus):
            gpu_queue.put(gpu)
        workers = gpus or self.workers
        with ProcessPoolExecutor(
            max_workers=min(workers, len(tasks)), mp_context=context, initializer=pin_gpu, initargs=(gpu_queue, gpus)
        ) as pool:
            futures = {pool.submit(execute_cell, task): task for task in tasks}
            for future in as_completed(futures):
                error = future.exception()
                yield futures[future], error if error is not None else future.result()


def pin_gpu(gpu_queue, gpus: int) -> None:
    """Process-pool initializer: give this worker one GPU of its own (when there are GPUs)."""
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())


class RayExecutor:
    epoch_bars = False

    def __init__(
        self, *, workers: int, out_dir: Path, address=None, num_cpus=None, num_gpus=0, method_resources=None, **options
    ):
        check_no_options("ray (besides address, num_cpus, num_gpus, method_resources)", options)
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.cluster_cpus = workers
        self.task_resources = {"num_cpus": num_cpus or 1, "num_gpus": num_gpus}
        self.method_resources = method_resources or {}

    def run(self, tasks):
        if not tasks:
            return
        try:
            import ray
        except ImportError:
            raise InvalidInputError("the ray executor needs Ray: pip install 'hashbench[ray]'") from None
        started_here = not ray.is_initialized()
        if started_here:
            local = {} if self.address else {"num_cpus": self.cluster_cpus}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **local)
        try:
            remote = ray.remote(execute_cell)
            pending = {
                remote.options(**self.task_resources, **self.method_resources.get(t.cell.method, {})).remote(t): t
                for t in tasks
            }
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                task = pending.pop(ready[0])
                try:
                    yield task, ray.get(ready[0])
                except ray.exceptions.RayError as error:
                    yield task, error
        finally:
            if started_here:
                ray.shutdown()


class SlurmExecutor:
    epoch_bars = False

    def __init__(
        self,
        *,
        workers: int,
        out_dir: Path,
        folder=None,
        cluster=None,
        poll_s=10.0,
        method_resources=None,
        **parameters,
    ):
        self.folder = Path(folder) if folder else out_dir / ".submitit"
        self.cluster = cluster
        self.poll_s = poll_s
        self.method_resources = method_resources or {}
        self.parameters = parameters

    def run(self, tasks):
        if not tasks:
            return
        try:
            import submitit
        except ImportError:
            raise InvalidInputError("the slurm executor needs submitit: pip install 'hashbench[slurm]'") from None
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        by_method: dict[str, list[CellTask]] = {}
        for task in tasks:
            by_method.setdefault(task.cell.method, []).append(task)
        jobs, task_of = [], {}
        for method, group in by_method.items():
            executor.update_parameters(
                name=f"hashbench-{method}", **self.parameters, **self.method_resources.get(method, {})
            )
            for job, task in zip(executor.map_array(execute_cell, group), group):
                jobs.append(job)
                task_of[id(job)] = task
        for job in submitit.helpers.as_completed(jobs, poll_frequency=self.poll_s):
            try:
                yield task_of[id(job)], job.result()
            except Exception as error:  # submitit reports failed and cancelled jobs this way
                yield task_of[id(job)], error
