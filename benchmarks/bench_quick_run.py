"""The README's main job against its targets: ``hashbench run configs/quick.toml`` from scratch.

    pytest benchmarks/bench_quick_run.py --benchmark-only -s

Runs the command as a new user does, in a subprocess, with an empty data directory (so the
mosaic build is included) and an empty results directory, and measures its wall seconds and its
peak resident memory: the largest cell peak its records keep (each cell restarts the kernel's
high-water mark, so the maximum the OS reports for the process when it ends covers only its last
cell), or the mosaic build's process if that is larger. Targets, on 2 idle cores: the whole run
<= 300 s, peak memory <= 1.5 GiB, every cell done. The run's one-line-per-cell log is
parsed for each cell's fit seconds, stored beside the totals so a slow cell shows.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hashbench.running.store import load_records

RUN_SECONDS = 300
PEAK_MEMORY_GIB = 1.5
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quick.toml"
CELL_LINE = re.compile(r"^done: \S+/(?P<label>\S+) on (?P<dataset>\S+) at (?P<bits>\d+) bits.*fit (?P<fit>[\d.]+) s")


def run_quick(workdir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HASHBENCH_DATA_DIR": str(workdir / "data")}
    command = [sys.executable, "-m", "hashbench.cli", "run", str(CONFIG), "--out", str(workdir / "results")]
    return subprocess.run(command, env=env, capture_output=True, text=True)


def test_quick_run_from_scratch(benchmark, record, tmp_path):
    started = time.perf_counter()
    result = benchmark.pedantic(run_quick, args=(tmp_path,), rounds=1, iterations=1)
    wall = time.perf_counter() - started
    cell_peak_mib = max((r.get("memory") or {}).get("peak_rss_mb") or 0 for r in load_records(tmp_path / "results"))
    children_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**10  # kilobytes on Linux
    peak_gib = max(cell_peak_mib, children_peak_mib) / 2**10
    cells = [m.groupdict() for m in map(CELL_LINE.match, result.stdout.splitlines()) if m]
    done = re.search(r"(\d+) of (\d+) cells done", result.stdout)
    if done is None:
        pytest.fail(f"hashbench run did not finish:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    record(
        baseline="none (the run's time and memory are compared with their targets)",
        ratio=None,
        ratio_is="",
        always=True,
        targets={
            "run seconds (wall, 2 idle cores)": (wall, "<=", RUN_SECONDS),
            "peak resident memory, GiB": (peak_gib, "<=", PEAK_MEMORY_GIB),
            "cells not done": (int(done.group(2)) - int(done.group(1)), "<=", 0),
        },
        fit_seconds={f"{c['label']} {c['bits']}": float(c["fit"]) for c in cells},
    )
