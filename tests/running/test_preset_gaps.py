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
        "far": {"quick": 0.780, "paper": 0.827},
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

    import hashbench.datasets
    import hashbench.registry
    from hashbench import load_dataset
    from tests.running.toy_methods import write_toy_dataset

    toy = load_dataset(write_toy_dataset(tmp_path / "toy.npz"))
    monkeypatch.setattr(hashbench.datasets, "load_dataset", lambda name: toy)
    create = hashbench.registry.create_method
    # LSH stands in for a method with presets: the preset is dropped, the seed kept
    monkeypatch.setattr(hashbench.registry, "create_method", lambda name, preset, **p: create("lsh", **p))
    path = tmp_path / "gaps.json"
    gaps = preset_gaps.measure(["m"], seeds=(0, 1, 2), path=path)
    entry = gaps["methods"]["m"]
    assert entry["seeds"] == [0, 1, 2] and len(set(entry["per_seed"]["quick"])) > 1
    assert entry["quick"] == round(np.mean(entry["per_seed"]["quick"]), 4)
    assert entry["per_seed"]["quick"] == entry["per_seed"]["paper"]
    assert gaps["fingerprint"] == toy.fingerprint and json.loads(path.read_text()) == gaps
