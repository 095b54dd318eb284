"""The paper's Figures 2, 3 and 4 drawn from results, each saved as PNG, PDF and the CSV it plots.

- Figure 2: precision of the top k retrieved items (P@k) against k; one panel per dataset and
  code length, one line per method (and hyper-parameter setting); records as for Table 3.
- Cost-accuracy (``cost_accuracy``): MAP@k against training seconds (log axis) per dataset and
  code length, one marker per method (records as for Table 3), and the Pareto front: the methods
  that no other method beats on both accuracy and training time, joined by a staircase (as
  ann-benchmarks draws its recall / queries-per-second fronts). Training time is the device's
  of each record, so a front across devices compares devices too; the CSV names them.
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
for every plotted point. With many methods, lines differ by colour (tab10) and, past ten, by line
style and marker as well; the paper's method (LAGNH), or the lines named by ``highlight``, are
drawn thicker and on top. Figures are drawn with matplotlib's object API (Agg canvas), so no
display or global backend is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hashbench.reporting.paper import (
    FALLBACK_PAPER_DATASET,
    PAPER_METHOD,
    paper_dataset,
    paper_hyperparameters,
    paper_numbers,
    paper_training_epochs,
)
from hashbench.reporting.tables import (
    ABLATION_ROLE,
    comparison_records,
    dataset_order,
    merge_dataset_settings,
    method_rows,
    unique_seeds,
)

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn, not by every command that imports this module
    from matplotlib.figure import Figure

FIGURE_BITS = 32
TITLES = {
    "figure2": "Figure 2: top-k precision",
    "figure3": "Figure 3: MAP against training epochs",
    "figure4": "Figure 4: LAGNH parameter sensitivity",
    "cost_accuracy": "Cost and accuracy: MAP against training time",
}
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
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
    return _tidy(
        parts, x="k", value="precision", keys=["dataset", "n_bits", "method", "line"], order=list(names.values())
    )


def figure3_data(results: pd.DataFrame, records: dict[str, dict]) -> pd.DataFrame:
    """MAP after each recorded training epoch at 32 bits per dataset and method (Figure 3)."""
    frame = _done(unique_seeds(results[results["n_bits"] == FIGURE_BITS]))
    frame = _prefer_role(frame[[bool(records[path].get("epochs")) for path in frame["record"]]], "epochs")
    frame = merge_dataset_settings(frame)
    names = {(r.method, r.params): r.name for r in method_rows(frame)}
    labels = frame["label"].where(frame["label"] != frame["method"], "")
    parts = []
    for (dataset, method, params, label), group in frame.assign(label=labels).groupby(
        ["dataset", "method", "params", "label"]
    ):
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


def cost_accuracy_data(results: pd.DataFrame, protocol: str = "official") -> pd.DataFrame:
    """Mean MAP and training seconds per dataset, code length and method (and device), with the
    Pareto front flagged (what the cost-accuracy figure plots)."""
    frame = _done(comparison_records(results))
    frame = frame[frame[f"map_{protocol}"].notna() & (frame["fit_s"] > 0)]  # a log axis cannot show 0 s
    frame = frame.assign(device_name=frame["device_name"].fillna(""))
    if frame.empty:
        return pd.DataFrame()
    by_device = frame["device_name"].nunique() > 1
    rows = method_rows(frame, by_device=by_device)
    names = {(r.method, r.params, r.device if by_device else ""): r.name + (f" [{r.device}]" if by_device else "")
             for r in rows}  # fmt: skip
    keys = ["dataset", "n_bits", "method", "params", "device_name"]
    summary = (
        frame.groupby(keys)
        .agg(
            fit_s=("fit_s", "mean"),
            map=(f"map_{protocol}", "mean"),
            std=(f"map_{protocol}", "std"),
            n_seeds=("seed", "count"),
        )
        .reset_index()
    )
    summary["line"] = [names[(m, p, d if by_device else "")] for m, p, d in
                       zip(summary["method"], summary["params"], summary["device_name"])]  # fmt: skip
    summary["pareto"] = False
    for _, panel in summary.groupby(["dataset", "n_bits"]):
        summary.loc[pareto_front(panel["fit_s"], panel["map"]), "pareto"] = True
    order = list(dict.fromkeys(names.values()))
    summary["line"] = pd.Categorical(summary["line"], categories=order, ordered=True)
    summary = summary.sort_values(["dataset", "n_bits", "line"], kind="stable")
    columns = ["dataset", "n_bits", "method", "line", "device_name", "fit_s", "map", "std", "n_seeds", "pareto"]
    return summary[columns].rename(columns={"device_name": "device"}).reset_index(drop=True)


def pareto_front(seconds: pd.Series, accuracy: pd.Series) -> list:
    """Index labels of the points that no other point beats on both (fewer seconds, higher accuracy)."""
    front, best = [], -np.inf
    for label in sorted(seconds.index, key=lambda i: (seconds[i], -accuracy[i])):
        if accuracy[label] > best:
            front.append(label)
            best = accuracy[label]
    return front


def _tidy(parts: list[pd.DataFrame], *, x: str, value: str, keys: list[str], order=None) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame()
    data = pd.concat(parts, ignore_index=True).rename(columns={"x": x, "value": value})
    if order is not None:  # lines in table order (the paper's methods first)
        data["line"] = pd.Categorical(data["line"], categories=list(dict.fromkeys(order)), ordered=True)
        data = data.sort_values([k for k in keys if k != "method"] + [x], kind="stable")
    return data[[*keys, x, value, "std", "n_seeds"]].reset_index(drop=True)


# ----------------------------------------------------------------------------- drawing
def _panels(n_rows: int, n_cols: int) -> tuple[Figure, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(PANEL_SIZE[0] * n_cols + 1.8, PANEL_SIZE[1] * n_rows + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(n_rows, n_cols, squeeze=False)


def _dataset_title(dataset: str) -> str:
    counterpart = paper_dataset(dataset)
    return dataset if counterpart.same_data else f"{dataset} (paper: {counterpart.name})"


def line_styles(data: pd.DataFrame, highlight=None) -> dict[str, dict]:
    """matplotlib keywords per line, the same in every panel: colours cycle through tab10, and each
    further ten lines take the next line style and marker, so 40 lines stay apart. Lines of the
    methods (or with the names) in ``highlight`` (default: the paper's method) are thicker and on
    top. A categorical ``line`` column gives its categories' order (the tables' row order)."""
    lines = data["line"]
    lines = list(lines.cat.categories if isinstance(lines.dtype, pd.CategoricalDtype) else dict.fromkeys(lines))
    methods = dict(zip(data["line"], data["method"])) if "method" in data else {}
    wanted = {h.lower() for h in ([PAPER_METHOD] if highlight is None else highlight)}
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    styles = {}
    for i, line in enumerate(lines):
        bold = str(line).lower() in wanted or str(methods.get(line, "")).lower() in wanted
        styles[line] = dict(
            color=palette(i % 10),
            linestyle=LINE_STYLES[i // 10 % len(LINE_STYLES)],
            marker=MARKERS[i // 10 % len(MARKERS)] if i >= 10 else "o",
            linewidth=2.8 if bold else 1.3,
            zorder=10 if bold else 2,
            alpha=1.0 if bold else 0.85,
        )
    return styles


def _draw_lines(axes, data: pd.DataFrame, x: str, y: str, styles: dict, *, markers: bool) -> None:
    for line, points in data.groupby("line", sort=False, observed=True):
        style = styles[line]
        if not markers and style["marker"] == "o":  # circles on every rank would hide the curves
            style = {**style, "marker": None}
        axes.plot(points[x], points[y], markersize=3.5, markevery=max(1, len(points) // 8), label=line, **style)
    axes.grid(True, alpha=0.3)


def _shared_legend(figure: Figure, axes_grid: np.ndarray, order) -> None:
    """One legend for all panels: the lines in ``order``, then reference lines."""
    handles = {}
    for axes in axes_grid.flat:
        for handle, label in zip(*axes.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    labels = [label for label in order if label in handles] + [label for label in handles if label not in order]
    figure.legend([handles[label] for label in labels], labels, loc="outside right center", fontsize="small")


def _dataset_by_bits_panels(data: pd.DataFrame):
    """A figure with a row per dataset and a column per code length, and each panel's axes and data."""
    datasets = dataset_order(data["dataset"].unique())
    bits = sorted(data["n_bits"].unique())
    figure, axes_grid = _panels(len(datasets), len(bits))
    panels = [
        (axes_grid[row, col], dataset, n_bits, data[(data["dataset"] == dataset) & (data["n_bits"] == n_bits)])
        for row, dataset in enumerate(datasets)
        for col, n_bits in enumerate(bits)
    ]
    return figure, axes_grid, panels


def draw_figure2(data: pd.DataFrame, highlight=None) -> Figure:
    figure, axes_grid, panels = _dataset_by_bits_panels(data)
    styles = line_styles(data, highlight)
    for axes, dataset, n_bits, panel in panels:
        _draw_lines(axes, panel, "k", "precision", styles, markers=False)
        axes.set(title=f"{_dataset_title(dataset)}, {n_bits} bits", xlabel="k (items retrieved)", ylabel="precision@k")
    _shared_legend(figure, axes_grid, list(styles))
    figure.suptitle(TITLES["figure2"])
    return figure


def draw_cost_accuracy(data: pd.DataFrame, highlight=None) -> Figure:
    figure, axes_grid, panels = _dataset_by_bits_panels(data)
    styles = line_styles(data, highlight)
    for axes, dataset, n_bits, panel in panels:
        front = panel[panel["pareto"]].sort_values("fit_s")
        # the staircase runs on to the slowest method, so everything below and right of it is beaten
        seconds = [*front["fit_s"], panel["fit_s"].max()]
        axes.step(
            seconds,
            [*front["map"], front["map"].iloc[-1]],
            where="post",
            color="grey",
            linestyle="--",
            linewidth=1,
            zorder=1,
            label="Pareto front",
        )
        for line, point in panel.groupby("line", sort=False, observed=True):
            style = styles[line]
            axes.plot(point["fit_s"], point["map"], linestyle="none", marker=style["marker"], color=style["color"],
                      markersize=9 if style["zorder"] > 2 else 6, zorder=style["zorder"] + 1, label=line,
                      markeredgecolor="black", markeredgewidth=0.4)  # fmt: skip
        axes.set_xscale("log")
        axes.grid(True, which="both", alpha=0.3)
        axes.set(title=f"{_dataset_title(dataset)}, {n_bits} bits", xlabel="training seconds (log)", ylabel="MAP")
    _shared_legend(figure, axes_grid, list(styles))
    figure.suptitle(TITLES["cost_accuracy"])
    return figure


def draw_figure3(data: pd.DataFrame, highlight=None) -> Figure:
    datasets = dataset_order(data["dataset"].unique())
    figure, axes_grid = _panels(1, len(datasets))
    styles = line_styles(data, highlight)
    for col, dataset in enumerate(datasets):
        axes = axes_grid[0, col]
        panel = data[data["dataset"] == dataset]
        _draw_lines(axes, panel, "epoch", "map", styles, markers=True)
        if panel["epoch"].min() <= paper_training_epochs() <= panel["epoch"].max():  # else it squashes the curve
            axes.axvline(paper_training_epochs(), color="grey", linestyle=":", label="paper's epochs")
        axes.set(title=f"{_dataset_title(dataset)}, {FIGURE_BITS} bits", xlabel="training epochs", ylabel="MAP")
    _shared_legend(figure, axes_grid, list(styles))
    figure.suptitle(TITLES["figure3"])
    return figure


def draw_figure4(data: pd.DataFrame, highlight=None) -> Figure:
    parameters = [p for p in LAMBDAS if p in set(data["parameter"])]
    figure, axes_grid = _panels(1, len(parameters))
    datasets = dataset_order(data["dataset"].unique())
    colours = {d: style["color"] for d, style in line_styles(pd.DataFrame({"line": datasets})).items()}
    for col, parameter in enumerate(parameters):
        axes = axes_grid[0, col]
        panel = data[data["parameter"] == parameter]
        for dataset in dataset_order(panel["dataset"].unique()):
            points = panel[panel["dataset"] == dataset]
            axes.plot(
                points["value"],
                points["map"],
                marker="o",
                markersize=3,
                linewidth=1.2,
                label=dataset,
                color=colours[dataset],
            )
            chosen = paper_hyperparameters(dataset)[parameter]
            axes.axvline(chosen, color="grey", linestyle=":", label=f"paper's choice ({paper_dataset(dataset).name})")
        axes.set_xscale("log")
        axes.grid(True, alpha=0.3)
        axes.set(title=f"MAP vs {parameter}, {FIGURE_BITS} bits", xlabel=parameter, ylabel="MAP")
    _shared_legend(figure, axes_grid, list(colours))
    figure.suptitle(TITLES["figure4"])
    return figure


# ----------------------------------------------------------------------------- entry points
FIGURES = ("figure2", "figure3", "figure4", "cost_accuracy")
SKIP_REASONS = {
    "figure2": "no finished cell with a precision curve",
    "cost_accuracy": "no finished cell with a MAP and a training time",
    "figure3": f"no finished {FIGURE_BITS}-bit cell with per-epoch MAP (set record_epochs)",
    "figure4": f"no LAGNH cells at {FIGURE_BITS} bits where a lambda takes two or more values",
}


def figure_data(name: str, results: pd.DataFrame, records: dict[str, dict], protocol: str = "official") -> pd.DataFrame:
    """The tidy data figure ``name`` plots (empty when the results hold nothing for it)."""
    if results.empty:
        return pd.DataFrame()
    if name == "figure2":
        return figure2_data(results, records)
    if name == "figure3":
        return figure3_data(results, records)
    if name == "cost_accuracy":
        return cost_accuracy_data(results, protocol)
    return figure4_data(results)


DRAW = {"figure2": draw_figure2, "figure3": draw_figure3, "figure4": draw_figure4, "cost_accuracy": draw_cost_accuracy}


def write_figure(
    name: str, results: pd.DataFrame, records: list[dict], out_dir, *, highlight=None, protocol: str = "official"
) -> list[Path] | str:
    """Write ``name``.png, .pdf and .csv under ``out_dir``; return their paths, or why it was skipped.
    ``highlight``: methods or line names to draw thicker and on top (default: the paper's method)."""
    data = figure_data(name, results, {r["path"]: r for r in records}, protocol)
    if data.empty:
        return SKIP_REASONS[name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = DRAW[name](data, highlight)
    paths = [out_dir / f"{name}.{suffix}" for suffix in ("png", "pdf", "csv")]
    figure.savefig(paths[0], dpi=150)
    figure.savefig(paths[1])
    data.to_csv(paths[2], index=False)
    return paths
