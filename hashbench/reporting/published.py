"""MAP that the methods' own papers report on the standard protocols, beside hashbench's.

The numbers are package data (``hashbench/data/protocol_numbers.toml``), one per method, protocol
id (see ``hashbench.datasets.protocols``), code length and k. ``hashbench reproduce protocols``
runs the cells of ``configs/standard.toml`` that have a published number and writes
:func:`comparison_table` of them.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

import pandas as pd


@cache
def published_numbers() -> tuple[dict, ...]:
    """Every published number: dicts with method, protocol, bits, topk, map, source."""
    data = resources.files("hashbench").joinpath("data/protocol_numbers.toml").read_bytes()
    return tuple(tomllib.loads(data.decode("utf-8"))["number"])


def wanted_cells(cells, numbers) -> list:
    """The cells that score a published number: same method, protocol, code length and k, at the
    method's paper schedule (not a ``quick`` preset); one cell per computation, since a matrix may
    hold the same computation in several experiments."""
    keys = {(n["method"], n["protocol"], n["bits"], n["topk"]) for n in numbers}
    chosen = {}
    for c in cells:
        if (c.method, c.dataset, c.n_bits, c.topk) in keys and c.params.get("preset") != "quick":
            chosen.setdefault((c.computation_id, c.topk), c)
    return list(chosen.values())


def comparison_table(results: pd.DataFrame, numbers) -> pd.DataFrame:
    """One row per published number: ours under the paper's evaluation convention (mean over the
    finished cells' seeds, and their count) beside it; ``ours`` is NaN where no cell finished."""
    rows = []
    for number in numbers:
        mine = results[
            (results["method"] == number["method"]) & (results["dataset"] == number["protocol"])
            & (results["n_bits"] == number["bits"]) & (results["topk"] == number["topk"])
            & (results["status"] == "done")
        ]  # fmt: skip
        rows.append({"method": number["method"], "protocol": number["protocol"], "bits": number["bits"],
                     "k": number["topk"], "convention": number["convention"],
                     "ours": mine[f"map_{number['convention']}"].mean() if len(mine) else float("nan"),
                     "seeds": len(mine), "published": number["map"], "source": number["source"]})  # fmt: skip
    return pd.DataFrame(rows)


def comparison_markdown(table: pd.DataFrame) -> str:
    lines = ["| method | protocol | bits | MAP@k | ours | published | source |", "|---|---|---:|---|---:|---:|---|"]
    # ours is scored as the paper's evaluation code scores (its convention, named in the MAP@k column)
    for row in table.itertuples():
        ours = "not run" if pd.isna(row.ours) else f"{row.ours:.4f} (n={row.seeds})"
        lines.append(
            f"| {row.method} | {row.protocol} | {row.bits} | MAP@{row.k} | {ours} | {row.published:.4f} | "
            f"{row.source} |"
        )
    return "\n".join(lines) + "\n"
