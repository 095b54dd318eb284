"""Table captions: the metric and its protocol, the paper's datasets beside ours, every row run on
a schedule other than the paper's, the quick-versus-paper preset gaps, and how many cells finished."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from hashbench.errors import UnknownNameError
from hashbench.health import STAT_KEYS, is_degenerate
from hashbench.metrics import Convention
from hashbench.reporting.paper import paper_dataset, paper_numbers
from hashbench.reporting.table_model import DEGENERATE_MARK, FAILURE_TEXT, Row


def finished_code_stats(frame: pd.DataFrame) -> list[dict]:
    """The code-health statistics of each row of ``frame`` that has them."""
    stats = frame[list(STAT_KEYS)].dropna()
    return [dict(zip(STAT_KEYS, row)) for row in stats.itertuples(index=False)]


def protocol_description(protocol: str) -> str:
    """'official protocol: normalise=retrieved, ties=stable, no_relevant=skip'."""
    convention = Convention.resolve(protocol)
    return (
        f"{protocol} protocol: normalise={convention.normalise}, ties={convention.ties}, "
        f"no_relevant={convention.no_relevant}"
    )


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
    degenerate = sum(is_degenerate(stats) for stats in finished_code_stats(frame[frame["status"] == "done"]))
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
