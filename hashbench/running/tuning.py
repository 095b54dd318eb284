"""Tuning: choose hyper-parameters by MAP on a validation view, then run the matrix with them.

    hashbench tune configs/tuning.toml            # the grid on validation views; writes results/tuning/tuned.toml
    hashbench run results/tuning/tuned.toml       # the matrix with the chosen values, on the test queries

A tuning matrix is an ordinary run matrix (``hashbench.running.config``) whose ``params`` hold
grids. ``tune`` runs every cell on the validation view of its dataset
(``hashbench.datasets.validation``: queries carved from the training split, the rest of it as
training split and database; the dataset's query split is never used), then picks, for each
experiment, method entry (label) and dataset, the grid point with the highest validation MAP
(mean over code lengths and seeds; on a tie the first in grid order; grid points with a failed
cell are out) and writes a matrix with the same datasets, code lengths and seeds whose method
entries carry the chosen values per dataset (``dataset_params``). The records of that run hold
the values in their spec, so every table built from them can say which values ran; the written
file lists every grid point's validation MAP in comments.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from hashbench.datasets.validation import DEFAULT_FRACTION
from hashbench.errors import InvalidInputError
from hashbench.running.cell import Cell, canonical_json
from hashbench.running.config import Matrix, load_config


@dataclass(frozen=True)
class Choice:
    """The grid point chosen for one method entry on one dataset, and every point's score."""

    experiment: str
    label: str
    method: str
    dataset: str
    params: dict
    scores: tuple[tuple[str, float | None], ...]  # (canonical params, mean validation MAP or None)


def validation_cell(cell: Cell, *, fraction: float = DEFAULT_FRACTION, split_seed: int = 0) -> Cell:
    """``cell`` on the validation view of its dataset."""
    options = {"dataset": cell.dataset_source, **cell.dataset_options, "fraction": fraction, "split_seed": split_seed}
    return dataclasses.replace(
        cell, dataset=f"{cell.dataset}[validation]", dataset_source="validation", dataset_options=options
    )


def tune(
    config, out_dir, *, fraction: float = DEFAULT_FRACTION, split_seed: int = 0, methods=None, datasets=None,
    bits=None, executor: str | None = None, force: bool = False, quiet: bool = False, data_dir=None,
) -> list[Choice]:  # fmt: skip
    """Run the grid of ``config`` (a matrix file or ``Matrix``) on validation views under
    ``out_dir`` and return the choices (see the module docstring)."""
    from hashbench.running.runner import group_by_executor, run_cells

    matrix = config if isinstance(config, Matrix) else load_config(config)
    cells = matrix.cells(methods=methods, datasets=datasets, bits=bits)
    views = [validation_cell(c, fraction=fraction, split_seed=split_seed) for c in cells]
    records = {}
    for settings, group in group_by_executor(matrix, views, executor):
        for view, record in zip(
            group, run_cells(group, out_dir, force=force, quiet=quiet, data_dir=data_dir, **settings)
        ):
            records[view.id] = record
    return choose(cells, [records[v.id] for v in views])


def choose(cells: list[Cell], records: list[dict]) -> list[Choice]:
    """The best grid point per (experiment, label, dataset) from the validation ``records`` of ``cells``."""
    scores = defaultdict(lambda: defaultdict(list))  # entry -> canonical params -> MAPs (None: failed)
    entries = {}
    for cell, record in zip(cells, records):
        entry = (cell.experiment, cell.label, cell.dataset)
        entries.setdefault(entry, cell.method)
        done = record["status"] == "done"
        scores[entry][canonical_json(cell.params)].append(record["metrics"]["map"] if done else None)
    choices = []
    for entry, points in scores.items():
        means = {p: None if None in maps else sum(maps) / len(maps) for p, maps in points.items()}
        ranked = [p for p in points if means[p] is not None]  # grid order (dicts keep insertion order)
        best = max(ranked, key=lambda p: means[p], default=None)
        if best is not None:
            choices.append(Choice(*entry[:2], entries[entry], entry[2], json.loads(best), tuple(means.items())))
    return choices


def tuned_matrix(matrix: Matrix, choices: list[Choice], *, source: str = "") -> str:
    """A matrix file (TOML text) running each tuned method entry with its chosen values."""
    by_entry = defaultdict(dict)
    for choice in choices:
        by_entry[(choice.experiment, choice.label)][choice.dataset] = choice
    lines = [
        f"# Written by `hashbench tune{' ' + source if source else ''}`: each method with the values that",
        "# scored the highest validation MAP (queries carved from the training split). Run it with",
        "#     hashbench run <this file>",
    ]
    for experiment in matrix.experiments:
        entries = [
            (label, by_entry[(experiment.name, label)]) for label in dict.fromkeys(m.label for m in experiment.methods)
        ]
        entries = [(label, chosen) for label, chosen in entries if chosen]
        if not entries:
            continue
        s = experiment.settings
        lines += ["", "[[experiment]]", f"name = {toml_value(experiment.name)}"]
        lines.append(f"description = {toml_value('tuned: ' + (experiment.description or experiment.name))}")
        datasets = [
            {"name": d.source, "label": d.label, **d.options, **({"optional": True} if d.optional else {})}
            for d in s["datasets"]
        ]
        for key, value in (("datasets", datasets), ("bits", s["bits"]), ("seeds", s["seeds"]), ("protocol", s["protocol"]),
                           ("topk", s["topk"]), ("device", s["device"]), ("timeout_s", s["timeout_s"])):  # fmt: skip
            if value is not None:
                lines.append(f"{key} = {toml_value(value)}")
        lines.append("methods = [")
        for label, chosen in entries:
            method = next(iter(chosen.values())).method
            for dataset, choice in chosen.items():
                for params, score in choice.scores:
                    shown = "failed" if score is None else f"{score:.4f}"
                    lines.append(f"    # {label} on {dataset}: validation MAP {shown} at {params}")
            # a list value in params is a grid axis: a chosen list is one value, so it is wrapped
            dataset_params = {
                dataset: {k: [v] if isinstance(v, list) else v for k, v in choice.params.items()}
                for dataset, choice in chosen.items()
            }
            lines.append(f"    {toml_value({'method': method, 'label': label, 'dataset_params': dataset_params})},")
        lines.append("]")
    return "\n".join(lines) + "\n"


def toml_value(value) -> str:
    """``value`` (str, bool, int, float, list, dict) as a TOML value; tables inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidInputError(f"{value!r} has no place in a matrix file")
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    raise InvalidInputError(f"cannot write {type(value).__name__} {value!r} to a matrix file")


def toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def write_tuned(matrix: Matrix, choices: list[Choice], path, *, source: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tuned_matrix(matrix, choices, source=source))
    return path
