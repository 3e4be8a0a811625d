"""``report.html``: one page showing what ``fit3dmm compare`` wrote beside it (issue #13), to browse the
result without a notebook.

Standard library only, no script: inline CSS, the summary table (the columns of ``table.md``), the statistics
tables (:func:`~fit3dmm.evaluate.reports.statistics_tables`, the very rows of ``table.md``), ``figure.png`` and
each photo's figure as a thumbnail captioned with the photo name and each configuration's mean IoU.  Images
and tables are *linked* by relative paths, not embedded: the page stays small whatever the number of photos,
and needs only the files written beside it (move the output folder as a whole).
"""

from __future__ import annotations

import html
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from fit3dmm.evaluate.experiments import Evaluation
from fit3dmm.evaluate.reports import SCORER_TEXT, statistics_tables
from fit3dmm.io.atomic import atomic_write

REPORT = "report.html"
TABLES = ("table.md", "table.csv", "per_image.csv")
"""The files linked at the top of the page, when written."""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
figure { display: inline-block; margin: 0 1em 1.5em 0; vertical-align: top; }
figure img { max-width: 36em; max-height: 16em; border: 1px solid #ccc; }
figure.main img { max-width: 100%; max-height: none; }
figcaption { font-size: 0.9em; }
figcaption ul { margin: 0.2em 0; padding-left: 1.2em; }
"""


def cell(value: object) -> str:
    """A table cell's text as ``table.md`` writes it: reals with 3 decimals (NaN → ``nan``), the rest ``str``."""
    if value is None:
        return ""
    if isinstance(value, bool | numbers.Integral) or not isinstance(value, numbers.Real):
        return str(value)
    return "nan" if math.isnan(value) else format(float(value), ".3f")


def _href(path: Path, out: Path) -> str:
    return html.escape(quote(path.relative_to(out).as_posix()))


def _markdown_text(text: str) -> str:
    """Escaped ``text`` with its Markdown ``**bold**`` as ``<strong>``."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def _table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> list[str]:
    lines = ["<table>", "<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr></thead>",
             "<tbody>"]
    lines += ["<tr>" + "".join(f"<td>{html.escape(cell(row.get(c)))}</td>" for c in columns) + "</tr>"
              for row in rows]
    return [*lines, "</tbody>", "</table>"]


def write_html_report(out_dir: str | Path, evaluation: Evaluation, files: Sequence[str | Path], *, title: str = "",
                      failures: Mapping[str, str] | None = None) -> Path:
    """Write ``out_dir/report.html`` linking ``files`` (what :func:`~fit3dmm.evaluate.reports.write_compare`
    wrote into ``out_dir``: the tables, ``figure.png``, ``figures/<photo>.png``); returns its path.

    Thumbnails are the photos of ``evaluation.names`` that have a figure among ``files``, captioned with each
    configuration's mean IoU on that photo (:meth:`Evaluation.mean_iou`, the ``mean`` of ``per_image.csv``).
    """
    out = Path(out_dir)
    by_name = {p.relative_to(out).as_posix(): p for p in map(Path, files) if p.is_relative_to(out)}
    heading = title or "Part IoU per configuration"
    body = [f"<h1>{html.escape(heading)}</h1>"]
    links = [f'<a href="{_href(by_name[n], out)}">{html.escape(n)}</a>' for n in TABLES if n in by_name]
    if links:
        body.append("<p>Files: " + " · ".join(links) + "</p>")
    body.append(f"<p>Main columns: {html.escape(SCORER_TEXT[evaluation.scorer])}; mean = mean over images of the "
                "mean over regions.</p>")
    if evaluation.regularizer is not None:
        body.append(f"<p>Every configuration adds the coefficient regulariser reg (λ = {evaluation.regularizer:g})."
                    "</p>")
    body.append("<ul>" + "".join(f"<li>{html.escape(run.name)}: " + html.escape(
        ", ".join(f"{k}={v:g}" for k, v in run.weights.items())) + "</li>" for run in evaluation.runs) + "</ul>")
    body += ["<h2>Summary</h2>", *_table(evaluation.summary_rows(), evaluation.table_columns())]
    if failures:
        body.append("<p>Skipped photos: " + html.escape("; ".join(f"{k} ({v})" for k, v in failures.items()))
                    + "</p>")
    statistics = statistics_tables(evaluation)
    if statistics:
        body.append("<h2>Statistics</h2>")
        for lead, rows, columns in statistics:
            body += [f"<p>{_markdown_text(lead)}</p>", *_table(rows, columns)]
    if "figure.png" in by_name:
        src = _href(by_name["figure.png"], out)
        body += ["<h2>Figure</h2>", f'<figure class="main"><a href="{src}"><img src="{src}" alt="figure grid">'
                 "</a><figcaption>The first photos' rows (each photo below); fitted regions filled, target outlined; "
                 "the figures show the raster-label IoU.</figcaption></figure>"]
    scored = [run for run in evaluation.runs if run.iou is not None and len(run.iou)]
    means = {run.name: evaluation.mean_iou(run) for run in scored}
    photos = [(n, name, by_name[f"figures/{name}.png"]) for n, name in enumerate(evaluation.names)
              if f"figures/{name}.png" in by_name]
    if photos:
        body.append("<h2>Per photo</h2>")
        body.append("<p>Captions: mean IoU of the main columns (the <code>mean</code> of per_image.csv).</p>")
        for n, name, path in photos:
            src = _href(path, out)
            items = "".join(f"<li>{html.escape(run)}: {cell(float(mean[n]))}</li>" for run, mean in means.items())
            body.append(f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(name)}" loading="lazy"></a>'
                        f"<figcaption><strong>{html.escape(name)}</strong>"
                        + (f"<ul>{items}</ul>" if items else "") + "</figcaption></figure>")
    page = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            f"<title>{html.escape(heading)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>", *body,
            "</body>", "</html>", ""]
    path = out / REPORT
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(page))
    return path
