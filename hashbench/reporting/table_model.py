"""What a table is made of: its entries (our values over seeds, a paper value, or text), columns,
rows, and the marks of the best and second best per column, set only where the column's test
says the difference is real (see ``tables`` for the conventions, ``significance`` for the tests).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from hashbench.reporting import significance
from hashbench.reporting.references import References

TESTS = ("ap", "seconds", "value")

DECIMALS = 4

MISSING = "—"

TIE_MARK = "≈"

DEGENERATE_MARK = "†"

FAILURE_TEXT = {"failed": "failed", "timeout": "timed out"}


@dataclass(frozen=True)
class Entry:
    """One table entry: our values over seeds (or one paper value), or a text entry."""

    values: tuple[float, ...] = ()
    failures: tuple[str, ...] = ()  # the status of each seed that did not finish
    text: str | None = None  # non-numeric entries such as a device name
    mark: int = 0  # 1 = best in its column, 2 = second best
    tied: bool = False  # shares its mark with other entries of the column
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
    test: str | None = None  # how entries are compared for the marks: one of TESTS
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
    entries: list[list[Entry]] = field(default_factory=list)  # entries[column][row]
    n_reference_rows: int = 0  # the last rows are references: never marked
    notes: list[str] = field(default_factory=list)  # footnotes, in order

    def add_column(self, column: Column, entries: list[Entry]) -> None:
        compared = len(self.rows) - self.n_reference_rows
        marked, reason = mark_column(entries[:compared], column, self.rows[:compared])
        if reason:
            self.note(f"{header_title(column)} not marked: {reason}.")
        self.columns.append(column)
        self.entries.append(marked + entries[compared:])
        for row, entry in zip(self.rows, marked):
            if entry.degenerate:
                seeds = len(entry.values)
                self.note(f"{DEGENERATE_MARK} {row}, {header_title(column)}: degenerate codes in {len(entry.degenerate)} "
                          f"of {seeds} seed{'s' * (seeds > 1)} ({entry.degenerate[0]}).")  # fmt: skip

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


def format_entry(entry: Entry, decimals: int = DECIMALS) -> str:
    """The plain text of a entry (marks are added by the Markdown / LaTeX / HTML writers)."""
    if entry.text is not None:
        return entry.text
    if not entry.values:
        if not entry.failures:
            return MISSING
        return "/".join(sorted({FAILURE_TEXT.get(s, s) for s in entry.failures}))
    text = f"{entry.mean:.{decimals}f}"
    if len(entry.values) > 1:
        text += f" ± {entry.std:.{decimals}f} (n={len(entry.values)})"
    if entry.tie_range is not None:
        text += f" [{entry.tie_range[0]:.{decimals}f}, {entry.tie_range[1]:.{decimals}f}]"
    if entry.failures:
        counts = Counter(FAILURE_TEXT.get(s, s) for s in entry.failures)
        text += " (" + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + ")"
    if entry.degenerate:
        text += f" {DEGENERATE_MARK}"
    if entry.tied:
        text += f" {TIE_MARK}"
    return text


def mark_column(entries: list[Entry], column: Column, rows: list[str]) -> tuple[list[Entry], str | None]:
    """Cells with the best (1) and second best (2) marked by the column's test, and why the
    column could not be marked (None when it could, or has no marks)."""
    if column.better is None:
        return entries, None
    candidates = [i for i, c in enumerate(entries) if c.values]
    if column.test == "ap":
        lacking = [i for i in candidates if not isinstance(entries[i].evidence, Mapping)]
        if lacking:
            return entries, "no per-query AP for " + "; ".join(f"{rows[i]} ({entries[i].evidence})" for i in lacking)
    if column.test == "seconds" and len(candidates) > 1:
        lacking = [rows[i] for i in candidates if len(entries[i].values) < 2]
        if lacking:
            return entries, f"Welch's test needs two seeds per cell ({', '.join(lacking)} ran one)"
    sign = 1 if column.better == "max" else -1
    order = sorted(candidates, key=lambda i: -sign * entries[i].mean)
    best, second = significance.tiers(order, lambda i, j: _beats(entries[i], entries[j], column))
    marks = {i: (1, len(best) > 1) for i in best} | {i: (2, len(second) > 1) for i in second}
    return [replace(c, mark=marks[i][0], tied=marks[i][1]) if i in marks else c for i, c in enumerate(entries)], None


def _beats(a: Entry, b: Entry, column: Column) -> bool:
    """Whether entry ``a`` is better than ``b`` by the column's test."""
    if column.test == "ap":
        return significance.ap_beats(a.evidence, b.evidence)
    if column.test == "seconds":
        return significance.fewer_seconds(a.values, b.values)
    sign = 1 if column.better == "max" else -1
    return sign * (round(a.mean, column.decimals) - round(b.mean, column.decimals)) > 0


def header_title(column: Column) -> str:
    return f"{column.group} {column.title}".strip()
