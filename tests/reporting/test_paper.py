import re
from pathlib import Path

import pytest

from hashbench.reporting import paper

NOTES = Path(__file__).resolve().parents[3] / "shared" / "notes" / "paper-numbers.md"


@pytest.mark.parametrize(
    ("table", "dataset", "row", "n_bits", "expected"),
    [
        ("table3", "coco", "lsh", 16, 0.4548),
        ("table3", "coco", "sadh", 128, 0.8161),
        ("table3", "nuswide", "itq", 64, 0.7218),
        ("table3", "nuswide", "ssdh", 32, 0.5339),
        ("table3", "coco", "lagnh", 32, 0.8655),
        ("table5", "coco", "recons-ZtZ", 64, 0.8407),
        ("table5", "nuswide", "no-aux", 64, 0.3780),
        ("table5", "nuswide", "only-Sv", 128, 0.6193),
    ],
)
def test_map_spot_checks_against_the_notes(table, dataset, row, n_bits, expected):
    assert paper.paper_map(dataset, row, n_bits, table=table) == expected


def test_seconds_and_hyperparameter_spot_checks():
    assert paper.paper_seconds("coco", "uh-bdnn") == (6301.7021, 3.9999)
    assert paper.paper_seconds("nuswide", "ssdh") == (877.389, 2630.8497)
    assert paper.paper_seconds("nuswide", "lagnh") == (586.2117, 11.6804)
    assert paper.paper_seconds("coco", "itq") is None  # Table 4 lists deep methods only
    assert paper.paper_hyperparameters("coco") == {"lambda1": 100, "lambda2": 1, "lambda3": 1, "k": 1, "mu": 1}
    assert paper.paper_hyperparameters("nuswide")["lambda3"] == 0.1
    assert paper.paper_training_epochs() == 300


def test_published_lagnh_equals_its_recons_sa_variant():
    for dataset in ("coco", "nuswide"):
        for n_bits in (16, 32, 64, 128):
            assert paper.paper_map(dataset, "lagnh", n_bits) == paper.paper_map(
                dataset, "recons-Sa", n_bits, table="table5"
            )


def test_other_datasets_are_compared_with_ms_coco_and_say_so():
    assert paper.paper_dataset("coco") == paper.PaperDataset("coco", "MS-COCO", True)
    assert paper.paper_dataset("coco").column_label == "paper (MS-COCO)"
    mosaic = paper.paper_dataset("mosaic")
    assert (mosaic.key, mosaic.same_data, mosaic.column_label) == ("coco", False, "paper (MS-COCO)")
    assert paper.paper_dataset("nuswide").column_label == "paper (NUS-WIDE)"
    assert paper.paper_map("mosaic", "itq", 32) == paper.paper_map("coco", "itq", 32)
    assert paper.paper_map("coco", "itq", 48) is None  # code lengths the paper did not report


def test_row_orders_follow_the_paper():
    assert paper.method_order() == [
        "lsh", "sklsh", "sh", "pcah", "itq", "sgh", "uh-bdnn", "deepbit", "ssdh", "sadh", "tbh", "lagnh"
    ]  # fmt: skip
    assert paper.variant_order()[0] == "no-aux" and paper.variant_order()[-1] == "recons-Sa"
    assert paper.method_display_name("uh-bdnn") == "UH-BDNN"
    assert paper.method_display_name("my-plugin") == "my-plugin"


def _markdown_rows(text: str, heading: str) -> dict[str, list[float]]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 1 and re.fullmatch(r"[\d.]+", cells[1]):
            rows[cells[0].split(" (")[0]] = [float(c) for c in cells[1:]]
    return rows


@pytest.mark.skipif(not NOTES.is_file(), reason="the shared notes are not beside this checkout")
def test_every_number_matches_the_notes():
    text = NOTES.read_text()
    names = {display: key for key, display in paper.paper_numbers()["methods"].items()}
    bits = (16, 32, 64, 128)
    table3 = _markdown_rows(text, "## Table 3")
    assert len(table3) == 12
    for display, values in table3.items():
        ours = [paper.paper_map(d, names[display], b) for d in ("coco", "nuswide") for b in bits]
        assert ours == values, display
    table4 = _markdown_rows(text, "## Table 4")
    assert len(table4) == 6
    for display, values in table4.items():
        assert [*paper.paper_seconds("coco", names[display]), *paper.paper_seconds("nuswide", names[display])] == values
    table5 = _markdown_rows(text, "## Table 5")
    assert list(table5) == paper.variant_order()
    for variant, values in table5.items():
        assert [paper.paper_map(d, variant, b, table="table5") for d in ("coco", "nuswide") for b in bits] == values
