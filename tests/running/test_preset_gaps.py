import json

from hashbench.running import preset_gaps

GAPS = {
    "fingerprint": "abc",
    "bits": 32,
    "seed": 0,
    "protocol": "official",
    "topk": 1000,
    "methods": {
        "near": {"quick": 0.800, "paper": 0.805},
        "far": {"quick": 0.780, "paper": 0.827, "device": "CPU A (2 cores)"},
        "spread": {"quick": 0.81, "paper": 0.83, "seeds": [0, 1, 2], "per_seed": {"quick": [], "paper": []}},
        "long": {"quick": 0.75, "paper": None, "note": "hours"},
    },
}


def test_names_far_and_unmeasured_quick_presets_only():
    lines = preset_gaps.gap_notes(["near", "far", "long", "lsh", "spread"], {"abc"}, GAPS)
    assert len(lines) == 2
    assert "far 0.780 vs 0.827 (seed 0)" in lines[0] and "near" not in lines[0] and "at 32 bits" in lines[0]
    assert "spread 0.810 vs 0.830 (mean of seeds 0, 1, 2)" in lines[0]
    assert lines[1] == "paper preset not measured: long (hours)"
    assert "measured on CPU A (2 cores)" in lines[0]  # the CPU of the entries it names
    assert "measured on" not in preset_gaps.gap_notes(["spread"], {"abc"}, GAPS)[0]  # none recorded


def test_says_nothing_for_another_build_or_methods_not_run():
    assert preset_gaps.gap_notes(["far"], {"other build"}, GAPS) == []
    assert preset_gaps.gap_notes(["near"], {"abc"}, GAPS) == []
    assert preset_gaps.gap_notes(["far"], {"abc"}, {}) == []


def test_the_shipped_file_covers_every_method_with_a_quick_preset():
    import hashbench as hb

    shipped = preset_gaps.load_gaps()
    with_presets = {name for name, cls in hb.list_methods().items() if "quick" in getattr(cls, "presets", {})}
    assert with_presets <= set(shipped["methods"]), with_presets - set(shipped["methods"])
    assert all(entry["quick"] > 0 for entry in shipped["methods"].values())
    json.dumps(shipped)  # plain data


def test_table_captions_carry_the_notes(monkeypatch):
    import pandas as pd

    from hashbench.reporting import captions

    monkeypatch.setattr(preset_gaps, "load_gaps", lambda path=preset_gaps.PATH: GAPS)
    frame = pd.DataFrame(
        {
            "method": ["far", "near", "far"],
            "param_preset": ["quick", "quick", None],
            "dataset": ["mosaic"] * 3,
            "dataset_fingerprint": ["abc"] * 3,
        }
    )
    note = captions.preset_gap_note(frame)
    assert (
        note.startswith("Quick preset more than 0.01 MAP")
        and "far 0.780 vs 0.827 (seed 0)" in note
        and note.endswith(".")
    )
    assert captions.preset_gap_note(frame.assign(dataset_fingerprint="other")) == ""


def test_measure_keeps_each_seed_and_stores_their_mean(tmp_path, monkeypatch):
    import numpy as np

    from hashbench import load_dataset
    from hashbench.running import worker
    from hashbench.running.environment import device_name
    from tests.running.toy_methods import write_toy_dataset

    toy = load_dataset(write_toy_dataset(tmp_path / "toy.npz"))
    monkeypatch.setattr(worker, "load_cell_dataset", lambda cell: toy)
    path = tmp_path / "gaps.json"
    gaps = preset_gaps.measure(["greedyhash"], seeds=(0, 1, 2), path=path)
    entry = gaps["methods"]["greedyhash"]
    assert entry["seeds"] == [0, 1, 2] and len(set(entry["per_seed"]["quick"])) > 1
    assert entry["quick"] == round(np.mean(entry["per_seed"]["quick"]), 4)
    assert entry["paper"] == round(np.mean(entry["per_seed"]["paper"]), 4)
    assert gaps["fingerprint"] == toy.fingerprint and json.loads(path.read_text()) == gaps
    assert entry["device"] == device_name("cpu")


def test_measuring_one_preset_keeps_the_other_of_the_same_seeds_and_cpu(tmp_path, monkeypatch):
    from hashbench import load_dataset
    from hashbench.running import environment, worker
    from tests.running.toy_methods import write_toy_dataset

    toy = load_dataset(write_toy_dataset(tmp_path / "toy.npz"))
    monkeypatch.setattr(worker, "load_cell_dataset", lambda cell: toy)
    monkeypatch.setitem(preset_gaps.TOO_LONG, "greedyhash", "hours")
    path = tmp_path / "gaps.json"
    entry = preset_gaps.measure(["greedyhash"], path=path)["methods"]["greedyhash"]
    assert entry["paper"] is None and entry["note"] == "hours" and entry["quick"] > 0  # quick only
    entry = preset_gaps.measure(["greedyhash"], path=path, presets=["paper"])["methods"]["greedyhash"]
    assert entry["paper"] > 0 and entry["quick"] > 0 and entry["note"] == "hours"
    again = preset_gaps.measure(["greedyhash"], path=path)["methods"]["greedyhash"]
    assert again == entry  # the quick preset measured again, the paper preset's value kept
    monkeypatch.setattr(environment, "device_name", lambda device: "another CPU (2 cores)")
    other = preset_gaps.measure(["greedyhash"], path=path)["methods"]["greedyhash"]
    assert other["paper"] is None and other["device"] == "another CPU (2 cores)"


def test_a_gap_is_measured_on_the_fit_of_the_quick_runs_cell():
    from hashbench.running.config import load_config

    for seed in (0, 1):
        (quick,) = load_config("configs/quick.toml").with_seeds([seed]).cells(methods=["deepbit"], bits=[32])
        (measured,) = preset_gaps.gap_cells("deepbit", "quick", (seed,))
        assert measured.method_seed == quick.method_seed and measured.computation_id == quick.computation_id
