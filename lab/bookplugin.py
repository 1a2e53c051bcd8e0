"""The `lab` mkdocs plugin: the lab book's pages, generated at build time from `experiments/` and `papers/`.

In `mkdocs.yml`:

    plugins:
      - search
      - lab            # options: root (default: the directory of mkdocs.yml), plots (default: true)

Nothing it generates is written into the lab: pages live in memory, curves in `.lab/book/` (a cache). Only the
home page and the three section indexes enter the navigation, so the navigation that mkdocs-material renders
into every page stays small however many experiments and papers the lab holds.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mkdocs.config import config_options as c
from mkdocs.config.base import Config
from mkdocs.plugins import BasePlugin

log = logging.getLogger("mkdocs.plugins.lab")


class LabBookConfig(Config):
    root = c.Optional(c.Type(str))
    plots = c.Type(bool, default=True)


class LabBookPlugin(BasePlugin[LabBookConfig]):
    def _root(self, config) -> Path:
        base = Path(config.config_file_path).parent if config.config_file_path else Path.cwd()
        return (base / self.config.root).resolve() if self.config.root else base.resolve()

    def on_files(self, files, config):
        from mkdocs.structure.files import File, InclusionLevel

        from .bookpages import Book
        from .workspace import Workspace

        from mkdocs.exceptions import PluginError

        from .errors import LabError

        start = time.monotonic()
        ws = Workspace(self._root(config))
        try:
            book = Book(ws, site_name=config.site_name or "Lab book", plots=self.config.plots,
                        warn=log.warning, progress=log.info, directory_urls=config.use_directory_urls)
        except LabError as e:
            raise PluginError(f"lab: {e}") from None
        n = 0
        for page in book.pages():
            if files.get_file_from_path(page.src_uri) is not None:
                log.info(f"lab: {page.src_uri} is your own page in {config.docs_dir}; lab's is not generated")
                continue
            inclusion = InclusionLevel.UNDEFINED if page.in_nav else InclusionLevel.NOT_IN_NAV
            files.append(File.generated(config, page.src_uri, content=page.content, inclusion=inclusion))
            n += 1
        for src_uri, path in book.static_files():
            if files.get_file_from_path(src_uri) is None:
                files.append(File.generated(config, src_uri, abs_src_path=str(path)))
        log.info(f"lab: generated {n} pages ({len(book.experiments)} experiments, {len(book.papers)} papers) "
                 f"in {time.monotonic() - start:.1f}s")
        return files

    def on_serve(self, server, config, builder):
        root = self._root(config)
        for sub in ("experiments", "papers"):
            if (root / sub).is_dir():
                server.watch(str(root / sub))
        return server
