import json

from hashbench.cli import main
from hashbench.running import store
from tests.running.toy_methods import write_config, write_toy_dataset


def test_run_dry_run_resume_and_rescore_from_the_command_line(tmp_path, capsys):
    toy = write_toy_dataset(tmp_path / "toy.npz")
    config = write_config(
        tmp_path / "m.toml",
        f"""
[defaults]
datasets = ["{toy}"]
bits = [8, 16]
[[experiment]]
name = "cli"
methods = ["lsh", {{ method = "toy-projection", params = {{ fail_at_bits = 16 }} }}]
""",
    )
    out = tmp_path / "results"
    assert main(["run", config, "--out", str(out), "--dry-run", "--methods", "lsh"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[-1] == "2 cells" and all(" pending " in line for line in listing[1:-1])
    assert not out.exists()
    assert main(["run", config, "--out", str(out), "--quiet"]) == 1  # one cell failed, the others ran
    captured = capsys.readouterr()
    assert captured.out == "" and "refuses 16 bits" in captured.err
    assert main(["run", config, "--out", str(out), "--quiet", "--bits", "8"]) == 0  # every selected cell done
    assert main(["run", config, "--out", str(out), "--dry-run", "--bits", "16"]) == 0
    states = [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert sorted(states) == ["done", "failed"]
    listings = []
    for bits in (["8,16"], ["8", "16"], ["8", "16,"]):  # list options take commas, spaces or both
        assert main(["run", config, "--out", str(out), "--dry-run", "--bits", *bits]) == 0
        listings.append(capsys.readouterr().out)
    assert listings[0] == listings[1] == listings[2] and listings[0].splitlines()[-1] == "4 cells"
    assert main(["run", config, "--out", str(out), "--dry-run", "--seeds", "0,1,2"]) == 0  # replaces the config's seeds
    assert capsys.readouterr().out.splitlines()[-1] == "12 cells"
    assert main(["rescore", str(out), "--topk", "5", "--quiet"]) == 0
    assert {r["spec"]["topk"] for r in store.load_records(out) if r["status"] == "done"} == {5}
    assert {json.loads(p.read_text())["metrics"]["topk"] for p in out.rglob("*.json") if "lsh" in str(p)} == {5}


def test_run_errors_are_one_line(tmp_path, capsys):
    config = write_config(tmp_path / "m.toml", '[[experiment]]\nname = "x"\nmethods = ["lhs"]\n')
    assert main(["run", config]) == 2
    assert "unknown method 'lhs'. Did you mean 'lsh'?" in capsys.readouterr().err


def test_summary_table_averages_seeds_and_shows_unfinished_cells():
    from hashbench.cli.run import summary_table

    def record(label, bits, seed, status, value=None):
        spec = {"label": label, "dataset": "mosaic", "n_bits": bits, "seed": seed, "topk": 1000, "protocol": "official"}
        return {"spec": spec, "status": status, "metrics": {"map": value} if status == "done" else None}

    text = summary_table(
        [
            record("itq", 16, 0, "done", 0.5),
            record("itq", 16, 1, "done", 0.6),
            record("itq", 32, 0, "timeout"),
            record("lsh", 16, 0, "failed"),
        ]
    )
    lines = text.splitlines()
    assert lines[0] == "MAP@1000 (official protocol)"
    itq = next(line for line in lines if line.startswith("itq")).split()
    assert itq[1:] == ["0.5500", "timeout"]
    assert next(line for line in lines if line.startswith("lsh")).split()[1] == "failed"


def test_the_peak_memory_line_names_the_cell_with_the_largest_peak():
    from hashbench.cli.run import peak_memory_line

    def record(label, bits, peak):
        spec = {"label": label, "dataset": "mosaic", "n_bits": bits}
        return {"spec": spec, "memory": {"peak_rss_mb": peak, "start_rss_mb": 800.0}}

    records = [record("itq", 16, 900.0), record("wsih", 32, 1490.9), {"spec": {}, "memory": None}]
    assert peak_memory_line(records) == (
        "largest peak resident memory of a cell: 1,491 MiB (1.56 GB), wsih on mosaic at 32 bits"
    )
    assert peak_memory_line([{"spec": {}, "status": "failed"}]) is None


def test_a_run_into_a_log_prints_one_line_per_finished_cell(tmp_path, capsys):
    toy = write_toy_dataset(tmp_path / "toy.npz")
    config = write_config(
        tmp_path / "m.toml",
        f"""
[defaults]
datasets = ["{toy}"]
bits = [8, 16]
[[experiment]]
name = "log"
methods = ["lsh", {{ method = "toy-projection", params = {{ fail_at_bits = 16 }} }}]
""",
    )
    assert main(["run", config, "--out", str(tmp_path / "results")]) == 1  # captured: not a terminal
    lines = capsys.readouterr().out.splitlines()
    done = [line for line in lines if line.startswith("done: ")]
    assert len(done) == 3 and len([line for line in lines if line.startswith("failed: ")]) == 1
    assert all(" MAP 0." in line and " fit " in line and "distinct_fraction=" in line for line in done)
    assert any(line.startswith("done: log/lsh on ") and " at 16 bits" in line for line in done)
