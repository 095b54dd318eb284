"""The paper's Figures 2, 3 and 4 drawn from results, each saved as PNG, PDF and the CSV it plots.

- Figure 2: precision of the top k retrieved items (P@k) against k; one panel per dataset and
  code length, one line per method (and hyper-parameter setting); records as for Table 3.
- Figure 3: MAP against training epochs at 32 bits, from the ``epochs`` entries that the epoch
  callback records; one panel per dataset, one line per method; a dotted line marks the paper's
  300 epochs when the recorded epochs span it.
- Figure 4: LAGNH's MAP at 32 bits against lambda1, lambda2 and lambda3 (log axis), one panel
  per lambda, one line per dataset. A panel shows the cells where only its lambda moves: the
  other two sit at their centre values (the most common ones, i.e. the point every sweep shares;
  sweeps that meet there count once per seed).
  Lambdas a cell did not set take the values of its LAGNH preset (the paper's choice for MS-COCO,
  or for NUS-WIDE with ``preset = "nuswide"``). Dotted lines mark the paper's choice.

Figures 3 and 4 use the cells of experiments with role ``epochs`` / ``sensitivity`` when the
results hold any, and otherwise every cell that fits (for Figure 4: LAGNH cells outside ablations).

Lines are means over seeds; the CSV beside each figure lists mean, std and the number of seeds
for every plotted point. Figures are drawn with matplotlib's object API (Agg canvas), so no
display or global backend is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hashbench.benchmark.paper import (
    FALLBACK_PAPER_DATASET,
    paper_dataset,
    paper_hyperparameters,
    paper_numbers,
    paper_training_epochs,
)
from hashbench.benchmark.tables import (
    ABLATION_ROLE,
    comparison_records,
    dataset_order,
    merge_dataset_settings,
    method_rows,
    unique_seeds,
)

FIGURE_BITS = 32
LAMBDAS = ("lambda1", "lambda2", "lambda3")
PANEL_SIZE = (4.0, 3.0)  # inches per panel


# ----------------------------------------------------------------------------- data
def _curve_points(records: list[dict], curve_of) -> pd.DataFrame:
    """Mean, std and seed count per x of the curves ``curve_of(record) -> (x, y)`` of ``records``."""
    frames = [pd.DataFrame({"x": x, "y": y}) for x, y in map(curve_of, records)]
    stacked = pd.concat(frames, ignore_index=True)
    summary = stacked.groupby("x")["y"].agg(["mean", "std", "count"]).reset_index()
    return summary.rename(columns={"mean": "value", "count": "n_seeds"})


def _done(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "done"]


def figure2_data(results: pd.DataFrame, records: dict[str, dict]) -> pd.DataFrame:
    """P@k against k per dataset, code length and method (what Figure 2 plots)."""
    frame = _done(comparison_records(results))
    frame = frame[[bool(records[path]["metrics"].get("precision_curve")) for path in frame["record"]]]
    names = {(r.method, r.params): r.name for r in method_rows(frame)}
    parts = []
    for (dataset, n_bits, method, params), group in frame.groupby(["dataset", "n_bits", "method", "params"]):
        curves = [records[path]["metrics"]["precision_curve"] for path in group["record"]]
        points = _curve_points(curves, lambda c: (np.arange(1, len(c) + 1), c))
        parts.append(points.assign(dataset=dataset, n_bits=n_bits, method=method, line=names[(method, params)]))
    return _tidy(parts, x="k", value="precision", keys=["dataset", "n_bits", "method", "line"],
                 order=[n for n in names.values()])


def figure3_data(results: pd.DataFrame, records: dict[str, dict]) -> pd.DataFrame:
    """MAP after each recorded training epoch at 32 bits per dataset and method (Figure 3)."""
    frame = _done(unique_seeds(results[results["n_bits"] == FIGURE_BITS]))
    frame = _prefer_role(frame[[bool(records[path].get("epochs")) for path in frame["record"]]], "epochs")
    frame = merge_dataset_settings(frame)
    names = {(r.method, r.params): r.name for r in method_rows(frame)}
    labels = frame["label"].where(frame["label"] != frame["method"], "")
    parts = []
    for (dataset, method, params, label), group in frame.assign(label=labels).groupby(
            ["dataset", "method", "params", "label"]):
        histories = [records[path]["epochs"] for path in group["record"]]
        points = _curve_points(histories, lambda h: ([e["epoch"] for e in h], [e["map"] for e in h]))
        line = names[(method, params)] + (f" [{label}]" if label and label not in names[(method, params)] else "")
        parts.append(points.assign(dataset=dataset, method=method, line=line))
    return _tidy(parts, x="epoch", value="map", keys=["dataset", "method", "line"])


def _unset_lambdas(group: pd.DataFrame) -> pd.DataFrame:
    """The lambdas LAGNH uses where a cell did not set them: those of its preset, which are the
    paper's choice for the named paper dataset (MS-COCO's unless ``preset = "nuswide"``)."""
    chosen = paper_numbers()["hyperparameters"]
    presets = group.get("param_preset", pd.Series(None, index=group.index, dtype=object))
    per_cell = [chosen.get(p, chosen[FALLBACK_PAPER_DATASET]) for p in presets]
    return pd.DataFrame({name: [c[name] for c in per_cell] for name in LAMBDAS}, index=group.index)


def _prefer_role(frame: pd.DataFrame, role: str) -> pd.DataFrame:
    """The rows of experiments with ``role`` when there are any (the cells made for this figure), else all."""
    chosen = frame[frame["role"] == role]
    return chosen if not chosen.empty else frame


def figure4_data(results: pd.DataFrame) -> pd.DataFrame:
    """LAGNH's MAP at 32 bits against each lambda with the other two at their centre values."""
    frame = results[(results["method"] == "lagnh") & (results["n_bits"] == FIGURE_BITS)]
    frame = _done(unique_seeds(_prefer_role(frame[frame["role"] != ABLATION_ROLE], "sensitivity")))
    parts = []
    for dataset, group in frame.groupby("dataset"):
        unset = _unset_lambdas(group)
        lambdas = pd.DataFrame({
            name: group.get(f"param_{name}", pd.Series(np.nan, index=group.index)).astype(float).fillna(unset[name])
            for name in LAMBDAS
        })  # fmt: skip
        # cells of different sweeps that land on the same lambdas (the centre) count once per seed
        distinct = ~pd.concat([lambdas, group["seed"]], axis=1).duplicated()
        group, lambdas = group[distinct], lambdas[distinct]
        centre = {name: lambdas[name].mode().iloc[0] for name in LAMBDAS}
        for name in LAMBDAS:
            others_at_centre = np.all([lambdas[o] == centre[o] for o in LAMBDAS if o != name], axis=0)
            sweep = group[others_at_centre].assign(value=lambdas.loc[others_at_centre, name])
            sweep = sweep[sweep["value"] > 0]  # a log axis cannot show 0
            if sweep["value"].nunique() < 2:
                continue
            summary = sweep.groupby("value")["map_official"].agg(["mean", "std", "count"]).reset_index()
            summary.columns = ["value", "map", "std", "n_seeds"]
            parts.append(summary.assign(dataset=dataset, parameter=name))
    if not parts:
        return pd.DataFrame()
    data = pd.concat(parts, ignore_index=True)
    return data[["parameter", "dataset", "value", "map", "std", "n_seeds"]]


def _tidy(parts: list[pd.DataFrame], *, x: str, value: str, keys: list[str], order=None) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame()
    data = pd.concat(parts, ignore_index=True).rename(columns={"x": x, "value": value})
    if order is not None:  # lines in table order (the paper's methods first)
        data["line"] = pd.Categorical(data["line"], categories=list(dict.fromkeys(order)), ordered=True)
        data = data.sort_values([k for k in keys if k != "method"] + [x], kind="stable")
    return data[keys + [x, value, "std", "n_seeds"]].reset_index(drop=True)


# ----------------------------------------------------------------------------- drawing
def _panels(n_rows: int, n_cols: int) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(PANEL_SIZE[0] * n_cols + 1.8, PANEL_SIZE[1] * n_rows + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(n_rows, n_cols, squeeze=False)


def _dataset_title(dataset: str) -> str:
    counterpart = paper_dataset(dataset)
    return dataset if counterpart.same_data else f"{dataset} (paper: {counterpart.name})"


def line_colours(lines: pd.Series) -> dict[str, tuple]:
    """One colour per line, the same in every panel (tab10, or tab20 for more than ten lines);
    a categorical ``lines`` gives its categories' order (the tables' row order)."""
    lines = list(lines.cat.categories if isinstance(lines.dtype, pd.CategoricalDtype) else dict.fromkeys(lines))
    palette = colormaps["tab10" if len(lines) <= 10 else "tab20"]
    return {line: palette(i % palette.N) for i, line in enumerate(lines)}


def _draw_lines(axes, data: pd.DataFrame, x: str, y: str, colours: dict, *, markers: bool) -> None:
    for line, points in data.groupby("line", sort=False, observed=True):
        axes.plot(points[x], points[y], marker="o" if markers else None, markersize=3, linewidth=1.2,
                  label=line, color=colours[line])
    axes.grid(True, alpha=0.3)


def _shared_legend(figure: Figure, axes_grid: np.ndarray, order) -> None:
    """One legend for all panels: the lines in ``order``, then reference lines."""
    handles = {}
    for axes in axes_grid.flat:
        for handle, label in zip(*axes.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    labels = [label for label in order if label in handles] + [label for label in handles if label not in order]
    figure.legend([handles[label] for label in labels], labels, loc="outside right center", fontsize="small")


def draw_figure2(data: pd.DataFrame) -> Figure:
    datasets = dataset_order(data["dataset"].unique())
    bits = sorted(data["n_bits"].unique())
    figure, axes_grid = _panels(len(datasets), len(bits))
    colours = line_colours(data["line"])
    for row, dataset in enumerate(datasets):
        for col, n_bits in enumerate(bits):
            axes = axes_grid[row, col]
            panel = data[(data["dataset"] == dataset) & (data["n_bits"] == n_bits)]
            _draw_lines(axes, panel, "k", "precision", colours, markers=False)
            axes.set(title=f"{_dataset_title(dataset)}, {n_bits} bits", xlabel="k (items retrieved)",
                     ylabel="precision@k")
    _shared_legend(figure, axes_grid, list(colours))
    figure.suptitle("Figure 2: top-k precision")
    return figure


def draw_figure3(data: pd.DataFrame) -> Figure:
    datasets = dataset_order(data["dataset"].unique())
    figure, axes_grid = _panels(1, len(datasets))
    colours = line_colours(data["line"])
    for col, dataset in enumerate(datasets):
        axes = axes_grid[0, col]
        panel = data[data["dataset"] == dataset]
        _draw_lines(axes, panel, "epoch", "map", colours, markers=True)
        if panel["epoch"].min() <= paper_training_epochs() <= panel["epoch"].max():  # else it squashes the curve
            axes.axvline(paper_training_epochs(), color="grey", linestyle=":", label="paper's epochs")
        axes.set(title=f"{_dataset_title(dataset)}, {FIGURE_BITS} bits", xlabel="training epochs", ylabel="MAP")
    _shared_legend(figure, axes_grid, list(colours))
    figure.suptitle("Figure 3: MAP against training epochs")
    return figure


def draw_figure4(data: pd.DataFrame) -> Figure:
    parameters = [p for p in LAMBDAS if p in set(data["parameter"])]
    figure, axes_grid = _panels(1, len(parameters))
    colours = line_colours(pd.Series(dataset_order(data["dataset"].unique())))
    for col, parameter in enumerate(parameters):
        axes = axes_grid[0, col]
        panel = data[data["parameter"] == parameter]
        for dataset in dataset_order(panel["dataset"].unique()):
            points = panel[panel["dataset"] == dataset]
            axes.plot(points["value"], points["map"], marker="o", markersize=3, linewidth=1.2, label=dataset,
                      color=colours[dataset])
            chosen = paper_hyperparameters(dataset)[parameter]
            axes.axvline(chosen, color="grey", linestyle=":", label=f"paper's choice ({paper_dataset(dataset).name})")
        axes.set_xscale("log")
        axes.grid(True, alpha=0.3)
        axes.set(title=f"MAP vs {parameter}, {FIGURE_BITS} bits", xlabel=parameter, ylabel="MAP")
    _shared_legend(figure, axes_grid, list(colours))
    figure.suptitle("Figure 4: LAGNH parameter sensitivity")
    return figure


# ----------------------------------------------------------------------------- entry points
FIGURES = ("figure2", "figure3", "figure4")
SKIP_REASONS = {
    "figure2": "no finished cell with a precision curve",
    "figure3": f"no finished {FIGURE_BITS}-bit cell with per-epoch MAP (set record_epochs)",
    "figure4": f"no LAGNH cells at {FIGURE_BITS} bits where a lambda takes two or more values",
}


def figure_data(name: str, results: pd.DataFrame, records: dict[str, dict]) -> pd.DataFrame:
    """The tidy data figure ``name`` plots (empty when the results hold nothing for it)."""
    if results.empty:
        return pd.DataFrame()
    if name == "figure2":
        return figure2_data(results, records)
    if name == "figure3":
        return figure3_data(results, records)
    return figure4_data(results)


DRAW = {"figure2": draw_figure2, "figure3": draw_figure3, "figure4": draw_figure4}


def write_figure(name: str, results: pd.DataFrame, records: list[dict], out_dir) -> list[Path] | str:
    """Write ``name``.png, .pdf and .csv under ``out_dir``; return their paths, or why it was skipped."""
    data = figure_data(name, results, {r["path"]: r for r in records})
    if data.empty:
        return SKIP_REASONS[name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = DRAW[name](data)
    paths = [out_dir / f"{name}.{suffix}" for suffix in ("png", "pdf", "csv")]
    figure.savefig(paths[0], dpi=150)
    figure.savefig(paths[1])
    data.to_csv(paths[2], index=False)
    return paths
