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
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from hashbench.reporting import significance
from hashbench.reporting.paper import (
    method_display_name,
    method_order,
    paper_dataset,
    paper_map,
    paper_numbers,
    paper_seconds,
    variant_order,
)
from hashbench.metrics import Convention
from hashbench.reporting.references import RANDOM_CODES, RAW_FEATURES, References, Unavailable
from hashbench.errors import UnknownNameError
from hashbench.health import DEGENERATE_RULE, STAT_KEYS, describe_health, is_degenerate

#: Roles whose cells are compared in Tables 3 and 4 (Table 4 adds the timing-only cells).
COMPARISON_ROLES = ("main",)
TIMING_ROLES = ("main", "timing")
ABLATION_ROLE = "ablation"
#: Columns that identify one seed of one cell, whatever experiment recorded it.
SEED_KEY = ["method", "label", "params", "dataset", "n_bits", "seed", "protocol", "topk", "device"]
DECIMALS = 4
STAT_DECIMALS = {"constant_bits": 2, "mean_abs_balance": 2, "distinct_fraction": 4, "mean_abs_correlation": 2}
MISSING = "—"
TIE_MARK = "≈"
DEGENERATE_MARK = "†"
FAILURE_TEXT = {"failed": "failed", "timeout": "timed out"}
REFERENCE_ROWS = (RANDOM_CODES, RAW_FEATURES)
#: How a column's cells are compared for the marks (see the module docstring).
TESTS = ("ap", "seconds", "value")


@dataclass(frozen=True)
class Cell:
    """One table entry: our values over seeds (or one paper value), or a text entry."""

    values: tuple[float, ...] = ()
    failures: tuple[str, ...] = ()  # the status of each seed that did not finish
    text: str | None = None  # non-numeric entries such as a device name
    mark: int = 0  # 1 = best in its column, 2 = second best
    tied: bool = False  # shares its mark with other cells of the column
    tie_range: tuple[float, float] | None = None  # mean [pessimistic, optimistic] MAP, shown with ``ranges``
    degenerate: tuple[str, ...] = ()  # describe_health of each seed whose codes are degenerate
    # seed -> per-query AP, what the significance test of a MAP column compares; or why there is none
    evidence: Mapping[int, np.ndarray] | str | None = field(default=None, compare=False, repr=False)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None


@dataclass(frozen=True)
class Column:
    group: str  # our dataset name, or the paper's label such as "paper (MS-COCO)"
    title: str  # e.g. "16 bits", "train s"
    better: str | None = None  # "max", "min", or None for columns without marks
    test: str | None = None  # how cells are compared for the marks: one of TESTS
    decimals: int = DECIMALS


@dataclass(frozen=True)
class TableOptions:
    """What a report asks of its tables (see the module docstring)."""

    protocol: str = "official"
    health: bool = False  # code-health columns beside our MAP columns
    ranges: bool = False  # tie ranges after our MAPs
    references: References | None = None  # None: no reference rows


@dataclass
class Table:
    key: str  # "table3", "table4", "table5"
    caption: str
    row_header: str
    rows: list[str]
    columns: list[Column] = field(default_factory=list)
    cells: list[list[Cell]] = field(default_factory=list)  # cells[column][row]
    n_reference_rows: int = 0  # the last rows are references: never marked
    notes: list[str] = field(default_factory=list)  # footnotes, in order

    def add_column(self, column: Column, cells: list[Cell]) -> None:
        compared = len(self.rows) - self.n_reference_rows
        marked, reason = mark_column(cells[:compared], column, self.rows[:compared])
        if reason:
            self.note(f"{_header_title(column)} not marked: {reason}.")
        self.columns.append(column)
        self.cells.append(marked + cells[compared:])
        for row, cell in zip(self.rows, marked):
            if cell.degenerate:
                seeds = len(cell.values)
                self.note(f"{DEGENERATE_MARK} {row}, {_header_title(column)}: degenerate codes in {len(cell.degenerate)} "
                          f"of {seeds} seed{'s' * (seeds > 1)} ({cell.degenerate[0]}).")  # fmt: skip

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def tests(self) -> set[str]:
        return {c.test for c in self.columns if c.test}


@dataclass(frozen=True)
class Row:
    """A table row: one method (or variant) with one hyper-parameter setting (and device)."""

    name: str
    method: str
    params: str | None = None  # None = a paper row we have no results for
    device: str | None = None
    show_paper: bool = True  # paper numbers go on the first row of a method only


# ----------------------------------------------------------------------------- cell contents
def format_cell(cell: Cell, decimals: int = DECIMALS) -> str:
    """The plain text of a cell (marks are added by the Markdown / LaTeX / HTML writers)."""
    if cell.text is not None:
        return cell.text
    if not cell.values:
        if not cell.failures:
            return MISSING
        return "/".join(sorted({FAILURE_TEXT.get(s, s) for s in cell.failures}))
    text = f"{cell.mean:.{decimals}f}"
    if len(cell.values) > 1:
        text += f" ± {cell.std:.{decimals}f} (n={len(cell.values)})"
    if cell.tie_range is not None:
        text += f" [{cell.tie_range[0]:.{decimals}f}, {cell.tie_range[1]:.{decimals}f}]"
    if cell.failures:
        counts = Counter(FAILURE_TEXT.get(s, s) for s in cell.failures)
        text += " (" + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + ")"
    if cell.degenerate:
        text += f" {DEGENERATE_MARK}"
    if cell.tied:
        text += f" {TIE_MARK}"
    return text


def mark_column(cells: list[Cell], column: Column, rows: list[str]) -> tuple[list[Cell], str | None]:
    """Cells with the best (1) and second best (2) marked by the column's test, and why the
    column could not be marked (None when it could, or has no marks)."""
    if column.better is None:
        return cells, None
    candidates = [i for i, c in enumerate(cells) if c.values]
    if column.test == "ap":
        lacking = [i for i in candidates if not isinstance(cells[i].evidence, Mapping)]
        if lacking:
            return cells, "no per-query AP for " + "; ".join(f"{rows[i]} ({cells[i].evidence})" for i in lacking)
    if column.test == "seconds" and len(candidates) > 1:
        lacking = [rows[i] for i in candidates if len(cells[i].values) < 2]
        if lacking:
            return cells, f"Welch's test needs two seeds per cell ({', '.join(lacking)} ran one)"
    sign = 1 if column.better == "max" else -1
    order = sorted(candidates, key=lambda i: -sign * cells[i].mean)
    best, second = significance.tiers(order, lambda i, j: _beats(cells[i], cells[j], column))
    marks = {i: (1, len(best) > 1) for i in best} | {i: (2, len(second) > 1) for i in second}
    return [replace(c, mark=marks[i][0], tied=marks[i][1]) if i in marks else c for i, c in enumerate(cells)], None


def _beats(a: Cell, b: Cell, column: Column) -> bool:
    """Whether cell ``a`` is better than ``b`` by the column's test."""
    if column.test == "ap":
        return significance.ap_beats(a.evidence, b.evidence)
    if column.test == "seconds":
        return significance.fewer_seconds(a.values, b.values)
    sign = 1 if column.better == "max" else -1
    return sign * (round(a.mean, column.decimals) - round(b.mean, column.decimals)) > 0


def summarise(frame: pd.DataFrame, keys: list[str], value: str) -> dict[tuple, Cell]:
    """One Cell per group of ``keys``: values of finished seeds, statuses of the others."""
    return {key if isinstance(key, tuple) else (key,): seed_cell(group, value)
            for key, group in frame.groupby(keys, sort=False, dropna=False)}  # fmt: skip


def seed_cell(group: pd.DataFrame, value: str) -> Cell:
    done = group[group["status"] == "done"]
    values = tuple(float(v) for v in done[value] if pd.notna(v))
    return Cell(values, tuple(group.loc[group["status"] != "done", "status"]))


def map_cell(group: pd.DataFrame | None, options: TableOptions) -> Cell:
    """A MAP cell of our results: values, failures, health, tie range and per-query AP of its seeds."""
    if group is None:
        return Cell()
    cell = seed_cell(group, f"map_{options.protocol}")
    done = group[group["status"] == "done"]
    degenerate = tuple(describe_health(stats) for stats in _code_stats(done) if is_degenerate(stats))
    tie_range = None
    scored = done[done["protocol"] == options.protocol][["map_pessimistic", "map_optimistic"]].dropna()
    if options.ranges and len(scored) == len(done) and len(done):
        tie_range = (float(scored["map_pessimistic"].mean()), float(scored["map_optimistic"].mean()))
    try:
        evidence = {int(r.seed): significance.query_ap(r.record, options.protocol, _topk(r.topk)) for r in done.itertuples()}
    except Unavailable as reason:
        evidence = str(reason)
    return replace(cell, degenerate=degenerate, tie_range=tie_range, evidence=evidence)


def _topk(value) -> int | None:
    return None if pd.isna(value) else int(value)


def _code_stats(frame: pd.DataFrame) -> list[dict]:
    stats = frame[list(STAT_KEYS)].dropna()
    return [dict(zip(STAT_KEYS, row)) for row in stats.itertuples(index=False)]


def health_cell(group: pd.DataFrame | None, stat: str) -> Cell:
    """A code-health statistic: its mean over finished seeds (the MAP cell beside it gives n)."""
    cell = Cell() if group is None else seed_cell(group, stat)
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
    present = frame[keys + ["label"]].fillna("").drop_duplicates(keys)
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


# ----------------------------------------------------------------------------- captions
def protocol_description(protocol: str) -> str:
    """'official protocol: normalise=retrieved, ties=stable, no_relevant=skip'."""
    convention = Convention.resolve(protocol)
    return (f"{protocol} protocol: normalise={convention.normalise}, ties={convention.ties}, "
            f"no_relevant={convention.no_relevant}")


def metric_label(frame: pd.DataFrame, protocol: str) -> str:
    topks = sorted({int(k) for k in frame["topk"].dropna()}) or [paper_numbers()["topk"]]
    return f"MAP@{'/'.join(map(str, topks))} ({protocol_description(protocol)})"


def paper_note(datasets: list[str], measure: str) -> str:
    """The caption's sentence on where the paper columns come from and what they compare with."""
    numbers = paper_numbers()
    notes = [f"Paper columns: as reported by {numbers['citation']} ({measure}; {numbers['features']})."]
    for dataset in datasets:
        counterpart = paper_dataset(dataset)
        if not counterpart.same_data:
            notes.append(f"Our {dataset} is not the paper's {counterpart.name}: compare trends, not values.")
    return " ".join(notes)


def cell_counts(frame: pd.DataFrame) -> str:
    """'Cells: 40 done, 2 failed, 1 timed out, 3 with degenerate codes (†).' over seeds of cells."""
    statuses = Counter(frame["status"])
    parts = [f"{statuses.pop('done', 0)} done"]
    parts += [f"{n} {FAILURE_TEXT.get(status, status)}" for status, n in sorted(statuses.items())]
    degenerate = sum(is_degenerate(stats) for stats in _code_stats(frame[frame["status"] == "done"]))
    if degenerate:
        parts.append(f"{degenerate} with degenerate codes ({DEGENERATE_MARK})")
    return f"Cells (one per seed): {', '.join(parts)}."


def paper_presets() -> set:
    """Preset names that mean the paper's schedule: the default, and LAGNH's per-dataset presets."""
    return {None, "paper", *paper_numbers()["datasets"]}


def describe_schedule(method: str, preset, epochs) -> str | None:
    """'quick, 60 epochs' for a cell whose schedule is not the paper's; None when it is."""
    from hashbench.registry import method_class

    preset = None if pd.isna(preset) else preset
    epochs = None if pd.isna(epochs) else int(epochs)
    try:
        presets = method_class(method).presets
    except UnknownNameError:  # a plugin not loaded here
        presets = {}
    paper_epochs = presets.get("paper", {}).get("epochs")
    if preset in paper_presets() and (epochs is None or epochs == paper_epochs):
        return None
    parts = [] if preset in paper_presets() else [str(preset)]
    epochs = epochs if epochs is not None else presets.get(preset, {}).get("epochs")
    if epochs is not None:
        parts.append(f"{epochs} epochs")
    return ", ".join(parts)


def schedule_note(frame: pd.DataFrame, rows: list[Row], row_value: str) -> str:
    """The caption's sentence naming each row whose cells ran a schedule other than the paper's."""
    named = []
    for row in rows:
        cells = frame[(frame[row_value] == row.method) & (frame["params"] == row.params)]
        if row.device is not None:
            cells = cells[cells["device_name"] == row.device]
        presets = cells.get("param_preset", pd.Series(None, index=cells.index))
        epochs = cells.get("param_epochs", pd.Series(None, index=cells.index))
        schedules = {describe_schedule(m, p, e) for m, p, e in zip(cells["method"], presets, epochs)} - {None}
        if schedules:
            named.append(f"{row.name} ({' / '.join(sorted(schedules))})")
    return f"Schedules other than the paper's: {'; '.join(dict.fromkeys(named))}." if named else ""


def preset_gap_note(frame: pd.DataFrame) -> str:
    """The caption's sentences on quick presets far from the paper's (see :mod:`~hashbench.running.preset_gaps`)."""
    from hashbench.running.preset_gaps import gap_notes

    if "param_preset" not in frame:
        return ""
    quick = frame[frame["param_preset"] == "quick"]
    fingerprints = set(quick.loc[quick["dataset"] == "mosaic", "dataset_fingerprint"].dropna())
    return " ".join(f"{line[0].upper()}{line[1:]}." for line in gap_notes(quick["method"].unique(), fingerprints))


def caption(*parts: str) -> str:
    return " ".join(p for p in parts if p)


# ----------------------------------------------------------------------------- the tables
def _reference_cells(options: TableOptions, dataset: str, n_bits: int, seeds, topk, table: Table) -> list[Cell]:
    """The random-codes and raw-features cells of one of our MAP columns."""
    cells = []
    for kind in REFERENCE_ROWS:
        try:
            if kind == RANDOM_CODES:
                values = options.references.random_codes(dataset, n_bits, seeds, options.protocol, topk)
            else:
                values = (options.references.raw_features(dataset, options.protocol, topk),)
            cells.append(Cell(tuple(values)))
        except Unavailable as reason:
            table.note(f"{kind} on {dataset}: not computed ({reason}).")
            cells.append(Cell())
    return cells


def _map_table(key: str, title: str, row_header: str, frame: pd.DataFrame, rows: list[Row],
               row_value: str, paper_table: str, options: TableOptions) -> Table:
    """Tables 3 and 5: for each dataset, our MAP per code length, then the paper's."""
    datasets = dataset_order(frame["dataset"].unique())
    numbers = paper_numbers()
    paper_measure = f"MAP@{numbers['topk']}, {numbers['protocol']} protocol"
    references = list(REFERENCE_ROWS) if options.references is not None else []
    text = caption(f"{title}: {metric_label(frame, options.protocol)}.", schedule_note(frame, rows, row_value),
                   preset_gap_note(frame), cell_counts(frame), paper_note(datasets, paper_measure))  # fmt: skip
    table = Table(key, text, row_header, [r.name for r in rows] + references, n_reference_rows=len(references))
    if references:
        table.note(f"Reference rows, never marked: {RANDOM_CODES} = MAP of uniformly random codes (one draw per seed "
                   f"of the column's cells), {RAW_FEATURES} = exact Euclidean ranking on the raw features.")  # fmt: skip
    padding = [Cell()] * len(references)
    for dataset in datasets:
        ours = frame[frame["dataset"] == dataset]
        bits = sorted(int(b) for b in ours["n_bits"].unique())
        groups = {k: g for k, g in ours.groupby([row_value, "params", "n_bits"], sort=False)}
        for n_bits in bits:
            row_groups = [groups.get((r.method, r.params, n_bits)) for r in rows]
            cells = [map_cell(group, options) for group in row_groups]
            if references:
                column = ours[ours["n_bits"] == n_bits]
                seeds = sorted({int(s) for s in column.loc[column["status"] == "done", "seed"]}) or [0]
                topk = _topk(column["topk"].mode().iloc[0]) if column["topk"].notna().any() else None
                cells += _reference_cells(options, dataset, n_bits, seeds, topk, table)
            table.add_column(Column(dataset, f"{n_bits} bits", "max", "ap"), cells)
            if options.health:
                for stat in STAT_KEYS:
                    table.add_column(Column(dataset, f"{n_bits} bits {stat}", decimals=STAT_DECIMALS[stat]),
                                     [health_cell(group, stat) for group in row_groups] + padding)
        paper_label = paper_dataset(dataset).column_label
        for n_bits in bits:
            cells = []
            for row in rows:
                value = paper_map(dataset, row.method, n_bits, table=paper_table) if row.show_paper else None
                cells.append(Cell(() if value is None else (value,)))
            table.add_column(Column(paper_label, f"{n_bits} bits", "max", "value"), cells + padding)
    if options.health:
        table.note(f"Code health (database codes, mean over seeds): constant_bits = fraction of bits on which 99% of "
                   f"the items agree; mean_abs_balance = mean |2p - 1|; distinct_fraction = distinct codes / items; "
                   f"mean_abs_correlation = mean |correlation| between bits. {DEGENERATE_MARK} = {DEGENERATE_RULE}.")  # fmt: skip
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
    return _map_table("table5", "Table 5: LAGNH variants", "variant", frame, rows, "label", "table5", options)


def table4(results: pd.DataFrame, options: TableOptions = TableOptions()) -> Table | None:
    """Table 4: training and encoding seconds at 32 bits per method and device, beside the paper's."""
    frame = comparison_records(results, TIMING_ROLES)
    frame = frame[frame["n_bits"] == 32]
    if frame.empty:
        return None
    frame = frame.assign(encode_s=frame["encode_query_s"] + frame["encode_database_s"],
                         device_name=frame["device_name"].fillna(""))
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
    table.add_column(Column("", "device"), [Cell(text=r.device or MISSING) for r in rows])
    for dataset in datasets:
        ours = frame[frame["dataset"] == dataset]
        for title, value in (("train s", "fit_s"), ("encode s", "encode_s")):
            summary = summarise(ours, ["method", "params", "device_name"], value)
            table.add_column(Column(dataset, title, "min", "seconds"),
                             [summary.get((r.method, r.params, r.device), Cell()) for r in rows])
        paper_label = paper_dataset(dataset).column_label
        for position, title in enumerate(("train s", "encode s")):
            cells = []
            for row in rows:
                seconds = paper_seconds(dataset, row.method) if row.show_paper else None
                cells.append(Cell(() if seconds is None else (seconds[position],)))
            table.add_column(Column(paper_label, title, "min", "value"), cells)
    return table


# ----------------------------------------------------------------------------- writers
TEST_LEGENDS = {
    "ap": "our MAP columns only where Wilcoxon's signed-rank test over per-query AP (seeds pooled) finds the "
          "difference significant at 0.05",
    "seconds": "our seconds only where Welch's t-test over seeds (on log seconds) finds the difference significant "
               "at 0.05",
}  # fmt: skip


def legend(table: Table, best: str, second: str) -> str:
    """The sentence under a table on what its marks mean."""
    tests = [TEST_LEGENDS[t] for t in sorted(table.tests) if t in TEST_LEGENDS]
    text = f"Best per column {best}, second best {second}"
    if tests:
        text += ": " + "; ".join(tests)
    text += f". {TIE_MARK} = tied for that place (no significant difference among them)."
    if "value" in table.tests:
        text += " Paper columns carry the paper's marks."
    return text


def _header_title(column: Column) -> str:
    return f"{column.group} {column.title}".strip()


def cell_text(table: Table, column_index: int, row_index: int) -> str:
    return format_cell(table.cells[column_index][row_index], table.columns[column_index].decimals)


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown, caption above, legend and footnotes below."""
    marks = {1: "**{}**", 2: "_{}_", 0: "{}"}
    header = [table.row_header] + [_header_title(c) for c in table.columns]
    lines = [f"**{table.caption}**", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
    for index, name in enumerate(table.rows):
        entries = [marks[col[index].mark].format(cell_text(table, c, index)) for c, col in enumerate(table.cells)]
        lines.append("| " + " | ".join([name] + entries) + " |")
    lines += ["", legend(table, "in **bold**", "in _italics_ (the paper underlines it)"), ""]
    lines += [f"- {note}" for note in table.notes] + ([""] if table.notes else [])
    return "\n".join(lines)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}
LATEX_SYMBOLS = {"±": r"$\pm$", MISSING: "--", TIE_MARK: r"$\approx$", DEGENERATE_MARK: r"\textsuperscript{\dag}"}


def latex_escape(text: str) -> str:
    escaped = "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    for symbol, command in LATEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, command)
    return escaped


def to_latex(table: Table) -> str:
    """The table as a LaTeX ``table`` (booktabs), grouped column headers, marks as in the paper."""
    marks = {1: r"\textbf{%s}", 2: r"\underline{%s}", 0: "%s"}
    groups = []  # (group, first column, span)
    for position, column in enumerate(table.columns):
        if groups and groups[-1][0] == column.group:
            groups[-1][2] += 1
        else:
            groups.append([column.group, position, 1])
    group_header = " & ".join([""] + [rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(g)}}}" for g, _, span in groups])
    rules = " ".join(rf"\cmidrule(lr){{{first + 2}-{first + span + 1}}}" for g, first, span in groups if g)
    titles = " & ".join([latex_escape(table.row_header)] + [latex_escape(c.title) for c in table.columns])
    lines = [
        r"\begin{table}[t]", r"\centering",
        rf"\caption{{{latex_escape(table.caption)} {latex_escape(legend(table, 'in bold', 'underlined'))}}}",
        rf"\label{{tab:{table.key}}}",
        r"\resizebox{\textwidth}{!}{%",
        rf"\begin{{tabular}}{{l{'r' * len(table.columns)}}}", r"\toprule",
        group_header + r" \\", rules, titles + r" \\", r"\midrule",
    ]
    for index, name in enumerate(table.rows):
        if index == len(table.rows) - table.n_reference_rows:
            lines.append(r"\midrule")
        entries = [marks[col[index].mark] % latex_escape(cell_text(table, c, index)) for c, col in enumerate(table.cells)]
        lines.append(" & ".join([latex_escape(name)] + entries) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    lines += [r"\par\smallskip{\footnotesize " + latex_escape(note) + "}" for note in table.notes]
    lines += [r"\end{table}", ""]
    return "\n".join(lines)


WRITERS = {"md": to_markdown, "tex": to_latex}
TABLES = {"table3": table3, "table4": table4, "table5": table5}


def build_table(name: str, results: pd.DataFrame, options: TableOptions = TableOptions()) -> Table | None:
    """Table ``name`` ("table3", "table4", "table5") from merged results, or None if nothing fits."""
    return TABLES[name](results, options)


def write_table(table: Table, out_dir: Path, formats=("md", "tex")) -> list[Path]:
    """Write one table in each of ``formats``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_dir / f"{table.key}.{fmt}"
        path.write_text(WRITERS[fmt](table), encoding="utf-8")
        written.append(path)
    return written
