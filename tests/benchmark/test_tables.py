import pytest

from hashbench.benchmark import tables
from hashbench.benchmark.store import load_results
from tests.benchmark.report_fixtures import comparison_records, make_record, variant_records, write_records


def results_of(records, tmp_path):
    return load_results(write_records(records, tmp_path / "results"))


@pytest.fixture
def results(tmp_path):
    return results_of(comparison_records() + variant_records(), tmp_path)


def column(table, group, title):
    """{row name: (text, mark)} of one column."""
    index = table.columns.index(tables.Column(group, title, table.columns[1].better))
    return {row: (tables.format_cell(cell), cell.mark) for row, cell in zip(table.rows, table.cells[index])}


def test_table3_means_stds_seed_counts_and_marks(results):
    table = tables.table3(results)
    ours16, ours32 = column(table, "mosaic", "16 bits"), column(table, "mosaic", "32 bits")
    assert ours32["ITQ"] == ("0.7200 ± 0.0200 (n=3)", 2)
    assert ours32["LAGNH"] == ("0.8500", 1)  # its duplicate from the figure2 experiment counts once
    assert ours16["my-plugin"] == ("0.9000", 1) and ours16["LAGNH"] == ("0.8000", 2)
    assert ours16["ITQ"] == ("0.6100", 0)
    assert ours16["SKLSH"] == (tables.MISSING, 0)  # not run


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
    assert paper32["my-plugin"] == (tables.MISSING, 0)
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
    assert paper["ITQ (n_iter=10)"][0] == "0.7607" and paper["ITQ (n_iter=50)"][0] == tables.MISSING


def test_one_setting_per_dataset_makes_one_row(tmp_path):
    records = [make_record("lagnh", map_value=0.8), make_record("lagnh", dataset="nuswide", map_value=0.7,
                                                                 params={"preset": "nuswide"})]
    table = tables.table3(results_of(records, tmp_path))
    assert table.rows.count("LAGNH") == 1
    assert column(table, "nuswide", "32 bits")["LAGNH"][0] == "0.7000"
    assert column(table, "mosaic", "32 bits")["LAGNH"][0] == "0.8000"


def test_protocol_chooses_the_map_column(results):
    table = tables.table3(results, protocol="deephash")
    assert column(table, "mosaic", "32 bits")["LAGNH"][0] == "0.8400"
    assert "deephash protocol" in table.caption


def test_table4_seconds_device_and_paper_times(results):
    table = tables.table4(results)
    train, encode = column(table, "mosaic", "train s"), column(table, "mosaic", "encode s")
    assert train["ITQ"] == ("2.0000 ± 1.0000 (n=3)", 1)  # fewest seconds is best
    assert train["LAGNH"] == ("9.0000", 2)
    assert encode["LAGNH"][0] == "0.5000"  # query + database
    device = table.cells[0]
    assert table.columns[0].title == "device" and device[table.rows.index("ITQ")].text == "cpu"
    assert column(table, "paper (MS-COCO)", "train s")["LAGNH"] == ("466.3686", 1)
    assert column(table, "paper (MS-COCO)", "encode s")["TBH"] == ("3.2057", 1)
    assert "UH-BDNN" in table.rows and "SKLSH" not in table.rows  # the paper's deep methods; ours


def test_table4_gives_each_device_its_own_row(tmp_path):
    records = [make_record("lagnh", fit_s=10.0),
               make_record("lagnh", fit_s=1.0, device="cuda", device_name="NVIDIA H100")]
    table = tables.table4(results_of(records, tmp_path))
    lagnh = [i for i, row in enumerate(table.rows) if row == "LAGNH"]
    assert sorted(table.cells[0][i].text for i in lagnh) == ["NVIDIA H100", "cpu"]
    train = table.cells[table.columns.index(tables.Column("mosaic", "train s", "min"))]
    assert sorted(tables.format_cell(train[i]) for i in lagnh) == ["1.0000", "10.0000"]


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
    markdown = tables.to_markdown(table)
    assert "| LAGNH | _0.8000_ | **0.8500** | **0.8476** | **0.8655** |" in markdown
    assert "| mosaic 16 bits | mosaic 32 bits | paper (MS-COCO) 16 bits |" in markdown
    assert tables.LEGEND_MARKDOWN in markdown
    latex = tables.to_latex(table)
    assert r"\underline{0.7200 $\pm$ 0.0200 (n=3)}" in latex and r"\textbf{0.8500}" in latex
    assert r"\multicolumn{2}{c}{paper (MS-COCO)}" in latex and r"\cmidrule(lr){4-5}" in latex
    assert latex.count(r"\\") == len(table.rows) + 2
    paths = tables.write_table(table, tmp_path / "out")
    assert [p.name for p in paths] == ["table3.md", "table3.tex"]
    assert paths[0].read_text() == markdown


def test_latex_escapes_special_characters():
    assert tables.latex_escape("my_method 50% & #1") == r"my\_method 50\% \& \#1"
