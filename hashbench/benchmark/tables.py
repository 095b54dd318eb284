"""The paper's Tables 3, 4 and 5 built from merged results, with the paper's numbers beside ours.

Input is the merged results table of :func:`hashbench.benchmark.store.load_results` (one row per
cell: method, params, dataset, n_bits, seed, status, metrics, timings, device).

- Table 3: MAP@k per method, dataset and code length (records of every experiment except the
  ablations and sweeps ``table5``, ``figure3``, ``figure4``).
- Table 4: training (fit) and encoding (query + database) seconds at 32 bits, one row per method
  and device.
- Table 5: MAP@k of the LAGNH variants (``lagnh`` records whose label names a paper variant,
  or any label of the ``table5`` experiment).

Conventions:
- A number is the mean over finished seeds; with more than one seed it reads
  ``mean ± std (n=seeds)``, std being the sample standard deviation (ddof=1).
- Seeds that failed or timed out are never averaged: a cell where every seed failed reads
  ``failed`` / ``timed out``; a cell where only some did adds ``(k failed)``. ``—`` = not run.
- Best and second best per column (highest MAP, fewest seconds) are marked as in the paper:
  bold and underlined in LaTeX, ``**bold**`` and ``_italic_`` in Markdown (Markdown has no
  underline). Ties at the printed precision share the mark. Paper columns are marked among the
  paper's own rows, so they match the paper's marks.
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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from hashbench.benchmark.paper import (
    method_display_name,
    method_order,
    paper_dataset,
    paper_map,
    paper_numbers,
    paper_seconds,
    variant_order,
)

#: Experiments that vary one thing on purpose; they are not baseline comparisons for Tables 3/4.
ABLATION_EXPERIMENTS = ("table5", "figure3", "figure4")
#: Columns that identify one seed of one cell, whatever experiment recorded it.
SEED_KEY = ["method", "label", "params", "dataset", "n_bits", "seed", "protocol", "topk", "device"]
DECIMALS = 4
MISSING = "—"
FAILURE_TEXT = {"failed": "failed", "timeout": "timed out"}


@dataclass(frozen=True)
class Cell:
    """One table entry: our values over seeds (or one paper value), or a text entry."""

    values: tuple[float, ...] = ()
    failures: tuple[str, ...] = ()  # the status of each seed that did not finish
    text: str | None = None  # non-numeric entries such as a device name
    mark: int = 0  # 1 = best in its column, 2 = second best

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
    better: str | None = None  # "max", "min", or None for text columns


@dataclass
class Table:
    key: str  # "table3", "table4", "table5"
    caption: str
    row_header: str
    rows: list[str]
    columns: list[Column] = field(default_factory=list)
    cells: list[list[Cell]] = field(default_factory=list)  # cells[column][row]

    def add_column(self, column: Column, cells: list[Cell]) -> None:
        self.columns.append(column)
        self.cells.append(mark_best(cells, column.better))


@dataclass(frozen=True)
class Row:
    """A table row: one method (or variant) with one hyper-parameter setting (and device)."""

    name: str
    method: str
    params: str | None = None  # None = a paper row we have no results for
    device: str | None = None
    show_paper: bool = True  # paper numbers go on the first row of a method only


# ----------------------------------------------------------------------------- cell contents
def format_cell(cell: Cell) -> str:
    """The plain text of a cell (marks are added by the Markdown / LaTeX writers)."""
    if cell.text is not None:
        return cell.text
    if not cell.values:
        if not cell.failures:
            return MISSING
        return "/".join(sorted({FAILURE_TEXT.get(s, s) for s in cell.failures}))
    text = f"{cell.mean:.{DECIMALS}f}"
    if len(cell.values) > 1:
        text += f" ± {cell.std:.{DECIMALS}f} (n={len(cell.values)})"
    if cell.failures:
        counts = Counter(FAILURE_TEXT.get(s, s) for s in cell.failures)
        text += " (" + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + ")"
    return text


def mark_best(cells: list[Cell], better: str | None) -> list[Cell]:
    """Mark the best (1) and second best (2) cells by mean at the printed precision."""
    if better is None:
        return cells
    rounded = [None if c.mean is None else round(c.mean, DECIMALS) for c in cells]
    ranking = sorted({r for r in rounded if r is not None}, reverse=better == "max")
    marks = {value: rank for rank, value in enumerate(ranking[:2], start=1)}
    return [replace(c, mark=marks.get(r, 0)) for c, r in zip(cells, rounded)]


def summarise(frame: pd.DataFrame, keys: list[str], value: str) -> dict[tuple, Cell]:
    """One Cell per group of ``keys``: values of finished seeds, statuses of the others."""
    summary = {}
    for key, group in frame.groupby(keys, sort=False, dropna=False):
        done = group[group["status"] == "done"]
        values = tuple(float(v) for v in done[value] if pd.notna(v))
        failures = tuple(group.loc[group["status"] != "done", "status"])
        summary[key if isinstance(key, tuple) else (key,)] = Cell(values, failures)
    return summary


# ----------------------------------------------------------------------------- selecting records
def unique_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep one record per seed of a cell (a finished one when there is one)."""
    keys = [k for k in SEED_KEY if k in frame.columns]
    finished_first = frame.assign(_done=frame["status"] != "done").sort_values("_done", kind="stable")
    return finished_first.drop_duplicates(keys).drop(columns="_done").sort_index()


def comparison_records(results: pd.DataFrame) -> pd.DataFrame:
    """Records behind Tables 3 and 4 and Figure 2: every experiment but ablations and sweeps."""
    return merge_dataset_settings(unique_seeds(results[~results["experiment"].isin(ABLATION_EXPERIMENTS)]))


def merge_dataset_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """Blank the params of methods run with one setting per dataset, so that they make one row even
    when the setting differs between datasets (e.g. LAGNH's NUS-WIDE preset on nuswide only)."""
    settings = frame.groupby(["method", "dataset"])["params"].nunique().groupby("method").max()
    single = settings.index[settings <= 1]
    return frame.assign(params=frame["params"].where(~frame["method"].isin(single), ""))


def variant_records(results: pd.DataFrame) -> pd.DataFrame:
    """Records behind Table 5: LAGNH variants."""
    lagnh = results[results["method"] == "lagnh"]
    chosen = lagnh["label"].isin(variant_order()) | (lagnh["experiment"] == "table5")
    return unique_seeds(lagnh[chosen])


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


def metric_label(frame: pd.DataFrame, protocol: str) -> str:
    topks = sorted({int(k) for k in frame["topk"].dropna()}) or [paper_numbers()["topk"]]
    return f"MAP@{'/'.join(map(str, topks))} ({protocol} protocol)"


def paper_note(datasets: list[str], measure: str) -> str:
    """The caption's sentence on where the paper columns come from and what they compare with."""
    numbers = paper_numbers()
    notes = [f"Paper columns: as reported by {numbers['citation']} ({measure}; {numbers['features']})."]
    for dataset in datasets:
        counterpart = paper_dataset(dataset)
        if not counterpart.same_data:
            notes.append(f"Our {dataset} is not the paper's {counterpart.name}: compare trends, not values.")
    return " ".join(notes)


# ----------------------------------------------------------------------------- the tables
def _map_table(key: str, caption: str, row_header: str, frame: pd.DataFrame, rows: list[Row],
               row_value: str, paper_table: str, protocol: str) -> Table:
    """Tables 3 and 5: for each dataset, our MAP per code length, then the paper's."""
    datasets = dataset_order(frame["dataset"].unique())
    numbers = paper_numbers()
    paper_measure = f"MAP@{numbers['topk']}, {numbers['protocol']} protocol"
    table = Table(key, f"{caption}: {metric_label(frame, protocol)}. {paper_note(datasets, paper_measure)}",
                  row_header, [r.name for r in rows])
    for dataset in datasets:
        ours = frame[frame["dataset"] == dataset]
        bits = sorted(int(b) for b in ours["n_bits"].unique())
        summary = summarise(ours, [row_value, "params", "n_bits"], f"map_{protocol}")
        for n_bits in bits:
            cells = [summary.get((r.method, r.params, n_bits), Cell()) for r in rows]
            table.add_column(Column(dataset, f"{n_bits} bits", "max"), cells)
        paper_label = paper_dataset(dataset).column_label
        for n_bits in bits:
            cells = []
            for row in rows:
                value = paper_map(dataset, row.method, n_bits, table=paper_table) if row.show_paper else None
                cells.append(Cell(() if value is None else (value,)))
            table.add_column(Column(paper_label, f"{n_bits} bits", "max"), cells)
    return table


def table3(results: pd.DataFrame, *, protocol: str = "official") -> Table | None:
    """Table 3: MAP@k of every method, dataset and code length, beside the paper's."""
    frame = comparison_records(results)
    if frame.empty:
        return None
    rows = method_rows(frame, paper_methods=method_order())
    return _map_table("table3", "Table 3", "method", frame, rows, "method", "table3", protocol)


def table5(results: pd.DataFrame, *, protocol: str = "official") -> Table | None:
    """Table 5: MAP@k of the LAGNH variants, beside the paper's."""
    frame = variant_records(results)
    if frame.empty:
        return None
    labels = variant_order() + sorted(set(frame["label"]) - set(variant_order()))
    # A variant is named by its label, whatever hyper-parameters realise it.
    rows = [Row(f"LAGNH-{label}", label, "") for label in labels]
    frame = frame.assign(params="")
    return _map_table("table5", "Table 5: LAGNH variants", "variant", frame, rows, "label", "table5", protocol)


def table4(results: pd.DataFrame) -> Table | None:
    """Table 4: training and encoding seconds at 32 bits per method and device, beside the paper's."""
    frame = comparison_records(results)
    frame = frame[frame["n_bits"] == 32]
    if frame.empty:
        return None
    frame = frame.assign(encode_s=frame["encode_query_s"] + frame["encode_database_s"],
                         device_name=frame["device_name"].fillna(""))
    paper_methods = [m for m in method_order() if paper_seconds("coco", m) is not None]
    rows = method_rows(frame, by_device=True, paper_methods=paper_methods)
    datasets = dataset_order(frame["dataset"].unique())
    caption = (
        "Table 4: training (fit) and encoding (query + database) seconds at 32 bits, mean over seeds. "
        f"Our timings come from the device named in each row. "
        + paper_note(datasets, f"seconds on {paper_numbers()['hardware']}")
    )
    table = Table("table4", caption, "method", [r.name for r in rows])
    table.add_column(Column("", "device", None), [Cell(text=r.device or MISSING) for r in rows])
    for dataset in datasets:
        ours = frame[frame["dataset"] == dataset]
        for title, value in (("train s", "fit_s"), ("encode s", "encode_s")):
            summary = summarise(ours, ["method", "params", "device_name"], value)
            table.add_column(Column(dataset, title, "min"),
                             [summary.get((r.method, r.params, r.device), Cell()) for r in rows])
        paper_label = paper_dataset(dataset).column_label
        for position, title in enumerate(("train s", "encode s")):
            cells = []
            for row in rows:
                seconds = paper_seconds(dataset, row.method) if row.show_paper else None
                cells.append(Cell(() if seconds is None else (seconds[position],)))
            table.add_column(Column(paper_label, title, "min"), cells)
    return table


# ----------------------------------------------------------------------------- writers
LEGEND_MARKDOWN = "Best per column in **bold**, second best in _italics_ (underlined in the paper)."
LEGEND_LATEX = r"Best per column in bold, second best underlined."


def _header_title(column: Column) -> str:
    return f"{column.group} {column.title}".strip()


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown, caption above and legend below."""
    marks = {1: "**{}**", 2: "_{}_", 0: "{}"}
    header = [table.row_header] + [_header_title(c) for c in table.columns]
    lines = [f"**{table.caption}**", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
    for index, name in enumerate(table.rows):
        entries = [marks[col[index].mark].format(format_cell(col[index])) for col in table.cells]
        lines.append("| " + " | ".join([name] + entries) + " |")
    lines += ["", LEGEND_MARKDOWN, ""]
    return "\n".join(lines)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def latex_escape(text: str) -> str:
    escaped = "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    return escaped.replace("±", r"$\pm$").replace(MISSING, "--")


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
        rf"\caption{{{latex_escape(table.caption)} {LEGEND_LATEX}}}",
        rf"\label{{tab:{table.key}}}",
        r"\resizebox{\textwidth}{!}{%",
        rf"\begin{{tabular}}{{l{'r' * len(table.columns)}}}", r"\toprule",
        group_header + r" \\", rules, titles + r" \\", r"\midrule",
    ]
    for index, name in enumerate(table.rows):
        entries = [marks[col[index].mark] % latex_escape(format_cell(col[index])) for col in table.cells]
        lines.append(" & ".join([latex_escape(name)] + entries) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(lines)


WRITERS = {"md": to_markdown, "tex": to_latex}
TABLES = {"table3": table3, "table4": table4, "table5": table5}


def build_table(name: str, results: pd.DataFrame, *, protocol: str = "official") -> Table | None:
    """Table ``name`` ("table3", "table4", "table5") from merged results, or None if nothing fits."""
    if name == "table4":
        return table4(results)
    return TABLES[name](results, protocol=protocol)


def write_table(table: Table, out_dir: Path, formats=("md", "tex")) -> list[Path]:
    """Write one table in each of ``formats``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_dir / f"{table.key}.{fmt}"
        path.write_text(WRITERS[fmt](table), encoding="utf-8")
        written.append(path)
    return written
