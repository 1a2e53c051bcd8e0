"""The lab book's pages, as Markdown, generated from `experiments/` and `papers/` (no mkdocs import here).

The pages mirror the lab's layout, so the relative links users write in reports and notes keep working:
`index.md` (home), `experiments/index.md`, `experiments/EXP/report.md` (+ `curves/PANEL.svg`, the settings files
and figures, and what `book: publish:` in lab.yaml adds), `papers/index.md`, `papers/KEY.md`, `reading-list/index.md`
(the newest feed items), `tags/index.md`, `tags/SLUG.md`.

Text that came from arXiv or feeds (titles, authors, abstracts, comments, tags) is untrusted: it is escaped
everywhere (`md_escape` in Markdown, `html.escape` in raw HTML) and its URLs are linked only when http(s).
Reports and the `## Notes` of paper notes are the user's own Markdown and render as they are.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from lab.book import table as book
from lab.core import frontmatter
from lab.errors import BadInput, LabError
from lab.core.fsutil import natural_key
from lab.core.workspace import NAME_RE
from lab.papers import notes as paper_notes

HOME_LATEST_RUNS = 10
HOME_EXPERIMENTS = 20
HOME_PAPERS = 10
READING_PER_FEED = 15
# An experiment's own files published beside its page by default: its settings files and figures, never what lies
# in these directories; `book: publish: [glob, ...]` in lab.yaml adds more.
SKIP_DIRS = {"models", "logs", "runs"}
SETTINGS_SUFFIXES = {".json", ".jsonnet", ".libsonnet"}
FIGURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".avif"}
MAX_STATIC_BYTES = 10_000_000
ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5}|[a-z][a-z.-]*/\d{7})(v\d+)?", re.I)
_NOTES = re.compile(r"^## Notes[ \t]*\n?", re.M)


@dataclass
class Page:
    src_uri: str
    content: str
    in_nav: bool = False


@dataclass
class Paper:
    key: str
    meta: dict
    abstract: str
    notes: str

    def text(self, name: str) -> str:
        value = self.meta.get(name)
        if value is None:
            return ""
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return str(value)

    def title(self) -> str:
        return " ".join(self.text("title").split()) or self.key

    def authors(self) -> list[str]:
        return _str_list(self.meta.get("authors"))

    def experiments(self) -> list[str]:
        return _str_list(self.meta.get("experiments"))

    def tags(self) -> list[str]:
        return _str_list(self.meta.get("tags"))

    def added_at(self) -> str:
        return str(self.meta.get("added_at") or "")


@dataclass
class ExperimentInfo:
    exp: object
    name: str
    title: str
    tags: list[str]
    command: str | None
    body: str
    table: book.RunsTable
    curves: dict[str, Path] = field(default_factory=dict)


def _str_list(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [" ".join(str(v).split()) for v in value if v is not None and str(v).strip()]
    return [" ".join(str(value).split())]


def md(text) -> str:
    return book.md_escape(text)


def h(text) -> str:
    return html.escape(" ".join(str(text).split()), quote=True)


def safe_url(url) -> str | None:
    """`url` when it is a plain http(s) URL, else None (no javascript:, data:, or odd characters)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url or any(c.isspace() or ord(c) < 32 for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def ext_link(url: str, label: str) -> str:
    """An external link as inline HTML; `url` must have passed safe_url."""
    return f'<a href="{html.escape(url, quote=True)}">{h(label)}</a>'


def front(title: str) -> str:
    """Front matter for a generated page; the title is HTML-escaped (themes print it unescaped)."""
    import yaml

    title = html.escape(" ".join(title.split()), quote=True)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return "---\n" + yaml.dump({"title": title}, Dumper=dumper, allow_unicode=True, width=10_000) + "---\n\n"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of cells that are already escaped Markdown."""
    if not rows:
        return ""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """A raw HTML table of cells that are already safe HTML (one line: Markdown leaves it alone)."""
    if not rows:
        return ""
    # Spaces between cells: the search index takes the text of raw HTML as it is, and would run words together.
    head = " ".join(f"<th>{c}</th>" for c in header)
    body = " ".join("<tr> " + " ".join(f"<td>{c}</td>" for c in r) + " </tr>" for r in rows)
    return f"<table><thead><tr> {head} </tr></thead><tbody> {body} </tbody></table>\n"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def date(iso) -> str:
    return str(iso or "")[:10]


def when(iso) -> str:
    text = str(iso or "")
    return text[:16].replace("T", " ") if text else ""


# --- reading the lab ------------------------------------------------------------------------------------------


def note_abstract(body: str) -> str | None:
    """The abstract of a paper note's body as plain text, None when the note has no abstract block.

    The book's one reader of the abstract: lab.papers.notes owns the note's format (`abstract_of`)."""
    return paper_notes.abstract_of(body)


def read_paper(path: Path) -> Paper | None:
    """A paper note, or None when the file is some other Markdown file (no title or arxiv_id). Its abstract is
    the abstract block's text; everything else in the body (the `## Notes` heading aside) is the user's Markdown."""
    meta, body = frontmatter.read(path)
    if not (meta.get("title") or meta.get("arxiv_id")):
        return None
    abstract = note_abstract(body)
    own = body
    if abstract is not None and paper_notes.ABSTRACT_END in body:
        before = body.split("<!-- lab:abstract", 1)[0]
        own = before + body.split(paper_notes.ABSTRACT_END, 1)[1]
    own = _NOTES.sub("", own, count=1)
    return Paper(path.stem, meta, abstract or "", own.strip("\n"))


def load_papers(ws, warn) -> list[Paper]:
    papers = []
    if not ws.papers_dir.is_dir():
        return papers
    for path in sorted(ws.papers_dir.glob("*.md")):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            paper = read_paper(path)
        except (LabError, OSError, UnicodeDecodeError) as e:
            warn(f"lab: skipped paper note {path}: {e}")
            continue
        if paper is None:
            continue
        if not NAME_RE.fullmatch(paper.key) or paper.key == "index":
            warn(f"lab: skipped paper note {path}: name it with letters, digits, '-', '_' and '.' (not 'index')")
            continue
        papers.append(paper)
    return papers


def load_experiment(exp, warn) -> ExperimentInfo:
    meta, body = {}, ""
    if exp.report_path.is_file():
        try:
            meta, body = frontmatter.read(exp.report_path)
        except (LabError, OSError, UnicodeDecodeError) as e:
            warn(f"lab: {e}" if str(e).startswith(str(exp.report_path)) else f"lab: {exp.report_path}: {e}")
    command = meta.get("command")
    try:
        configured = book.configured_metrics(exp, meta)
    except LabError as e:
        warn(f"lab: {e}; the default columns are shown")
        configured = []
    return ExperimentInfo(
        exp=exp,
        name=exp.name,
        title=" ".join(str(meta.get("title") or exp.name).split()),
        tags=_str_list(meta.get("tags")),
        command=command if isinstance(command, str) and command.strip() else None,
        body=body,
        table=book.runs_table(exp, runs=book.load_runs(exp, resolve_missing=False), configured=configured),
    )


def tag_slugs(tags) -> dict[str, str]:
    """tag -> a unique, URL-safe page name."""
    slugs, used = {}, set()
    for tag in sorted(set(tags), key=natural_key):
        base = re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-")
        if not base or base == "index":
            base = "tag-" + hashlib.sha1(tag.encode()).hexdigest()[:8]
        slug, n = base, 2
        while slug in used:
            slug, n = f"{base}-{n}", n + 1
        used.add(slug)
        slugs[tag] = slug
    return slugs


# --- the pages ------------------------------------------------------------------------------------------------


class Book:
    """Every page of the lab book, from one read of the lab."""

    def __init__(self, ws, site_name: str = "Lab book", plots: bool = True, cache_dir: Path | None = None,
                 warn=lambda message: None, progress=lambda message: None, directory_urls: bool = True):
        self.ws = ws
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
            yield from _own_files(e.exp.dir, f"experiments/{e.name}", self.publish)

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
        """The site URL of a generated page, as mkdocs gives it."""
        stem, _, _ = src_uri.rpartition(".")
        if not self.directory_urls:
            return f"{stem}.html"
        parent, _, name = stem.rpartition("/")
        if name == "index":
            return f"{parent}/" if parent else ""
        return f"{stem}/"

    def href(self, here: str, target: str) -> str:
        import posixpath

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

    # --- an experiment ---

    def experiment_page(self, e: ExperimentInfo) -> str:
        info = [f"Experiment `{e.name}`"]
        if e.tags:
            info.append("tags: " + self.tag_links(e.tags, "../../"))
        if e.command:
            info.append(f"command: <code>{h(e.command)}</code>")
        info_line = " · ".join(info) + "\n"
        body = e.body.strip("\n") + "\n"
        m = re.match(r"\A\s*(# [^\n]*\n)", body)
        if m:
            body = body[: m.end()] + "\n" + info_line + body[m.end():]
        else:
            body = f"# {md(e.title)}\n\n{info_line}\n{body}"
        results = self._results(e)
        try:
            body = book.replace_block(body, book.RESULTS_START, book.RESULTS_END, f"\n{results}\n", "report")
        except LabError as err:
            self.warn(f"lab: {e.exp.report_path}: {err}; the results are shown at the end")
            body += f"\n## Results\n\n{results}\n"
        papers = self._papers_list(e)
        try:
            body = book.replace_block(body, "<!-- lab:papers -->", "<!-- /lab:papers -->", f"\n{papers}\n", "report", heading="## Papers")
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
        out = [results_html(e.table)]
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

    # --- the reading list ---

    def reading_list(self) -> str:
        """The newest items of each feed, each marked when it has a paper note, else with the `lab note` that keeps
        it. Feed text is fetched text: escaped, and linked only when the link is http(s)."""
        from lab.papers.feeds import Feeds

        here = "reading-list/index.md"
        out = [front("Reading list"), "# Reading list\n"]
        feeds_ = Feeds(self.ws)
        try:
            feeds = feeds_.load()
        except LabError as e:
            self.warn(f"lab: the reading list is empty: {e}")
            return "\n".join(out + [f"_The feeds could not be read: {md(e)}_\n"])
        if not feeds:
            return "\n".join(out + ["_No feeds yet: add one with `lab feed add cs.CL`, then `lab feed pull`._\n"])
        keys = {p.key for p in self.papers}
        out.append(f"The newest items of each feed ({READING_PER_FEED} at most; `lab feed pull` brings new ones). "
                   "✓ marks an item that has a paper note; `lab note ID` keeps one.\n")
        for feed in feeds:
            name = str(feed.get("name"))
            try:
                items = [i for i in feeds_.items(name) if isinstance(i, dict)] if NAME_RE.fullmatch(name) else []
            except (LabError, OSError, UnicodeDecodeError) as e:
                self.warn(f"lab: feed {name}: {e}")
                items = []
            items.sort(key=lambda i: (str(i.get("published") or i.get("added_at") or ""), str(i.get("added_at") or "")), reverse=True)
            pulled = f", last pulled {h(when(feed.get('last_pull')))}" if feed.get("last_pull") else ""
            out.append(f"## {md(name)}\n")
            out.append(f'<p class="lab-feed-info">{plural(len(items), "item")}{pulled}'
                       + (f' · <a href="{h(safe_url(feed.get("url")))}">feed</a>' if safe_url(feed.get("url")) else "") + "</p>\n")
            if not items:
                out.append("_No items yet: `lab feed pull`._\n")
                continue
            lis = [self._reading_item(item, keys, here) for item in items[:READING_PER_FEED]]
            out.append('<ul class="lab-reading"> ' + " ".join(lis) + " </ul>\n")
        return "\n".join(out) + "\n"

    def _reading_item(self, item: dict, keys: set[str], here: str) -> str:
        title = " ".join(str(item.get("title") or item.get("id") or "untitled").split())
        link = safe_url(item.get("link"))
        head = ext_link(link, title) if link else h(title)
        aid = item.get("arxiv_id")
        aid = aid.strip() if isinstance(aid, str) and ARXIV_ID.fullmatch(aid.strip()) else None
        mark = ""
        if aid:
            key = aid.replace("/", "_")
            if key in keys:
                mark = f' <span class="lab-kept" title="has a paper note">✓ {self.a(here, f"papers/{key}.md", "note")}</span>'
            else:
                mark = f" <code>lab note {h(aid)}</code>"
        authors = _str_list(item.get("authors"))
        meta = [h(", ".join(authors[:3]) + (" et al." if len(authors) > 3 else ""))] if authors else []
        if date(item.get("published")):
            meta.append(h(date(item.get("published"))))
        summary = " ".join(str(item.get("summary") or "").split())
        if len(summary) > 280:
            summary = summary[:277].rsplit(" ", 1)[0] + " …"
        parts = [f"<li>{head}{mark}"]
        if meta:
            parts.append(f'<br><span class="lab-meta">{" · ".join(meta)}</span>')
        if summary:
            parts.append(f'<br><span class="lab-summary">{h(summary)}</span>')
        return " ".join(parts) + "</li>"

    # --- a paper ---

    def paper_page(self, p: Paper) -> str:
        # The metadata is fetched text: one raw HTML table, every value escaped, no Markdown reads it.
        rows = []
        arxiv_id = p.text("arxiv_id").strip()
        version = p.text("version").strip().removeprefix("v")
        if arxiv_id:
            full = arxiv_id if re.search(r"v\d+$", arxiv_id) or not version.isdigit() else f"{arxiv_id}v{version}"
            rows.append(("arXiv", ext_link(f"https://arxiv.org/abs/{full}", full) if ARXIV_ID.fullmatch(arxiv_id) else h(arxiv_id)))
        if p.authors():
            rows.append(("authors", h(", ".join(p.authors()))))
        for key in ("published", "updated"):
            if p.text(key):
                rows.append((key, h(date(p.text(key)))))
        cats = _str_list(p.meta.get("categories"))
        primary = p.text("primary_category")
        if primary or cats:
            rows.append(("categories", h(", ".join(dict.fromkeys(([primary] if primary else []) + cats)))))
        doi = p.text("doi").strip()
        if doi:
            rows.append(("DOI", ext_link("https://doi.org/" + quote(doi, safe="/:;()._-"), doi)))
        for key in ("journal_ref", "comment"):
            if p.text(key).strip():
                rows.append((key.replace("_", " "), h(p.text(key))))
        links = [ext_link(u, label) for label, u in (("abstract page", safe_url(p.meta.get("url"))), ("PDF", safe_url(p.meta.get("pdf_url")))) if u]
        if links:
            rows.append(("links", " · ".join(links)))
        if p.added_at():
            rows.append(("added", h(when(p.added_at()))))
        out = [front(p.title()), f"# {md(p.title())}\n"]
        if rows:
            out.append('<table><tbody> ' + " ".join(f"<tr> <th>{k}</th> <td>{v}</td> </tr>" for k, v in rows) + " </tbody></table>\n")
        if p.tags():
            out.append("Tags: " + self.tag_links(p.tags(), "../") + "\n")
        if p.abstract.strip():
            # Plain text from the note's abstract block, escaped once, as one raw HTML paragraph: Markdown never reads it.
            out += ["## Abstract\n", f'<p class="lab-abstract">{h(p.abstract)}</p>\n']
        out += ["## Notes\n", (p.notes.strip() or "_No notes yet._") + "\n"]
        out.append("## Experiments\n")
        names = p.experiments()
        out.append("\n".join(f"- {self.exp_link(n, '../')}" + (f": {md(self.by_name[n].title)}" if n in self.by_name else "") for n in names)
                   if names else "_Not linked to an experiment yet: `lab note " + md(arxiv_id or p.key) + " --exp EXP`._")
        return "\n".join(out) + "\n"


def publish_patterns(ws) -> list[str]:
    """`book: publish: [glob, ...]` of lab.yaml: more of an experiment's files to publish, relative to its directory."""
    where = f"{ws.root / 'lab.yaml'}: book"
    config = ws.config.get("book")
    if config is None:
        return []
    if not isinstance(config, dict):
        raise BadInput(f"{where}: must be a mapping, e.g. book: {{publish: ['data/*.csv']}}")
    patterns = config.get("publish") or []
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not all(isinstance(g, str) and g.strip() for g in patterns):
        raise BadInput(f"{where}.publish: must be a list of glob patterns relative to an experiment, e.g. ['data/*.csv']")
    for glob in patterns:
        if glob.startswith(("/", "~")) or ".." in Path(glob).parts:
            raise BadInput(f"{where}.publish: {glob!r} must stay inside the experiment (no leading '/', no '..')")
    return [g.strip() for g in patterns]


def _publishable(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_STATIC_BYTES
    except OSError:
        return False


def _own_files(exp_dir: Path, prefix: str, patterns: list[str] = ()):
    """The experiment's own files to publish beside its page: the settings files in `settings/` and figures
    anywhere outside runs, logs and models, then the files `patterns` (book: publish:) match; nothing hidden."""
    import os

    chosen: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(exp_dir):
        rel_dir = Path(dirpath).relative_to(exp_dir)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and d != "curves"]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        in_settings = rel_dir.parts[:1] == ("settings",)
        for name in sorted(filenames):
            suffix = Path(name).suffix.lower()
            if name.startswith(".") or not (suffix in FIGURE_SUFFIXES or in_settings and suffix in SETTINGS_SUFFIXES):
                continue
            path = Path(dirpath) / name
            if _publishable(path):
                chosen[(rel_dir / name).as_posix()] = path
    root = exp_dir.resolve()
    for glob in patterns:
        for path in sorted(exp_dir.glob(glob)):
            rel = path.relative_to(exp_dir)
            if any(part.startswith(".") for part in rel.parts) or rel.suffix == ".md" or rel.parts[:1] == ("curves",):
                continue
            if path.resolve().is_relative_to(root) and _publishable(path):
                chosen.setdefault(rel.as_posix(), path)
    for rel, path in chosen.items():
        yield f"{prefix}/{rel}", path


def results_html(t: book.RunsTable) -> str:
    """The runs table of an experiment page: a header row of groups (settings, eval, test ...) over the columns,
    settings tinted apart from metrics, numbers right-aligned, the best run marked ★; inside a box that scrolls
    sideways when the table is wider than the page. The state column is left out when every run succeeded."""
    if not t.runs:
        return "_No runs yet._"
    groups = t.groups()
    rows = t.rows()
    show_state = any(r.state != "succeeded" for r in t.runs)
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
