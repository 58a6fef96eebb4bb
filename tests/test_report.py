"""The report: markdown and one static HTML page from the same blocks, opened in a real headless Chromium."""

import os
import re
import shutil
import subprocess

import pytest
import torch
from PIL import Image

from routelora.reports.document import Figure, Heading, Paragraph, Report, Table
from routelora.reports.plots import accuracy_matrices, drop_bars, routing_heatmap

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter((image) => !image.complete || image.naturalWidth === 0).length;
  const cells = document.querySelectorAll("td").length;
  document.title = `probe tables=${document.querySelectorAll("table").length} cells=${cells} ` +
    `images=${images.length} broken=${broken} width=${Math.min(...images.map((i) => i.naturalWidth))}`;
});
</script>
</body>"""


@pytest.fixture()
def report(tmp_path):
    figures = tmp_path / "figures"
    matrices = {"routelora": [[0.0, 100.0], [90.0, 100.0], [88.0, 99.0]], "sequential": [[0.0, 100.0], [95.0, 60.0]]}
    shares = torch.tensor([[0.7, 0.3], [0.2, 0.8]])  # (layers, candidates)
    report = Report("a report")
    report.add(
        Paragraph("Scores are **normalised** <not html>."),
        Heading("Tables"),
        Table(["method", "caption", "mcq"], [["routelora", "6.418", "1.000"], ["sequential", "2.1", "0.4"]], "T1"),
        Figure(accuracy_matrices(matrices, ["caption", "mcq"], "R", figures / "r.png"), "matrices"),
        Figure(drop_bars({"routelora": {"caption": -1.0}}, ["caption"], "drops", figures / "d.png"), "drops"),
        Figure(routing_heatmap(shares, ["0.q_proj", "1.q_proj"], ["a", "base"], "t", figures / "h.png"), "layers"),
    )
    return report, tmp_path


def test_markdown_and_html_come_from_the_same_blocks(report):
    report, folder = report
    markdown, page = report.write(folder)
    text = markdown.read_text()
    assert "| routelora | 6.418 | 1.000 |" in text and "![matrices](figures/r.png)" in text
    html = page.read_text()
    assert html.count("<table>") == 1 and html.count('src="data:image/png;base64,') == 3
    assert "&lt;not html&gt;" in html and "<strong>normalised</strong>" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//|url\(|@import""", html), "nothing requested from outside"
    assert "@media print" in html


@pytest.mark.skipif(
    BROWSER is None and not os.environ.get("ROUTELORA_REQUIRE_BROWSER"), reason="no headless Chromium here"
)
def test_the_html_report_renders_in_a_headless_browser(report, tmp_path):
    assert BROWSER, "ROUTELORA_REQUIRE_BROWSER is set but no chromium was found (scripts/test.sh installs it)"
    report, folder = report
    _, page = report.write(folder)
    probe = folder / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE))
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    flags.append(f"--user-data-dir={tmp_path / 'profile'}")
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(
        r"<title>probe tables=(\d+) cells=(\d+) images=(\d+) broken=(\d+) width=(\d+)</title>", dom.stdout
    )
    assert found, f"the page did not load: {dom.stderr[-2000:]}"
    tables, cells, images, broken, width = map(int, found.groups())
    assert (tables, cells, images, broken) == (1, 6, 3, 0) and width > 100, "every table and figure rendered"
    shot = folder / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1000,2400", page.as_uri()], capture_output=True,
                   timeout=120, check=True)  # fmt: skip
    with Image.open(shot) as image:
        assert image.size == (1000, 2400)
        colours = image.convert("RGB").resize((200, 480)).getcolors(maxcolors=100000)
    assert len(colours) > 200, "the screenshot shows the figures (a blank or text-only page has few colours)"


def test_the_confusion_matrix_columns_follow_its_rows_with_base_last(tmp_path, monkeypatch):
    from routelora.evaluation.routing_report import RoutingReport
    from routelora.reports import plots
    from routelora.reports.tables import confusion_markdown

    rows = [("meme", "meme"), ("caption", "caption"), ("genre", "genre"), ("vqa", None)]
    reports = [RoutingReport(task, own, sequence_shares={own or "base": 0.9, "unused": 0.1}) for task, own in rows]
    library_order = ["base", "caption", "genre", "unused", "meme"]  # as a library lists them: not the rows' order
    table = confusion_markdown(reports, library_order).splitlines()
    assert [c.strip() for c in table[0].split("|")[2:-1]] == ["meme", "caption", "genre", "unused", "base"]
    diagonal = [line.split("|")[2 + i].strip() for i, line in enumerate(table[2:5])]
    assert diagonal == ["0.90"] * 3 and table[5].split("|")[-2].strip() == "0.90"  # the base row: last column

    drawn = {}
    monkeypatch.setattr(plots, "_save_png", lambda figure, out: drawn.setdefault("axes", figure.axes[0]) and out)
    plots.confusion_heatmap(reports, library_order, "t", tmp_path / "c.png")
    labels = [label.get_text() for label in drawn["axes"].get_xticklabels()]
    assert labels == ["meme", "caption", "genre", "unused", "base"]
    plots.plt.close("all")
