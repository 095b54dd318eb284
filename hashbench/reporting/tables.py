"""The paper's Tables 3, 4 and 5 built from merged results, with the paper's numbers beside ours.

Input is the merged results table of :func:`hashbench.running.store.load_results` (one row per
cell: method, params, dataset, n_bits, seed, role, status, metrics, timings, device). Cells are
chosen by the ``role`` of the experiment that ran them, never by its name:

- Table 3: MAP@k per method, dataset and code length, from the cells of role ``main``.
- Table 4: training (fit) and encoding (query + database) seconds at 32 bits, one row per method
  and device, from the cells of roles ``main`` and ``timing``.
- Table 5: MAP@k of the LAGNH variants, from the ``lagnh`` cells of role ``ablation`` (one row per
  label).

Conventions:
- A number is the mean over finished seeds; with more than one seed it reads
  ``mean ± std (n=seeds)``, std being the sample standard deviation (ddof=1). With ``ranges`` a
  MAP is followed by its tie range ``[pessimistic, optimistic]`` (means over seeds), for cells
  scored under the table's protocol.
- Seeds that failed or timed out are never averaged: a cell where every seed failed reads
  ``failed`` / ``timed out``; a cell where only some did adds ``(k failed)``. ``—`` = not run.
- Best and second best per column are marked as in the paper (bold and underlined in LaTeX,
  ``**bold**`` and ``_italic_`` in Markdown, which has no underline), but only where a test says
  the difference is real (see :mod:`hashbench.reporting.significance`): Wilcoxon's signed-rank
  test over per-query AP for MAP, Welch's t-test over seeds (on log seconds) for seconds. Cells
  tied for a place share its mark and read ``≈``. A column with a cell the test cannot use (no
  per-query AP; fewer than two seeds for seconds) is not marked, and a note says why. Paper
  columns are marked among the paper's own rows by value, so they carry the paper's marks.
- Tables 3 and 5 end with two reference rows per dataset and code length, never marked: ``random
  codes`` (the floor) and ``raw features`` (exact Euclidean ranking), see
  :mod:`hashbench.reporting.references`.
- Cells whose codes trip the runner's warning (:func:`hashbench.health.is_degenerate`) read
  ``†`` and are listed in a footnote with their statistics; ``health`` adds the four code-health
  statistics as columns beside each of our MAP columns.
- Captions name the metric and the protocol's components, every row run on a schedule other
  than the paper's (``LAGNH (quick, 60 epochs)``), and how many cells finished, failed, timed out
  or have degenerate codes.
- Each of our datasets is followed by the paper's numbers for its paper counterpart, headed with
  the paper's dataset name (``paper (MS-COCO)``); when ours is other data (e.g. ``mosaic``) the
  caption says so.
- Methods are listed in the paper's row order, then any other method (plugins, ``itq-aux``, ...)
  by name. A method run with several hyper-parameter settings on one dataset gets one row per
  setting; one setting per dataset (e.g. a dataset-specific preset) makes one row.
- Records of the same cell seen in several experiments count once.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd

from hashbench.health import DEGENERATE_RULE, STAT_KEYS, describe_health, is_degenerate
from hashbench.reporting import significance
from hashbench.reporting.captions import (
    caption,
    cell_counts,
    finished_code_stats,
    metric_label,
    paper_note,
    preset_gap_note,
    schedule_note,
)
from hashbench.reporting.paper import (
    method_display_name,
    method_order,
    paper_dataset,
    paper_map,
    paper_numbers,
    paper_seconds,
    variant_order,
)
from hashbench.reporting.references import RANDOM_CODES, RAW_FEATURES, Unavailable
from hashbench.reporting.table_model import (
    DEGENERATE_MARK,
    MISSING,
    Column,
    Entry,
    Row,
    Table,
    TableOptions,
)

#: Roles whose cells are compared in Tables 3 and 4 (Table 4 adds the timing-only cells).
COMPARISON_ROLES = ("main",)
TIMING_ROLES = ("main", "timing")
ABLATION_ROLE = "ablation"
#: Columns that identify one seed of one cell, whatever experiment recorded it.
SEED_KEY = [
    "method",
    "label",
    "params",
    "dataset",
    "n_bits",
    "seed",
    "protocol",
    "topk",
    "device",
]
STAT_DECIMALS = {
    "constant_bits": 2,
    "mean_abs_balance": 2,
    "distinct_fraction": 4,
    "mean_abs_correlation": 2,
}
REFERENCE_ROWS = (RANDOM_CODES, RAW_FEATURES)
#: what the code-health columns hold (see :mod:`hashbench.health`)
HEALTH_COLUMNS = (
    "constant_bits = fraction of bits on which 99% of the items agree; mean_abs_balance = mean |2p - 1|; "
    "distinct_fraction = distinct codes / items; mean_abs_correlation = mean |correlation| between bits."
)


# ----------------------------------------------------------------------------- cell contents


def summarise(frame: pd.DataFrame, keys: list[str], value: str) -> dict[tuple, Entry]:
    """One Entry per group of ``keys``: values of finished seeds, statuses of the others."""
    return {key if isinstance(key, tuple) else (key,): seed_entry(group, value)
            for key, group in frame.groupby(keys, sort=False, dropna=False)}  # fmt: skip


def seed_entry(group: pd.DataFrame, value: str) -> Entry:
    done = group[group["status"] == "done"]
    values = tuple(float(v) for v in done[value] if pd.notna(v))
    return Entry(values, tuple(group.loc[group["status"] != "done", "status"]))


def map_entry(group: pd.DataFrame | None, options: TableOptions) -> Entry:
    """A MAP cell of our results: values, failures, health, tie range and per-query AP of its seeds."""
    if group is None:
        return Entry()
    cell = seed_entry(group, f"map_{options.protocol}")
    done = group[group["status"] == "done"]
    degenerate = tuple(describe_health(stats) for stats in finished_code_stats(done) if is_degenerate(stats))
    tie_range = None
    scored = done[done["protocol"] == options.protocol][["map_pessimistic", "map_optimistic"]].dropna()
    if options.ranges and len(scored) == len(done) and len(done):
        tie_range = (
            float(scored["map_pessimistic"].mean()),
            float(scored["map_optimistic"].mean()),
        )
    try:
        evidence = {
            int(r.seed): significance.query_ap(r.record, options.protocol, _topk(r.topk)) for r in done.itertuples()
        }
    except Unavailable as reason:
        evidence = str(reason)
    return replace(cell, degenerate=degenerate, tie_range=tie_range, evidence=evidence)


def _topk(value) -> int | None:
    return None if pd.isna(value) else int(value)


def _code_stats(frame: pd.DataFrame) -> list[dict]:
    stats = frame[list(STAT_KEYS)].dropna()
    return [dict(zip(STAT_KEYS, row)) for row in stats.itertuples(index=False)]


def health_entry(group: pd.DataFrame | None, stat: str) -> Entry:
    """A code-health statistic: its mean over finished seeds (the MAP cell beside it gives n)."""
    cell = Entry() if group is None else seed_entry(group, stat)
    return replace(cell, values=(cell.mean,)) if cell.values else cell


# ----------------------------------------------------------------------------- selecting records
def unique_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep one record per seed of a cell (a finished one when there is one)."""
    keys = [k for k in SEED_KEY if k in frame.columns]
    finished_first = frame.assign(_done=frame["status"] != "done").sort_values("_done", kind="stable")
    return finished_first.drop_duplicates(keys).drop(columns="_done").sort_index()


def records_of_roles(results: pd.DataFrame, roles) -> pd.DataFrame:
    return results[results["role"].isin(roles)]


def comparison_records(results: pd.DataFrame, roles=COMPARISON_ROLES) -> pd.DataFrame:
    """Records behind Tables 3 and 4 and Figure 2: the cells of experiments with these roles."""
    return merge_dataset_settings(unique_seeds(records_of_roles(results, roles)))


def merge_dataset_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """Blank the params of methods run with one setting per dataset, so that they make one row even
    when the setting differs between datasets (e.g. LAGNH's NUS-WIDE preset on nuswide only)."""
    settings = frame.groupby(["method", "dataset"])["params"].nunique().groupby("method").max()
    single = settings.index[settings <= 1]
    return frame.assign(params=frame["params"].where(~frame["method"].isin(single), ""))


def variant_records(results: pd.DataFrame) -> pd.DataFrame:
    """Records behind Table 5: the LAGNH cells of ablation experiments."""
    ablations = records_of_roles(results, [ABLATION_ROLE])
    return unique_seeds(ablations[ablations["method"] == "lagnh"])


def dataset_order(datasets) -> list[str]:
    """The paper's datasets first, then the others by name."""
    paper_first = [d for d in paper_numbers()["datasets"] if d in set(datasets)]
    return paper_first + sorted(set(datasets) - set(paper_first))


def describe_params(params: str) -> str:
    """'{"lambda1": 10}' -> 'lambda1=10' (for telling rows of one method apart)."""
    try:
        values = json.loads(params)
    except (TypeError, ValueError):
        return str(params)
    if not isinstance(values, dict):
        return str(values)
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "defaults"


def method_rows(frame: pd.DataFrame, *, by_device: bool = False, paper_methods=()) -> list[Row]:
    """Rows in the paper's method order, then extra methods; one per setting (and device)."""
    keys = ["method", "params"] + (["device_name"] if by_device else [])
    present = frame[[*keys, "label"]].fillna("").drop_duplicates(keys)
    order = method_order()
    methods = [m for m in order if m in set(present["method"]) or m in paper_methods]
    methods += sorted(set(present["method"]) - set(order))
    rows = []
    for method in methods:
        settings = present[present["method"] == method].sort_values(keys[1:])
        if settings.empty:
            rows.append(Row(method_display_name(method), method))
            continue
        several = settings["params"].nunique() > 1
        for index, setting in enumerate(settings.itertuples(index=False)):
            name = method_display_name(method)
            if several:
                label = setting.label if setting.label not in ("", method) else describe_params(setting.params)
                name = f"{name} ({label})"
            device = setting.device_name if by_device else None
            rows.append(Row(name, method, setting.params, device, show_paper=index == 0))
    return rows


# ----------------------------------------------------------------------------- the tables
def _reference_entries(options: TableOptions, dataset: str, n_bits: int, seeds, topk, table: Table) -> list[Entry]:
    """The random-codes and raw-features cells of one of our MAP columns."""
    cells = []
    for kind in REFERENCE_ROWS:
        try:
            if kind == RANDOM_CODES:
                values = options.references.random_codes(dataset, n_bits, seeds, options.protocol, topk)
            else:
                values = (options.references.raw_features(dataset, options.protocol, topk),)
            cells.append(Entry(tuple(values)))
        except Unavailable as reason:
            table.note(f"{kind} on {dataset}: not computed ({reason}).")
            cells.append(Entry())
    return cells


def _map_table(
    key: str,
    title: str,
    row_header: str,
    frame: pd.DataFrame,
    rows: list[Row],
    row_value: str,
    paper_table: str,
    options: TableOptions,
) -> Table:
    """Tables 3 and 5: for each dataset, our MAP per code length, then the paper's."""
    datasets = dataset_order(frame["dataset"].unique())
    numbers = paper_numbers()
    paper_measure = f"MAP@{numbers['topk']}, {numbers['protocol']} protocol"
    references = list(REFERENCE_ROWS) if options.references is not None else []
    text = caption(f"{title}: {metric_label(frame, options.protocol)}.", schedule_note(frame, rows, row_value),
                   preset_gap_note(frame), cell_counts(frame), paper_note(datasets, paper_measure))  # fmt: skip
    table = Table(
        key,
        text,
        row_header,
        [r.name for r in rows] + references,
        n_reference_rows=len(references),
    )
    if references:
        table.note(f"Reference rows, never marked: {RANDOM_CODES} = MAP of uniformly random codes (one draw per seed "
                   f"of the column's cells), {RAW_FEATURES} = exact Euclidean ranking on the raw features.")  # fmt: skip
    padding = [Entry()] * len(references)
    for dataset in datasets:
        ours = frame[frame["dataset"] == dataset]
        bits = sorted(int(b) for b in ours["n_bits"].unique())
        # iter(): dict() would take a GroupBy's .keys attribute for a mapping's keys()
        groups = dict(iter(ours.groupby([row_value, "params", "n_bits"], sort=False)))
        for n_bits in bits:
            row_groups = [groups.get((r.method, r.params, n_bits)) for r in rows]
            cells = [map_entry(group, options) for group in row_groups]
            if references:
                column = ours[ours["n_bits"] == n_bits]
                seeds = sorted({int(s) for s in column.loc[column["status"] == "done", "seed"]}) or [0]
                topk = _topk(column["topk"].mode().iloc[0]) if column["topk"].notna().any() else None
                cells += _reference_entries(options, dataset, n_bits, seeds, topk, table)
            table.add_column(Column(dataset, f"{n_bits} bits", "max", "ap"), cells)
            if options.health:
                for stat in STAT_KEYS:
                    table.add_column(
                        Column(
                            dataset,
                            f"{n_bits} bits {stat}",
                            decimals=STAT_DECIMALS[stat],
                        ),
                        [health_entry(group, stat) for group in row_groups] + padding,
                    )
        paper_label = paper_dataset(dataset).column_label
        for n_bits in bits:
            cells = []
            for row in rows:
                value = paper_map(dataset, row.method, n_bits, table=paper_table) if row.show_paper else None
                cells.append(Entry(() if value is None else (value,)))
            table.add_column(Column(paper_label, f"{n_bits} bits", "max", "value"), cells + padding)
    if options.health:
        table.note(
            f"Code health (database codes, mean over seeds): {HEALTH_COLUMNS} {DEGENERATE_MARK} = {DEGENERATE_RULE}."
        )
    return table


def table3(results: pd.DataFrame, options: TableOptions = TableOptions()) -> Table | None:
    """Table 3: MAP@k of every method, dataset and code length, beside the paper's."""
    frame = comparison_records(results)
    if frame.empty:
        return None
    rows = method_rows(frame, paper_methods=method_order())
    return _map_table("table3", "Table 3", "method", frame, rows, "method", "table3", options)


def table5(results: pd.DataFrame, options: TableOptions = TableOptions()) -> Table | None:
    """Table 5: MAP@k of the LAGNH variants, beside the paper's."""
    frame = variant_records(results)
    if frame.empty:
        return None
    labels = variant_order() + sorted(set(frame["label"]) - set(variant_order()))
    # A variant is named by its label, whatever hyper-parameters realise it.
    rows = [Row(f"LAGNH-{label}", label, "") for label in labels]
    frame = frame.assign(params="")
    return _map_table(
        "table5",
        "Table 5: LAGNH variants",
        "variant",
        frame,
        rows,
        "label",
        "table5",
        options,
    )


def table4(results: pd.DataFrame, options: TableOptions = TableOptions()) -> Table | None:
    """Table 4: training and encoding seconds at 32 bits per method and device, beside the paper's."""
    frame = comparison_records(results, TIMING_ROLES)
    frame = frame[frame["n_bits"] == 32]
    if frame.empty:
        return None
    frame = frame.assign(
        encode_s=frame["encode_query_s"] + frame["encode_database_s"],
        device_name=frame["device_name"].fillna(""),
    )
    paper_methods = [m for m in method_order() if paper_seconds("coco", m) is not None]
    rows = method_rows(frame, by_device=True, paper_methods=paper_methods)
    datasets = dataset_order(frame["dataset"].unique())
    text = caption(
        "Table 4: training (fit) and encoding (query + database) seconds at 32 bits, mean over seeds. "
        "Our timings come from the device named in each row.",
        schedule_note(frame, rows, "method"), cell_counts(frame),
        paper_note(datasets, f"seconds on {paper_numbers()['hardware']}"),
    )  # fmt: skip
    table = Table("table4", text, "method", [r.name for r in rows])
    table.add_column(Column("", "device"), [Entry(text=r.device or MISSING) for r in rows])
    for dataset in datasets:
        ours = frame[frame["dataset"] == dataset]
        for title, value in (("train s", "fit_s"), ("encode s", "encode_s")):
            summary = summarise(ours, ["method", "params", "device_name"], value)
            table.add_column(
                Column(dataset, title, "min", "seconds"),
                [summary.get((r.method, r.params, r.device), Entry()) for r in rows],
            )
        paper_label = paper_dataset(dataset).column_label
        for position, title in enumerate(("train s", "encode s")):
            cells = []
            for row in rows:
                seconds = paper_seconds(dataset, row.method) if row.show_paper else None
                cells.append(Entry(() if seconds is None else (seconds[position],)))
            table.add_column(Column(paper_label, title, "min", "value"), cells)
    return table


TABLES = {"table3": table3, "table4": table4, "table5": table5}


def build_table(name: str, results: pd.DataFrame, options: TableOptions = TableOptions()) -> Table | None:
    """Table ``name`` ("table3", "table4", "table5") from merged results, or None if nothing fits."""
    return TABLES[name](results, options)
