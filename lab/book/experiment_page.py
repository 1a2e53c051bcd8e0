"""An experiment's page: its report, the runs table (raw HTML), the curves, the linked and related papers."""

from __future__ import annotations

import re
from urllib.parse import quote

from lab.book import report as results_block
from lab.book import table as book
from lab.book.sources import ExperimentInfo
from lab.book.text import date, ext_link, front, h, md, safe_url
from lab.errors import LabError
from lab.runs.state import State


class ExperimentPages:
    """The experiment pages of a Book (a mixin: the links and the lab come from Book)."""

    def experiment_page(self, e: ExperimentInfo) -> str:
        info = [f"Experiment `{e.name}`"]
        if e.tags:
            info.append("tags: " + self.tag_links(e.tags, "../../"))
        if e.command:
            info.append(f"command: <code>{h(e.command)}</code>")
        info_line = " · ".join(info) + "\n"
        body = e.body.strip("\n") + "\n"
        m = re.match(r"\A\s*(# [^\n]*\n)", body)
        if m and m.group(1).strip() == f"# {e.name}" and e.title != e.name:
            body = f"# {md(e.title)}\n\n{info_line}" + body[m.end():]  # the template's heading: the title wins
        elif m:
            body = body[: m.end()] + "\n" + info_line + body[m.end():]
        else:
            body = f"# {md(e.title)}\n\n{info_line}\n{body}"
        results = self._results(e)
        try:
            body = results_block.replace_block(body, results_block.RESULTS_START, results_block.RESULTS_END, f"\n{results}\n", "report")
        except LabError as err:
            self.warn(f"lab: {e.exp.report_path}: {err}; the results are shown at the end")
            body += f"\n## Results\n\n{results}\n"
        papers = self._papers_list(e)
        try:
            body = results_block.replace_block(body, "<!-- lab:papers -->", "<!-- /lab:papers -->", f"\n{papers}\n", "report", heading="## Papers")
        except LabError as err:
            self.warn(f"lab: {e.exp.report_path}: {err}; the papers are shown at the end")
            body += f"\n## Papers\n\n{papers}\n"
        body += self._related(e)  # lab.search.related: papers, feed items and experiments not linked yet
        return front(e.title) + body

    def _related(self, e: ExperimentInfo) -> str:
        from lab.search.related import for_book  # [] without an index (or on any trouble): the book builds regardless

        keys = {p.key: p for p in self.papers}
        lines = []
        for r in for_book(self.ws.root, e.name):
            stem = r["path"][len("papers/"):-len(".md")] if r["type"] == "paper" else ""
            if stem in keys:
                lines.append(f"- paper: {self.paper_link(keys[stem], '../../')}")
            elif r["type"] == "experiment":
                lines.append(f"- experiment: {self.exp_link(r['id'], '../../')}: {md(r['title'])}")
            elif r["type"] == "feed" and safe_url(r.get("link")):
                lines.append(f"- feed item: {ext_link(safe_url(r['link']), r['title'])}")
            else:
                lines.append(f"- {r['type']}: {md(r['title'])}")
        return "\n## Related\n\n" + "\n".join(lines) + "\n" if lines else ""

    def _results(self, e: ExperimentInfo) -> str:
        out = [results_html(e.table), grouped_html(e.table, e.group_by)]
        if e.curves:
            # <object>, not <img>: a browser shows the points' hover titles only in an embedded SVG document.
            up = "../" if self.directory_urls else ""
            figures = " ".join(f'<object type="image/svg+xml" data="{up}curves/{quote(path.name)}" aria-label="{h(panel)}"></object>'
                               for panel, path in e.curves.items())
            out += ["\n### Curves\n", f'<div class="lab-curves"> {figures} </div>\n']
        return "\n".join(out)

    def _papers_list(self, e: ExperimentInfo) -> str:
        papers = self.papers_of.get(e.name, [])
        if not papers:
            return "_No linked papers: link one with `lab note ARXIV_ID --exp " + e.name + "`._"
        return "\n".join(f"- {self.paper_link(p, '../../')}: {self.short_authors(p)} ({md(date(p.meta.get('published'))[:4])})"
                         for p in papers)


def results_html(t: book.RunsTable) -> str:
    """The runs table of an experiment page: a header row of groups (settings, eval, test ...) over the columns,
    settings tinted apart from metrics, numbers right-aligned, the best run marked ★; inside a box that scrolls
    sideways when the table is wider than the page. The state column is left out when every run succeeded."""
    if not t.runs:
        return "_No runs yet._"
    groups = t.groups()
    rows = t.rows()
    show_state = any(r.state != State.SUCCEEDED for r in t.runs)
    if not show_state:
        groups[0] = ("run", ["setting", "duration"])
        rows = [[r[0], *r[2:]] for r in rows]
    head1, head2, classes = [], [], []
    for g, (name, columns) in enumerate(groups):
        kind = "run" if g == 0 else "set" if name == "settings" else "met"
        label = "" if name == "run" else (name or "metrics")
        head1.append(f'<th colspan="{len(columns)}" class="lab-{kind} lab-g">{h(label)}</th>')
        for c, column in enumerate(columns):
            cls = f"lab-{kind}" + (" lab-g" if c == 0 else "") + (" lab-num" if kind == "met" or column == "duration" else "")
            classes.append(cls)
            head2.append(f'<th class="{cls}">{h(column)}</th>')
    body = []
    for run, cells in zip(t.runs, rows):
        tds = []
        for c, (cell, cls) in enumerate(zip(cells, classes)):
            text = h(cell)
            if c == 0 and run.setting == t.best:
                text = f"<strong>{text}</strong> ★"
            tds.append(f'<td class="{cls}">{text}</td>')
        body.append("<tr> " + " ".join(tds) + " </tr>")
    html_out = (f'<div class="lab-table"><table><thead><tr class="lab-groups"> {" ".join(head1)} </tr> '
                f'<tr> {" ".join(head2)} </tr></thead><tbody> {" ".join(body)} </tbody></table></div>\n')
    notes = []
    if t.best:
        notes.append(f"★ {h(t.best_note())}")
    elif t.metric:
        notes.append(f"<em>{h(t.best_note())}</em>")
    if not show_state:
        notes.append(f"{'both' if len(t.runs) == 2 else 'all ' + str(len(t.runs)) if len(t.runs) > 1 else 'the'} "
                     f"run{'s' if len(t.runs) > 1 else ''} succeeded")
    if t.hidden_metrics:
        notes.append(h(t.hidden_note()) + " (choose with <code>metrics:</code> in the front matter)")
    if notes:
        html_out += f'<p class="lab-table-note">{" · ".join(notes)}</p>\n'
    return html_out


def grouped_html(t: book.RunsTable, keys: list[str]) -> str:
    """The runs folded over `keys` (seeds by default) as mean ± std and n, when some setting was repeated."""
    from lab.book.sweep import group_runs, grouped_rows

    if not any(k in t.setting_keys for k in keys):
        return ""
    groups = group_runs(t, keys)
    if not any(g.n > 1 for g in groups):
        return ""
    header, rows = grouped_rows(t, groups)
    head = " ".join(f'<th class="{"lab-num" if c >= len(header) - len(t.metric_keys) - 1 else "lab-set"}">{h(c_)}</th>'
                    for c, c_ in enumerate(header))
    body = " ".join("<tr> " + " ".join(f'<td class="{"lab-num" if c >= len(header) - len(t.metric_keys) - 1 else "lab-set"}">{h(v)}</td>'
                                       for c, v in enumerate(row)) + " </tr>" for row in rows)
    return (f"\n### Over {h(', '.join(keys))}\n\n"
            f'<div class="lab-table"><table><thead><tr> {head} </tr></thead><tbody> {body} </tbody></table></div>\n'
            f'<p class="lab-table-note">mean ± standard deviation over the runs that differ only in {h(", ".join(keys))}; n runs each</p>\n')
