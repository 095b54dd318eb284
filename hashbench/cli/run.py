"""Sub-commands of the run side: ``run``, ``tune`` and ``rescore``."""

from __future__ import annotations

import sys
from pathlib import Path

from hashbench.cli.options import add_data_dir, add_executor, add_filters, add_run_switches
from hashbench.metrics import PROTOCOLS
from hashbench.running.cell import canonical_json


def add_commands(subparsers) -> None:
    """Add the runner's sub-commands to the ``hashbench`` parser."""
    run = subparsers.add_parser(
        "run",
        help="run a matrix of cells (methods x datasets x bits x seeds) from a TOML config",
        description="Run the cells of a matrix file. Finished cells are skipped (resume), unless --force. "
        "Filters narrow the matrix.",
    )
    run.add_argument("config", type=Path, help="matrix file, e.g. configs/quick.toml")
    add_filters(run, "experiments", "methods", "datasets", "bits", "seeds")
    run.add_argument("--dry-run", action="store_true", help="list the cells and their state; run nothing")
    run.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: results/)")
    add_run_switches(run)
    add_executor(run)
    add_data_dir(run)
    run.set_defaults(func=cmd_run)

    tune = subparsers.add_parser(
        "tune",
        help="choose hyper-parameters from a grid by MAP on validation queries carved from the training split",
        description="Run the grid of a tuning matrix (e.g. configs/tuning.toml) on validation views of its "
        "datasets (queries held out from the training split; the test queries are never used), pick "
        "each method's best grid point per dataset, and write a matrix that `hashbench run` runs with them.",
    )
    tune.add_argument("config", type=Path, help="tuning matrix, e.g. configs/tuning.toml")
    add_filters(
        tune,
        "methods",
        "datasets",
        "bits",
        bits="tune at these code lengths only (the tuned matrix keeps the config's)",
    )
    tune.add_argument(
        "--fraction", type=float, default=0.1, help="share of the training split held out as queries (0.1)"
    )
    tune.add_argument(
        "--out", type=Path, default=Path("results/tuning"), help="validation records (default: results/tuning/)"
    )
    tune.add_argument("--write", type=Path, help="the tuned matrix (default: OUT/tuned.toml)")
    add_run_switches(tune)
    add_executor(tune)
    add_data_dir(tune)
    tune.set_defaults(func=cmd_tune)

    rescore = subparsers.add_parser(
        "rescore",
        help="recompute the metrics of saved results from their codes (no retraining)",
    )
    rescore.add_argument("results_dir", type=Path)
    rescore.add_argument("--protocol", choices=PROTOCOLS, help="score with this protocol instead")
    rescore.add_argument("--topk", type=int, help="score MAP@k with this k instead")
    rescore.add_argument("--quiet", action="store_true")
    rescore.set_defaults(func=cmd_rescore)


def cmd_run(args) -> int | None:
    from hashbench.running.config import load_config
    from hashbench.running.runner import run_config
    from hashbench.running.store import mixed_builds

    matrix = load_config(args.config)
    if args.seeds is not None:
        matrix = matrix.with_seeds(args.seeds)
    filters = dict(experiments=args.experiments, methods=args.methods, datasets=args.datasets, bits=args.bits)
    if args.dry_run:
        print_cells(matrix.cells(**filters), args.out)
        return
    records = run_config(
        matrix, args.out, executor=args.executor, force=args.force, quiet=args.quiet, data_dir=args.data_dir, **filters
    )
    done = sum(r["status"] == "done" for r in records)
    for warning in mixed_builds(records):
        print(warning, file=sys.stderr)
    if not args.quiet:
        if records:
            print(summary_table(records))
            for line in preset_gap_lines(records):
                print(line)
            if peak := peak_memory_line(records):
                print(peak)
        print(f"{done} of {len(records)} cells done; records in {args.out}/ (tables: hashbench report {args.out})")
    return 0 if done == len(records) else 1  # a script or CI job can tell that a cell did not finish


def preset_gap_lines(records) -> list[str]:
    """The shipped quick-versus-paper measurements of the methods this run ran at their quick preset."""
    from hashbench.running.preset_gaps import gap_notes

    quick = [r["spec"]["method"] for r in records if r["spec"]["params"].get("preset") == "quick"]
    fingerprints = {r.get("dataset_fingerprint") for r in records if r["spec"]["dataset"] == "mosaic"}
    return gap_notes(quick, fingerprints)


def peak_memory_line(records) -> str | None:
    """The largest resident memory a cell reached (its ``memory.peak_rss_mb``), or None when no
    record has one. Each cell starts the kernel's high-water mark anew, so the maximum resident
    memory the OS reports for the whole process when it ends (``/usr/bin/time``, ``ru_maxrss``)
    covers only the last cell: this line is the run's peak."""
    measured = [r for r in records if (r.get("memory") or {}).get("peak_rss_mb") is not None]
    if not measured:
        return None
    top = max(measured, key=lambda r: r["memory"]["peak_rss_mb"])
    spec, mib = top["spec"], top["memory"]["peak_rss_mb"]
    return (
        f"largest peak resident memory of a cell: {mib:,.0f} MiB ({mib * 2**20 / 1e9:.2f} GB), "
        f"{spec['label']} on {spec['dataset']} at {spec['n_bits']} bits"
    )


def summary_table(records) -> str:
    """MAP of each method (rows) per dataset and code length (columns), mean over seeds;
    a cell with no finished seed shows its status instead of a number."""
    import pandas as pd

    rows = [
        {
            "method": r["spec"]["label"],
            "dataset": r["spec"]["dataset"],
            "bits": r["spec"]["n_bits"],
            "map": r["metrics"]["map"] if r["status"] == "done" else None,
            "status": r["status"],
        }
        for r in records
    ]
    frame = pd.DataFrame(rows)

    def cell(group) -> str:
        maps = group["map"].dropna()
        return f"{maps.mean():.4f}" if len(maps) else "/".join(sorted(set(group["status"])))

    table = (
        frame.groupby(["method", "dataset", "bits"], sort=True)
        .apply(cell, include_groups=False)
        .unstack(["dataset", "bits"])
    )
    spec = records[0]["spec"]
    return f"MAP@{spec['topk']} ({spec['protocol']} protocol)\n{table.fillna('').to_string()}"


def print_cells(cells, out_dir) -> None:
    from hashbench.running import store

    rows = []
    for cell in cells:
        record = store.read_record(store.record_path(out_dir, cell))
        state = record["status"] if record else "pending"
        params = canonical_json(cell.params) if cell.params else ""
        rows.append(
            (cell.id, state, cell.experiment, cell.label, cell.dataset, str(cell.n_bits), str(cell.seed), params)
        )
    header = ("id", "state", "experiment", "label", "dataset", "bits", "seed", "params")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    print(f"{len(rows)} cells")


def cmd_tune(args) -> None:
    from hashbench.running.config import load_config
    from hashbench.running.tuning import tune, write_tuned

    matrix = load_config(args.config)
    choices = tune(
        matrix, args.out, fraction=args.fraction, methods=args.methods, datasets=args.datasets, bits=args.bits,
        executor=args.executor, force=args.force, quiet=args.quiet, data_dir=args.data_dir,
    )  # fmt: skip
    path = write_tuned(matrix, choices, args.write or args.out / "tuned.toml", source=str(args.config))
    if not args.quiet:
        for choice in choices:
            print(f"{choice.label} on {choice.dataset}: {canonical_json(choice.params)}")
        print(f"tuned matrix in {path} (run it: hashbench run {path})")


def cmd_rescore(args) -> None:
    from hashbench.running.rescore import rescore

    records = rescore(args.results_dir, protocol=args.protocol, topk=args.topk, quiet=args.quiet)
    if not args.quiet:
        print(f"rescored {len(records)} records in {args.results_dir}/")
