"""A single self-contained HTML report: sections of text, key figures, tables and plots.

Figures are embedded as base64 PNG so the file can be mailed or archived on its own; no
JavaScript, no external style sheet, no network access when it is opened.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import matplotlib.pyplot as plt
>>> import pandas as pd
>>> report = HTMLReport("My run")
>>> sec = report.add_section("Age prediction")
>>> sec.add_metrics({"MAE (years)": 3.21456, "Pearson r": 0.8123})
>>> sec.add_table(pd.DataFrame({"mae": [3.2145, 4.0]}, index=["ridge", "svr"]))
>>> fig, ax = plt.subplots()
>>> _ = ax.plot([0, 1], [1, 0])
>>> sec.add_figure(fig, "A line")
>>> html = report.to_html()
>>> html.count("data:image/png;base64,"), "3.21" in html
(1, True)
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
import re
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["HTMLReport", "ReportSection", "format_number", "figure_to_base64"]

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1.2em;color:#1f2328;line-height:1.5}
h1{font-size:1.9em;margin-bottom:.1em} h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;
margin-top:2em} .subtitle{color:#57606a;margin-top:0}
nav ol{columns:2;font-size:.95em} figure{margin:1em 0;text-align:center}
figure img{max-width:100%;border:1px solid #eaeef2} figcaption{color:#57606a;font-size:.9em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:right}
th{background:#f6f8fa} td.text,th.text{text-align:left} caption{caption-side:top;
text-align:left;font-weight:600;padding-bottom:.3em}
.metrics{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.metric{border:1px solid #d0d7de;border-radius:6px;padding:.5em .9em;min-width:8em}
.metric .v{font-size:1.35em;font-weight:600} .metric .k{color:#57606a;font-size:.85em}
.note{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5em .9em}
.unavailable{background:#f6f8fa;border:1px dashed #8c959f;border-radius:6px;padding:.5em .9em;
color:#57606a} footer{margin-top:3em;color:#57606a;font-size:.85em}
"""


def format_number(value, *, pvalue=False, digits=3):
    """Format a number for a human reader.

    Integers get thousands separators; floats get ``digits`` significant digits (scientific
    notation when very small or very large); p-values below 0.001 are written like ``3.2e-09``;
    missing values become an en dash.

    Examples
    --------
    >>> format_number(12345), format_number(0.123456), format_number(3.2e-9, pvalue=True)
    ('12,345', '0.123', '3.2e-09')
    >>> format_number(float("nan")), format_number(123.456), format_number(True)
    ('–', '123', 'yes')
    """
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{int(value):,}"
    if isinstance(value, Real):
        v = float(value)
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        if v == 0:
            return "0"
        if pvalue and abs(v) < 1e-3:
            return f"{v:.1e}"
        if v.is_integer() and abs(v) < 1e15 and not pvalue:
            return f"{int(v):,}"
        mag = math.floor(math.log10(abs(v)))
        if mag < -3 or mag >= 7:
            return f"{v:.{max(digits - 1, 0)}e}"
        decimals = max(digits - 1 - mag, 0)
        out = f"{v:,.{decimals}f}"
        return out
    return str(value)


def figure_to_base64(fig, dpi=100):
    """Render a matplotlib Figure to a base64-encoded PNG string (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _slug(text):
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "section"


def _is_pvalue_column(name):
    n = str(name).lower()
    return n in {"p", "pval"} or "pvalue" in n or n.startswith("p_") or n.endswith("_p")


class ReportSection:
    """One titled section of an :class:`HTMLReport`; build it with the ``add_*`` methods."""

    def __init__(self, title, section_id):
        self.title = title
        self.id = section_id
        self._parts = []

    def add_text(self, text):
        """A paragraph of plain text (escaped; blank lines start new paragraphs)."""
        for para in str(text).strip().split("\n\n"):
            self._parts.append(f"<p>{html.escape(para.strip())}</p>")

    def add_note(self, text):
        """A highlighted remark (e.g. a caveat on the numbers)."""
        self._parts.append(f'<p class="note">{html.escape(str(text))}</p>')

    def add_unavailable(self, reason):
        """Mark this section as not computed, with the reason shown to the reader."""
        self._parts.append(f'<p class="unavailable">Not available: {html.escape(str(reason))}'
                           "</p>")

    def add_metrics(self, metrics):
        """Key figures as a row of tiles; ``metrics`` maps label -> number or text."""
        tiles = []
        for key, value in metrics.items():
            p = "p-value" in str(key).lower() or str(key).lower().startswith("p ")
            tiles.append(f'<div class="metric"><div class="v">'
                         f'{html.escape(format_number(value, pvalue=p))}</div>'
                         f'<div class="k">{html.escape(str(key))}</div></div>')
        self._parts.append(f'<div class="metrics">{"".join(tiles)}</div>')

    def add_table(self, df, caption=None, *, index=True, max_rows=50, digits=3):
        """A DataFrame as an HTML table with formatted numbers (p-value columns in e-notation).

        Only the first ``max_rows`` rows are shown; the caption says how many were left out.
        """
        if not isinstance(df, pd.DataFrame):
            df = pd.DataFrame(df)
        shown = df.iloc[:max_rows]
        cap = caption or ""
        if len(df) > max_rows:
            cap = f"{cap} (first {max_rows} of {len(df):,} rows)".strip()
        head = []
        if index:
            head.append(f'<th class="text">{html.escape(str(df.index.name or ""))}</th>')
        head += [f'<th class="text">{html.escape(str(c))}</th>' for c in df.columns]
        body = []
        for idx, row in shown.iterrows():
            cells = []
            if index:
                cells.append(f'<td class="text">{html.escape(format_number(idx))}</td>')
            for col, val in zip(df.columns, row):
                cls = "" if isinstance(val, (Real, np.number)) and not isinstance(val, bool) \
                    else ' class="text"'
                txt = format_number(val, pvalue=_is_pvalue_column(col), digits=digits)
                cells.append(f"<td{cls}>{html.escape(txt)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        caption_html = f"<caption>{html.escape(cap)}</caption>" if cap else ""
        self._parts.append(f"<table>{caption_html}<thead><tr>{''.join(head)}</tr></thead>"
                           f"<tbody>{''.join(body)}</tbody></table>")

    def add_figure(self, fig, caption=None, *, dpi=100):
        """A matplotlib Figure, embedded as a base64 PNG (the figure is closed)."""
        data = figure_to_base64(fig, dpi=dpi)
        alt = html.escape(caption or self.title)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._parts.append(f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
                           f"{cap}</figure>")

    def to_html(self):
        return (f'<section id="{self.id}"><h2>{html.escape(self.title)}</h2>'
                + "\n".join(self._parts) + "</section>")


class HTMLReport:
    """A self-contained HTML report made of titled sections.

    Parameters
    ----------
    title : str
    subtitle : str, optional
        Shown under the title (e.g. the command that produced the report).
    """

    def __init__(self, title, subtitle=None):
        self.title = title
        self.subtitle = subtitle
        self.sections = []

    def add_section(self, title, section_id=None):
        """Append a new section and return it; ``section_id`` defaults to a slug of the title."""
        sid = section_id or _slug(title)
        if any(s.id == sid for s in self.sections):
            raise ValueError(f"a section with id {sid!r} already exists; pass section_id=.")
        section = ReportSection(title, sid)
        self.sections.append(section)
        return section

    def to_html(self):
        """The whole report as one HTML string."""
        toc = "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>'
                      for s in self.sections)
        sub = f'<p class="subtitle">{html.escape(self.subtitle)}</p>' if self.subtitle else ""
        from .._version import __version__

        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{sub}<nav><ol>{toc}</ol></nav>"
            + "\n".join(s.to_html() for s in self.sections)
            + f"<footer>hcl-sklearn {html.escape(__version__)} · generated {stamp}</footer>"
            "</body></html>\n"
        )

    def save(self, path):
        """Write the report to ``path`` (parent folders are created) and return the Path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_html(), encoding="utf-8")
        return path
