"""One experiment as one file to share: `lab book EXP --single FILE.html` (self-contained: the stylesheet and the
curves inline, no script, nothing fetched) or `--single FILE.md` (the runs table as Markdown text); and the
summary `lab notify --experiment` sends (best run, its key metrics, the table as text).
"""

from __future__ import annotations

import html
import re

from lab.book import report as results_block
from lab.book import table as book
from lab.book.experiment_page import grouped_html, results_html
from lab.book.sources import load_experiment, load_papers
from lab.book.text import date, safe_url

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; max-width: 60rem;
  margin: 2rem auto; padding: 0 1rem; }
h1, h2, h3 { line-height: 1.25; } code { background: #f3f3f3; padding: 0 .2em; border-radius: 3px; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; }
.lab-table { overflow-x: auto; max-width: 100%; margin: 0 0 .4em; }
.lab-table table { border-collapse: collapse; font-size: 13px; }
.lab-table th, .lab-table td { padding: .3em .6em; white-space: nowrap; border-bottom: 1px solid #e0e0e0; vertical-align: bottom; }
.lab-table .lab-groups th { border-bottom: none; font-weight: 600; color: #666; text-transform: uppercase; font-size: .8em; }
.lab-table .lab-set { background: #f7f7f7; font-style: italic; } .lab-table .lab-g { border-left: 2px solid #ddd; }
.lab-table .lab-num { text-align: right; font-variant-numeric: tabular-nums; }
.lab-table-note { font-size: 12px; color: #666; margin-top: 0; }
.lab-curves { display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr)); gap: .5rem 1rem; }
.lab-curves svg { width: 100%; height: auto; }
table:not([class]) { border-collapse: collapse; } table:not([class]) td, table:not([class]) th { border: 1px solid #ddd; padding: .2em .5em; }
"""


def _experiment(ws, name: str, warn):
    exp = ws.experiment(name)
    e = load_experiment(exp, warn)
    papers = [p for p in load_papers(ws, warn) if name in p.experiments()]
    return exp, e, papers


def _svgs(ws, e) -> list[str]:
    """The experiment's curves as inline SVG elements (drawn now when not cached)."""
    from lab.book import plots

    runs = e.table.runs
    if not any(r.metrics_file for r in runs):
        return []
    cache = ws.state_dir / "book" / "curves" / e.name
    key = plots.cache_key(runs, e.table.best)
    found = plots.cached_curves(cache, key)
    if found is None:
        found = plots.draw_curves(runs, cache, e.table.best)
    out = []
    for i, path in enumerate(found.values()):
        svg = re.sub(r"\A<\?xml[^>]*>\s*", "", path.read_text(encoding="utf-8"))
        # One document holds every panel: each panel's ids (its clip path) made its own.
        svg = re.sub(r'\bid="([^"]+)"', rf'id="\1-{i}"', svg)
        out.append(re.sub(r"url\(#([^)]+)\)", rf"url(#\1-{i})", svg))
    return out


def _body(e) -> str:
    """The report's own Markdown without lab's blocks (they are written anew), under its title, with a place for
    the results and the papers (at the end when the report has no markers)."""
    body = e.body.strip("\n") + "\n"
    m = re.match(r"\A\s*(# [^\n]*\n)", body)
    if m and m.group(1).strip() == f"# {e.name}" and e.title != e.name:
        body = body[m.end():]
        m = None
    if not m:
        body = f"# {e.title}\n\n{body}"
    if "<!-- /lab:papers -->" not in body:
        body += "\n## Papers\n\n<!-- lab:papers --><!-- /lab:papers -->\n"
    for start, end in ((results_block.RESULTS_START, results_block.RESULTS_END), ("<!-- lab:papers -->", "<!-- /lab:papers -->")):
        body = re.sub(re.escape(start) + r".*?" + re.escape(end), f"{start}{end}", body, flags=re.S)
    return body


def single_html(ws, name: str, warn=lambda message: None) -> str:
    """One self-contained HTML page of the experiment: report, runs table, curves as inline SVG, linked papers."""
    from markdown_it import MarkdownIt

    exp, e, papers = _experiment(ws, name, warn)
    # The report is rendered with raw HTML off: whatever it holds, the page runs no script.
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = _body(e)
    marker = "LABRESULTSBLOCK"
    body = body.replace(f"{results_block.RESULTS_START}{results_block.RESULTS_END}", f"\n\n{marker}\n\n")
    papers_marker = "LABPAPERSBLOCK"
    body = body.replace("<!-- lab:papers --><!-- /lab:papers -->", f"\n\n{papers_marker}\n\n")
    rendered = parser.render(body)
    svgs = _svgs(ws, e)
    results = results_html(e.table) + grouped_html(e.table, e.group_by)
    if svgs:
        results += '<h3>Curves</h3>\n<div class="lab-curves">' + "\n".join(svgs) + "</div>\n"
    if f"<p>{marker}</p>" in rendered:
        rendered = rendered.replace(f"<p>{marker}</p>", results)
    else:
        rendered += "<h2>Results</h2>\n" + results
    items = []
    for p in papers:
        url = safe_url(p.meta.get("url"))
        title = html.escape(p.title())
        head = f'<a href="{html.escape(url, quote=True)}">{title}</a>' if url else title
        items.append(f"<li>{head}: {html.escape(', '.join(p.authors()[:3]))} ({html.escape(date(p.meta.get('published'))[:4])})</li>")
    papers_html = f"<ul>{''.join(items)}</ul>\n" if items else "<p><em>No linked papers.</em></p>\n"
    rendered = rendered.replace(f"<p>{papers_marker}</p>", papers_html)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(e.title)}</title>\n<style>{STYLE}</style></head>\n<body>\n{rendered}</body></html>\n")


def single_markdown(ws, name: str, warn=lambda message: None) -> str:
    """The same as Markdown: the runs table as a Markdown table, the curves left out."""
    from lab.book.sweep import group_runs, grouped_rows

    exp, e, papers = _experiment(ws, name, warn)
    body = _body(e)
    table = e.table.markdown()
    if any(k in e.table.setting_keys for k in e.group_by):
        groups = group_runs(e.table, e.group_by)
        if any(g.n > 1 for g in groups):
            header, rows = grouped_rows(e.table, groups)
            table += (f"\n\nOver {', '.join(e.group_by)} (mean ± std):\n\n| " + " | ".join(book.md_cell(c) for c in header) + " |\n|"
                      + "|".join("---" for _ in header) + "|\n" + "\n".join("| " + " | ".join(book.md_cell(c) for c in r) + " |" for r in rows))
    block = f"{results_block.RESULTS_START}{results_block.RESULTS_END}"
    body = body.replace(block, f"\n{table}\n") if block in body else body.rstrip("\n") + f"\n\n## Results\n\n{table}\n"
    lines = [f"- {book.md_cell(p.title())}" + (f" <{safe_url(p.meta.get('url'))}>" if safe_url(p.meta.get("url")) else "") for p in papers]
    body = body.replace("<!-- lab:papers --><!-- /lab:papers -->", "\n".join(lines) or "_No linked papers._")
    return body.rstrip("\n") + "\n"


def summary(ws, name: str, warn=lambda message: None) -> tuple[str, str]:
    """(title, text) of the experiment for a notification: the best run, its key metrics, the table as text."""
    from lab.book.table_text import text_table

    exp = ws.experiment(name)
    t = book.runs_table(exp)
    if not t.runs:
        return f"{name}: no runs yet", f"{name} has no settings or runs yet."
    lines = []
    if t.best:
        best = next(r for r in t.runs if r.setting == t.best)
        key = ", ".join(f"{k} {book.format_value(best.metrics[k])}" for k in t.metric_keys if k in best.metrics)
        lines.append(f"best: {t.best} ({key})" if key else f"best: {t.best}")
    lines += text_table(t)
    return f"{name}: {t.best_note() or str(len(t.runs)) + ' runs'}", "\n".join(lines)
