"""The lab book: real `mkdocs build --strict` of a lab with real runs, paper notes and pulled feeds; lab compare;
lab report; screenshots and checks in headless Chromium."""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from helpers import FIXTURES, REPO, LabCLI
from lab.book.metrics import direction
from lab.book.report import replace_block, RESULTS_END, RESULTS_START
from lab.book.text import safe_url
from lab.core.markdown import escape_markdown as md_escape
from lab.errors import BadInput
from lab.core.workspace import Workspace, init
from lab.papers.notes import render_note
from lab.core.settings import find_setting

ATOM = {"a": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom"}

# A program that streams metrics the way lab's runner expects: one JSON object a line to $LAB_METRICS.
PROGRAM = """\
import json, math, os, sys
settings = json.load(open(sys.argv[1]))
lr = settings["learning_rate"]
with open(os.environ["LAB_METRICS"], "a") as f:
    for step in range(10, 110, 10):
        f.write(json.dumps({"step": step, "epoch": step / 100, "loss": math.exp(-step * lr * 100)}) + "\\n")
        if step % 50 == 0:
            f.write(json.dumps({"step": step, "eval_accuracy": 1 - math.exp(-step * lr * 50), "eval_loss": math.exp(-step * lr * 40)}) + "\\n")
"""

# Three runs and six result metrics, with bookkeeping around them as transformers' Trainer logs it.
PROGRAM6 = """\
import json, math, os, sys
settings = json.load(open(sys.argv[1]))
lr = settings["learning_rate"]
rows = [{"step": 0, "max_steps": 100, "num_train_epochs": 1}]
for step in range(10, 110, 10):
    rows.append({"step": step, "epoch": step / 100, "loss": math.exp(-step * lr * 10), "learning_rate": lr * (1 - step / 100),
                 "grad_norm": 1 + lr * step})
    if step % 50 == 0:
        rows.append({"step": step, "eval_loss": math.exp(-step * lr * 8), "eval_accuracy": 1 - math.exp(-step * lr * 20),
                     "eval_f1": 1 - math.exp(-step * lr * 18), "eval_runtime": 0.5, "eval_samples_per_second": 320.0})
rows.append({"step": 100, "train_loss": 0.4 / (lr * 1000), "train_runtime": 9.5, "train_samples_per_second": 33.7, "total_flos": 3.8e11})
rows.append({"step": 100, "test_accuracy": 1 - math.exp(-lr * 1900), "test_f1": 1 - math.exp(-lr * 1700), "test_samples": 160})
with open(os.environ["LAB_METRICS"], "a") as f:
    f.writelines(json.dumps(r) + "\\n" for r in rows)
"""

# An abstract as arXiv sends it, with what Markdown would read as markup: shown once, as text.
MATH_ABSTRACT = "We find p < 0.05 for x_i in [x] & y, with *no* emphasis, `no code` and a \\alpha_1 term."

EVIL_TITLE = '<script>alert("title")</script> Evil <img src=x onerror=alert(1)> [click](javascript:alert(2))'
EVIL_ABSTRACT = ('We show <script>alert("abstract")</script> that <img src=x onerror="alert(3)"> works.\n'
                 '<a href="javascript:alert(4)">link</a> and [md](javascript:alert(5)) {: onclick="alert(6)" }\n\n'
                 '## Notes\n\nnot really notes <svg onload=alert(7)>')


def note_from_fixture(xml_path: Path, experiments: list[str], tags: list[str], added_at: str) -> tuple[str, str]:
    """(key, text) of a paper note written as `lab note` writes it, from a recorded arXiv API answer."""
    entry = ET.parse(xml_path).getroot().find("a:entry", ATOM)
    abs_url = entry.find("a:id", ATOM).text.strip()
    full_id = abs_url.rsplit("/abs/", 1)[1]
    arxiv_id, _, version = full_id.rpartition("v")
    links = {link.get("title") or link.get("rel"): link.get("href") for link in entry.findall("a:link", ATOM)}
    doi = entry.find("arxiv:doi", ATOM)
    journal = entry.find("arxiv:journal_ref", ATOM)
    comment = entry.find("arxiv:comment", ATOM)
    meta = {
        "arxiv_id": arxiv_id,
        "version": int(version),
        "title": " ".join(entry.find("a:title", ATOM).text.split()),
        "authors": [a.find("a:name", ATOM).text for a in entry.findall("a:author", ATOM)],
        "published": entry.find("a:published", ATOM).text,
        "updated": entry.find("a:updated", ATOM).text,
        "primary_category": entry.find("arxiv:primary_category", ATOM).get("term"),
        "categories": [c.get("term") for c in entry.findall("a:category", ATOM)],
        "doi": doi.text if doi is not None else None,
        "journal_ref": journal.text if journal is not None else None,
        "comment": comment.text if comment is not None else None,
        "url": links.get("alternate"),
        "pdf_url": links.get("pdf"),
        "tags": tags,
        "experiments": experiments,
        "added_at": added_at,
    }
    abstract = " ".join(entry.find("a:summary", ATOM).text.split())
    return arxiv_id.replace("/", "_"), render_note(meta, abstract) + "My notes on it, see [exp1](../experiments/exp1/report.md).\n"


# Feed items as a hostile feed could leave them (and a hand-edited items file: a list, a broken line).
EVIL_ITEMS = [
    {"id": "evil-1", "title": '<script>alert("feed")</script> Evil item <img src=x onerror=alert(20)>',
     "authors": ["<b onmouseover=alert(21)>Mallory</b>"], "summary": '<img src=x onerror=alert(22)> [a](javascript:alert(23)) {: onclick="alert(24)" }',
     "link": "javascript:alert(25)", "published": "2026-11-20T00:00:00+00:00", "arxiv_id": "<script>alert(26)</script>",
     "feed": "evil", "added_at": "2026-11-20T00:00:00+00:00"},
    {"id": "evil-2", "title": "A data link", "authors": [], "summary": "", "link": "data:text/html,<script>alert(27)</script>",
     "published": "2026-11-19T00:00:00+00:00", "arxiv_id": '2401.00002"><script>alert(28)</script>', "feed": "evil", "added_at": "2026-11-19T00:00:00+00:00"},
    {"id": "evil-3", "title": "Kept already", "authors": ["Eve"], "summary": "An item whose paper has a note.",
     "link": " JaVaScRiPt:alert(29)", "published": "2026-11-18T00:00:00+00:00", "arxiv_id": "2401.00001", "feed": "evil", "added_at": "2026-11-18T00:00:00+00:00"},
]


def make_lab(root: Path) -> Path:
    from lab.runs import attempt as job

    init(root)
    ws = Workspace(root)
    (root / "train.py").write_text(PROGRAM)
    exp = ws.new_experiment("exp1")
    report = exp.report_path.read_text()
    report = report.replace("title: exp1", "title: Warmup on small data").replace("tags: []", "tags: [warmup, minilm]")
    report = report.replace("command: \n", 'command: "{python} train.py {settings}"\n')
    report = report.replace("## Conclusion\n", "## Conclusion\n\nA **bold** claim with <em>inline HTML</em>, see [the other](../exp2/report.md).\n")
    exp.report_path.write_text(report)
    for name, lr in (("s1", 0.001), ("s2", 0.003)):
        (exp.settings_dir / f"{name}.json").write_text(json.dumps({"learning_rate": lr, "epochs": 1}))
        record = job.run(find_setting(exp, name))
        assert record["state"] == "succeeded", record
    # Files beside the settings: data and a script stay private; a figure is published.
    (exp.dir / "data").mkdir()
    (exp.dir / "data" / "train.jsonl").write_text('{"text": "private", "label": 1}\n')
    (exp.dir / "data" / "make_data.py").write_text("print('private')\n")
    (exp.dir / "figures").mkdir()
    (exp.dir / "figures" / "confusion.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    exp2 = ws.new_experiment("exp2")
    (exp2.settings_dir / "a.json").write_text('{"x": 1}')
    (root / "train6.py").write_text(PROGRAM6)
    exp3 = ws.new_experiment("exp3")
    exp3.report_path.write_text(exp3.report_path.read_text().replace("title: exp3", "title: Three runs, six metrics")
                                .replace("command: \n", 'command: "{python} train6.py {settings}"\n'))
    # a and b differ only in a note, so their curves are identical; c learns faster.
    for name, setting in (("a", {"learning_rate": 0.001, "seed": 1}), ("b", {"learning_rate": 0.001, "seed": 1, "comment": "a copy of a"}),
                          ("c", {"learning_rate": 0.003, "seed": 1})):
        (exp3.settings_dir / f"{name}.json").write_text(json.dumps(setting))
        record = job.run(find_setting(exp3, name))
        assert record["state"] == "succeeded", record
    # The same runs with every metric as a column: a table wider than the page, which scrolls inside its box.
    shutil.copytree(exp3.dir, ws.experiments_dir / "exp4")
    report = ws.experiments_dir / "exp4" / "report.md"
    every = ["eval_accuracy", "eval_f1", "eval_loss", "eval_runtime", "eval_samples_per_second", "test_accuracy", "test_f1",
             "test_samples", "train_loss", "train_runtime", "train_samples_per_second", "loss", "learning_rate", "grad_norm", "max_steps"]
    report.write_text(report.read_text().replace("title: Three runs, six metrics", f"title: Every metric\nmetrics: {json.dumps(every)}"))
    papers = root / "papers"
    key, text = note_from_fixture(FIXTURES / "arxiv-api" / "id_1605.08386_s0_m100_199195aa31ad.xml", ["exp1"], ["markov"], "2026-11-01T10:00:00+00:00")
    (papers / f"{key}.md").write_text(text)
    key, text = note_from_fixture(FIXTURES / "arxiv-api" / "legacy-2016_id_list_1111.2011v2.xml", ["exp1", "exp2"], ["warmup"], "2026-11-02T10:00:00+00:00")
    (papers / f"{key}.md").write_text(text)
    evil = {
        "arxiv_id": "2401.00001", "version": 1, "title": EVIL_TITLE,
        "authors": ["<b onmouseover=alert(8)>Mallory</b>", "Eve [x](javascript:alert(9))"],
        "published": "2024-01-01T00:00:00Z", "updated": "2024-01-01T00:00:00Z", "primary_category": "cs.LG",
        "categories": ["cs.LG", "<i>x</i>"], "doi": '10.1/x"><script>alert(10)</script>', "journal_ref": "<script>alert(11)</script>",
        "comment": '<img src=x onerror=alert(12)> 5 pages', "url": "javascript:alert(13)", "pdf_url": " JaVaScRiPt:alert(14)",
        "tags": ["<script>alert(15)</script>"], "experiments": ["exp1"], "added_at": "2026-11-03T10:00:00+00:00",
    }
    (papers / "2401.00001.md").write_text(render_note(evil, EVIL_ABSTRACT) + "My own *notes*: keep away.\n")
    math_note = dict(evil, arxiv_id="2401.00003", title="Math in abstracts", authors=["Ada Lovelace"], categories=["stat.ML"],
                     doi=None, journal_ref=None, comment=None, url="https://arxiv.org/abs/2401.00003v1", pdf_url=None, tags=[], experiments=["exp3"])
    (papers / "2401.00003.md").write_text(render_note(math_note, MATH_ABSTRACT) + "Compare with *exp3*.\n")
    (papers / "reading-list.md").write_text("# Things to read\n\nNot a paper note.\n")
    # The reading list: real feeds pulled from the recorded answers, one item kept as a note, and a hostile feed.
    from fixture_server import FixtureServer
    from lab.papers.feeds import Feeds

    server = FixtureServer()
    try:
        feeds = Feeds(ws)
        feeds.add(f"{server.url}/feeds/arxiv_cs_lg.xml", name="cs-lg")
        feeds.add(f"{server.url}/feeds/bair_blog.xml", name="bair")
        assert not any(r.error for r in feeds.pull())
    finally:
        server.stop()
    kept = feeds.items("cs-lg")[0]
    (papers / f"{kept['arxiv_id']}.md").write_text(render_note(dict(evil, arxiv_id=kept["arxiv_id"], title=kept["title"], tags=[], experiments=[]), kept["summary"]))
    feeds.add("https://example.org/evil.xml", name="evil")
    feeds.items_path("evil").write_text("".join(json.dumps(i) + "\n" for i in EVIL_ITEMS) + "[1, 2]\n{not json\n")
    return root


def mkdocs_build(root: Path, site: Path, config: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), NO_MKDOCS_2_WARNING="1")
    argv = [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)]
    if config is not None:
        argv += ["-f", str(config)]
    return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)


class Page(HTMLParser):
    """The links, images, scripts and attributes of one built page."""

    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.path = path
        self.links, self.images, self.scripts, self.attrs, self.text = [], [], [], [], []
        self._in_script = False
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        d = dict(attrs)
        if tag == "a" and d.get("href"):
            self.links.append(d["href"])
        if tag == "img" and d.get("src"):
            self.images.append(d["src"])
        if tag == "object" and d.get("data"):
            self.images.append(d["data"])
        if tag == "script":
            self._in_script = True
            self.scripts.append(d.get("src") or "")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def resolve(site: Path, page: Path, href: str) -> Path | None:
    """The file an internal link points to (None for external links and anchors)."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    target = Path(posixpath.normpath(posixpath.join(str(page.parent), unquote(parts.path))))
    return target / "index.html" if target.is_dir() or href.split("#")[0].endswith("/") else target


GENERATORS = ("mkdocs", "properdocs", "zensical")


def book_build(root: Path, site: Path, generator: str) -> subprocess.CompletedProcess:
    """`lab book --strict` with `book: generator:` set in lab.yaml (removed again after)."""
    config = root / "lab.yaml"
    before = config.read_text() if config.is_file() else None
    config.write_text((before or "") + f"\nbook:\n  generator: {generator}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), NO_MKDOCS_2_WARNING="1")
    try:
        return subprocess.run([sys.executable, "-m", "lab", "book", "--strict", "-d", str(site)], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        if before is None:
            config.unlink()
        else:
            config.write_text(before)


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """One lab built by each generator (all before any test changes the lab)."""
    root = make_lab(tmp_path_factory.mktemp("book") / "lab")
    site = root.parent / "site"
    proc = mkdocs_build(root, site)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = {"mkdocs": (root, site, proc)}
    for generator in GENERATORS[1:]:
        other = root.parent / f"site-{generator}"
        proc = book_build(root, other, generator)
        assert proc.returncode == 0, proc.stderr[-4000:]
        out[generator] = (root, other, proc)
    return out


@pytest.fixture(scope="module")
def built(sites):
    return sites["mkdocs"]


@pytest.fixture(params=GENERATORS)
def site_by(sites, request):
    """(generator, (root, site, build process)): the reader checks run on the site of every generator."""
    return request.param, sites[request.param]


def test_book_pages_and_links_both_ways(site_by):
    generator, (root, site, proc) = site_by
    exp_page = site / "experiments" / "exp1" / "report" / "index.html"
    paper_page = site / "papers" / "1605.08386" / "index.html"
    for path in (site / "index.html", site / "experiments" / "index.html", exp_page, site / "experiments" / "exp2" / "report" / "index.html",
                 site / "papers" / "index.html", paper_page, site / "papers" / "1111.2011" / "index.html",
                 site / "tags" / "index.html", site / "tags" / "warmup" / "index.html", site / "tags" / "markov" / "index.html"):
        assert path.is_file(), path
    assert not (site / "papers" / "reading-list").exists()  # other Markdown under papers/ is not a note
    exp = Page(exp_page)
    # The report renders as Markdown; its runs table holds both runs, the differing setting and final metrics.
    html = exp_page.read_text()
    assert "<strong>bold</strong>" in html and "<em>inline HTML</em>" in html
    assert "Warmup on small data" in html
    text = " ".join(exp.text)
    for needed in ("s1", "s2", "succeeded", "learning_rate", "eval_accuracy", "★"):
        assert needed in text, needed
    assert "epochs" not in text.split("Curves")[0].split("Results")[-1]  # the same in every run: not a column
    # Links both ways: experiment -> paper and paper -> experiment.
    exp_targets = {resolve(site, exp_page, h) for h in exp.links}
    assert paper_page in exp_targets and site / "papers" / "1111.2011" / "index.html" in exp_targets
    paper = Page(paper_page)
    assert exp_page in {resolve(site, paper_page, h) for h in paper.links}
    assert "Heat-bath random walks with Markov bases" in paper_page.read_text()
    assert "Caprice Stanley" in " ".join(paper.text) and "My notes on it" in " ".join(paper.text)
    assert "https://arxiv.org/abs/1605.08386v1" in paper.links and "https://arxiv.org/pdf/1605.08386v1" in paper.links
    legacy = Page(site / "papers" / "1111.2011" / "index.html")
    assert any(h.startswith("https://doi.org/") for h in legacy.links)
    exp2 = site / "experiments" / "exp2" / "report" / "index.html"
    assert exp2 in {resolve(site, site / "papers" / "1111.2011" / "index.html", h) for h in legacy.links}
    assert "not run" in exp2.read_text()
    # Tags link to their pages, and tag pages back to what carries them.
    tag_page = site / "tags" / "warmup" / "index.html"
    assert tag_page in exp_targets
    tag_targets = {resolve(site, tag_page, h) for h in Page(tag_page).links}
    assert exp_page in tag_targets and site / "papers" / "1111.2011" / "index.html" in tag_targets


def test_every_internal_link_resolves(site_by):
    generator, (root, site, _) = site_by
    pages = [p for p in site.rglob("*.html") if "assets" not in p.parts and p.name != "404.html"]  # 404 links from /
    assert len(pages) >= 12
    for page in pages:
        parsed = Page(page)
        for href in parsed.links + parsed.images:
            target = resolve(site, page, href)
            if target is not None:
                assert target.exists(), f"{page.relative_to(site)}: broken link {href}"


def test_navigation_stays_small(built):
    _, site, _ = built
    home = (site / "index.html").read_text()
    # Only the home page and the section indexes are in the navigation rendered into every page.
    assert "1605.08386" not in home.split('md-sidebar--primary')[1].split("md-sidebar--secondary")[0]
    assert home.count('class="md-nav__link') < 20


def test_curves_are_drawn_and_shown(built):
    root, site, _ = built
    curves = site / "experiments" / "exp1" / "curves"
    # Small multiples: training and evaluation loss share one panel; every other metric has its own.
    assert sorted(p.name for p in curves.glob("*.svg")) == ["eval_accuracy.svg", "loss.svg"]
    loss = ET.parse(curves / "loss.svg").getroot()
    texts = ["".join(t.itertext()) for t in loss.iter("{http://www.w3.org/2000/svg}text")]
    assert "loss" in texts and "step" in texts  # the title and y label, and the x label
    assert "s2 ★" in texts and "s1" in texts  # the legend names the runs and stars the best
    assert "loss (train)" in texts and "eval_loss (eval)" in texts
    hovers = ["".join(t.itertext()) for t in loss.iter("{http://www.w3.org/2000/svg}title")]
    assert "s1 · step 50 · eval_loss 0.13534" in hovers and any("s2" in h and "step 100" in h for h in hovers)
    # Integer steps get integer ticks, even for an evaluation curve of two points (steps 50 and 100).
    acc = ET.parse(curves / "eval_accuracy.svg").getroot()
    ticks = [t.text for t in acc.iter("{http://www.w3.org/2000/svg}text") if t.get("text-anchor") == "middle" and not t.get("transform")]
    assert ticks and all(t.isdigit() for t in ticks), ticks
    page = site / "experiments" / "exp1" / "report" / "index.html"
    images = {resolve(site, page, src) for src in Page(page).images}
    assert curves / "loss.svg" in images and curves / "eval_accuracy.svg" in images
    assert 'class="lab-curves"' in page.read_text()
    # Identical runs stay visible: each has its own colour, marker and width, and a shared point names both.
    exp3 = site / "experiments" / "exp3" / "curves"
    assert sorted(p.name for p in exp3.glob("*.svg")) == ["eval_accuracy.svg", "eval_f1.svg", "grad_norm.svg", "learning_rate.svg", "loss.svg"]
    hovers = ["".join(t.itertext()) for t in ET.parse(exp3 / "eval_f1.svg").getroot().iter("{http://www.w3.org/2000/svg}title")]
    assert any(h.startswith("a, b · step 50 · eval_f1 ") for h in hovers) and any(h.startswith("c · step 50 ·") for h in hovers)
    svg = (exp3 / "loss.svg").read_text()
    assert svg.count('stroke="#0072B2"') >= 2 and svg.count('stroke="#D55E00"') >= 2  # a and b: two colours
    legend = ["".join(t.itertext()) for t in ET.parse(exp3 / "loss.svg").getroot().iter("{http://www.w3.org/2000/svg}text")]
    assert "a" in legend and "b = a" in legend and "c ★" in legend  # b lies on a, drawn dashed over it, and says so
    # The figures are cached under .lab/, so an unchanged experiment is not drawn again.
    cached = root / ".lab" / "book" / "curves" / "exp1"
    assert (cached / "manifest.json").is_file()
    before = {p.name: p.stat().st_mtime_ns for p in cached.glob("*.svg")}
    site2 = root.parent / "site2"
    proc = mkdocs_build(root, site2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "drawing the metric curves" not in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in cached.glob("*.svg")} == before
    assert (site2 / "experiments" / "exp1" / "curves" / "loss.svg").read_bytes() == (curves / "loss.svg").read_bytes()


def test_drawing_runs_in_workers_that_end_with_it(tmp_path):
    import multiprocessing

    from lab.book import plots

    series = {"loss": {"s1": ([1, 2, 3], [3.0, 2.0, 1.0]), "s2": ([1, 2, 3], [2.5, 2.0, 1.5])},
              "eval_accuracy": {"s1": ([2, 3], [0.5, 0.7])}}
    jobs = [(series, tmp_path / f"exp{i}", f"key{i}") for i in range(20)]
    drawing = plots.Drawing(jobs, workers=2)
    drawing.wait()
    assert not multiprocessing.active_children()
    for i in range(20):
        manifest = json.loads((tmp_path / f"exp{i}" / "manifest.json").read_text())
        assert manifest == {"key": f"key{i}", "files": {"eval_accuracy": "eval_accuracy.svg", "loss": "loss.svg"}}
        assert b"<svg" in (tmp_path / f"exp{i}" / "loss.svg").read_bytes()
    # A build that fails stops the drawing: what has not started is dropped and every worker ends.
    drawing = plots.Drawing([(series, tmp_path / f"late{i}", "k") for i in range(200)], workers=2)
    drawing.cancel()
    assert not multiprocessing.active_children()
    assert len(list(tmp_path.glob("late*/manifest.json"))) < 200


def test_no_markup_from_fetched_text_survives(site_by):
    generator, (_, site, _) = site_by
    for page in [p for p in site.rglob("*.html") if "assets" not in p.parts]:
        parsed = Page(page)
        for tag, name, value in parsed.attrs:
            assert not name.startswith("on"), f"{page}: <{tag} {name}={value!r}>"
            if name in ("href", "src", "action", "formaction", "data"):
                assert not value.strip().lower().startswith(("javascript:", "data:", "vbscript:")), f"{page}: {name}={value!r}"
        for script in parsed.scripts:
            assert "alert(" not in script, f"{page}: a script from fetched text: {script[:100]!r}"
        raw = page.read_text()
        for tag in ("<svg onload", "<b onmouseover", "<i>x</i>", "<img src=x"):
            assert tag not in raw, f"{page}: {tag}"
    evil = site / "papers" / "2401.00001" / "index.html"
    text = " ".join(Page(evil).text)
    # Shown as text, escaped: the reader sees what arXiv sent, and nothing runs.
    assert '<script>alert("title")</script> Evil <img src=x onerror=alert(1)>' in text
    assert "onerror=" in text and "[md](javascript:alert(5))" in text
    # The abstract's fake "## Notes" stays in the abstract; the real notes are the user's own Markdown.
    assert "<em>notes</em>" in evil.read_text()
    assert "<title>" in evil.read_text() and "&lt;script&gt;" in evil.read_text().split("<title>")[1].split("</title>")[0]
    search = site / "search.json" if generator == "zensical" else site / "search" / "search_index.json"
    blob = json.dumps(json.loads(search.read_text()))
    assert "<script" not in blob and "<img" not in blob and "<svg" not in blob
    # The reading list: hostile feed items are shown as text, their javascript: and data: links are not links, and an
    # "arXiv id" that is not one gets no `lab note` command.
    reading = site / "reading-list" / "index.html"
    parsed = Page(reading)
    text = " ".join(parsed.text)
    assert '<script>alert("feed")</script> Evil item <img src=x onerror=alert(20)>' in text
    assert "<b onmouseover=alert(21)>Mallory</b>" in text and "[a](javascript:alert(23))" in text
    assert "A data link" in text and "lab note 2401.00002" not in text and "lab note <script>" not in text
    assert not any("alert(" in href for href in parsed.links)


def test_reading_list(built):
    _, site, _ = built
    reading = site / "reading-list" / "index.html"
    parsed = Page(reading)
    text = " ".join(" ".join(parsed.text).split())
    home = site / "index.html"
    assert reading in {resolve(site, home, href) for href in Page(home).links}
    # Every feed, newest first, from the real answers that lab feed pull stored.
    for feed in ("cs-lg", "bair", "evil"):
        assert f'id="{feed}"' in reading.read_text(), feed
    from lab.papers.feeds import Feeds

    items = Feeds(Workspace(built[0])).items("cs-lg")
    kept, others = items[0], items[1:]
    assert kept["title"] in text and all(i["title"] in text for i in others)
    # An item with a note links to it; the others say how to keep them.
    kept_page = site / "papers" / kept["arxiv_id"] / "index.html"
    assert kept_page in {resolve(site, reading, href) for href in parsed.links}
    assert f"lab note {kept['arxiv_id']}" not in text
    assert all(f"lab note {i['arxiv_id']}" in text for i in others)
    assert site / "papers" / "2401.00001" / "index.html" in {resolve(site, reading, href) for href in parsed.links}
    assert all(i["link"] in parsed.links for i in items)  # real http(s) links are links
    bair = Feeds(Workspace(built[0])).items("bair")
    assert bair and all(i["link"] in parsed.links for i in bair)


def test_paper_page_shows_the_abstract_once_as_text(built):
    _, site, _ = built
    page = site / "papers" / "2401.00003" / "index.html"
    raw = page.read_text()
    text = " ".join(Page(page).text)
    assert text.count(MATH_ABSTRACT) == 1, text  # p < 0.05, x_i, [x], *no*, `no code`, \alpha_1: as arXiv wrote them
    assert "lab:abstract" not in raw and "\\_" not in raw and "\\[" not in raw and "&amp;lt;" not in raw
    assert "Compare with <em>exp3</em>" in raw  # the user's notes are Markdown
    real = site / "papers" / "1605.08386" / "index.html"
    assert "lab:abstract" not in real.read_text() and "lab rewrites this block" not in real.read_text()
    real_text = " ".join(Page(real).text)
    assert real_text.count("heat-bath random walk") == 1 or real_text.count("Graphs on lattice points") == 1


def test_publishing_is_explicit(built):
    root, site, _ = built
    exp = site / "experiments" / "exp1"
    # By default: settings files and figures, never data, scripts, logs, runs or models.
    assert (exp / "settings" / "s1.json").is_file() and (exp / "figures" / "confusion.png").is_file()
    assert not (exp / "data").exists() and not (exp / "logs").exists() and not (exp / "runs").exists()
    assert not list(site.rglob("*.jsonl")) and not list(site.rglob("make_data.py"))
    config = root / "lab.yaml"
    try:
        config.write_text("book:\n  publish: ['data/*.jsonl']\n")
        proc = mkdocs_build(root, root.parent / "site-publish")
        assert proc.returncode == 0, proc.stderr[-3000:]
        published = root.parent / "site-publish" / "experiments" / "exp1"
        assert (published / "data" / "train.jsonl").is_file() and not (published / "data" / "make_data.py").exists()
        for bad, message in (("book: [x]\n", "lab.yaml: book: must be a mapping"),
                             ("book:\n  publish: ['../../papers/*']\n", "must stay inside the experiment")):
            config.write_text(bad)
            proc = mkdocs_build(root, root.parent / "site-bad")
            assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
            assert "Traceback" not in proc.stderr
    finally:
        config.unlink(missing_ok=True)


def test_home_and_search_text(built):
    _, site, _ = built
    home = " ".join(" ".join(Page(site / "index.html").text).split())
    assert "4 experiments" in home and "s2 ★" in home and "c ★" in home  # the latest runs mark each experiment's best
    from lab.book.text import plural

    assert plural(1, "experiment") == "1 experiment" and plural(0, "run") == "0 runs"
    index = json.loads((site / "search" / "search_index.json").read_text())
    texts = {doc["location"]: doc["text"] for doc in index["docs"]}
    experiments = texts["experiments/"]
    assert "experiment title tags runs" in experiments and "experimenttitle" not in experiments
    exp3 = texts["experiments/exp3/report/#results"]
    assert "eval" in exp3 and "accuracy" in exp3 and "evalaccuracy" not in exp3.replace(" ", " ")


def test_compare_json_and_text(built, tmp_path):
    root, _, _ = built
    lab = LabCLI(root)
    data = lab.json("compare", "exp1")
    assert data["metric"] == "eval_accuracy" and data["mode"] == "max"
    assert data["differing_settings"] == ["learning_rate"]
    runs = {r["setting"]: r for r in data["runs"]}
    assert runs["s2"]["metrics"]["eval_accuracy"] > runs["s1"]["metrics"]["eval_accuracy"]
    assert data["best"] == "s2" and runs["s2"]["best"] and not runs["s1"]["best"]
    assert runs["s1"]["settings"] == {"learning_rate": 0.001} and runs["s1"]["state"] == "succeeded"
    assert data["metrics"] == ["eval_accuracy", "eval_loss", "loss"]  # no train_loss here: loss is the result
    by_loss = lab.json("compare", "exp1", "--metric", "eval_loss")
    assert by_loss["mode"] == "min" and by_loss["best"] == "s2"
    assert lab.json("compare", "exp1", "--metric", "eval_loss", "--max")["best"] == "s1"
    text = lab("compare", "exp1", check=0)
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["settings", "eval", "metrics"]  # the groups, over their columns
    assert lines[1].split() == ["setting", "time", "learning_rate", "accuracy", "loss", "loss"]  # every run succeeded: no state
    assert [line for line in lines if line.startswith("*")][0].split()[1] == "s2"
    assert "best: s2 by eval_accuracy" in text.stderr
    empty = lab.json("compare", "exp2")
    assert empty["best"] is None and empty["runs"][0]["state"] == "not run"


def test_compare_columns_fit_and_can_be_chosen(built):
    root, _, _ = built
    lab = LabCLI(root)
    # Six results, evaluation and test first; bookkeeping (max_steps, runtimes, sample counts, the last logged loss
    # beside train_loss) hidden, and said so on stderr.
    data = lab.json("compare", "exp3")
    assert data["metrics"] == ["eval_accuracy", "eval_f1", "eval_loss", "test_accuracy", "test_f1", "train_loss"]
    assert data["differing_settings"] == ["learning_rate", "comment"]
    for hidden in ("max_steps", "num_train_epochs", "test_samples", "loss", "train_runtime", "eval_samples_per_second"):
        assert hidden in data["hidden_metrics"] and hidden not in data["metrics"], hidden
    text = lab("compare", "exp3", check=0)
    lines = text.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, "\n".join(lines)
    assert lines[0].split() == ["settings", "eval", "test", "train"]
    assert "not shown: " in text.stderr and "bookkeeping values" in text.stderr
    # --metrics picks and orders; --all shows everything; a name no run has is refused.
    assert lab.json("compare", "exp3", "--metrics", "test_f1,max_steps")["metrics"] == ["test_f1", "max_steps"]
    every = lab.json("compare", "exp3", "--all")["metrics"]
    assert {"max_steps", "loss", "train_runtime", "eval_accuracy"} <= set(every) and "step" not in every
    proc = lab("compare", "exp3", "--metrics", "eval_f1,bleu", check=2)
    assert "no run of exp3 has a metric 'bleu'" in proc.stderr and proc.stderr.count("\n") == 1
    # metrics: in lab.yaml, then in the report's front matter, which wins.
    config = root / "lab.yaml"
    report = root / "experiments" / "exp3" / "report.md"
    original = report.read_text()
    try:
        config.write_text("metrics: [eval_loss, test_accuracy]\n")
        assert lab.json("compare", "exp3")["metrics"] == ["eval_loss", "test_accuracy"]
        report.write_text(original.replace("title: Three runs, six metrics", "title: Three runs, six metrics\nmetrics: eval_f1, loss"))
        assert lab.json("compare", "exp3")["metrics"] == ["eval_f1", "loss"]
        lab("report", "exp3", check=0)
        assert "| setting | duration | *learning_rate* | *comment* | eval_f1 | loss |" in report.read_text()
        report.write_text(original.replace("title: Three runs, six metrics", "title: Three runs, six metrics\nmetrics: {a: 1}"))
        proc = lab("compare", "exp3", check=2)
        assert "report.md: metrics: metrics must be a list of metric names" in proc.stderr
    finally:
        config.unlink(missing_ok=True)
        report.write_text(original)


@pytest.mark.parametrize("args, message", [
    (["compare", "nosuch"], "no experiment 'nosuch'"),
    (["compare", "exp1", "--metric", "bleu"], "no run of exp1 has a metric 'bleu'"),
    (["compare", "../etc"], "bad experiment name"),
    (["report", "nosuch"], "no experiment 'nosuch'"),
])
def test_compare_and_report_bad_input(built, args, message):
    root, _, _ = built
    before = (root / "experiments" / "exp1" / "report.md").read_bytes()
    proc = LabCLI(root)(*args, check=2)
    assert message in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert (root / "experiments" / "exp1" / "report.md").read_bytes() == before


def test_report_writes_only_between_markers(built):
    root, _, _ = built
    lab = LabCLI(root)
    report = root / "experiments" / "exp1" / "report.md"
    original = report.read_text()
    head, _, rest = original.partition(RESULTS_START)
    _, _, tail = rest.partition(RESULTS_END)
    try:
        lab("report", "exp1", check=0)
        first = report.read_text()
        assert first.startswith(head + RESULTS_START) and first.endswith(RESULTS_END + tail)
        block = first[len(head):len(first) - len(tail)]
        assert "| setting | duration | *learning_rate* | eval_accuracy | eval_loss | loss |" in block  # all succeeded: no state column
        assert "**s2** ★" in block and "best: s2 by eval_accuracy" in block
        lab("report", "exp1", check=0)
        assert report.read_text() == first  # idempotent
        # The user edits around the block; a new report changes only the block.
        edited = first.replace("## Conclusion\n", "## Conclusion\n\nWarmup helps.\n")
        report.write_text(edited)
        lab("report", "exp1", "--metric", "eval_loss", check=0)
        again = report.read_text()
        assert again.split(RESULTS_START)[0] == edited.split(RESULTS_START)[0]
        assert again.split(RESULTS_END)[1] == edited.split(RESULTS_END)[1]
        assert "best: s2 by eval_loss (lower is better)" in again
    finally:
        report.write_text(original)


def test_report_adds_markers_and_refuses_broken_ones(lab, lab_root):
    exp = Workspace(lab_root).new_experiment("e")
    exp.report_path.write_text("---\ntitle: e\n---\n\n# e\n\nMy text.\n")
    lab("report", "e", check=0)
    text = exp.report_path.read_text()
    assert text.startswith("---\ntitle: e\n---\n\n# e\n\nMy text.\n\n## Results\n\n" + RESULTS_START + "\n")
    assert text.endswith(RESULTS_END + "\n") and "_No runs yet._" in text
    lab("report", "e", check=0)
    assert exp.report_path.read_text() == text
    broken = f"# e\n\n{RESULTS_START}\nold\n{RESULTS_START}\n{RESULTS_END}\n"
    exp.report_path.write_text(broken)
    proc = lab("report", "e", check=2)
    assert "expected one <!-- lab:results --> and one <!-- /lab:results --> marker, found 2 and 1" in proc.stderr
    assert exp.report_path.read_text() == broken
    backwards = f"{RESULTS_END}\n{RESULTS_START}\n"
    exp.report_path.write_text(backwards)
    assert "comes before" in lab("report", "e", check=2).stderr
    assert exp.report_path.read_text() == backwards


def test_new_lab_builds_out_of_the_box_and_lab_book(tmp_path):
    root = tmp_path / "fresh"
    LabCLI(root)("init", str(root), check=0, cwd=tmp_path)
    assert (root / "docs" / ".gitkeep").is_file()
    proc = mkdocs_build(root, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr
    assert "No experiments yet" in (tmp_path / "site" / "index.html").read_text()
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "NO_MKDOCS_2_WARNING": "1"}
    book = LabCLI(root)("book", "--strict", "--site-dir", str(tmp_path / "site3"), env=env, check=0)
    assert (tmp_path / "site3" / "index.html").is_file(), book.stderr
    (root / "mkdocs.yml").unlink()
    proc = LabCLI(root)("book", check=2)
    assert "no mkdocs.yml in" in proc.stderr and "lab init" in proc.stderr


def test_repository_book_builds(tmp_path):
    """The repository is a lab too: its own mkdocs.yml publishes its experiments and paper notes."""
    proc = mkdocs_build(REPO, tmp_path / "site", config=REPO / "mkdocs.yml")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    for exp in (REPO / "experiments").iterdir():
        if exp.is_dir() and not exp.name.startswith("."):
            assert (tmp_path / "site" / "experiments" / exp.name / "report" / "index.html").is_file()


def test_escaping_helpers():
    assert md_escape("<b>x</b> [a](javascript:b) *e* `c` {: onclick=x} a|b") == \
        "&lt;b&gt;x&lt;/b&gt; \\[a\\](javascript:b) \\*e\\* \\`c\\` \\{: onclick=x\\} a\\|b"
    assert md_escape("line\nbreak") == "line break"
    assert safe_url("https://arxiv.org/abs/1") == "https://arxiv.org/abs/1"
    for bad in ("javascript:alert(1)", " JAVASCRIPT:x", "data:text/html,x", "//evil", "http://a b", "https:/nohost", None, 3):
        assert safe_url(bad) is None, bad
    assert direction("eval_accuracy") == "max" and direction("eval_loss") == "min" and direction("eval/f1") == "max"
    assert direction("train_perplexity") == "min" and direction("throughput") is None
    with pytest.raises(BadInput):
        replace_block(f"{RESULTS_END}{RESULTS_START}", RESULTS_START, RESULTS_END, "x", "r.md")


CHROMIUM = any(__import__("shutil").which(b) for b in ("chromium", "chromium-browser", "google-chrome"))


@pytest.mark.slow  # a headless browser
@pytest.mark.skipif(not CHROMIUM and not os.environ.get("LAB_REQUIRE_CHROMIUM"), reason="no chromium (apt-get install -y chromium)")
def test_screenshots_in_chromium_without_sideways_scroll(site_by, tmp_path):
    """Home, an experiment with 3 runs and 6 metrics, a paper, the reading list (and the hostile paper, and a table
    too wide for the page) at 1280x2000 in headless Chromium: no page scrolls sideways, and once the pages' scripts
    ran no event handler or javascript: URL is in the DOM. LAB_SCREENSHOTS=DIR keeps the PNGs."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from screenshot import shoot
    finally:
        sys.path.pop(0)
    generator, (_, site, _) = site_by
    out = Path(os.environ.get("LAB_SCREENSHOTS") or tmp_path)
    pages = {"home": "/", "experiment": "/experiments/exp3/report/", "paper": "/papers/2401.00003/",
             "reading-list": "/reading-list/", "hostile-paper": "/papers/2401.00001/", "wide-table": "/experiments/exp4/report/"}
    results = shoot(site, pages, out)
    for name, r in results.items():
        data = Path(r["png"]).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name  # a rendered page, not a blank one
        assert r["innerWidth"] == 1280 and r["scrollWidth"] <= r["innerWidth"], (name, r)
        assert r["bad"] == [], (name, r["bad"])
    assert "Three runs, six metrics" in results["experiment"]["title"]


def test_papers_block_escapes_a_hand_edited_arxiv_id(lab, lab_root):
    """A note's arxiv_id is fetched-text territory: in a report's papers block it is text, not markup."""
    Workspace(lab_root).new_experiment("e")
    note = {"arxiv_id": '2401.00001 <img src=x onerror=alert(1)> [x](javascript:alert(2))', "title": "T *t*", "experiments": ["e"]}
    (lab_root / "papers" / "2401.00001.md").write_text(render_note(note, "An abstract."))
    lab("note", "--sync", check=0)
    block = (lab_root / "experiments" / "e" / "report.md").read_text().split("<!-- lab:papers -->")[1]
    assert "<img" not in block and "&lt;img src=x onerror=alert(1)&gt;" in block and "\\[x\\](javascript:alert(2))" in block
    assert "T \\*t\\*" in block
    # A well-formed id is written as it is.
    note["arxiv_id"] = "2401.00001"
    (lab_root / "papers" / "2401.00001.md").write_text(render_note(note, "An abstract."))
    lab("note", "--sync", check=0)
    assert "(arXiv:2401.00001)" in (lab_root / "experiments" / "e" / "report.md").read_text()


class ArticleText(HTMLParser):
    """The text of a page's article (the theme's chrome left out), whitespace and permalink marks collapsed."""

    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.inside, self.skip, self.parts = False, 0, []
        self.feed(path.read_text(encoding="utf-8"))
        self.text = " ".join(" ".join(self.parts).replace("¶", " ").split())

    def handle_starttag(self, tag, attrs):
        self.inside = self.inside or tag == "article"
        self.skip += self.inside and tag in ("script", "style")

    def handle_endtag(self, tag):
        self.skip -= self.inside and tag in ("script", "style")
        self.inside = self.inside and tag != "article"

    def handle_data(self, data):
        if self.inside and not self.skip:
            self.parts.append(data)


def test_every_generator_shows_the_same_text_and_curves(sites):
    _, site, _ = sites["mkdocs"]
    pages = sorted(p.relative_to(site) for p in site.rglob("index.html") if "assets" not in p.parts)
    assert len(pages) >= 15
    for generator in GENERATORS[1:]:
        _, other, proc = sites[generator]
        for rel in pages:
            assert (other / rel).is_file(), f"{generator}: no {rel}"
            mine, theirs = ArticleText(site / rel).text, ArticleText(other / rel).text
            assert mine and mine == theirs, f"{generator}: {rel} differs"
        assert sorted(p.name for p in (other / "experiments" / "exp1" / "curves").glob("*.svg")) == ["eval_accuracy.svg", "loss.svg"]
        assert (other / "assets" / "lab" / "lab.css").is_file()
        assert "lab.css" in (other / "index.html").read_text()


def test_zensical_names_once_the_settings_it_does_not_carry_over(built, tmp_path):
    root, _, _ = built
    config = root / "mkdocs.yml"
    before = config.read_text()
    config.write_text(before.replace("  - lab\n", "  - lab\n  - rss\n  - macros:\n      module_name: main\n") + "hooks:\n  - hooks.py\n")
    try:
        proc = book_build(root, tmp_path / "site", "zensical")
    finally:
        config.write_text(before)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "not carried over" in line]
    assert len(lines) == 1 and "hooks" in lines[0] and "plugins: rss" in lines[0] and "plugins: macros" in lines[0], proc.stderr
    assert (tmp_path / "site" / "experiments" / "exp1" / "report" / "index.html").is_file()


def test_a_missing_generator_names_its_extra(built):
    """A Python where ProperDocs is not installed (hidden from the import system): one line naming the extra, exit 1."""
    root, _, _ = built
    config = root / "lab.yaml"
    config.write_text("book:\n  generator: properdocs\n")
    code = ("import importlib.util as u, runpy, sys; real = u.find_spec;"
            " u.find_spec = lambda name, *a: None if name == 'properdocs' else real(name, *a);"
            " sys.argv = ['lab', 'book']; runpy.run_module('lab', run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    finally:
        config.unlink()
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().endswith("pip install 'lab[properdocs]'") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    config.write_text("book:\n  generator: hugo\n")
    try:
        proc = LabCLI(root)("book", check=2)
    finally:
        config.unlink()
    assert "book.generator: 'hugo' is not one of mkdocs, properdocs, zensical" in proc.stderr


def test_out_writes_the_book_as_plain_markdown(built, tmp_path):
    root, _, _ = built
    out = tmp_path / "md"
    LabCLI(root)("book", "--out", out, check=0)
    report = (out / "experiments" / "exp1" / "report.md").read_text()
    assert report.startswith("---\ntitle: Warmup on small data\n") and 'class="lab-table"' in report
    assert (out / "experiments" / "exp1" / "curves" / "loss.svg").is_file() and (out / "assets" / "lab" / "lab.css").is_file()
    assert (out / "papers" / "1605.08386.md").is_file() and (out / "index.md").is_file() and (out / "tags" / "warmup.md").is_file()
    assert not (out / "experiments" / "exp1" / "data").exists()  # unpublished files stay private
    LabCLI(root)("book", "--out", out, check=0)  # its own directory: written again
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    proc = LabCLI(root)("book", "--out", tmp_path / "other", check=2)
    assert "not empty" in proc.stderr and (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_single_html_is_one_self_contained_page(built, tmp_path):
    root, _, _ = built
    page = tmp_path / "exp1.html"
    LabCLI(root)("book", "exp1", "--single", page, check=0)
    raw = page.read_text()
    parsed = Page(page)
    assert "<svg" in raw and 'class="lab-table"' in raw and "Warmup on small data" in raw
    assert parsed.scripts == [] and "<link" not in raw and "@import" not in raw
    assert all(ref.startswith("url(#") for ref in re.findall(r"url\([^)]*\)", raw))  # only the curves' own clip paths
    # Nothing the browser would fetch: no image, object, frame or stylesheet from elsewhere (links to click are fine).
    assert not [(t, k, v) for t, k, v in parsed.attrs if k in ("src", "data", "srcset", "poster")]
    assert "Heat-bath random walks with Markov bases" in raw
    text = " ".join(parsed.text)
    assert "s1" in text and "s2" in text and "★" in text
    md = tmp_path / "exp1.md"
    LabCLI(root)("book", "exp1", "--single", md, check=0)
    assert "| setting |" in md.read_text() and "Heat-bath random walks" in md.read_text()
    # No runs, or a wide sweep of settings: still a page that reads.
    LabCLI(root)("book", "exp2", "--single", tmp_path / "exp2.html", check=0)
    assert "not run" in (tmp_path / "exp2.html").read_text()
    proc = LabCLI(root)("book", "exp1", "--single", tmp_path / "x.pdf", check=2)
    assert ".html or a .md" in proc.stderr


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("LAB_REQUIRE_CHROMIUM"), reason="no chromium (apt-get install -y chromium)")
def test_single_html_opens_offline_in_chromium(built, tmp_path):
    root, _, _ = built
    page = tmp_path / "exp1.html"
    LabCLI(root)("book", "exp1", "--single", page, check=0)
    browser = next(b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b))
    # No network at all: a proxy that does not exist; every request would fail and show in the log.
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
                           "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert "<svg" in dom and "lab-table" in dom and "Warmup on small data" in dom
    assert "ERR_PROXY" not in proc.stderr and "net::ERR" not in proc.stderr
