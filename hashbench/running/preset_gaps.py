"""How far each method's ``quick`` preset lands from its ``paper`` preset, measured once on mosaic.

A quick preset is a short schedule for smoke runs and first looks; it earns its name when its MAP
is close to the paper preset's. The mosaic build is the same on every machine (see
:mod:`hashbench.datasets.mosaic`), so the comparison is measured once and shipped in
``hashbench/data/mosaic_preset_gaps.json``: per method, MAP@1000 (official protocol) of both
presets at 32 bits, measured on the cells a run builds (:func:`gap_cells`: the run's seeds given
to the method, its two CPU threads), averaged over the entry's ``seeds`` (seed 0 where an entry
names none; ``per_seed`` keeps each seed's MAP) and on the CPU the entry names (``device``). So a
quick preset's "seed 0" here is the same fit as the seed-0 cell of ``hashbench run
configs/quick.toml`` at 32 bits on that kind of CPU; on a CPU whose matrix library takes other
kernels a trained method's floats, and so its MAP, can move (see the README's "the same numbers on
every machine"), which is why the notes name the CPU. A method whose MAP moves
between seeds by about the gap itself is measured over several seeds, so that one lucky or
unlucky seed does not decide. ``hashbench run`` names the methods whose
quick preset is further than ``GAP_LIMIT`` from the paper preset, and those whose paper preset
was not measured (too long to run here), under its summary table; the report's captions do the
same. ``python -m hashbench.running.preset_gaps METHOD ... [--seeds 0 1 2] [--presets quick paper]``
measures (again) and writes the file: both presets, but only the quick one of a method in
``TOO_LONG`` unless ``--presets`` names the paper preset. A preset not measured keeps the entry's
earlier value when the build, seeds and CPU are the same.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

GAP_LIMIT = 0.01
#: paper presets too long to measure on a CPU, with why
TOO_LONG = {"tbh": "100,000 steps of 400: an hour or more on two CPU cores"}
BITS = 32
THREADS = 2
PATH = Path(__file__).resolve().parent.parent / "data" / "mosaic_preset_gaps.json"


def load_gaps(path: Path = PATH) -> dict:
    """The shipped measurements ({} when the file is missing)."""
    return json.loads(path.read_text()) if path.exists() else {}


def gap_notes(methods, fingerprints, gaps: dict | None = None) -> list[str]:
    """Lines naming, among ``methods`` (labels run with their quick preset), those whose quick
    preset is further than ``GAP_LIMIT`` from the paper preset or whose paper preset is unmeasured;
    none unless mosaic with the measured build (``fingerprints``: the run's mosaic fingerprints)."""
    gaps = load_gaps() if gaps is None else gaps
    if not gaps or gaps["fingerprint"] not in fingerprints:
        return []
    named = sorted(set(methods) & set(gaps["methods"]))
    far, unmeasured = [], []
    for method in named:
        entry = gaps["methods"][method]
        if entry.get("paper") is None:
            unmeasured.append(f"{method} ({entry.get('note', 'not measured')})")
        elif abs(entry["quick"] - entry["paper"]) > GAP_LIMIT:
            far.append(f"{method} {entry['quick']:.3f} vs {entry['paper']:.3f} ({seeds_text(entry, gaps)})")
    devices = sorted({gaps["methods"][method].get("device") for method in named} - {None})
    where = f"on mosaic at {gaps['bits']} bits" + (f", measured on {' and '.join(devices)}" if devices else "")
    lines = []
    if far:
        lines.append(f"quick preset more than {GAP_LIMIT} MAP from the paper preset ({where}): " + ", ".join(far))
    if unmeasured:
        lines.append("paper preset not measured: " + ", ".join(unmeasured))
    return lines


def seeds_text(entry: dict, gaps: dict) -> str:
    seeds = entry.get("seeds", [gaps.get("seed", 0)])
    return f"seed {seeds[0]}" if len(seeds) == 1 else "mean of seeds " + ", ".join(map(str, seeds))


def gap_cells(name: str, preset: str, seeds) -> list:
    """The cells of ``name`` at ``preset`` that a matrix like ``configs/quick.toml`` runs on mosaic
    at ``BITS`` bits (``common_params = {preset = ...}``): their ``method_seed`` is the run's, so a
    gap's "seed 0" is the fit of the run's seed-0 cell."""
    from hashbench.running.config import parse_config

    defaults = {"datasets": ["mosaic"], "bits": [BITS], "seeds": list(seeds), "common_params": {"preset": preset}}
    return parse_config({"defaults": defaults, "experiment": [{"name": f"{preset}-preset", "methods": [name]}]}).cells()


def measure(names: list[str], seeds: tuple[int, ...] = (0,), path: Path = PATH, presets=None) -> dict:
    """Fit each method at ``presets`` (default: both, only "quick" for ``TOO_LONG`` methods) on
    mosaic for each seed, as ``hashbench run`` fits its cells, and store the mean MAPs (other
    methods' entries kept, and this method's other preset where :func:`earlier_entry` allows)."""
    from hashbench.running.environment import device_name
    from hashbench.running.worker import cpu_threads, load_cell_dataset, measure_cell

    for name in names:
        measured, per_seed = {}, {}
        for preset in presets or (("quick",) if name in TOO_LONG else ("quick", "paper")):
            per_seed[preset] = []
            for cell in gap_cells(name, preset, seeds):
                dataset = load_cell_dataset(cell)
                with cpu_threads(THREADS):
                    outcome, _, _ = measure_cell(cell, dataset)
                per_seed[preset].append(round(outcome["metrics"]["map"], 4))
                print(
                    f"{name} {preset} seed {cell.seed}: MAP {per_seed[preset][-1]}, fit {outcome['timings']['fit']:.1f} s",
                    flush=True,
                )
            measured[preset] = round(sum(per_seed[preset]) / len(seeds), 4)
        gaps = load_gaps(path)  # read again: other measurements may have finished meanwhile
        if gaps.get("fingerprint") != dataset.fingerprint:
            gaps = {
                "fingerprint": dataset.fingerprint,
                "bits": BITS,
                "seed": 0,
                "threads": THREADS,
                "protocol": "official",
                "topk": 1000,
                "methods": {},
            }
        device = device_name("cpu")
        entry = earlier_entry(gaps["methods"].get(name, {}), seeds, device) | measured | {"device": device}
        if name in TOO_LONG:
            entry = {"paper": None} | entry | {"note": TOO_LONG[name]}
        else:
            entry.pop("note", None)
        if len(seeds) > 1:
            entry |= {"seeds": list(seeds), "per_seed": entry.get("per_seed", {}) | per_seed}
        gaps["methods"][name] = entry
        path.write_text(json.dumps(gaps, indent=1, sort_keys=True) + "\n")
    return load_gaps(path)


def earlier_entry(entry: dict, seeds, device: str) -> dict:
    """What a new measurement keeps of a method's stored entry (of the same build): all of it when
    it was measured over the same seeds on the same CPU, so that measuring one preset leaves the
    other's value; nothing otherwise."""
    same = entry.get("seeds", [0]) == list(seeds) and entry.get("device") == device
    return entry if same else {}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Measure quick against paper presets on mosaic.")
    parser.add_argument("methods", nargs="+")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--presets", nargs="+", choices=("quick", "paper"), default=None)
    arguments = parser.parse_args()
    from hashbench.methods._torch import flush_subnormals_in_process

    flush_subnormals_in_process()  # as the command line does: faster, the same codes
    measure(arguments.methods, tuple(arguments.seeds), presets=arguments.presets)
