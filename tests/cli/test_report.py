import json
import re

import numpy as np
import pandas as pd
import pytest

from hashbench.cli import main
from tests.reporting.report_fixtures import comparison_records, epoch_records, variant_records, write_records


@pytest.fixture
def results_dir(tmp_path):
    return write_records(comparison_records() + variant_records(), tmp_path / "results")


def test_report_writes_the_merged_table_and_tables_3_to_5(results_dir, capsys):
    assert main(["report", str(results_dir)]) == 0
    out = results_dir / "report"
    merged = pd.read_csv(out / "results.csv")
    assert len(merged) == len(comparison_records() + variant_records())
    assert {"method", "params", "map_official", "fit_s", "device_name"} <= set(merged.columns)
    for name in ("table3", "table4", "table5"):
        assert (out / f"{name}.md").is_file() and (out / f"{name}.tex").is_file()
    table3 = (out / "table3.md").read_text()
    assert "paper (MS-COCO) 32 bits" in table3 and "| LSH | failed |" in table3
    assert f"wrote {out / 'table5.tex'}" in capsys.readouterr().out


def test_report_warns_when_records_of_one_dataset_come_from_different_builds(tmp_path, capsys):
    records = comparison_records()
    for i, record in enumerate(records):
        record["dataset_fingerprint"] = "a" * 16 if i else "b" * 16
    results_dir = write_records(records, tmp_path / "results")
    assert main(["report", str(results_dir), "--format", "md"]) == 0
    assert "come from 2 different builds" in capsys.readouterr().err


def test_report_writes_parquet_when_pyarrow_is_installed(results_dir):
    pytest.importorskip("pyarrow")
    assert main(["report", str(results_dir), "--format", "md"]) == 0
    merged = pd.read_parquet(results_dir / "report" / "results.parquet")
    assert len(merged) == len(comparison_records() + variant_records())


def test_report_format_and_out_options(results_dir, tmp_path, capsys):
    assert main(["report", str(results_dir), "--out", str(tmp_path / "md"), "--format", "md"]) == 0
    assert sorted(p.name for p in (tmp_path / "md").glob("table*")) == ["table3.md", "table4.md", "table5.md"]
    assert main(["report", str(results_dir), "--format", "html"]) == 2
    assert "--format" in capsys.readouterr().err


def test_report_skips_tables_without_material(tmp_path, capsys):
    results_dir = write_records(comparison_records(), tmp_path / "results")
    assert main(["report", str(results_dir)]) == 0
    assert "table5: skipped" in capsys.readouterr().out
    assert not (results_dir / "report" / "table5.md").exists()


def test_report_on_an_empty_or_missing_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no records" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plot_writes_the_figures_it_has_material_for(tmp_path, capsys):
    results_dir = write_records(comparison_records() + epoch_records(), tmp_path / "results")
    assert main(["plot", str(results_dir), "--out", str(tmp_path / "figs"), "--highlight", "itq"]) == 0
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == [f"{f}.{s}" for f in ("cost_accuracy", "figure2", "figure3") for s in ("csv", "pdf", "png")]
    assert "figure4: skipped" in capsys.readouterr().out


PLUGIN = '''
import numpy as np
import hashbench as hb


class TinyProjection(hb.Hasher):
    """Signs of a seeded random projection of centred features (a test method)."""

    name = "tiny-projection"
    citation = "test"

    def _fit(self, train, callback):
        self.mean_ = train.features.mean(axis=0)
        self.projection_ = self._rng().normal(size=(train.features.shape[1], self.n_bits))

    def _encode(self, split):
        return (split.features - self.mean_) @ self.projection_
'''

CONFIG = """
[defaults]
datasets = [{{ name = "{dataset}", label = "tiny" }}]
bits = [8, 16]
seeds = [0, 1]
topk = 10

[[experiment]]
name = "compare"
role = "main"
methods = ["tiny-projection", "lsh"]

[[experiment]]
name = "times"
role = "timing"
bits = [32]
seeds = [0]
methods = ["tiny-projection"]
"""


@pytest.fixture
def tiny_matrix(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 60), ("query", 20), ("database", 80)):
        cluster = rng.integers(0, 3, n)
        features = np.eye(3)[cluster] @ rng.normal(0, 3, (3, 12)) + rng.normal(0, 1, (n, 12))
        arrays[f"{split}_features"] = features.astype(np.float32)
        arrays[f"{split}_labels"] = np.eye(3, dtype=np.uint8)[cluster]
        arrays[f"{split}_aux"] = arrays[f"{split}_labels"].astype(np.float32)
    np.savez(tmp_path / "tiny.npz", **arrays)
    (tmp_path / "plugin.py").write_text(PLUGIN)
    (tmp_path / "matrix.toml").write_text(CONFIG.format(dataset=tmp_path / "tiny.npz"))
    return tmp_path


def table_rows(markdown: str) -> dict[str, str]:
    return {line.split(" | ")[0].strip("| "): line for line in markdown.splitlines() if line.startswith("| ")}


def test_reproduce_runs_the_experiments_of_the_targets_role_and_writes_its_table(tiny_matrix, capsys):
    out = tiny_matrix / "results"
    common = ["--plugin", str(tiny_matrix / "plugin.py"), "reproduce"]
    options = ["--config", str(tiny_matrix / "matrix.toml"), "--out", str(out), "--quiet"]
    assert main([*common, "table3", *options, "--bits", "16", "--datasets", "tiny"]) == 0
    table = (out / "report" / "table3.md").read_text()
    assert "| tiny 16 bits | paper (MS-COCO) 16 bits |" in table
    rows = table_rows(table)
    assert "(n=2)" in rows["LSH"] and "(n=2)" in rows["tiny-projection"]
    # the reference rows, computed from the dataset the records name
    assert rows["random codes"].count("(n=2)") == 1 and rows["raw features"].split(" | ")[1][0] in "01"
    assert (out / "reference" / "cache.json").is_file()
    assert "wrote" in capsys.readouterr().out
    records = sorted(out.rglob("*.json"))
    records = [r for r in records if r.parent.name != "reference"]
    assert len(records) == 4  # 2 methods x 1 code length x 2 seeds, of the "main" experiment only
    assert len(list(out.rglob("*.ap.official.top10.npy"))) == 4  # per-query AP beside every record

    assert main([*common, "figure2", *options]) == 0
    curves = pd.read_csv(out / "figures" / "figure2.csv")
    assert set(curves["line"]) == {"LSH", "tiny-projection"} and set(curves["n_bits"]) == {8, 16}
    assert (out / "figures" / "figure2.png").is_file()

    # a second run reuses the finished cells and still builds Table 3 from the main cells only
    written = {path: path.stat().st_mtime_ns for path in records}
    assert main([*common, "table3", *options, "--bits", "16"]) == 0
    assert {path: path.stat().st_mtime_ns for path in records} == written
    assert (out / "report" / "table3.md").read_text() == table

    # Table 4 runs the timing experiment only
    assert main([*common, "table4", *options]) == 0
    assert [row for row in table_rows((out / "report" / "table4.md").read_text()) if row != "method"] == [
        "UH-BDNN",
        "DeepBit",
        "SSDH",
        "SADH",
        "TBH",
        "LAGNH",
        "tiny-projection",
    ]


def test_reproduce_without_an_experiment_of_the_role_is_a_clear_error(tiny_matrix, capsys):
    options = ["--config", str(tiny_matrix / "matrix.toml"), "--out", str(tiny_matrix / "r"), "--quiet"]
    assert main(["reproduce", "table5", *options]) == 2
    assert "no experiment with role ablation, which table5 needs" in capsys.readouterr().err


def test_report_html_health_and_ranges_on_a_real_run(tiny_matrix, capsys):
    out = tiny_matrix / "results"
    common = ["--plugin", str(tiny_matrix / "plugin.py")]
    assert main([*common, "run", str(tiny_matrix / "matrix.toml"), "--out", str(out), "--quiet"]) == 0
    assert (
        main([*common, "report", str(out), "--html", "--health", "--ranges", "--highlight", "lsh,tiny-projection"]) == 0
    )
    report = out / "report"
    table = (report / "table3.md").read_text()
    assert "tiny 16 bits constant_bits" in table and "tiny 16 bits distinct_fraction" in table
    assert re.search(r"\| LSH \| [^|]*\(n=2\) \[0\.\d{4}, [01]\.\d{4}\]", table)  # the tie range after the MAP
    page = (report / "index.html").read_text()
    for name in ("figure2", "cost_accuracy"):
        assert (report / "figures" / f"{name}.png").is_file() and f'id="{name}"' in page
    assert page.count('<table class="sortable"') == 2  # Tables 3 and 4; no Table 5 and no failed cells here
    assert "No cell failed or timed out." in page
    assert "random codes" in page and "Provenance" in page
    assert f"wrote {report / 'index.html'}" in capsys.readouterr().out


def test_reproduce_protocols_runs_the_published_cells_and_writes_them_beside_the_numbers(tmp_path, monkeypatch, capsys):
    import hashbench as hb
    from hashbench.reporting import published

    monkeypatch.setenv("HASHBENCH_DATA_DIR", str(tmp_path / "data"))
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (4, 16))

    def split(n, name):
        classes = rng.integers(0, 4, n)
        features = (centres[classes] + rng.normal(0, 1, (n, 16))).astype(np.float32)
        return hb.Split(features, np.eye(4, dtype=np.uint8)[classes], None, name=name)

    dataset = hb.HashingDataset(
        "cifar10-q10000-db50000-drawn", split(100, "train"), split(20, "query"), split(100, "database")
    )
    hb.save_dataset(dataset, tmp_path / "data" / "cifar10-q10000-db50000-drawn.npz")
    (tmp_path / "matrix.toml").write_text(
        "[defaults]\nbits = [8, 16]\nseeds = [0]\n"
        '[[experiment]]\nname = "map1000"\ntopk = 1000\n'
        'datasets = [{ name = "cifar10-q10000-db50000-drawn", optional = true }, { name = "nuswide21-q2100-t10500", '
        'optional = true }]\nmethods = ["lsh", "itq"]\n'
        '[[experiment]]\nname = "map1000-quick"\ntopk = 1000\ncommon_params = { preset = "quick" }\n'
        'datasets = ["cifar10-q10000-db50000-drawn"]\nmethods = ["lsh", "bihalf"]\n'
    )
    numbers = (
        {
            "method": "lsh",
            "protocol": "cifar10-q10000-db50000-drawn",
            "bits": 16,
            "topk": 1000,
            "map": 0.5,
            "convention": "official",
            "source": "a test",
        },
        {
            "method": "itq",
            "protocol": "nuswide21-q2100-t10500",
            "bits": 16,
            "topk": 1000,
            "map": 0.7,
            "convention": "deephash",
            "source": "another",
        },
    )
    monkeypatch.setattr(published, "published_numbers", lambda: numbers)
    out = tmp_path / "results"
    assert (
        main(["reproduce", "protocols", "--config", str(tmp_path / "matrix.toml"), "--out", str(out), "--quiet"]) == 0
    )
    text = (out / "report" / "protocols.md").read_text()
    rows = table_rows(text)
    assert rows["lsh"].split(" | ")[5] == "0.5000" and "(n=1)" in rows["lsh"]
    assert "not run" in rows["itq"]  # its protocol is not prepared: skipped, never an error
    records = [json.loads(r.read_text()) for r in out.rglob("*.json") if r.parent.name != "reference"]
    # only the published cell ran: lsh at 16 bits (its record is shared with the quick experiment's
    # identical cell, which the table does not count twice)
    assert {(r["spec"]["method"], r["spec"]["n_bits"]) for r in records} == {("lsh", 16)}
    ours = records[0]["metrics"]["map"]
    assert rows["lsh"].split(" | ")[4] == f"{ours:.4f} (n=1)"
