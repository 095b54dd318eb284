"""Tables written as Markdown and LaTeX: best in bold, second best in italics (Markdown) or
underlined (LaTeX), a legend of the tests behind the marks, and the table's footnotes."""

from __future__ import annotations

from pathlib import Path

from hashbench.reporting.table_model import DEGENERATE_MARK, MISSING, TIE_MARK, Table, format_entry, header_title

TEST_LEGENDS = {
    "ap": "our MAP columns only where Wilcoxon's signed-rank test over per-query AP (seeds pooled) finds the "
          "difference significant at 0.05",
    "seconds": "our seconds only where Welch's t-test over seeds (on log seconds) finds the difference significant "
               "at 0.05",
}  # fmt: skip


def legend(table: Table, best: str, second: str) -> str:
    """The sentence under a table on what its marks mean."""
    tests = [TEST_LEGENDS[t] for t in sorted(table.tests) if t in TEST_LEGENDS]
    text = f"Best per column {best}, second best {second}"
    if tests:
        text += ": " + "; ".join(tests)
    text += f". {TIE_MARK} = tied for that place (no significant difference among them)."
    if "value" in table.tests:
        text += " Paper columns carry the paper's marks."
    return text


def entry_text(table: Table, column_index: int, row_index: int) -> str:
    return format_entry(table.entries[column_index][row_index], table.columns[column_index].decimals)


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown, caption above, legend and footnotes below."""
    marks = {1: "**{}**", 2: "_{}_", 0: "{}"}
    header = [table.row_header] + [header_title(c) for c in table.columns]
    lines = [
        f"**{table.caption}**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|",
    ]
    for index, name in enumerate(table.rows):
        entries = [marks[col[index].mark].format(entry_text(table, c, index)) for c, col in enumerate(table.entries)]
        lines.append("| " + " | ".join([name, *entries]) + " |")
    lines += ["", legend(table, "in **bold**", "in _italics_ (the paper underlines it)"), ""]
    lines += [f"- {note}" for note in table.notes] + ([""] if table.notes else [])
    return "\n".join(lines)


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
}

LATEX_SYMBOLS = {"±": r"$\pm$", MISSING: "--", TIE_MARK: r"$\approx$", DEGENERATE_MARK: r"\textsuperscript{\dag}"}


def latex_escape(text: str) -> str:
    escaped = "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    for symbol, command in LATEX_SYMBOLS.items():
        escaped = escaped.replace(symbol, command)
    return escaped


def to_latex(table: Table) -> str:
    """The table as a LaTeX ``table`` (booktabs), grouped column headers, marks as in the paper."""
    marks = {1: r"\textbf{%s}", 2: r"\underline{%s}", 0: "%s"}
    groups = []  # (group, first column, span)
    for position, column in enumerate(table.columns):
        if groups and groups[-1][0] == column.group:
            groups[-1][2] += 1
        else:
            groups.append([column.group, position, 1])
    group_header = " & ".join([""] + [rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(g)}}}" for g, _, span in groups])
    rules = " ".join(rf"\cmidrule(lr){{{first + 2}-{first + span + 1}}}" for g, first, span in groups if g)
    titles = " & ".join([latex_escape(table.row_header)] + [latex_escape(c.title) for c in table.columns])
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.caption)} {latex_escape(legend(table, 'in bold', 'underlined'))}}}",
        rf"\label{{tab:{table.key}}}",
        r"\resizebox{\textwidth}{!}{%",
        rf"\begin{{tabular}}{{l{'r' * len(table.columns)}}}",
        r"\toprule",
        group_header + r" \\",
        rules,
        titles + r" \\",
        r"\midrule",
    ]
    for index, name in enumerate(table.rows):
        if index == len(table.rows) - table.n_reference_rows:
            lines.append(r"\midrule")
        entries = [
            marks[col[index].mark] % latex_escape(entry_text(table, c, index)) for c, col in enumerate(table.entries)
        ]
        lines.append(" & ".join([latex_escape(name), *entries]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    lines += [r"\par\smallskip{\footnotesize " + latex_escape(note) + "}" for note in table.notes]
    lines += [r"\end{table}", ""]
    return "\n".join(lines)


WRITERS = {"md": to_markdown, "tex": to_latex}


def write_table(table: Table, out_dir: Path, formats=("md", "tex")) -> list[Path]:
    """Write one table in each of ``formats``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out_dir / f"{table.key}.{fmt}"
        path.write_text(WRITERS[fmt](table), encoding="utf-8")
        written.append(path)
    return written
