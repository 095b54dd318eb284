"""Shared options and bookkeeping of the pytest-benchmark suites in this folder.

Every benchmark stores, in ``benchmark.extra_info``: ``baseline`` (what it is compared with in the
same run), ``ratio`` (with ``ratio_is`` saying which way round), ``targets`` (each with its limit,
the measured value and whether it is met; empty where nothing is published to aim at), the load
average when it ran, and its own measurements. ``--benchmark-json`` writes all of it;
``pytest-benchmark compare`` reads those files. The terminal summary lists every target, and the
search suite's throughput table.
"""

from __future__ import annotations

import operator
import os

import pytest
import torch

SCALES = ("small", "full")
SMALL_EPOCHS = 2  # training epochs at --scale small unless --bench-epochs says otherwise
RECORDED: list[tuple[str, dict]] = []  # (test name, extra_info) in the order they ran


def pytest_addoption(parser):
    group = parser.getgroup("hashbench benchmarks")
    group.addoption(
        "--scale", choices=SCALES, default="small",
        help="small (default: minutes on a laptop) or full (the sizes the targets are set for)",
    )  # fmt: skip
    group.addoption(
        "--bench-dataset", default=None, help="dataset name or path for the quality numbers (default: synthetic)"
    )
    group.addoption(
        "--bench-bits", default=None, help="comma-separated code lengths of the quality numbers (default: 32)"
    )
    group.addoption(
        "--bench-preset", default="quick", help="training preset of deep methods and LAGNH (default: quick)"
    )
    group.addoption(
        "--bench-epochs", type=int, default=None,
        help=f"training epochs of deep methods and LAGNH (default: {SMALL_EPOCHS} at --scale small, the preset's at full)",
    )  # fmt: skip
    group.addoption("--bench-threads", type=int, default=2, help="torch and BLAS threads (default 2)")
    group.addoption("--bench-device", default="cpu", help="device of the deep methods: cpu, cuda, auto (default cpu)")
    group.addoption("--enforce-targets", action="store_true", help="fail a benchmark that misses a target")


def pytest_configure(config):
    torch.set_num_threads(config.getoption("--bench-threads"))


def pytest_generate_tests(metafunc):
    if "n_bits" in metafunc.fixturenames:
        bits = metafunc.config.getoption("--bench-bits")
        metafunc.parametrize("n_bits", [int(b) for b in bits.split(",")] if bits else [32])


@pytest.fixture(scope="session")
def scale(request) -> str:
    return request.config.getoption("--scale")


@pytest.fixture(scope="session")
def threads(request):
    """BLAS limited to ``--bench-threads`` for the whole session (torch is set at start-up)."""
    from threadpoolctl import threadpool_limits

    count = request.config.getoption("--bench-threads")
    with threadpool_limits(count):
        yield count


@pytest.fixture(scope="session")
def training(request, scale) -> dict:
    """The preset and epochs of deep methods and LAGNH: ``--bench-preset`` and ``--bench-epochs``
    (at ``--scale small`` by default SMALL_EPOCHS epochs, at ``full`` the preset's)."""
    epochs = request.config.getoption("--bench-epochs")
    return {
        "preset": request.config.getoption("--bench-preset"),
        "epochs": SMALL_EPOCHS if epochs is None and scale == "small" else epochs,
    }


@pytest.fixture
def record(benchmark, request):
    """``record(baseline=..., ratio=..., ratio_is=..., targets={name: (value, "<=" or ">=", limit)},
    **measurements)`` stores a benchmark's results in ``extra_info``; targets apply only at
    ``--scale full`` unless ``always=True``."""
    enforce = request.config.getoption("--enforce-targets")
    full = request.config.getoption("--scale") == "full"

    def store(*, baseline: str, ratio: float | None, ratio_is: str, targets=None, always=False, **measurements):
        checked = {}
        for name, (value, op, limit) in (targets or {}).items():
            met = {"<=": operator.le, ">=": operator.ge}[op](value, limit)
            checked[name] = {"value": value, "op": op, "limit": limit, "met": bool(met), "applies": full or always}
        benchmark.extra_info.update(
            baseline=baseline, ratio=ratio, ratio_is=ratio_is, targets=checked, load_average=list(os.getloadavg()),
            threads=torch.get_num_threads(), **measurements,
        )  # fmt: skip
        RECORDED.append((request.node.name, dict(benchmark.extra_info)))
        missed = [name for name, t in checked.items() if t["applies"] and not t["met"]]
        if enforce and missed:
            pytest.fail(f"missed targets: {', '.join(f'{n} {checked[n]}' for n in missed)}")

    return store


@pytest.fixture
def fastest(benchmark):
    """``fastest()``: the fastest round's seconds once the benchmark has run."""

    def seconds() -> float:
        if benchmark.stats is None:
            pytest.skip("benchmarks are disabled (--benchmark-disable)")
        return float(benchmark.stats.stats.min)

    return seconds


def pytest_terminal_summary(terminalreporter):
    if not RECORDED:
        return
    write = terminalreporter.write_line
    terminalreporter.section("hashbench targets and in-run baselines")
    for name, info in RECORDED:
        ratio = "" if info["ratio"] is None else f"{info['ratio']:.3g} ({info['ratio_is']})"
        write(f"{name}: vs {info['baseline']} {ratio}; load average {info['load_average'][0]:.2f}")
        for target, t in info["targets"].items():
            verdict = ("met" if t["met"] else "MISSED") if t["applies"] else "not applied at this scale"
            write(f"    {target}: {t['value']:.4g} {t['op']} {t['limit']:g}: {verdict}")
    search = [info for _, info in RECORDED if "queries_per_second" in info]
    if search:
        terminalreporter.section("Exhaustive Hamming k-NN throughput (queries/s)")
        implementations = list(dict.fromkeys(info["implementation"] for info in search))
        write("| items | bits | k | " + " | ".join(implementations) + " |")
        write("|---" * (3 + len(implementations)) + "|")
        cells = {(i["n_items"], i["n_bits"], i["k"], i["implementation"]): i["queries_per_second"] for i in search}
        for n_items, n_bits, k in dict.fromkeys((i["n_items"], i["n_bits"], i["k"]) for i in search):
            row = [
                f"{cells[n_items, n_bits, k, impl]:,.0f}" if (n_items, n_bits, k, impl) in cells else "-"
                for impl in implementations
            ]
            write(f"| {n_items:,} | {n_bits} | {k} | " + " | ".join(row) + " |")
