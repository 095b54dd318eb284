"""Result records written by hand, following the store's record schema, for report and plot tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashbench.running import store

TOPK = 20
N_QUERIES = 50
HEALTHY = {"constant_bits": 0.0, "mean_abs_balance": 0.05, "distinct_fraction": 0.9, "mean_abs_correlation": 0.1}
DEGENERATE = {"constant_bits": 0.75, "mean_abs_balance": 0.8, "distinct_fraction": 0.002, "mean_abs_correlation": 0.3}


def make_record(
    method: str,
    dataset: str = "mosaic",
    n_bits: int = 32,
    seed: int = 0,
    *,
    map_value: float | None = 0.5,
    status: str = "done",
    label: str | None = None,
    params: dict | None = None,
    experiment: str = "table3",
    role: str = "main",
    fit_s: float = 2.0,
    encode_s: float = 0.5,
    device: str = "cpu",
    device_name: str = "cpu",
    epochs: list[tuple[int, float]] = (),
    code_stats: dict | None = None,
    map_range: tuple[float, float] | None = None,
) -> dict:
    """One record as the runner writes it; a failed or timed-out record has no metrics."""
    params = params or {}
    spec = {
        "experiment": experiment, "role": role, "label": label or method, "method": method, "params": params,
        "dataset": dataset, "dataset_options": {}, "n_bits": n_bits, "seed": seed,
        "method_seed": 1000 + seed, "protocol": "official", "topk": TOPK, "device": device,
        "timeout_s": None, "record_epochs": [e for e, _ in epochs],
    }  # fmt: skip
    done = status == "done"
    # A falling P@k curve whose mean is about map_value, so curves of better methods lie higher.
    curve = list(np.clip(map_value + 0.1 - 0.2 * np.arange(TOPK) / TOPK, 0, 1)) if done else None
    metrics = {
        "protocol": "official", "topk": TOPK, "map": map_value, "map_range": map_range,
        "maps": {"official": map_value, "deephash": map_value - 0.01, "tie_aware": map_value - 0.02},
        "precision_curve": curve, "recall_curve": list(np.linspace(0.01, 0.2, TOPK)),
        "pr_curve": {"radius": [0, 1, 2], "precision": [0.9, 0.8, 0.7], "recall": [0.1, 0.2, 0.3]},
        "precision_radius2": 0.7, "n_queries": N_QUERIES, "n_queries_skipped": 0,
    }  # fmt: skip
    return {
        "schema": 1,
        "id": f"{experiment}-{label or method}-{json.dumps(params, sort_keys=True)}-{dataset}-{n_bits}-{seed}",
        "spec": spec,
        "status": status,
        "error": None if done else f"{status}: boom",
        "metrics": metrics if done else None,
        "code_stats": (code_stats or HEALTHY) if done else None,
        "epochs": [{"epoch": e, "map": m, "seconds": 0.1 * e} for e, m in epochs],
        "timings": {"fit": fit_s, "encode_query": encode_s / 5, "encode_database": 4 * encode_s / 5, "evaluate": 0.1}
        if done
        else {},
        "memory": {"peak_rss_mb": 300.0, "cuda_max_allocated_mb": None},
        "environment": {"device_name": device_name, "git_commit": "abc123", "versions": {"hashbench": "0.1.0"}},
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:00:05+00:00",
    }


def write_records(records: list[dict], results_dir: Path, *, query_ap: bool = True) -> Path:
    """Write records where the store files them: <dataset>/<method>/<id>.json, and beside each
    finished one (with ``query_ap``) a per-query AP whose mean is its MAP (see ``query_ap_of``)."""
    for number, record in enumerate(records):
        spec = record["spec"]
        path = Path(results_dir) / spec["dataset"] / spec["method"] / f"cell{number:04d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        if query_ap and record["status"] == "done":
            store.save_query_ap(path, query_ap_of(record), spec["protocol"], spec["topk"])
    return Path(results_dir)


def query_ap_of(record: dict) -> np.ndarray:
    """A per-query AP with mean exactly the record's MAP: the MAP plus zero-mean noise (amplitude
    0.1) drawn from the record's id, so cells 0.1 apart differ clearly and equal ones do not."""
    noise = np.random.default_rng(list(record["id"].encode())).normal(size=N_QUERIES)
    noise -= noise.mean()
    return record["metrics"]["map"] + 0.1 * noise / np.abs(noise).max()


def comparison_records() -> list[dict]:
    """Table 3/4 and Figure 2 material: three methods plus a plugin on mosaic, 16 and 32 bits.

    ITQ has three seeds at 32 bits; LSH failed at 16 bits and timed out in one of two seeds at
    32 bits; the plugin is an extra method; LAGNH also has a Table 5 variant and a duplicate of
    its 32-bit cell recorded by the figure2 experiment (counted once).
    """
    records = [
        make_record("itq", n_bits=16, map_value=0.61),
        make_record("itq", n_bits=32, seed=0, map_value=0.70, fit_s=1.0),
        make_record("itq", n_bits=32, seed=1, map_value=0.72, fit_s=3.0),
        make_record("itq", n_bits=32, seed=2, map_value=0.74, fit_s=2.0),
        make_record("lsh", n_bits=16, status="failed"),
        make_record("lsh", n_bits=32, seed=0, map_value=0.40),
        make_record("lsh", n_bits=32, seed=1, status="timeout"),
        make_record("lagnh", n_bits=16, map_value=0.80),
        make_record("lagnh", n_bits=32, map_value=0.85, fit_s=9.0),
        make_record("lagnh", n_bits=32, map_value=0.85, fit_s=9.0, experiment="figure2"),  # also role main
        make_record("my-plugin", n_bits=16, map_value=0.90),
        make_record("my-plugin", n_bits=32, map_value=0.30),
    ]
    return records


def variant_records() -> list[dict]:
    """Table 5 material: three LAGNH variants on mosaic at 16 and 32 bits, one failed."""
    return [
        make_record(
            "lagnh",
            n_bits=b,
            label=label,
            params=params,
            experiment="table5",
            role="ablation",
            map_value=value + b / 1000,
        )
        for label, params, value in (
            ("no-aux", {"use_aux": False}, 0.50),
            ("recons-Sa", {}, 0.80),
            ("only-Sv", {"graph": "visual"}, 0.65),
        )
        for b in (16, 32)
    ] + [
        make_record(
            "lagnh",
            n_bits=32,
            label="no-att",
            params={"attention": False},
            experiment="table5",
            role="ablation",
            status="failed",
        )
    ]


def epoch_records() -> list[dict]:
    """Figure 3 material: LAGNH at 32 bits with MAP recorded after 50..300 epochs, two seeds."""
    return [
        make_record(
            "lagnh",
            n_bits=32,
            seed=seed,
            experiment="figure3",
            role="epochs",
            params={"epochs": 300},
            map_value=0.8,
            epochs=[(e, 0.5 + e / 1000 + seed / 100) for e in (50, 100, 200, 300)],
        )
        for seed in (0, 1)
    ]


PAPER_LAMBDAS = {"lambda1": 100.0, "lambda2": 1.0, "lambda3": 1.0}
LAMBDA_GRID = (1e-3, 1e-1, 10.0, 1e3)


def lambda_records() -> list[dict]:
    """Figure 4 material: each lambda swept over LAMBDA_GRID with the others at the paper's values.

    MAP = 0.6 + 0.01 * (index of lambda) * log10(value), so each panel has its own slope.
    """
    # each sweep sets only its own lambda (the others come from the preset), as configs/paper.toml does
    records = [
        make_record(
            "lagnh",
            n_bits=32,
            experiment="figure4",
            role="sensitivity",
            params={name: PAPER_LAMBDAS[name]},
            map_value=0.75,
        )
        for name in PAPER_LAMBDAS
    ]  # the shared centre, thrice
    for index, name in enumerate(PAPER_LAMBDAS, start=1):
        for value in LAMBDA_GRID:
            params = {name: value}
            records.append(
                make_record(
                    "lagnh",
                    n_bits=32,
                    experiment="figure4",
                    role="sensitivity",
                    params=params,
                    map_value=0.6 + 0.01 * index * np.log10(value),
                )
            )
    return records
