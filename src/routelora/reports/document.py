"""A report as a list of blocks (headings, paragraphs, tables, figures), rendered from that one source to
markdown (``report.md``) and to one static HTML page (``report.html``) with its figures embedded.

The HTML page requests nothing from anywhere (no scripts, fonts or styles from outside; figures are data URIs),
so it reads offline and prints (a print stylesheet keeps tables and figures whole on a page). Written by hand
because the report is a handful of tables and images: a templating or notebook dependency would be most of it.
"""

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from routelora import io


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str
    """Plain text; ``**bold**`` spans are kept in both renderings."""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: Path
    """A PNG file; the markdown links it relative to the report, the HTML embeds it."""
    caption: str


@dataclass
class Report:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)

    def markdown(self, folder: Path) -> str:
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            if isinstance(block, Heading):
                lines += ["#" * block.level + " " + block.text, ""]
            elif isinstance(block, Paragraph):
                lines += [block.text, ""]
            elif isinstance(block, Table):
                if block.caption:
                    lines += [block.caption, ""]
                lines += ["| " + " | ".join(block.header) + " |", "|" + " --- |" * len(block.header)]
                lines += ["| " + " | ".join(row) + " |" for row in block.rows]
                lines.append("")
            elif isinstance(block, Figure):
                lines += [f"![{block.caption}]({_relative(block.path, folder)})", "", f"*{block.caption}*", ""]
        return "\n".join(lines)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            if isinstance(block, Heading):
                level = min(max(block.level, 2), 4)
                body.append(f"<h{level}>{_inline(block.text)}</h{level}>")
            elif isinstance(block, Paragraph):
                body.append(f"<p>{_inline(block.text)}</p>")
            elif isinstance(block, Table):
                caption = f"<caption>{_inline(block.caption)}</caption>" if block.caption else ""
                head = "".join(f"<th>{_inline(cell)}</th>" for cell in block.header)
                rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
                body.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif isinstance(block, Figure):
                data = base64.b64encode(Path(block.path).read_bytes()).decode()
                alt = html.escape(block.caption, quote=True)
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
                    f"<figcaption>{_inline(block.caption)}</figcaption></figure>"
                )
        return PAGE.format(title=html.escape(self.title), body="\n".join(body))

    def write(self, folder: str | Path, name: str = "report") -> tuple[Path, Path]:
        """Write ``<name>.md`` and ``<name>.html`` into ``folder`` (atomically); returns their paths."""
        folder = Path(folder)
        markdown = io.atomic_write(folder / f"{name}.md", self.markdown(folder).encode())
        page = io.atomic_write(folder / f"{name}.html", self.html().encode())
        return markdown, page


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(folder).resolve()))
    except ValueError:
        return str(path)


def _inline(text: str) -> str:
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{part}</strong>" if i % 2 else part for i, part in enumerate(parts))


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222;
       line-height: 1.45; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
caption {{ caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.3rem; }}
th, td {{ border: 1px solid #bbb; padding: 0.25rem 0.5rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
thead th {{ background: #eef; }}
tbody tr:nth-child(even) {{ background: #f7f7f7; }}
figure {{ margin: 1rem 0; }}
figure img {{ max-width: 100%; height: auto; border: 1px solid #ddd; }}
figcaption {{ font-size: 0.9rem; color: #444; }}
@media print {{
  body {{ max-width: none; margin: 0; }}
  table, figure {{ page-break-inside: avoid; break-inside: avoid; }}
  h2, h3 {{ page-break-after: avoid; break-after: avoid; }}
}}
</style>
</head>
<body>
{body}
</body>
</html>
"""
