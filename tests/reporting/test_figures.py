import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from hashbench.reporting import figures
from hashbench.running.store import load_records, load_results
from tests.reporting.report_fixtures import (
    LAMBDA_GRID,
    PAPER_LAMBDAS,
    comparison_records,
    epoch_records,
    lambda_records,
    make_record,
    variant_records,
    write_records,
)


@pytest.fixture
def results_dir(tmp_path):
    return write_records(
        comparison_records() + variant_records() + epoch_records() + lambda_records(), tmp_path / "results"
    )


def draw(name, results_dir, out_dir):
    return figures.write_figure(name, load_results(results_dir), load_records(results_dir), out_dir)


def plotted(name, results_dir):
    """What figure ``name`` plots (and writes as its CSV)."""
    records = {r["path"]: r for r in load_records(results_dir)}
    return figures.figure_data(name, load_results(results_dir), records)


@pytest.mark.parametrize("name", figures.FIGURES)
def test_each_figure_writes_png_pdf_and_csv(name, results_dir, tmp_path):
    paths = draw(name, results_dir, tmp_path / "figures")
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf", f"{name}.csv"]
    image = imread(paths[0])
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert image[..., :3].std() > 0.05  # something was drawn
    assert paths[1].read_bytes().startswith(b"%PDF")
    csv = pd.read_csv(paths[2])
    assert not csv.empty
    expected = plotted(name, results_dir).reset_index(drop=True)
    pd.testing.assert_frame_equal(csv, expected, check_dtype=False, check_categorical=False)


def test_figure2_plots_mean_curves_per_panel(results_dir):
    data = plotted("figure2", results_dir)
    panels = data.groupby(["dataset", "n_bits"])["line"].unique().map(list).to_dict()
    assert panels == {("mosaic", 16): ["ITQ", "LAGNH", "my-plugin"],  # LSH failed at 16 bits
                      ("mosaic", 32): ["LSH", "ITQ", "LAGNH", "my-plugin"]}  # fmt: skip
    itq = data[(data["n_bits"] == 32) & (data["line"] == "ITQ")]
    expected = np.mean([r["metrics"]["precision_curve"] for r in comparison_records()[1:4]], axis=0)
    np.testing.assert_allclose(itq["precision"], expected)
    assert list(itq["k"]) == list(range(1, len(expected) + 1)) and set(itq["n_seeds"]) == {3}
    lsh = data[(data["n_bits"] == 32) & (data["line"] == "LSH")]
    assert set(lsh["n_seeds"]) == {1}  # the timed-out seed is not averaged
    assert set(data[data["line"] == "LAGNH"]["n_seeds"]) == {1}  # its figure2 duplicate counts once


def test_figure3_plots_map_per_epoch(results_dir):
    data = plotted("figure3", results_dir)
    assert list(data["epoch"]) == [50, 100, 200, 300] and set(data["line"]) == {"LAGNH"}
    np.testing.assert_allclose(data["map"], [0.5 + e / 1000 + 0.005 for e in (50, 100, 200, 300)])
    np.testing.assert_allclose(data["std"], np.std([0, 0.01], ddof=1))


def test_figure3_names_a_dataset_specific_setting_like_the_others(tmp_path):
    records = [
        make_record("lagnh", dataset=dataset, params=params, experiment="figure3", epochs=[(1, 0.5), (2, 0.6)])
        for dataset, params in (("mosaic", {"epochs": 2}), ("nuswide", {"epochs": 2, "preset": "nuswide"}))
    ]
    data = plotted("figure3", write_records(records, tmp_path / "results"))
    assert set(data["line"]) == {"LAGNH"} and set(data["dataset"]) == {"mosaic", "nuswide"}


def test_figure4_sweeps_each_lambda_around_the_centre(results_dir):
    data = plotted("figure4", results_dir)
    assert list(data["parameter"].unique()) == ["lambda1", "lambda2", "lambda3"]
    for index, (name, centre) in enumerate(PAPER_LAMBDAS.items(), start=1):
        sweep = data[data["parameter"] == name].set_index("value")["map"]
        assert sorted(sweep.index) == sorted((*LAMBDA_GRID, centre))
        for value in LAMBDA_GRID:
            assert sweep[value] == pytest.approx(0.6 + 0.01 * index * np.log10(value))
        assert sweep[centre] == pytest.approx(0.75)
        assert data.set_index(["parameter", "value"]).loc[(name, centre), "n_seeds"] == 1


def test_figure4_uses_a_log_axis():
    data = pd.DataFrame({"parameter": "lambda1", "dataset": "mosaic", "value": [0.1, 10.0], "map": [0.5, 0.6],
                         "std": np.nan, "n_seeds": 1})  # fmt: skip
    figure = figures.draw_figure4(data)
    assert figure.axes[0].get_xscale() == "log"


def test_figures_are_skipped_when_results_hold_nothing_for_them(tmp_path):
    results_dir = write_records(comparison_records(), tmp_path / "results")
    assert draw("figure3", results_dir, tmp_path / "out") == figures.SKIP_REASONS["figure3"]
    assert draw("figure4", results_dir, tmp_path / "out") == figures.SKIP_REASONS["figure4"]
    assert not (tmp_path / "out").exists()


def test_cost_accuracy_points_and_pareto_front(results_dir):
    data = plotted("cost_accuracy", results_dir)
    panel = data[data["n_bits"] == 32].set_index("line")
    assert list(panel.index) == ["LSH", "ITQ", "LAGNH", "my-plugin"]
    assert panel.loc["ITQ", "fit_s"] == pytest.approx(2.0) and panel.loc["ITQ", "map"] == pytest.approx(0.72)
    assert panel.loc["ITQ", "n_seeds"] == 3 and panel.loc["LAGNH", "n_seeds"] == 1  # the figure2 duplicate counts once
    # ITQ, LSH and the plugin train in 2 s: ITQ is the best of them; LAGNH costs more and scores more
    assert panel["pareto"].to_dict() == {"LSH": False, "ITQ": True, "LAGNH": True, "my-plugin": False}
    assert set(data["device"]) == {"cpu"}


def test_pareto_front_keeps_the_points_nothing_beats_on_both_axes():
    seconds = pd.Series([1.0, 2.0, 2.0, 10.0, 5.0], index=list("abcde"))
    accuracy = pd.Series([0.5, 0.4, 0.6, 0.9, 0.6])
    accuracy.index = seconds.index
    assert figures.pareto_front(seconds, accuracy) == ["a", "c", "d"]  # e ties c's accuracy at more cost


def test_many_lines_get_distinct_styles_and_the_highlight_is_on_top():
    lines = [f"method-{i}" for i in range(16)] + ["LAGNH"]
    data = pd.DataFrame({"line": lines, "method": [*lines[:-1], "lagnh"]})
    styles = figures.line_styles(data)
    assert len({(s["color"], s["linestyle"], s["marker"]) for s in styles.values()}) == len(lines)
    assert styles["LAGNH"]["linewidth"] > styles["method-0"]["linewidth"]
    assert styles["LAGNH"]["zorder"] > max(s["zorder"] for name, s in styles.items() if name != "LAGNH")
    chosen = figures.line_styles(data, highlight=["method-3"])
    assert chosen["method-3"]["linewidth"] > chosen["LAGNH"]["linewidth"]


def test_highlight_reaches_the_drawn_figure(results_dir, tmp_path):
    data = plotted("figure2", results_dir)
    figure = figures.draw_figure2(data, highlight=["itq"])
    widths = {line.get_label(): line.get_linewidth() for line in figure.axes[0].get_lines()}
    assert widths["ITQ"] > widths["LAGNH"]
