"""The `lab` plugin of mkdocs and ProperDocs: a thin adapter that hands lab's rendered book (lab.book.render) to
the generator in memory. It is registered under both `mkdocs.plugins` and `properdocs.plugins`; ProperDocs
redirects the `mkdocs.*` imports below to itself.

In `mkdocs.yml`:

    plugins:
      - search
      - lab            # options: root (default: the directory of mkdocs.yml), plots (default: true)

Nothing it generates is written into the lab: pages live in memory, curves in `.lab/book/` (a cache). Only the
home page and the section indexes enter the navigation, so the navigation stays small however many experiments
and papers the lab holds. Curves not in the cache are drawn by worker processes while the pages are rendered
(`on_post_build` waits for them and only then copies them into the site; `on_build_error` stops them).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mkdocs.config import config_options as c
from mkdocs.config.base import Config
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import File

from lab.book.render import CSS, CSS_URI

log = logging.getLogger("mkdocs.plugins.lab")


class LabBookConfig(Config):
    root = c.Optional(c.Type(str))
    plots = c.Type(bool, default=True)


class LabBookPlugin(BasePlugin[LabBookConfig]):
    _rendering = None  # lab.book.render.Rendering of the build under way
    _curve_files: list = []  # _LateFile of that build (replaced, never changed in place)

    def _root(self, config) -> Path:
        base = Path(config.config_file_path).parent if config.config_file_path else Path.cwd()
        return (base / self.config.root).resolve() if self.config.root else base.resolve()

    def on_config(self, config):
        if CSS_URI not in config.extra_css:
            config.extra_css.append(CSS_URI)
        return config

    def on_files(self, files, config):
        from mkdocs.exceptions import PluginError
        from mkdocs.structure.files import InclusionLevel

        from lab.book.render import Rendering
        from lab.core.workspace import Workspace
        from lab.errors import LabError

        self._stop_drawing()  # a build that failed before on_build_error (mkdocs serve goes on)
        start = time.monotonic()
        try:
            rendering = Rendering(Workspace(self._root(config)), site_name=config.site_name or "Lab book",
                                  plots=self.config.plots, directory_urls=config.use_directory_urls,
                                  warn=log.warning, progress=log.info)
        except LabError as e:
            raise PluginError(f"lab: {e}") from None
        self._rendering = rendering
        n = 0
        for page in rendering.pages():
            if files.get_file_from_path(page.src_uri) is not None:
                log.info(f"lab: {page.src_uri} is your own page in {config.docs_dir}; lab's is not generated")
                continue
            inclusion = InclusionLevel.UNDEFINED if page.in_nav else InclusionLevel.NOT_IN_NAV
            files.append(File.generated(config, page.src_uri, content=page.content, inclusion=inclusion))
            n += 1
        if files.get_file_from_path(CSS_URI) is None:
            files.append(File.generated(config, CSS_URI, content=CSS))
        late = []
        for src_uri, path in rendering.static_files():
            if files.get_file_from_path(src_uri) is None:
                file = (_LateFile if path in rendering.curves else File).generated(config, src_uri, abs_src_path=str(path))
                files.append(file)
                if path in rendering.curves:
                    late.append(file)
        self._curve_files = late
        book = rendering.book
        log.info(f"lab: generated {n} pages ({len(book.experiments)} experiment(s), {len(book.papers)} paper(s)) "
                 f"in {time.monotonic() - start:.1f}s")
        return files

    def on_post_build(self, config):
        rendering, self._rendering = self._rendering, None
        if rendering is not None:
            start = time.monotonic()
            drawn = rendering.wait()
            if drawn:
                log.info(f"lab: drew the curves of {drawn} experiment(s); waited {time.monotonic() - start:.1f}s for them")
        for file in self._curve_files:
            file.copy_now()
        self._curve_files = []

    def on_build_error(self, error):
        self._stop_drawing()

    def on_shutdown(self):
        self._stop_drawing()

    def _stop_drawing(self):
        rendering, self._rendering = self._rendering, None
        if rendering is not None:
            rendering.cancel()

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
