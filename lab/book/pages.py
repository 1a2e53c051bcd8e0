"""The lab book's pages, as Markdown, generated from `experiments/` and `papers/` (no generator is imported here):
`Book` holds the home page, the indexes and the tag pages; an experiment's page is in lab.book.experiment_page,
a paper's page and the reading list in lab.book.paper_pages, what is read from the lab in lab.book.sources.

The pages mirror the lab's layout, so the relative links users write in reports and notes keep working:
`index.md` (home), `experiments/index.md`, `experiments/EXP/report.md` (+ `curves/PANEL.svg`, the settings files
and figures, and what `book: publish:` in lab.yaml adds), `papers/index.md`, `papers/KEY.md`, `reading-list/index.md`
(the newest feed items), `tags/index.md`, `tags/SLUG.md`.

Text that came from arXiv or feeds (titles, authors, abstracts, comments, tags) is untrusted: it is escaped
everywhere (lab.core.markdown in Markdown, `html.escape` in raw HTML) and its URLs are linked only when http(s).
Reports and the `## Notes` of paper notes are the user's own Markdown and render as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from lab.book import table as book
from lab.book.experiment_page import ExperimentPages, results_html  # noqa: F401
from lab.book.paper_pages import PaperPages
from lab.book.sources import (ExperimentInfo, Paper, load_experiment, load_papers, own_files, publish_patterns,
                              published_pdf, tag_slugs)
from lab.book.text import date, front, h, html_table, md, plural, table, when

HOME_LATEST_RUNS = 10
HOME_EXPERIMENTS = 20
HOME_PAPERS = 10


@dataclass
class Page:
    src_uri: str
    content: str
    in_nav: bool = False



class Book(ExperimentPages, PaperPages):
    """Every page of the lab book, from one read of the lab."""

    def __init__(self, ws, site_name: str = "Lab book", plots: bool = True, cache_dir: Path | None = None,
                 warn=lambda message: None, progress=lambda message: None, directory_urls: bool = True,
                 links: str = "site"):
        self.ws = ws
        # Links in raw HTML: "site" gives the built page's URL (mkdocs and ProperDocs leave raw HTML alone);
        # "source" gives the .md file, relative to the page's own (Zensical rewrites raw HTML links as it does Markdown's).
        self.links = links
        self.directory_urls = directory_urls
        self.site_name = site_name
        self.warn = warn
        self.publish = publish_patterns(ws)
        self.experiments = [load_experiment(exp, warn) for exp in ws.experiments()]
        self.by_name = {e.name: e for e in self.experiments}
        self.papers = load_papers(ws, warn)
        self.papers_of: dict[str, list[Paper]] = {}
        for paper in self.papers:
            for name in dict.fromkeys(paper.experiments()):
                if name in self.by_name:
                    self.papers_of.setdefault(name, []).append(paper)
        # (series, cache_dir, key, best) of the experiments whose figures are not in the cache yet: see _curves.
        self.to_draw: list[tuple[dict, Path, str]] = []
        self.slugs = tag_slugs([t for e in self.experiments for t in e.tags] + [t for p in self.papers for t in p.tags()])
        if plots:
            self._curves(cache_dir or ws.state_dir / "book" / "curves", progress)

    def _curves(self, cache_dir: Path, progress) -> None:
        from lab.book import plots

        for e in self.experiments:
            runs = e.table.runs
            if not any(r.metrics_file for r in runs):
                continue
            key = plots.cache_key(runs, e.table.best)  # before the rows are read: a file growing meanwhile is redrawn next time
            found = plots.cached_curves(cache_dir / e.name, key)
            if found is not None:
                e.curves = found
                continue
            # Not drawn here: the caller draws `to_draw` (plots.Drawing) while the pages are rendered.
            series = plots.curve_series(runs)
            e.curves = plots.figure_paths(series, cache_dir / e.name)
            self.to_draw.append((series, cache_dir / e.name, key, e.table.best))
        if self.to_draw:
            progress(f"lab: drawing the metric curves of {len(self.to_draw)} experiment(s) (cached in {cache_dir})")

    # Each page: (src_uri, markdown, in navigation).
    def pages(self):
        yield Page("index.md", self.home(), True)
        yield Page("experiments/index.md", self.experiments_index(), True)
        for e in self.experiments:
            yield Page(f"experiments/{e.name}/report.md", self.experiment_page(e))
        yield Page("papers/index.md", self.papers_index(), True)
        for p in self.papers:
            yield Page(f"papers/{p.key}.md", self.paper_page(p))
        yield Page("reading-list/index.md", self.reading_list(), True)
        yield Page("tags/index.md", self.tags_index(), True)
        for tag, slug in self.slugs.items():
            yield Page(f"tags/{slug}.md", self.tag_page(tag))

    def static_files(self):
        """(src_uri, file) for the curves and the experiments' own files: settings files and figures, and what
        `book: publish:` in lab.yaml adds."""
        for e in self.experiments:
            for path in e.curves.values():
                yield f"experiments/{e.name}/curves/{path.name}", path
            yield from own_files(e.exp.dir, f"experiments/{e.name}", self.publish)
        for p in self.papers:
            if p.fulltext and published_pdf(self.publish, p.key):
                yield f"papers/{p.key}.pdf", self.ws.root / p.fulltext["pdf"]

    # --- links ---

    def exp_link(self, name: str, up: str) -> str:
        e = self.by_name.get(name)
        if e is None:
            return f"{md(name)} (no such experiment)"
        return f"[{md(name)}]({up}experiments/{name}/report.md)"

    def paper_link(self, p: Paper, up: str) -> str:
        return f"[{md(p.title())}]({up}papers/{quote(p.key)}.md)"

    def tag_links(self, tags, up: str) -> str:
        return ", ".join(f"[{md(t)}]({up}tags/{self.slugs[t]}.md)" for t in dict.fromkeys(tags) if t in self.slugs)

    @staticmethod
    def _short_authors(p: Paper) -> str:
        authors = p.authors()
        return ", ".join(authors[:3]) + (" et al." if len(authors) > 3 else "")

    def short_authors(self, p: Paper) -> str:
        return md(self._short_authors(p))

    # --- home and indexes ---

    def home(self) -> str:
        runs = [(e, r) for e in self.experiments for r in e.table.runs if r.started_at]
        runs.sort(key=lambda er: er[1].started_at or "", reverse=True)
        n_runs = sum(1 for e in self.experiments for r in e.table.runs if r.state != "not run")
        exps, papers = plural(len(self.experiments), "experiment").split(" ", 1), plural(len(self.papers), "paper").split(" ", 1)
        out = [front(self.site_name), f"# {md(self.site_name)}\n",
               f"{exps[0]} [{exps[1]}](experiments/index.md) · {plural(n_runs, 'run')} · "
               f"{papers[0]} [{papers[1]}](papers/index.md) · [reading list](reading-list/index.md) · [tags](tags/index.md)\n",
               "## Latest runs\n"]
        rows = [[self.exp_link(e.name, ""), md(r.setting) + (" ★" if r.setting == e.table.best else ""), md(r.state),
                 md(when(r.started_at)), md(book.format_duration(r.duration_s)), self._headline(e, r)]
                for e, r in runs[:HOME_LATEST_RUNS]]
        out.append(table(["experiment", "setting", "state", "started", "duration", "result"], rows) or "_No runs yet._\n")
        if rows and any(e.table.best for e, _ in runs[:HOME_LATEST_RUNS]):
            out.append("★ the best run of its experiment\n")
        out.append("\n## Experiments\n")
        recent = sorted(self.experiments, key=lambda e: self._last_activity(e), reverse=True)[:HOME_EXPERIMENTS]
        out.append(self._experiment_table(recent, "index.md") or "_No experiments yet: make one with `lab new exp1`._\n")
        if len(self.experiments) > HOME_EXPERIMENTS:
            out.append(f"\n[All {len(self.experiments)} experiments](experiments/index.md)\n")
        out.append("\n## Recently added papers\n")
        recent_papers = sorted(self.papers, key=lambda p: (p.added_at(), p.key), reverse=True)[:HOME_PAPERS]
        rows = [[self.paper_link(p, ""), self.short_authors(p), md(date(p.meta.get("published"))), md(date(p.added_at()))]
                for p in recent_papers]
        out.append(table(["paper", "authors", "published", "added"], rows) or "_No papers yet: add one with `lab note ARXIV_ID`._\n")
        if len(self.papers) > HOME_PAPERS:
            out.append(f"\n[All {len(self.papers)} papers](papers/index.md)\n")
        return "\n".join(out)

    def _headline(self, e: ExperimentInfo, r: book.Run) -> str:
        return md(self._headline_text(e, r))

    @staticmethod
    def _headline_text(e: ExperimentInfo, r: book.Run) -> str:
        metric = e.table.metric
        if metric and book.is_number(r.metrics.get(metric)):
            return f"{metric} {book.format_value(r.metrics[metric])}"
        return ""

    @staticmethod
    def _last_activity(e: ExperimentInfo) -> str:
        return max((r.started_at or "" for r in e.table.runs), default="")

    def _experiment_table(self, experiments, here: str) -> str:
        # Raw HTML with links computed here: a 1,000-row Markdown table costs seconds of inline parsing.
        rows = []
        for e in experiments:
            states: dict[str, int] = {}
            for r in e.table.runs:
                states[r.state] = states.get(r.state, 0) + 1
            best = next((r for r in e.table.runs if r.setting == e.table.best), None)
            rows.append([
                self.a(here, f"experiments/{e.name}/report.md", e.name), h(e.title), self.tag_anchors(e.tags, here),
                h(", ".join(f"{n} {s}" for s, n in states.items())), h(when(self._last_activity(e))),
                h(self._headline_text(e, best)) if best else "",
            ])
        return html_table(["experiment", "title", "tags", "runs", "last run", "best"], rows)

    def experiments_index(self) -> str:
        here = "experiments/index.md"
        body = self._experiment_table(self.experiments, here) or "_No experiments yet: make one with `lab new exp1`._\n"
        return front("Experiments") + "# Experiments\n\n" + body

    def papers_index(self) -> str:
        here = "papers/index.md"
        papers = sorted(self.papers, key=lambda p: (p.added_at(), p.key), reverse=True)
        rows = [[self.a(here, f"papers/{p.key}.md", p.title()), h(self._short_authors(p)), h(date(p.meta.get("published"))),
                 ", ".join(self.a(here, f"experiments/{n}/report.md", n) for n in dict.fromkeys(p.experiments()) if n in self.by_name),
                 h(date(p.added_at()))] for p in papers]
        body = html_table(["paper", "authors", "published", "experiments", "added"], rows) or "_No papers yet: add one with `lab note ARXIV_ID`._\n"
        return front("Papers") + f"# Papers\n\n{plural(len(papers), 'paper note')}, the most recently added first.\n\n" + body

    def tags_index(self) -> str:
        exp_count: dict[str, int] = {}
        paper_count: dict[str, int] = {}
        for e in self.experiments:
            for t in set(e.tags):
                exp_count[t] = exp_count.get(t, 0) + 1
        for p in self.papers:
            for t in set(p.tags()):
                paper_count[t] = paper_count.get(t, 0) + 1
        rows = [[f"[{md(t)}]({slug}.md)", str(exp_count.get(t, 0)), str(paper_count.get(t, 0))] for t, slug in self.slugs.items()]
        return front("Tags") + "# Tags\n\n" + (table(["tag", "experiments", "papers"], rows) or "_No tags yet._\n")

    def tag_page(self, tag: str) -> str:
        here = f"tags/{self.slugs[tag]}.md"
        exps = [e for e in self.experiments if tag in e.tags]
        papers = [p for p in self.papers if tag in p.tags()]
        out = [front(f"Tag: {tag}"), f"# Tag: {md(tag)}\n", "[All tags](index.md)\n"]
        if exps:
            out += ["## Experiments\n", "<ul>" + "".join(f"<li>{self.a(here, f'experiments/{e.name}/report.md', e.name)}: {h(e.title)}</li>" for e in exps) + "</ul>\n"]
        if papers:
            out += ["## Papers\n", "<ul>" + "".join(f"<li>{self.a(here, f'papers/{p.key}.md', p.title())}: {h(self._short_authors(p))}</li>" for p in papers) + "</ul>\n"]
        return "\n".join(out) + "\n"

    # --- URLs for raw HTML (mkdocs rewrites and checks only Markdown links) ---

    def url(self, src_uri: str) -> str:
        """The site URL of a generated page, as mkdocs gives it (a file that is no page keeps its path)."""
        if not src_uri.endswith(".md"):
            return src_uri
        stem, _, _ = src_uri.rpartition(".")
        if not self.directory_urls:
            return f"{stem}.html"
        parent, _, name = stem.rpartition("/")
        if name == "index":
            return f"{parent}/" if parent else ""
        return f"{stem}/"

    def href(self, here: str, target: str) -> str:
        import posixpath

        if self.links == "source":
            return quote(posixpath.relpath(target, posixpath.dirname(here) or "."), safe="/.-_~")
        base = self.url(here)
        base_dir = base if base.endswith("/") or not base else posixpath.dirname(base) + "/"
        to = self.url(target)
        rel = posixpath.relpath(to or ".", base_dir.rstrip("/") or ".")
        if to.endswith("/") or not to:
            rel = "./" if rel == "." else rel + "/"
        return quote(rel, safe="/.-_~")

    def a(self, here: str, target: str, label: str) -> str:
        return f'<a href="{self.href(here, target)}">{h(label)}</a>'

    def tag_anchors(self, tags, here: str) -> str:
        return ", ".join(self.a(here, f"tags/{self.slugs[t]}.md", t) for t in dict.fromkeys(tags) if t in self.slugs)
