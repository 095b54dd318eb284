"""CLI commands that turn results into the paper's tables and figures: report, plot, reproduce.

- ``hashbench report RESULTS_DIR``: the merged results table (``results.csv``, plus
  ``results.parquet`` when pyarrow is installed) and Tables 3, 4, 5 as Markdown and LaTeX.
- ``hashbench plot RESULTS_DIR``: Figures 2, 3, 4 as PNG, PDF and the CSV each one plots.
- ``hashbench reproduce table3|...|figure4``: runs that experiment of a matrix file (default
  ``configs/paper.toml``), then writes its table or figure from exactly the cells it ran.

A table or figure the results hold nothing for is skipped with a one-line note.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd

from hashbench._validation import check_choice
from hashbench.benchmark import figures, tables
from hashbench.errors import InvalidInputError

TABLE_SKIP_REASONS = {
    "table3": "no cells outside the ablation and sweep experiments",
    "table4": "no 32-bit cells outside the ablation and sweep experiments",
    "table5": "no LAGNH variant cells (labels such as no-aux, recons-Sa)",
}
PROTOCOLS = ("official", "deephash", "tie_aware")
TARGETS = tuple(tables.TABLES) + figures.FIGURES
DEFAULT_CONFIG = Path("configs/paper.toml")
DEFAULT_REPRODUCE_OUT = Path("results/paper")


def add_commands(subparsers) -> None:
    """Add the report sub-commands to the ``hashbench`` parser."""
    report = subparsers.add_parser(
        "report",
        help="merge results into one table and write Tables 3-5 (Markdown, LaTeX) beside the paper's",
        description="Merge every record under RESULTS_DIR into results.csv (and results.parquet when "
        "pyarrow is installed) and write Tables 3, 4 and 5 with the paper's numbers beside ours. "
        "Best per column in bold, second best underlined (LaTeX) or in italics (Markdown).",
    )
    report.add_argument("results_dir", type=Path, metavar="RESULTS_DIR")
    report.add_argument("--out", type=Path, help="output folder (default: RESULTS_DIR/report)")
    report.add_argument("--format", default="md,tex", help="comma-separated table formats: md, tex (default both)")
    add_protocol_argument(report)
    report.set_defaults(func=cmd_report)

    plot = subparsers.add_parser(
        "plot",
        help="draw Figures 2-4 (PNG, PDF and the CSV each plots)",
        description="Draw Figure 2 (P@k curves), Figure 3 (MAP vs epochs at 32 bits) and Figure 4 "
        "(MAP vs lambda1-3 at 32 bits) from the records under RESULTS_DIR.",
    )
    plot.add_argument("results_dir", type=Path, metavar="RESULTS_DIR")
    plot.add_argument("--out", type=Path, help="output folder (default: RESULTS_DIR/figures)")
    plot.set_defaults(func=cmd_plot)

    reproduce = subparsers.add_parser(
        "reproduce",
        help="run one table or figure of the paper's matrix and write it",
        description="Run the experiment named TARGET of the matrix file (finished cells are reused "
        "unless --force), then write its table (OUT/report) or figure (OUT/figures) from those cells.",
    )
    reproduce.add_argument("target", choices=TARGETS, metavar="TARGET", help=", ".join(TARGETS))
    reproduce.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                           help=f"matrix file (default {DEFAULT_CONFIG})")
    reproduce.add_argument("--out", type=Path, default=DEFAULT_REPRODUCE_OUT,
                           help=f"results folder (default {DEFAULT_REPRODUCE_OUT})")
    reproduce.add_argument("--datasets", nargs="+", help="only these datasets")
    reproduce.add_argument("--bits", nargs="+", type=int, help="only these code lengths")
    reproduce.add_argument("--executor", help="override the config's executor: local, processes, ray, slurm")
    reproduce.add_argument("--force", action="store_true", help="recompute finished cells")
    reproduce.add_argument("--quiet", action="store_true", help="no progress bars")
    reproduce.add_argument("--format", default="md,tex", help="table formats (default md,tex)")
    add_protocol_argument(reproduce)
    reproduce.set_defaults(func=cmd_reproduce)


def add_protocol_argument(parser) -> None:
    parser.add_argument("--protocol", default="official",
                        help="MAP protocol of the tables: official (default, the paper's), deephash, tie_aware")


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    if not formats:
        raise InvalidInputError("--format needs at least one of: md, tex")
    return [check_choice(f, tables.WRITERS, "--format") for f in formats]


# ----------------------------------------------------------------------------- writing
def write_results_table(results: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The merged results as CSV, and as Parquet when pyarrow is installed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.csv"]
    results.to_csv(paths[0], index=False)
    if importlib.util.find_spec("pyarrow") is not None:
        paths.append(out_dir / "results.parquet")
        # hyper-parameter columns may mix types across methods; Parquet needs one type per column
        results.astype({c: str for c in results.columns if c.startswith("param_")}).to_parquet(paths[1], index=False)
    return paths


def write_tables(results: pd.DataFrame, out_dir: Path, names, formats, protocol: str) -> list[Path]:
    written = []
    for name in names:
        table = tables.build_table(name, results, tables.TableOptions(protocol=protocol))
        if table is None:
            print(f"{name}: skipped ({TABLE_SKIP_REASONS[name]})")
            continue
        written += tables.write_table(table, out_dir, formats)
    return written


def write_figures(results: pd.DataFrame, records: list[dict], out_dir: Path, names) -> list[Path]:
    written = []
    for name in names:
        outcome = figures.write_figure(name, results, records, out_dir)
        if isinstance(outcome, str):
            print(f"{name}: skipped ({outcome})")
        else:
            written += outcome
    return written


def load(results_dir: Path) -> tuple[pd.DataFrame, list[dict]]:
    from hashbench.benchmark.store import load_records, load_results

    results = load_results(results_dir)
    if results.empty:
        raise InvalidInputError(f"results folder {str(results_dir)!r} holds no records; run a matrix first")
    return results, load_records(results_dir)


def print_written(paths: list[Path]) -> None:
    for path in paths:
        print(f"wrote {path}")


# ----------------------------------------------------------------------------- commands
def cmd_report(args) -> None:
    formats = parse_formats(args.format)
    protocol = check_choice(args.protocol, PROTOCOLS, "--protocol")
    results, _ = load(args.results_dir)
    out_dir = args.out or args.results_dir / "report"
    written = write_results_table(results, out_dir)
    written += write_tables(results, out_dir, tables.TABLES, formats, protocol)
    print_written(written)


def cmd_plot(args) -> None:
    results, records = load(args.results_dir)
    print_written(write_figures(results, records, args.out or args.results_dir / "figures", figures.FIGURES))


def cmd_reproduce(args) -> None:
    from hashbench.benchmark.config import load_config
    from hashbench.benchmark.runner import run_cells

    formats = parse_formats(args.format)
    protocol = check_choice(args.protocol, PROTOCOLS, "--protocol")
    matrix = load_config(args.config)
    settings = matrix.experiment(args.target).settings
    cells = matrix.cells(experiments=[args.target], datasets=args.datasets, bits=args.bits)
    run_cells(
        cells, args.out, executor=args.executor or settings["executor"], force=args.force, quiet=args.quiet,
        workers=settings["workers"], **settings["executor_options"],
    )
    results, records = load(args.out)
    results, records = only_cells(results, records, {cell.id for cell in cells})
    if args.target in tables.TABLES:
        written = write_tables(results, args.out / "report", [args.target], formats, protocol)
        markdown = [p for p in written if p.suffix == ".md"]
        if markdown and not args.quiet:
            sys.stdout.write(markdown[0].read_text(encoding="utf-8"))
    else:
        written = write_figures(results, records, args.out / "figures", [args.target])
    print_written(written)


def only_cells(results: pd.DataFrame, records: list[dict], cell_ids: set[str]) -> tuple[pd.DataFrame, list[dict]]:
    """The rows and records of the given cells (a record file is named after its cell id)."""
    keep = results["record"].map(lambda path: Path(path).stem in cell_ids)
    return results[keep], [r for r in records if Path(r["path"]).stem in cell_ids]
