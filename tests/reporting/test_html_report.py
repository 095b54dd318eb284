import io
import re

import pytest
from matplotlib.image import imread

from hashbench.cli import main
from hashbench.reporting import html_report
from tests.reporting.cdp import Chromium, find_chromium
from tests.reporting.report_fixtures import comparison_records, make_record, variant_records, write_records


@pytest.fixture
def page(tmp_path):
    records = comparison_records() + variant_records()
    records[4]["error"] = "ValueError: <b>no</b> convergence\nTraceback (most recent call last): ..."
    records[0]["environment"]["versions"].update(torch="2.5.0", numpy="2.1.0")
    results_dir = write_records(records, tmp_path / "results")
    assert main(["report", str(results_dir), "--html", "--no-references", "--format", "md"]) == 0
    return results_dir / "report" / "index.html"


def test_the_page_is_one_self_contained_file(page):
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)  # nothing fetched from the network
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count("<style>") == 1 and html.count("<script>") == 1
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', html)
    assert images == ["Figure 2: top-k precision", "Cost and accuracy: MAP against training time"]
    assert html.count('href="data:text/csv;base64,') == 2


def test_the_page_holds_every_table_and_the_provenance(page):
    html = page.read_text()
    for key in ("table3", "table4", "table5"):
        assert f'<table class="sortable" id="{key}-table">' in html
    assert '<td class="best" data-sort="0.85">0.8500</td>' in html  # LAGNH, best at 32 bits
    assert "hashbench 0.1.0" in html and "abc123" in html  # versions and commit from the records
    assert "<dt>torch</dt><dd>2.5.0</dd>" in html and "<dt>numpy</dt><dd>2.1.0</dd>" in html
    assert "<dt>scikit-learn</dt><dd>not recorded</dd>" in html
    assert "official protocol: normalise=retrieved, ties=stable, no_relevant=skip" in html
    assert "19 records: 16 done, 2 failed, 1 timed out" in html
    # failed cells with the first line of their error, escaped
    assert "ValueError: &lt;b&gt;no&lt;/b&gt; convergence</td>" in html and "Traceback" not in html


def test_one_line_errors_are_cut():
    assert html_report.one_line("a\nb") == "a"
    assert len(html_report.one_line("x" * 1000)) == html_report.ERROR_CHARS
    assert html_report.one_line(None) == ""


def test_provenance_counts_distinct_values():
    records = [make_record("itq", device_name=name) for name in ("cpu A", "cpu A", "GPU B")]
    records[2]["environment"]["git_dirty"] = True
    info = html_report.provenance(records, "official")
    assert info["devices"] == "cpu A (2 cells), GPU B (1 cells)"
    assert info["git commit"] == "abc123 (2 cells), abc123 (local changes) (1 cells)"


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_page_in_a_real_browser(page, tmp_path):
    pytest.importorskip("websockets", reason="the DevTools client needs the websockets package (the dev extra)")
    with Chromium(tmp_path / "profile") as browser:
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable")
        browser.send("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
        browser.send("Page.navigate", url=page.as_uri())
        browser.wait_for("Page.loadEventFired")
        shot = browser.screenshot()
        (tmp_path / "page.png").write_bytes(shot)
        pixels = imread(io.BytesIO(shot))
        assert pixels.shape[:2] == (1000, 1400)
        assert pixels[..., :3].std() > 0.1  # not blank: header, text and table lines

        column = "#table3-table tbody:not(.reference) tr"
        order = f"Array.from(document.querySelectorAll('{column}')).map(r => r.cells[0].textContent)"
        values = f"Array.from(document.querySelectorAll('{column}')).map(r => r.cells[2].getAttribute('data-sort'))"
        before = browser.evaluate(order)
        header = browser.evaluate(
            "(() => { const th = document.querySelectorAll('#table3-table thead tr.titles th')[2];"
            " th.scrollIntoView({block: 'center'}); const r = th.getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2, text: th.textContent}; })()"
        )
        assert header["text"] == "32 bits"
        browser.click(header["x"], header["y"])
        after = browser.evaluate(order)
        assert after != before and sorted(after) == sorted(before)
        numbers = [float(v) for v in browser.evaluate(values) if v]
        assert numbers == sorted(numbers, reverse=True) and after[0] == "LAGNH"  # best first, empty cells last
        browser.click(header["x"], header["y"])
        numbers = [float(v) for v in browser.evaluate(values) if v]
        assert numbers == sorted(numbers)
        assert browser.console_errors() == []
