"""The `lab` mkdocs plugin: the lab book's pages, generated at build time from `experiments/` and `papers/`.

In `mkdocs.yml`:

    plugins:
      - search
      - lab            # options: root (default: the directory of mkdocs.yml), plots (default: true)

Nothing it generates is written into the lab: pages live in memory, curves in `.lab/book/` (a cache). Only the
home page and the three section indexes enter the navigation, so the navigation that mkdocs-material renders
into every page stays small however many experiments and papers the lab holds.

It also adds a small stylesheet (`assets/lab/lab.css`, in `extra_css`): results tables that scroll sideways inside
their box instead of off the page, the curves as a grid of small multiples, the reading list.

Curves that are not in the cache are drawn by worker processes while mkdocs renders the pages (`on_files` starts
them, `on_post_build` waits for them and only then copies the curves into the site; `on_build_error` stops them).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mkdocs.config import config_options as c
from mkdocs.config.base import Config
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.plugins.lab")

CSS_URI = "assets/lab/lab.css"
CSS = """\
/* lab: the lab book's own styles (added by the lab mkdocs plugin). */
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


class LabBookConfig(Config):
    root = c.Optional(c.Type(str))
    plots = c.Type(bool, default=True)


class LabBookPlugin(BasePlugin[LabBookConfig]):
    _drawing = None  # plots.Drawing of the build under way
    _curve_files: list = []  # _LateFile of that build (replaced, never changed in place)

    def _root(self, config) -> Path:
        base = Path(config.config_file_path).parent if config.config_file_path else Path.cwd()
        return (base / self.config.root).resolve() if self.config.root else base.resolve()

    def on_config(self, config):
        if CSS_URI not in config.extra_css:
            config.extra_css.append(CSS_URI)
        return config

    def on_files(self, files, config):
        from mkdocs.structure.files import InclusionLevel

        from mkdocs.exceptions import PluginError

        from lab.book.pages import Book
        from lab.errors import LabError
        from lab.core.workspace import Workspace

        self._stop_drawing()  # a build that failed before on_build_error (mkdocs serve goes on)
        start = time.monotonic()
        ws = Workspace(self._root(config))
        try:
            book = Book(ws, site_name=config.site_name or "Lab book", plots=self.config.plots,
                        warn=log.warning, progress=log.info, directory_urls=config.use_directory_urls)
        except LabError as e:
            raise PluginError(f"lab: {e}") from None
        if book.to_draw:
            from lab.book import plots

            self._drawing = plots.Drawing(book.to_draw)
        n = 0
        for page in book.pages():
            if files.get_file_from_path(page.src_uri) is not None:
                log.info(f"lab: {page.src_uri} is your own page in {config.docs_dir}; lab's is not generated")
                continue
            inclusion = InclusionLevel.UNDEFINED if page.in_nav else InclusionLevel.NOT_IN_NAV
            files.append(File.generated(config, page.src_uri, content=page.content, inclusion=inclusion))
            n += 1
        if files.get_file_from_path(CSS_URI) is None:
            files.append(File.generated(config, CSS_URI, content=CSS))
        curves = {path for e in book.experiments for path in e.curves.values()}
        late = []
        for src_uri, path in book.static_files():
            if files.get_file_from_path(src_uri) is None:
                file = (_LateFile if path in curves else File).generated(config, src_uri, abs_src_path=str(path))
                files.append(file)
                if path in curves:
                    late.append(file)
        self._curve_files = late
        log.info(f"lab: generated {n} pages ({len(book.experiments)} experiment(s), {len(book.papers)} paper(s)) "
                 f"in {time.monotonic() - start:.1f}s")
        return files

    def on_post_build(self, config):
        drawing, self._drawing = self._drawing, None
        if drawing is not None:
            start = time.monotonic()
            drawing.wait()
            log.info(f"lab: drew the curves of {drawing.count} experiment(s); waited {time.monotonic() - start:.1f}s for them")
        for file in self._curve_files:
            file.copy_now()
        self._curve_files = []

    def on_build_error(self, error):
        self._stop_drawing()

    def on_shutdown(self):
        self._stop_drawing()

    def _stop_drawing(self):
        drawing, self._drawing = self._drawing, None
        if drawing is not None:
            drawing.cancel()

    def on_serve(self, server, config, builder):
        root = self._root(config)
        for sub in ("experiments", "papers"):
            if (root / sub).is_dir():
                server.watch(str(root / sub))
        return server


class _LateFile(File):
    """A curve: copied into the site in on_post_build, once drawn, not with the other static files."""

    def copy_file(self, dirty: bool = False) -> None:
        pass

    def copy_now(self) -> None:
        File.copy_file(self)
