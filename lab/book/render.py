"""The lab book rendered by lab: every page as plain Markdown, with the curves, the book's stylesheet and the files
experiments publish, for any static site generator to build (mkdocs, ProperDocs, Zensical, or another).

`Rendering` is one read of the lab (lab.book.pages.Book) with the curves being drawn in worker processes; the
mkdocs plugin hands its pages to mkdocs in memory, and `write` puts them in a directory (`lab book --out DIR`, and
the docs directory lab gives Zensical). The pages use nothing beyond Markdown, raw HTML, front matter (`title:`)
and the `tables` and `toc` extensions of Python-Markdown.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from lab.book.pages import Book, Page
from lab.errors import BadInput

CSS_URI = "assets/lab/lab.css"
MARKER = ".lab-book"  # in a directory `write` made: it may be emptied and written again
CSS = """\
/* lab: the lab book's own styles (written by lab beside the pages). */
.md-typeset .lab-table { overflow-x: auto; max-width: 100%; margin: 0 0 .4em; }
.md-typeset .lab-table .md-typeset__scrollwrap { margin: 0; overflow: visible; }  /* the theme's own wrapper: one scrolling box is enough */
.md-typeset .lab-table .md-typeset__table { padding: 0; }
.md-typeset .lab-table table { display: table; margin: 0; font-size: .64rem; border-collapse: collapse; }
.md-typeset .lab-table table th, .md-typeset .lab-table table td { padding: .4em .6em; min-width: 0; white-space: nowrap; vertical-align: bottom; }
.md-typeset .lab-table table .lab-groups th { padding-bottom: 0; border-bottom: none; font-weight: 600;
  color: var(--md-default-fg-color--light); text-transform: uppercase; letter-spacing: .04em; font-size: .9em; }
.md-typeset .lab-table .lab-set { background: var(--md-code-bg-color); font-style: italic; }
.md-typeset .lab-table .lab-g { border-left: 2px solid var(--md-default-fg-color--lightest); }
.md-typeset .lab-table tr > :first-child { border-left: none; }
.md-typeset .lab-table table td.lab-num, .md-typeset .lab-table table th.lab-num { text-align: right; font-variant-numeric: tabular-nums; }
.md-typeset .lab-table-note { font-size: .7rem; color: var(--md-default-fg-color--light); margin-top: 0; }
.md-typeset .lab-curves { display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr)); gap: .5rem 1rem; }
.md-typeset .lab-curves object { display: block; width: 100%; height: auto; max-width: 100%; }
.md-typeset .lab-abstract { overflow-wrap: anywhere; }
.md-typeset .lab-reading li { margin-bottom: .6em; }
.md-typeset .lab-reading .lab-meta, .md-typeset .lab-feed-info { font-size: .7rem; color: var(--md-default-fg-color--light); }
.md-typeset .lab-reading .lab-summary { font-size: .72rem; }
.md-typeset .lab-kept { color: #2e7d32; white-space: nowrap; }
.md-typeset pre, .md-typeset table:not([class]) { max-width: 100%; }
"""


class Rendering:
    """The pages and files of one build of the book; the curves not in the cache are drawn meanwhile."""

    def __init__(self, ws, site_name: str = "Lab book", plots: bool = True, directory_urls: bool = True,
                 warn=lambda message: None, progress=lambda message: None, links: str = "site"):
        start = time.monotonic()
        self.book = Book(ws, site_name=site_name, plots=plots, warn=warn, progress=progress, directory_urls=directory_urls,
                         links=links)
        self.drawing = None
        if self.book.to_draw:
            from lab.book import plots as plotting

            self.drawing = plotting.Drawing(self.book.to_draw)
        self.curves = {path for e in self.book.experiments for path in e.curves.values()}
        self.read_s = time.monotonic() - start

    def pages(self):
        """Each Page (src_uri, Markdown, whether it is in the navigation)."""
        return self.book.pages()

    def static_files(self):
        """(src_uri, file): the curves (once `wait` returned), the settings files, figures and published files."""
        return self.book.static_files()

    def wait(self) -> int:
        """Wait for the curves; the number of experiments drawn."""
        drawing, self.drawing = self.drawing, None
        if drawing is None:
            return 0
        drawing.wait()
        return drawing.count

    def cancel(self) -> None:
        drawing, self.drawing = self.drawing, None
        if drawing is not None:
            drawing.cancel()


def write(ws, out: Path, site_name: str = "Lab book", plots: bool = True, directory_urls: bool = True,
          own_docs: Path | None = None, warn=lambda message: None, progress=lambda message: None, links: str = "site") -> dict:
    """Render the book into `out`: a new or empty directory, or one an earlier `write` made (then only what changed
    is written and what is gone removed, so a generator watching it rebuilds only that). `own_docs` (the lab's
    docs/) is copied in first: a page of the user's is kept where lab has one of the same name; `links` as in
    lab.book.pages.Book. Returns counts: pages, files, own, drawn, experiments, papers."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise BadInput(f"{out}: not empty and not written by lab book --out; choose an empty or new directory")
    out.mkdir(parents=True, exist_ok=True)
    _write(out / MARKER, "written by lab book --out; written again by the next one\n")
    written = {MARKER}
    own = 0
    if own_docs is not None and Path(own_docs).is_dir():
        for dirpath, dirnames, filenames in os.walk(own_docs):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith("."):
                    src = Path(dirpath) / name
                    rel = src.relative_to(own_docs).as_posix()
                    _copy(src, out / rel)
                    written.add(rel)
                    own += 1
    taken = set(written)
    rendering = Rendering(ws, site_name=site_name, plots=plots, directory_urls=directory_urls, warn=warn, progress=progress,
                          links=links)
    try:
        n = 0
        for page in rendering.pages():
            if page.src_uri in taken:
                progress(f"lab: {page.src_uri} is your own page; lab's is not generated")
                continue
            _write(out / page.src_uri, page.content)
            written.add(page.src_uri)
            n += 1
        if CSS_URI not in taken:
            _write(out / CSS_URI, CSS)
            written.add(CSS_URI)
        drawn = rendering.wait()
        files = 0
        for src_uri, path in rendering.static_files():
            if src_uri not in taken:
                _copy(path, out / src_uri)
                written.add(src_uri)
                files += 1
    finally:
        rendering.cancel()
    for dirpath, _dirnames, filenames in os.walk(out, topdown=False):  # what an earlier write made and is gone now
        for name in filenames:
            path = Path(dirpath) / name
            if path.relative_to(out).as_posix() not in written:
                path.unlink()
        if Path(dirpath) != out and not any(Path(dirpath).iterdir()):
            Path(dirpath).rmdir()
    return {"pages": n, "files": files, "own": own, "drawn": drawn,
            "experiments": len(rendering.book.experiments), "papers": len(rendering.book.papers)}


def _write(path: Path, text: str) -> None:
    """Write `text` unless the file holds it already."""
    data = text.encode("utf-8")
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _copy(src: Path, target: Path) -> None:
    """Copy `src` unless `target` is already a copy of it (same size and modification time)."""
    try:
        a, b = src.stat(), target.stat()
        if a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns:
            return
    except OSError:
        target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, target)


__all__ = ["CSS", "CSS_URI", "Page", "Rendering", "write"]
