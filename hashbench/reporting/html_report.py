"""The results page: one self-contained HTML file with every table, every figure and the provenance.

``hashbench report DIR --html`` writes ``DIR/report/index.html``. Everything is inline: the CSS,
a short script that sorts a table by the column whose header is clicked (numbers by value, text
alphabetically, empty cells last; a second click reverses), the figures as base64 PNG and the
CSV beside each as a download link. Nothing is fetched from the network, so the file can be
mailed, archived or opened offline.

Provenance comes from the records: hashbench versions and git commits (with a note when the
tree had local changes), devices, the versions of torch / numpy / scikit-learn, the protocol,
when the cells ran, how many finished, failed or timed out, and each failed cell with the first
line of its error.
"""

from __future__ import annotations

import base64
import importlib.metadata
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from hashbench.reporting.captions import protocol_description
from hashbench.reporting.table_model import DEGENERATE_MARK, TIE_MARK, Table
from hashbench.reporting.table_writers import entry_text, legend

ERROR_CHARS = 240  # a failed cell's error is cut to one line of about this length
VERSIONED = ("torch", "numpy", "scikit-learn")
MARK_CLASSES = {1: "best", 2: "second"}

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d2125; background: #fafafa; }
header { background: #20324a; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; opacity: .85; }
nav { padding: 8px 24px; background: #e8edf3; position: sticky; top: 0; z-index: 3; }
nav a { margin-right: 16px; color: #20324a; }
main { padding: 8px 24px 40px; }
section { margin: 24px 0 36px; }
h2 { font-size: 17px; border-bottom: 1px solid #ccd3db; padding-bottom: 4px; }
.caption { max-width: 110ch; }
.scroll { overflow-x: auto; background: #fff; border: 1px solid #d5dbe1; width: fit-content; max-width: 100%; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; white-space: nowrap; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eceff2; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f1f4f7; }
thead tr:first-child th { text-align: center; }
thead tr.titles th { cursor: pointer; user-select: none; }
thead tr.titles th:hover { background: #dfe6ee; }
thead tr.titles th[aria-sort=ascending]::after { content: " \\25B2"; }
thead tr.titles th[aria-sort=descending]::after { content: " \\25BC"; }
tbody th { font-weight: normal; position: sticky; left: 0; background: #fff; }
tbody.reference td, tbody.reference th { color: #5a6570; font-style: italic; background: #f6f7f8; }
tbody.reference tr:first-child > * { border-top: 2px solid #c5ccd3; }
td.best { font-weight: 700; }
td.second { text-decoration: underline; }
td.tied { background: #fff8e1; }
.notes { font-size: 13px; color: #444; max-width: 110ch; }
figure { margin: 0 0 28px; background: #fff; border: 1px solid #d5dbe1; padding: 10px; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #444; margin-top: 6px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dt { font-weight: 600; }
dd { margin: 0; }
td.error { text-align: left; white-space: normal; font-family: ui-monospace, monospace; font-size: 12px; }
"""

SCRIPT = """
(function () {
  function key(cell) {
    var text = cell.getAttribute("data-sort");
    if (text === null || text === "") return null;
    var number = Number(text);
    return isNaN(number) ? text.toLowerCase() : number;
  }
  function sortBy(table, column, header) {
    var descending = header.getAttribute("aria-sort") !== "descending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[column]), y = key(b.cells[column]);
      if (x === null || y === null) return (x === null) - (y === null);
      var order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(header.parentNode.cells, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var titles = table.tHead.rows[table.tHead.rows.length - 1];
    Array.prototype.forEach.call(titles.cells, function (header, column) {
      header.title = "sort by this column";
      header.addEventListener("click", function () { sortBy(table, column, header); });
    });
  });
})();
"""


@dataclass(frozen=True)
class FigureFile:
    """A written figure: its name, title, PNG and the CSV of what it plots."""

    name: str
    title: str
    png: Path
    csv: Path


# ----------------------------------------------------------------------------- pieces
def table_heading(table: Table) -> str:
    return f"Table {table.key.removeprefix('table')}"


def table_html(table: Table) -> str:
    """A table as a sortable HTML table, caption above, legend and notes below."""
    groups = []  # (group, span)
    for column in table.columns:
        if groups and groups[-1][0] == column.group:
            groups[-1][1] += 1
        else:
            groups.append([column.group, 1])
    group_row = "".join(f'<th colspan="{span}">{escape(group)}</th>' for group, span in groups)
    titles = "".join(f'<th scope="col">{escape(c.title)}</th>' for c in table.columns)
    compared = len(table.rows) - table.n_reference_rows
    bodies = {"": [], "reference": []}
    for index, name in enumerate(table.rows):
        entries = [f'<th scope="row" data-sort="{escape(name)}">{escape(name)}</th>']
        for position, column in enumerate(table.entries):
            cell = column[index]
            classes = [MARK_CLASSES[cell.mark]] if cell.mark else []
            classes += ["tied"] if cell.tied else []
            sort = cell.text if cell.text is not None else ("" if cell.mean is None else repr(cell.mean))
            attributes = f' class="{" ".join(classes)}"' if classes else ""
            entries.append(
                f'<td{attributes} data-sort="{escape(sort)}">{escape(entry_text(table, position, index))}</td>'
            )
        bodies["" if index < compared else "reference"].append(f"<tr>{''.join(entries)}</tr>")
    body_html = f"<tbody>{''.join(bodies[''])}</tbody>"
    if bodies["reference"]:
        body_html += f'<tbody class="reference">{"".join(bodies["reference"])}</tbody>'
    notes = "".join(f"<li>{escape(note)}</li>" for note in table.notes)
    return (
        f'<section id="{table.key}"><h2>{escape(table_heading(table))}</h2>'
        f'<p class="caption">{escape(table.caption)}</p>'
        f'<div class="scroll"><table class="sortable" id="{table.key}-table"><thead>'
        f'<tr><th></th>{group_row}</tr><tr class="titles"><th scope="col">{escape(table.row_header)}</th>{titles}</tr>'
        f"</thead>{body_html}</table></div>"
        f'<p class="notes">{escape(legend(table, "in bold", "underlined"))} Click a column header to sort.</p>'
        f"{f'<ul class=notes>{notes}</ul>' if notes else ''}</section>"
    )


def figure_html(figure: FigureFile) -> str:
    png = base64.b64encode(figure.png.read_bytes()).decode("ascii")
    csv = base64.b64encode(figure.csv.read_bytes()).decode("ascii")
    return (
        f'<figure id="{figure.name}"><img alt="{escape(figure.title)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{escape(figure.title)}. "
        f'<a download="{figure.csv.name}" href="data:text/csv;base64,{csv}">Data (CSV)</a></figcaption></figure>'
    )


def distinct_values(records: list[dict], get) -> list[str]:
    """The distinct values ``get(record)`` takes, most common first, with counts when they differ."""
    counts = Counter(str(value) for value in map(get, records) if value not in (None, ""))
    if len(counts) <= 1:
        return list(counts)
    return [f"{value} ({n} cells)" for value, n in counts.most_common()]


def provenance(records: list[dict], protocol: str) -> dict[str, str]:
    """What the page says about where the numbers come from (see the module docstring)."""

    def environment(record) -> dict:
        return record.get("environment") or {}

    def commit(record):
        env = environment(record)
        return (
            None
            if not env.get("git_commit")
            else env["git_commit"] + (" (local changes)" if env.get("git_dirty") else "")
        )

    statuses = Counter(record["status"] for record in records)
    started = sorted(r["started"] for r in records if r.get("started"))
    finished = sorted(r["finished"] for r in records if r.get("finished"))
    info = {
        "report written": datetime.now(UTC).isoformat(timespec="seconds")
        + f" by hashbench {importlib.metadata.version('hashbench')}",
        "hashbench (runs)": ", ".join(
            distinct_values(records, lambda r: environment(r).get("versions", {}).get("hashbench"))
        )
        or "not recorded",
        "git commit": ", ".join(distinct_values(records, commit)) or "not recorded",
        "devices": ", ".join(distinct_values(records, lambda r: environment(r).get("device_name"))) or "not recorded",
        "CPU threads per cell": ", ".join(distinct_values(records, lambda r: environment(r).get("threads")))
        or "not recorded",
        "platform": ", ".join(distinct_values(records, lambda r: environment(r).get("platform"))) or "not recorded",
    }
    for package in VERSIONED:
        info[package] = (
            ", ".join(
                distinct_values(records, lambda r, package=package: environment(r).get("versions", {}).get(package))
            )
            or "not recorded"
        )
    info["protocol"] = protocol_description(protocol)
    info["cells ran"] = f"{started[0]} to {finished[-1]}" if started and finished else "not recorded"
    info["cells"] = (f"{len(records)} records: {statuses.get('done', 0)} done, {statuses.get('failed', 0)} failed, "
                     f"{statuses.get('timeout', 0)} timed out")  # fmt: skip
    return info


def one_line(error) -> str:
    line = str(error or "").strip().splitlines()[0] if error else ""
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"


def failed_cells_html(records: list[dict]) -> str:
    failed = [r for r in records if r["status"] != "done"]
    if not failed:
        return "<p>No cell failed or timed out.</p>"
    header = "".join(
        f'<th scope="col">{h}</th>' for h in ("experiment", "label", "dataset", "bits", "seed", "status", "error")
    )
    rows = []
    for record in sorted(failed, key=lambda r: (r["spec"]["dataset"], r["spec"]["label"], r["spec"]["n_bits"])):
        spec = record["spec"]
        values = [spec["experiment"], spec["label"], spec["dataset"], spec["n_bits"], spec["seed"], record["status"]]
        cells = [f'<th scope="row" data-sort="{escape(str(values[0]))}">{escape(str(values[0]))}</th>']
        cells += [f'<td data-sort="{escape(str(v))}">{escape(str(v))}</td>' for v in values[1:]]
        error = one_line(record.get("error"))
        cells.append(f'<td class="error" data-sort="{escape(error)}">{escape(error)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table class="sortable" id="failed-table"><thead><tr class="titles">{header}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>")  # fmt: skip


# ----------------------------------------------------------------------------- the page
def page_html(title: str, tables: list[Table], figures: list[FigureFile], records: list[dict], protocol: str) -> str:
    info = provenance(records, protocol)
    links = [(t.key, table_heading(t)) for t in tables]
    links += [("figures", "Figures"), ("provenance", "Provenance")] if figures else [("provenance", "Provenance")]
    nav = "".join(f'<a href="#{anchor}">{escape(text)}</a>' for anchor, text in links)
    details = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in info.items())
    figures_html = "".join(figure_html(f) for f in figures)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<header><h1>{escape(title)}</h1><p>{escape(info["cells"])}; {escape(info["protocol"])}.
Marks: <b>bold</b> best, <u>underlined</u> second, {TIE_MARK} tied, {DEGENERATE_MARK} degenerate codes.</p></header>
<nav>{nav}</nav>
<main>
{"".join(table_html(t) for t in tables)}
{f'<section id="figures"><h2>Figures</h2>{figures_html}</section>' if figures else ""}
<section id="provenance"><h2>Provenance</h2><dl>{details}</dl>
<h3>Failed and timed-out cells</h3>{failed_cells_html(records)}</section>
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""


def write_page(
    path, title: str, tables: list[Table], figures: list[FigureFile], records: list[dict], protocol: str
) -> Path:
    """Write the results page to ``path`` (see the module docstring); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page_html(title, tables, figures, records, protocol), encoding="utf-8")
    return path
