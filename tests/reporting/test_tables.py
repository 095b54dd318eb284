import numpy as np
import pytest

from hashbench.reporting import table_model, table_writers, tables
from hashbench.reporting.references import Unavailable
from hashbench.running import store
from hashbench.running.store import load_results
from tests.reporting.report_fixtures import (
    DEGENERATE,
    comparison_records,
    make_record,
    variant_records,
    write_records,
)


def results_of(records, tmp_path):
    return load_results(write_records(records, tmp_path / "results"))


@pytest.fixture
def results(tmp_path):
    return results_of(comparison_records() + variant_records(), tmp_path)


def column(table, group, title):
    """{row name: (text, mark)} of one column."""
    index = [(c.group, c.title) for c in table.columns].index((group, title))
    return {
        row: (table_writers.entry_text(table, index, i), cell.mark)
        for i, (row, cell) in enumerate(zip(table.rows, table.entries[index]))
    }


def test_table3_means_stds_seed_counts_and_marks(results):
    table = tables.table3(results)
    ours16, ours32 = column(table, "mosaic", "16 bits"), column(table, "mosaic", "32 bits")
    assert ours32["ITQ"] == ("0.7200 ± 0.0200 (n=3)", 2)
    assert ours32["LAGNH"] == ("0.8500", 1)  # its duplicate from the figure2 experiment counts once
    assert ours16["my-plugin"] == ("0.9000", 1) and ours16["LAGNH"] == ("0.8000", 2)
    assert ours16["ITQ"] == ("0.6100", 0)
    assert ours16["SKLSH"] == (table_model.MISSING, 0)  # not run


def test_table3_shows_failed_cells_as_such(results):
    table = tables.table3(results)
    assert column(table, "mosaic", "16 bits")["LSH"] == ("failed", 0)
    assert column(table, "mosaic", "32 bits")["LSH"] == ("0.4000 (1 timed out)", 0)


def test_table3_rows_in_paper_order_then_extras_and_no_ablations(results):
    table = tables.table3(results)
    assert table.rows[:12] == ["LSH", "SKLSH", "SH", "PCAH", "ITQ", "SGH", "UH-BDNN", "DeepBit", "SSDH", "SADH",
                               "TBH", "LAGNH"]  # fmt: skip
    assert table.rows[12:] == ["my-plugin"]  # Table 5 variants are not Table 3 rows


def test_table3_paper_columns_are_labelled_with_the_papers_dataset(results):
    table = tables.table3(results)
    assert [c.group for c in table.columns] == ["mosaic"] * 2 + ["paper (MS-COCO)"] * 2
    paper32 = column(table, "paper (MS-COCO)", "32 bits")
    assert paper32["LAGNH"] == ("0.8655", 1) and paper32["ITQ"] == ("0.7607", 2)  # as marked in the paper
    assert paper32["my-plugin"] == (table_model.MISSING, 0)
    assert "official protocol" in table.caption and "not the paper's MS-COCO" in table.caption


def test_paper_marks_reproduce_the_papers_underlines(tmp_path):
    results = results_of([make_record("itq", dataset="nuswide", n_bits=b) for b in (16, 32, 64, 128)], tmp_path)
    table = tables.table3(results)
    assert [c.group for c in table.columns][4:] == ["paper (NUS-WIDE)"] * 4
    assert "not the paper's" not in table.caption  # same data: no warning
    second = [[row for row, (_, mark) in column(table, "paper (NUS-WIDE)", f"{b} bits").items() if mark == 2]
              for b in (16, 32, 64, 128)]  # fmt: skip
    assert second == [["ITQ"], ["ITQ"], ["ITQ"], ["SADH"]]  # Table 3's NUS-WIDE underlines
    assert column(table, "paper (NUS-WIDE)", "128 bits")["LAGNH"] == ("0.7644", 1)


def test_several_settings_of_a_method_get_one_row_each(tmp_path):
    records = [make_record("itq", params={"n_iter": n}, map_value=m) for n, m in ((10, 0.6), (50, 0.7))]
    table = tables.table3(results_of(records, tmp_path))
    ours = column(table, "mosaic", "32 bits")
    assert ours["ITQ (n_iter=10)"] == ("0.6000", 2) and ours["ITQ (n_iter=50)"] == ("0.7000", 1)
    paper = column(table, "paper (MS-COCO)", "32 bits")
    assert paper["ITQ (n_iter=10)"][0] == "0.7607" and paper["ITQ (n_iter=50)"][0] == table_model.MISSING


def test_one_setting_per_dataset_makes_one_row(tmp_path):
    records = [
        make_record("lagnh", map_value=0.8),
        make_record("lagnh", dataset="nuswide", map_value=0.7, params={"preset": "nuswide"}),
    ]
    table = tables.table3(results_of(records, tmp_path))
    assert table.rows.count("LAGNH") == 1
    assert column(table, "nuswide", "32 bits")["LAGNH"][0] == "0.7000"
    assert column(table, "mosaic", "32 bits")["LAGNH"][0] == "0.8000"


def test_protocol_chooses_the_map_column(results):
    table = tables.table3(results, table_model.TableOptions(protocol="deephash"))
    assert column(table, "mosaic", "32 bits")["LAGNH"] == ("0.8400", 0)
    assert "deephash protocol: normalise=retrieved, ties=stable, no_relevant=zero" in table.caption
    # the records' per-query AP is official, and they have no codes to rescore: no marks, and a note why
    assert "mosaic 32 bits not marked: no per-query AP for LSH (its codes are not saved); ITQ" in " ".join(table.notes)


def test_table4_seconds_device_and_paper_times(results):
    table = tables.table4(results)
    train, encode = column(table, "mosaic", "train s"), column(table, "mosaic", "encode s")
    assert train["ITQ"] == ("2.0000 ± 1.0000 (n=3)", 0)
    assert train["LAGNH"] == ("9.0000", 0)  # one seed: no test over seeds, so no marks
    assert (
        "mosaic train s not marked: Welch's test needs two seeds per cell (LSH, LAGNH, my-plugin ran one)."
        in table.notes
    )
    assert encode["LAGNH"][0] == "0.5000"  # query + database
    device = table.entries[0]
    assert table.columns[0].title == "device" and device[table.rows.index("ITQ")].text == "cpu"
    assert column(table, "paper (MS-COCO)", "train s")["LAGNH"] == ("466.3686", 1)
    assert column(table, "paper (MS-COCO)", "encode s")["TBH"] == ("3.2057", 1)
    assert "UH-BDNN" in table.rows and "SKLSH" not in table.rows  # the paper's deep methods; ours


def test_table4_gives_each_device_its_own_row(tmp_path):
    records = [
        make_record("lagnh", fit_s=10.0),
        make_record("lagnh", fit_s=1.0, device="cuda", device_name="NVIDIA H100"),
    ]
    table = tables.table4(results_of(records, tmp_path))
    lagnh = [i for i, row in enumerate(table.rows) if row == "LAGNH"]
    assert sorted(table.entries[0][i].text for i in lagnh) == ["NVIDIA H100", "cpu"]
    train = table.entries[[c.title for c in table.columns].index("train s")]
    assert sorted(table_model.format_entry(train[i]) for i in lagnh) == ["1.0000", "10.0000"]


def test_table5_variants_in_paper_order_with_failures(results):
    table = tables.table5(results)
    assert table.rows[:3] == ["LAGNH-no-aux", "LAGNH-no-att", "LAGNH-only-Sv"]
    ours = column(table, "mosaic", "32 bits")
    assert ours["LAGNH-recons-Sa"] == ("0.8320", 1) and ours["LAGNH-only-Sv"] == ("0.6820", 2)
    assert ours["LAGNH-no-att"] == ("failed", 0)
    assert column(table, "paper (MS-COCO)", "16 bits")["LAGNH-no-aux"][0] == "0.6163"


def test_tables_are_none_without_material(tmp_path):
    results = results_of([make_record("itq", n_bits=16)], tmp_path)
    assert tables.table4(results) is None  # nothing at 32 bits
    assert tables.table5(results) is None


def test_markdown_and_latex_writers(results, tmp_path):
    table = tables.table3(results)
    markdown = table_writers.to_markdown(table)
    assert "| LAGNH | _0.8000_ | **0.8500** | **0.8476** | **0.8655** |" in markdown
    assert "| mosaic 16 bits | mosaic 32 bits | paper (MS-COCO) 16 bits |" in markdown
    assert (
        "Best per column in **bold**, second best in _italics_ (the paper underlines it): our MAP columns only "
        "where Wilcoxon's signed-rank test" in markdown
    )
    latex = table_writers.to_latex(table)
    assert r"\underline{0.7200 $\pm$ 0.0200 (n=3)}" in latex and r"\textbf{0.8500}" in latex
    assert r"\multicolumn{2}{c}{paper (MS-COCO)}" in latex and r"\cmidrule(lr){4-5}" in latex
    assert latex.count(r"\\") == len(table.rows) + 2
    paths = table_writers.write_table(table, tmp_path / "out")
    assert [p.name for p in paths] == ["table3.md", "table3.tex"]
    assert paths[0].read_text() == markdown


def test_latex_escapes_special_characters():
    assert table_writers.latex_escape("my_method 50% & #1") == r"my\_method 50\% \& \#1"
    assert table_writers.latex_escape("0.5 ± 0.1 † ≈") == r"0.5 $\pm$ 0.1 \textsuperscript{\dag} $\approx$"


# ----------------------------------------------------------------------------- significance marks
def results_with_ap(per_query: dict[str, list[np.ndarray]], tmp_path):
    """Results of methods whose seeds have exactly these per-query APs (MAP = their mean)."""
    records = [make_record(method, seed=seed, map_value=float(np.nanmean(ap)))
               for method, aps in per_query.items() for seed, ap in enumerate(aps)]  # fmt: skip
    results_dir = write_records(records, tmp_path / "results", query_ap=False)
    for path, record in zip(sorted(results_dir.rglob("*.json")), sorted(records, key=lambda r: r["spec"]["method"])):
        method, seed = record["spec"]["method"], record["spec"]["seed"]
        store.save_query_ap(path, per_query[method][seed], "official", record["spec"]["topk"])
    return load_results(results_dir)


def marks(table, group="mosaic", title="32 bits"):
    return {row: (mark, cell.tied) for row, cell, mark in
            ((r, c, c.mark) for r, c in zip(table.rows, table.entries[[(k.group, k.title) for k in table.columns].index((group, title))]))
            if cell.values}  # fmt: skip


def test_methods_that_differ_by_noise_are_tied_not_ranked(tmp_path):
    rng = np.random.default_rng(0)
    base = [rng.uniform(0.2, 0.8, 300) for _ in range(3)]
    noisy = {"alpha": [b + rng.normal(0, 0.05, 300) for b in base],
             "beta": [b + rng.normal(0, 0.05, 300) for b in base],
             "gamma": [b - 0.1 for b in base]}  # fmt: skip
    alpha, beta = (np.concatenate(noisy[m]) for m in ("alpha", "beta"))
    assert alpha.mean() != beta.mean()
    from scipy.stats import wilcoxon

    assert wilcoxon(alpha - beta).pvalue > 0.05  # the construction: alpha and beta differ by noise only
    table = tables.table3(results_with_ap(noisy, tmp_path))
    assert marks(table) == {"alpha": (1, True), "beta": (1, True), "gamma": (2, False)}
    assert column(table, "mosaic", "32 bits")["alpha"][0].endswith(f"(n=3) {table_model.TIE_MARK}")


def test_a_consistent_difference_is_marked_and_a_few_large_gains_are_not(tmp_path):
    base = np.linspace(0.2, 0.8, 200)
    clear = {"alpha": [base + 0.02], "beta": [base.copy()], "gamma": [base - 0.1]}
    table = tables.table3(results_with_ap(clear, tmp_path / "clear"))
    assert marks(table) == {"alpha": (1, False), "beta": (2, False), "gamma": (0, False)}
    # higher mean from 10 queries of +0.3, while the other 190 queries lose 0.01: a rank test does
    # not call alpha better, so alpha and beta tie for the best
    skewed = {"alpha": [base + np.where(np.arange(200) < 10, 0.3, -0.01)], "beta": [base.copy()]}
    assert np.mean(skewed["alpha"]) > np.mean(skewed["beta"])
    table = tables.table3(results_with_ap(skewed, tmp_path / "skewed"))
    assert marks(table) == {"alpha": (1, True), "beta": (1, True)}


def test_welch_marks_seconds_with_two_seeds_per_cell(tmp_path):
    records = [make_record(m, seed=s, fit_s=t) for m, times in (("itq", (1.0, 1.1, 0.9)), ("lsh", (5.0, 5.2, 4.8)),
                                                                 ("pcah", (5.1, 4.9, 5.0)))
               for s, t in enumerate(times)]  # fmt: skip
    table = tables.table4(results_of(records, tmp_path))
    assert marks(table, title="train s") == {"ITQ": (1, False), "LSH": (2, True), "PCAH": (2, True)}


# ----------------------------------------------------------------------------- captions and options
def test_captions_name_protocol_schedules_and_cell_counts(tmp_path):
    records = [
        *comparison_records(),
        make_record("ssdh", params={"preset": "quick"}, map_value=0.5),
        make_record("sadh", params={"preset": "paper"}, map_value=0.5),
        make_record("lagnh", dataset="nuswide", params={"preset": "nuswide"}),
        make_record("lagnh", dataset="coco", params={"preset": "quick"}),
    ]
    table = tables.table3(results_of(records, tmp_path))
    assert "MAP@20 (official protocol: normalise=retrieved, ties=stable, no_relevant=skip)" in table.caption
    # LAGNH's nuswide preset is the paper's; its quick one on coco is not (SADH's paper preset is)
    assert "Schedules other than the paper's: SSDH (quick, 6 epochs); LAGNH (quick, 65 epochs)." in table.caption
    assert "Cells (one per seed): 13 done, 1 failed, 1 timed out." in table.caption
    table4 = tables.table4(results_of(records, tmp_path / "again"))
    assert "SSDH (quick, 6 epochs)" in table4.caption


def test_degenerate_cells_are_marked_counted_and_footnoted(tmp_path):
    records = [make_record("itq", map_value=0.7),
               make_record("deepbit", seed=0, map_value=0.36, code_stats=DEGENERATE),
               make_record("deepbit", seed=1, map_value=0.38)]  # fmt: skip
    table = tables.table3(results_of(records, tmp_path))
    assert column(table, "mosaic", "32 bits")["DeepBit"][0] == "0.3700 ± 0.0141 (n=2) †"
    assert "3 done, 1 with degenerate codes (†)" in table.caption
    note = [n for n in table.notes if n.startswith("†")]
    assert note == [
        "† DeepBit, mosaic 32 bits: degenerate codes in 1 of 2 seeds (constant_bits=0.75, "
        "distinct_fraction=0.0020, mean_abs_balance=0.80, mean_abs_correlation=0.30)."
    ]
    assert "- † DeepBit" in table_writers.to_markdown(table)


def test_health_and_ranges_options(tmp_path):
    records = [make_record("itq", map_value=0.7, map_range=(0.69, 0.71)),
               make_record("lsh", map_value=0.4, code_stats=DEGENERATE)]  # fmt: skip
    table = tables.table3(results_of(records, tmp_path), table_model.TableOptions(health=True, ranges=True))
    titles = [c.title for c in table.columns if c.group == "mosaic"]
    assert titles == ["32 bits", "32 bits constant_bits", "32 bits mean_abs_balance", "32 bits distinct_fraction",
                      "32 bits mean_abs_correlation"]  # fmt: skip
    assert column(table, "mosaic", "32 bits")["ITQ"][0] == "0.7000 [0.6900, 0.7100]"
    assert column(table, "mosaic", "32 bits")["LSH"][0] == "0.4000 †"  # no range recorded: none shown
    assert column(table, "mosaic", "32 bits distinct_fraction")["LSH"] == ("0.0020", 0)
    assert column(table, "mosaic", "32 bits constant_bits")["ITQ"] == ("0.00", 0)
    assert any(n.startswith("Code health") for n in table.notes)


class FakeReferences:
    def random_codes(self, dataset, n_bits, seeds, protocol, topk):
        return tuple(0.3 + 0.01 * s for s in seeds)

    def raw_features(self, dataset, protocol, topk):
        raise Unavailable("the dataset has no features (images only)")


def test_reference_rows_are_shown_never_marked_and_say_when_missing(results):
    table = tables.table3(results, table_model.TableOptions(references=FakeReferences()))
    assert table.rows[-2:] == ["random codes", "raw features"] and table.n_reference_rows == 2
    ours = column(table, "mosaic", "32 bits")
    assert ours["random codes"] == ("0.3100 ± 0.0100 (n=3)", 0)  # the seeds our 32-bit cells ran: 0, 1, 2
    assert ours["raw features"] == (table_model.MISSING, 0)
    assert column(table, "paper (MS-COCO)", "32 bits")["random codes"] == (table_model.MISSING, 0)
    assert "raw features on mosaic: not computed (the dataset has no features (images only))." in table.notes
    assert table_writers.to_latex(table).count(r"\midrule") == 2  # a rule above the reference rows
    assert tables.table5(results, table_model.TableOptions(references=FakeReferences())).rows[-1] == "raw features"
