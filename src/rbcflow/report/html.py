"""One self-contained HTML page: inline CSS, images as base64 PNG, no external requests.

Every piece of text from the inputs is escaped; the page has no script.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

CSS = """
:root { --ink:#1f2933; --muted:#5f6b7a; --line:#d9dee5; --band:#f5f7fa; --accent:#2b6cb0;
        --ok:#2f855a; --bad:#c53030; --note:#fff8e1; --note-line:#e0b400; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Roboto, Helvetica,
       Arial, sans-serif; color:var(--ink); background:#fff; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 32px 64px; }
header { border-bottom: 3px solid var(--accent); margin-bottom: 12px; padding-bottom: 8px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 6px; }
.meta { color: var(--muted); font-size: 13px; }
nav { background: var(--band); border: 1px solid var(--line); border-radius: 6px;
      padding: 8px 14px; margin: 14px 0; font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
p.lead { color: var(--muted); margin: 4px 0 10px; max-width: 900px; }
.table-wrap { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 9px; border-bottom: 1px solid var(--line); text-align: right;
         white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; max-width: 150px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr));
        column-gap: 28px; }
th { background: var(--band); border-bottom: 2px solid #b8c2cc; font-weight: 600; }
td.text, th.text { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
table.table1 { font-size: 13.5px; }
table.table1 th { max-width: 110px; }
table.table1 th, table.table1 td { padding: 4px 7px; }
table.table1 td:nth-child(3), table.table1 td:nth-child(4), table.table1 td:nth-child(5)
  { font-weight: 600; }
table.kv td:first-child { text-align: left; color: var(--muted); }
table.kv td:last-child { text-align: left; white-space: normal; word-break: break-all; }
figure { margin: 12px 0 22px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; max-width: 950px; }
.note { background: var(--note); border-left: 4px solid var(--note-line); padding: 6px 12px;
        margin: 8px 0; font-size: 13px; }
.badge { display:inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px;
         font-weight: 600; color: #fff; }
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); }
pre { background: var(--band); border: 1px solid var(--line); padding: 10px; font-size: 12px;
      overflow-x: auto; max-height: 420px; }
details summary { cursor: pointer; color: var(--accent); }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


@dataclass
class Section:
    """One section of the page: an anchor, a title and its HTML body."""

    anchor: str
    title: str
    body: list[str] = field(default_factory=list)

    def add(self, fragment: str) -> None:
        self.body.append(fragment)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def note(text: str) -> str:
    """A highlighted remark, e.g. why a part of the report is missing."""
    return f'<div class="note">{esc(text)}</div>'


def paragraph(text: str, css_class: str = "lead") -> str:
    return f'<p class="{css_class}">{esc(text)}</p>'


def badge(ok: bool) -> str:
    return '<span class="badge ok">pass</span>' if ok else '<span class="badge bad">FAIL</span>'


def format_value(value: object, decimals: int = 3) -> str:
    """Numbers for the page: integers as such, floats to ``decimals``, missing as a dash."""
    if value is None or value is pd.NA:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):d}"
        return f"{value:.{decimals}f}"
    return str(value)


def table(
    frame: pd.DataFrame,
    css_class: str = "",
    formats: Mapping[str, Callable[[object], str]] | None = None,
    decimals: int = 3,
    raw_html_columns: Sequence[str] = (),
) -> str:
    """An HTML table; text columns left-aligned, numbers right-aligned."""
    formats = formats or {}
    text_columns = {
        c for c in frame.columns
        if frame[c].dtype == object or str(frame[c].dtype) in ("string", "str", "category")
    }
    head = "".join(
        f'<th class="{"text" if c in text_columns else ""}">{esc(c)}</th>' for c in frame.columns
    )
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column in frame.columns:
            value = row[column]
            if column in raw_html_columns:
                shown = str(value)
            elif column in formats:
                shown = esc(formats[column](value))
            else:
                shown = esc(format_value(value, decimals))
            cells.append(f'<td class="{"text" if column in text_columns else ""}">{shown}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="table-wrap"><table class="{esc(css_class)}"><thead><tr>{head}</tr>'
        f'</thead><tbody>{"".join(rows)}</tbody></table></div>'
    )


def key_value_table(items: Mapping[str, object]) -> str:
    rows = "".join(
        f"<tr><td>{esc(k)}</td><td>{esc(format_value(v))}</td></tr>" for k, v in items.items()
    )
    return f'<div class="table-wrap"><table class="kv"><tbody>{rows}</tbody></table></div>'


def image(path: Path, caption: str, alt: str) -> str:
    """A figure with the PNG embedded as base64 (the page needs no other file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def grid(fragments: Sequence[str]) -> str:
    """Side-by-side blocks (small tables), wrapping on narrow screens."""
    return '<div class="grid">' + "".join(f"<div>{f}</div>" for f in fragments) + "</div>"


def preformatted(text: str, summary: str | None = None) -> str:
    block = f"<pre>{esc(text)}</pre>"
    if summary:
        return f"<details><summary>{esc(summary)}</summary>{block}</details>"
    return block


def page(title: str, meta: str, sections: Sequence[Section], footer: str) -> str:
    """The whole document."""
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{"".join(s.body)}</section>'
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f'<body><main><header><h1>{esc(title)}</h1><div class="meta">{esc(meta)}</div>'
        f"</header><nav>{nav}</nav>{body}<footer>{esc(footer)}</footer></main></body></html>\n"
    )
