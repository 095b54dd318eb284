"""CLI commands that turn results into the paper's tables and figures: report, plot, reproduce.

- ``hashbench report RESULTS_DIR``: the merged results table (``results.csv``, plus
  ``results.parquet`` when pyarrow is installed) and Tables 3, 4, 5 as Markdown and LaTeX, with
  the reference rows (``--no-references`` leaves them out), code-health columns (``--health``)
  and tie ranges (``--ranges``); ``--html`` adds every figure and the results page
  ``index.html`` (see ``html_report``); ``--method-pages DIR`` writes one Markdown page per method
  instead (see ``method_pages``), ``--config FILE`` naming the matrix the records were run from.
- ``hashbench plot RESULTS_DIR``: Figures 2, 3, 4 and the cost-accuracy figure as PNG, PDF and the
  CSV each one plots.
- ``hashbench reproduce TARGET``: runs the experiments of a matrix file (default
  ``configs/paper.toml``) whose role feeds that table or figure (``TARGET_ROLES``), then writes it
  from exactly the cells they ran. ``hashbench reproduce protocols`` runs the cells of
  ``configs/standard.toml`` for which the methods' papers report a number on a standard protocol
  (``hashbench.reporting.published``) and writes ours beside theirs (``OUT/report/protocols.md``).

A table or figure the results hold nothing for is skipped with a one-line note.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd

from hashbench._validation import check_choice
from hashbench.cli.options import add_data_dir, add_executor, add_filters, add_run_switches, list_option
from hashbench.errors import InvalidInputError
from hashbench.metrics import PROTOCOLS
from hashbench.reporting import figures, html_report, table_model, table_writers, tables
from hashbench.reporting.references import References

TABLE_SKIP_REASONS = {
    "table3": "no cells of experiments with role main",
    "table4": "no 32-bit cells of experiments with role main or timing",
    "table5": "no LAGNH cells of experiments with role ablation",
}
#: The experiment roles whose cells each table and figure is made of.
TARGET_ROLES = {
    "table3": tables.COMPARISON_ROLES, "table4": ("timing",), "table5": (tables.ABLATION_ROLE,),
    "figure2": tables.COMPARISON_ROLES, "figure3": ("epochs",), "figure4": ("sensitivity",),
    "cost_accuracy": tables.COMPARISON_ROLES,
}  # fmt: skip
PROTOCOLS_TARGET = "protocols"
TARGETS = (*tables.TABLES, *figures.FIGURES, PROTOCOLS_TARGET)
DEFAULT_CONFIG = Path("configs/paper.toml")
PROTOCOLS_CONFIG = Path("configs/standard.toml")
DEFAULT_REPRODUCE_OUT = Path("results/paper")


def add_commands(subparsers) -> None:
    """Add the report sub-commands to the ``hashbench`` parser."""
    report = subparsers.add_parser(
        "report",
        help="merge results into one table and write Tables 3-5 (Markdown, LaTeX) beside the paper's",
        description="Merge every record under RESULTS_DIR into results.csv (and results.parquet when "
        "pyarrow is installed) and write Tables 3, 4 and 5 with the paper's numbers beside ours, and "
        "the random-codes and raw-features reference rows (computed from the datasets, cached in "
        "RESULTS_DIR/reference). Best per column in bold, second best underlined (LaTeX) or in italics "
        "(Markdown), only where a significance test says so; ties read ≈.",
    )
    report.add_argument("results_dir", type=Path, metavar="RESULTS_DIR")
    report.add_argument("--out", type=Path, help="output folder (default: RESULTS_DIR/report)")
    report.add_argument("--format", default="md,tex", help="comma-separated table formats: md, tex (default both)")
    report.add_argument(
        "--health",
        action="store_true",
        help="add code-health columns (constant bits, balance, distinct codes, bit correlation) beside each MAP column",
    )
    report.add_argument(
        "--ranges", action="store_true", help="print each MAP with its tie range [pessimistic, optimistic]"
    )
    report.add_argument("--no-references", action="store_true", help="leave out the random-codes and raw-features rows")
    report.add_argument(
        "--html",
        action="store_true",
        help="also draw every figure and write the results page OUT/index.html (one self-contained file)",
    )
    report.add_argument(
        "--method-pages",
        type=Path,
        metavar="DIR",
        help="instead of the tables, write one Markdown page per registered method (DIR/<name>.md: citation, "
        "presets, and its measurements beside LSH and ITQ) and DIR/README.md linking them",
    )
    report.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="with --method-pages: the matrix file the records were run from, named on the pages",
    )
    add_highlight_argument(report)
    add_protocol_argument(report)
    report.set_defaults(func=cmd_report)

    plot = subparsers.add_parser(
        "plot",
        help="draw Figures 2-4 (PNG, PDF and the CSV each plots)",
        description="Draw Figure 2 (P@k curves), Figure 3 (MAP vs epochs at 32 bits), Figure 4 "
        "(MAP vs lambda1-3 at 32 bits) and the cost-accuracy figure (MAP vs training seconds, Pareto "
        "front) from the records under RESULTS_DIR.",
    )
    plot.add_argument("results_dir", type=Path, metavar="RESULTS_DIR")
    plot.add_argument("--out", type=Path, help="output folder (default: RESULTS_DIR/figures)")
    add_highlight_argument(plot)
    add_protocol_argument(plot)
    plot.set_defaults(func=cmd_plot)

    reproduce = subparsers.add_parser(
        "reproduce",
        help="run one table or figure of the paper's matrix and write it",
        description="Run the experiments of the matrix file whose role feeds TARGET (table3, figure2 "
        "and cost_accuracy: main; table4: timing; table5: ablation; figure3: epochs; figure4: "
        "sensitivity; finished cells are reused unless --force), then write its table (OUT/report) or "
        "figure (OUT/figures) from those cells. 'protocols' runs the cells of configs/standard.toml that "
        "the methods' papers report a number for and writes ours beside theirs (OUT/report/protocols.md).",
    )
    reproduce.add_argument("target", choices=TARGETS, metavar="TARGET", help=", ".join(TARGETS))
    reproduce.add_argument(
        "--config", type=Path, help=f"matrix file (default {DEFAULT_CONFIG}; {PROTOCOLS_CONFIG} for protocols)"
    )
    reproduce.add_argument(
        "--out", type=Path, default=DEFAULT_REPRODUCE_OUT, help=f"results folder (default {DEFAULT_REPRODUCE_OUT})"
    )
    add_filters(reproduce, "datasets", "bits")
    add_executor(reproduce)
    add_run_switches(reproduce)
    add_data_dir(reproduce)
    reproduce.add_argument("--format", default="md,tex", help="table formats (default md,tex)")
    add_protocol_argument(reproduce)
    reproduce.set_defaults(func=cmd_reproduce)


def add_protocol_argument(parser) -> None:
    parser.add_argument(
        "--protocol",
        default="official",
        help="MAP protocol of the tables: official (default, the paper's), deephash, tie_aware",
    )


def add_highlight_argument(parser) -> None:
    parser.add_argument(
        "--highlight",
        nargs="+",
        action=list_option(),
        metavar="NAME",
        help="methods (or line names) to draw thicker and on top (default: lagnh, the paper's method)",
    )


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    if not formats:
        raise InvalidInputError("--format needs at least one of: md, tex")
    return [check_choice(f, table_writers.WRITERS, "--format") for f in formats]


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


def build_tables(results: pd.DataFrame, names, options: table_model.TableOptions) -> list[table_model.Table]:
    built = []
    for name in names:
        table = tables.build_table(name, results, options)
        if table is None:
            print(f"{name}: skipped ({TABLE_SKIP_REASONS[name]})")
        else:
            built.append(table)
    return built


def write_figures(
    results: pd.DataFrame, records: list[dict], out_dir: Path, names, *, highlight=None, protocol: str = "official"
) -> list[Path]:
    written = []
    for name in names:
        outcome = figures.write_figure(name, results, records, out_dir, highlight=highlight, protocol=protocol)
        if isinstance(outcome, str):
            print(f"{name}: skipped ({outcome})")
        else:
            written += outcome
    return written


def figure_files(paths: list[Path]) -> list[html_report.FigureFile]:
    """The figures among written paths, for the results page."""
    return [html_report.FigureFile(p.stem, figures.TITLES[p.stem], p, p.with_suffix(".csv"))
            for p in paths if p.suffix == ".png"]  # fmt: skip


def load(results_dir: Path) -> tuple[pd.DataFrame, list[dict]]:
    from hashbench.running.store import load_records, load_results, mixed_builds

    results = load_results(results_dir)
    if results.empty:
        raise InvalidInputError(f"results folder {str(results_dir)!r} holds no records; run a matrix first")
    records = load_records(results_dir)
    for warning in mixed_builds(records):
        print(warning, file=sys.stderr)
    return results, records


def print_written(paths: list[Path]) -> None:
    for path in paths:
        print(f"wrote {path}")


# ----------------------------------------------------------------------------- commands
def cmd_report(args) -> None:
    formats = parse_formats(args.format)
    protocol = check_choice(args.protocol, PROTOCOLS, "--protocol")
    results, records = load(args.results_dir)
    if args.method_pages is not None:
        return print_written(write_method_pages(results, records, args, protocol))
    out_dir = args.out or args.results_dir / "report"
    references = None if args.no_references else References(args.results_dir, records)
    options = table_model.TableOptions(protocol=protocol, health=args.health, ranges=args.ranges, references=references)
    written = write_results_table(results, out_dir)
    built = build_tables(results, tables.TABLES, options)
    for table in built:
        written += table_writers.write_table(table, out_dir, formats)
    if args.html:
        drawn = write_figures(results, records, out_dir / "figures", figures.FIGURES, highlight=args.highlight,
                              protocol=protocol)  # fmt: skip
        written += drawn
        title = f"hashbench results: {args.results_dir.resolve().name}"
        written.append(
            html_report.write_page(out_dir / "index.html", title, built, figure_files(drawn), records, protocol)
        )
    print_written(written)


def write_method_pages(results: pd.DataFrame, records: list[dict], args, protocol: str) -> list[Path]:
    """``report --method-pages DIR``: the method pages, headed by the command that wrote them."""
    from hashbench.reporting.method_pages import write_method_pages as write_pages

    if args.config is not None and not args.config.is_file():
        raise InvalidInputError(f"matrix file {str(args.config)!r} does not exist")
    command = f"hashbench report {args.results_dir.as_posix()} --method-pages {args.method_pages.as_posix()}"
    command += f" --config {args.config.as_posix()}" if args.config else ""
    command += f" --protocol {protocol}" if protocol != "official" else ""
    config = args.config.as_posix() if args.config else None
    run_command = f"hashbench run {config} --out {args.results_dir.as_posix()}" if config else None
    return write_pages(results, records, args.method_pages, command=command, config=config, run_command=run_command,
                       protocol=protocol)  # fmt: skip


def cmd_plot(args) -> None:
    protocol = check_choice(args.protocol, PROTOCOLS, "--protocol")
    results, records = load(args.results_dir)
    out_dir = args.out or args.results_dir / "figures"
    print_written(
        write_figures(results, records, out_dir, figures.FIGURES, highlight=args.highlight, protocol=protocol)
    )


def cmd_reproduce(args) -> None:
    from hashbench.running.config import load_config
    from hashbench.running.runner import run_config

    if args.target == PROTOCOLS_TARGET:
        return reproduce_protocols(args)
    formats = parse_formats(args.format)
    protocol = check_choice(args.protocol, PROTOCOLS, "--protocol")
    args.config = args.config or DEFAULT_CONFIG
    matrix = load_config(args.config)
    roles = TARGET_ROLES[args.target]
    experiments = [e.name for e in matrix.experiments if e.role in roles]
    if not experiments:
        raise InvalidInputError(
            f"{args.config} has no experiment with role {' or '.join(roles)}, which {args.target} needs"
        )
    cells = matrix.cells(experiments=experiments, datasets=args.datasets, bits=args.bits)
    run_config(matrix, args.out, experiments=experiments, datasets=args.datasets, bits=args.bits,
               executor=args.executor, force=args.force, quiet=args.quiet, data_dir=args.data_dir)  # fmt: skip
    results, records = load(args.out)
    results, records = only_cells(results, records, {cell.id for cell in cells})
    if args.target in tables.TABLES:
        options = table_model.TableOptions(protocol=protocol, references=References(args.out, records))
        written = [path for table in build_tables(results, [args.target], options)
                   for path in table_writers.write_table(table, args.out / "report", formats)]  # fmt: skip
        markdown = [p for p in written if p.suffix == ".md"]
        if markdown and not args.quiet:
            sys.stdout.write(markdown[0].read_text(encoding="utf-8"))
    else:
        written = write_figures(results, records, args.out / "figures", [args.target], protocol=protocol)
    print_written(written)


def reproduce_protocols(args) -> None:
    from hashbench.reporting import published
    from hashbench.running.config import load_config
    from hashbench.running.runner import run_config

    config = args.config or PROTOCOLS_CONFIG
    matrix = load_config(config)
    numbers = published.published_numbers()
    cells = published.wanted_cells(matrix.cells(datasets=args.datasets, bits=args.bits), numbers)
    if not cells:
        raise InvalidInputError(f"{config} has no cell (method, protocol, bits, k) that a published number is for")
    for cell in cells:  # one cell at a time: the filters of a run select a product of axes
        run_config(
            matrix,
            args.out,
            experiments=[cell.experiment],
            methods=[cell.label],
            datasets=[cell.dataset],
            bits=[cell.n_bits],
            seeds=[cell.seed],
            executor=args.executor,
            force=args.force,
            quiet=args.quiet,
            data_dir=args.data_dir,
        )
    results, _ = load(args.out)
    results, _ = only_cells(results, [], {cell.id for cell in cells})
    text = published.comparison_markdown(published.comparison_table(results, numbers))
    path = args.out / "report" / "protocols.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if not args.quiet:
        sys.stdout.write(text)
    print_written([path])


def only_cells(results: pd.DataFrame, records: list[dict], cell_ids: set[str]) -> tuple[pd.DataFrame, list[dict]]:
    """The rows and records of the given cells (a record file is named after its cell id)."""
    keep = results["record"].map(lambda path: Path(path).stem in cell_ids)
    return results[keep], [r for r in records if Path(r["path"]).stem in cell_ids]
