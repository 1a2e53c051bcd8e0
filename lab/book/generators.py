"""`lab book`: the generator that builds (or serves) the lab book, chosen by `book: generator:` in lab.yaml.

- `mkdocs` (the default) and `properdocs` (the maintained fork of MkDocs 1.6) run on the lab's `mkdocs.yml`;
  both load the `lab` plugin, which hands them lab's rendered pages.
- `zensical` runs no MkDocs plugins: lab renders the book first into `.lab/book/zensical/docs` (with the lab's
  own docs/ pages) and writes `.lab/book/zensical/mkdocs.yml` from the lab's `mkdocs.yml` (theme, navigation,
  Markdown extensions, the book's stylesheet). Settings Zensical has no use for (other plugins, hooks) are named
  once, and the build goes on.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lab.errors import BadInput, LabError

GENERATORS = ("mkdocs", "properdocs", "zensical")
# The pip extra that installs each generator (mkdocs is a plain dependency).
EXTRAS = {"mkdocs": None, "properdocs": "properdocs", "zensical": "zensical"}
# mkdocs.yml keys carried into Zensical's configuration as they are.
CARRIED = ("site_name", "site_url", "site_description", "site_author", "repo_url", "repo_name", "edit_uri",
           "copyright", "theme", "extra", "extra_css", "extra_javascript", "markdown_extensions",
           "use_directory_urls", "nav", "exclude_docs", "not_in_nav", "validation", "watch", "dev_addr")
# Replaced by what lab writes, so never reported as lost.
REPLACED = ("docs_dir", "site_dir", "plugins", "strict")
LAB_NAV = [{"Home": "index.md"}, {"Experiments": "experiments/index.md"}, {"Papers": "papers/index.md"},
           {"Reading list": "reading-list/index.md"}, {"Tags": "tags/index.md"}]


def generator_of(ws) -> str:
    """`book: generator:` of lab.yaml (default mkdocs)."""
    config = ws.config.get("book") or {}
    name = config.get("generator", "mkdocs") if isinstance(config, dict) else "mkdocs"
    if name not in GENERATORS:
        raise BadInput(f"{ws.root / 'lab.yaml'}: book.generator: {name!r} is not one of {', '.join(GENERATORS)}")
    return name


def require(generator: str) -> None:
    """LabError (exit 1) naming the extra to install when `generator` is not installed."""
    if importlib.util.find_spec(generator) is None:
        extra = EXTRAS[generator]
        how = f"pip install 'lab[{extra}]'" if extra else f"pip install {generator}"
        raise LabError(f"the book's generator {generator} is not installed: {how}")


class _Loader:
    """A YAML loader for mkdocs.yml that reads its tags (`!!python/name:`, `!ENV`) as plain values."""

    @staticmethod
    def load(path: Path) -> dict:
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        def any_tag(loader, suffix, node):
            if isinstance(node, yaml.ScalarNode):
                return f"!{suffix} {loader.construct_scalar(node)}".strip()
            if isinstance(node, yaml.SequenceNode):
                return loader.construct_sequence(node)
            return loader.construct_mapping(node)

        Loader.add_multi_constructor("", any_tag)
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)
        except yaml.YAMLError as e:
            raise BadInput(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
        if not isinstance(data, dict):
            raise BadInput(f"{path}: must be a mapping of settings")
        return data


def site_config(root: Path) -> dict:
    """The lab's mkdocs.yml as a dict (BadInput when there is none)."""
    path = Path(root) / "mkdocs.yml"
    if not path.is_file():
        raise BadInput(f"no mkdocs.yml in {root}; run 'lab init {root}' to write one")
    return _Loader.load(path)


def zensical_config(root: Path, config: dict, docs_dir: str = "docs") -> tuple[dict, list[str]]:
    """Zensical's configuration for the rendered book, and the settings of mkdocs.yml it does not carry over."""
    out = {k: config[k] for k in CARRIED if k in config}
    lost = [k for k in config if k not in CARRIED and k not in REPLACED]
    plugins = config.get("plugins") or []
    if isinstance(plugins, dict):
        names = [str(name) for name in plugins]
    else:
        names = [next(iter(p)) if isinstance(p, dict) and p else str(p) for p in plugins]
    lost += [f"plugins: {name}" for name in names if name not in ("search", "lab")]
    out["site_name"] = out.get("site_name") or "Lab book"
    out["docs_dir"] = docs_dir
    out["site_dir"] = "site"
    out["plugins"] = ["search"]
    theme = out.get("theme")
    if isinstance(theme, dict) and isinstance(theme.get("custom_dir"), str):
        theme = dict(theme, custom_dir=str((Path(root) / theme["custom_dir"]).resolve()))
        out["theme"] = theme
    css = list(out.get("extra_css") or [])
    from lab.book.render import CSS_URI

    if CSS_URI not in css:
        css.append(CSS_URI)
    out["extra_css"] = css
    return out, lost


def _argv(generator: str, config: Path, serve: bool, strict: bool, site_dir: str | None, dev_addr: str | None) -> list[str]:
    argv = [sys.executable, "-m", generator, "serve" if serve else "build", "-f", str(config)]
    if strict and not (serve and generator == "zensical"):
        argv.append("--strict")
    if site_dir and not serve and generator != "zensical":
        argv += ["--site-dir", str(Path(site_dir).resolve())]
    if dev_addr and serve:
        argv += ["--dev-addr", dev_addr]
    return argv


def mkdocs_argv(root: Path, serve: bool = False, strict: bool = False, site_dir: str | None = None,
                dev_addr: str | None = None, generator: str = "mkdocs") -> list[str]:
    """The command line that `lab book` runs in the lab root for mkdocs or ProperDocs."""
    config = Path(root) / "mkdocs.yml"
    if not config.is_file():
        raise BadInput(f"no mkdocs.yml in {root}; run 'lab init {root}' to write one")
    return _argv(generator, config, serve, strict, site_dir, dev_addr)


def prepare_zensical(ws, warn=lambda message: None, progress=lambda message: None, again: bool = False) -> Path:
    """Render the book for Zensical and write its configuration; the configuration's path. `again`: a re-render
    while serving (what is not carried over was said already)."""
    import yaml

    from lab.book import render

    root = ws.root
    config = site_config(root)
    work = ws.state_dir / "book" / "zensical"
    zconfig, lost = zensical_config(root, config)
    if lost and not again:
        warn(f"zensical: {root / 'mkdocs.yml'}: not carried over (Zensical has no use for them): {', '.join(lost)}")
    docs = root / str(config.get("docs_dir") or "docs")
    counts = render.write(ws, work / "docs", site_name=zconfig["site_name"], directory_urls=zconfig.get("use_directory_urls", True) is not False,
                          own_docs=docs, warn=warn, progress=progress, links="source")
    if "nav" not in zconfig:
        own = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.md")) if docs.is_dir() else []
        zconfig["nav"] = LAB_NAV + [rel for rel in own if rel not in {v for d in LAB_NAV for v in d.values()}]
    path = work / "mkdocs.yml"
    text = ("# Written by lab book for Zensical from the lab's mkdocs.yml; written again by every build.\n"
            + yaml.safe_dump(zconfig, sort_keys=False, allow_unicode=True))
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    progress(f"lab: rendered {counts['pages']} pages for zensical")
    return path


def run(ws, serve: bool = False, strict: bool = False, site_dir: str | None = None, dev_addr: str | None = None,
        generator: str | None = None, warn=lambda message: None, progress=lambda message: None) -> str:
    """Build (or serve) the lab book with its generator; the generator's name. A failed build raises LabError."""
    root = Path(ws.root)
    generator = generator or generator_of(ws)
    require(generator)
    if generator == "zensical":
        config = prepare_zensical(ws, warn=warn, progress=progress)
    else:
        argv = mkdocs_argv(root, serve=serve, strict=strict, site_dir=site_dir, dev_addr=dev_addr, generator=generator)
        (root / "docs").mkdir(exist_ok=True)  # mkdocs needs its docs_dir; labs made before it existed lack it
        config = None
    if config is not None:
        argv = _argv("zensical", config, serve, strict, None, dev_addr)
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    if config is not None and serve:
        _serve_zensical(ws, argv, config, env, warn, progress)
        return generator
    try:
        code = subprocess.run(argv, cwd=config.parent if config else root, env=env).returncode
    except KeyboardInterrupt:
        return generator
    if code != 0:
        raise LabError(f"{generator} {'serve' if serve else 'build'} failed (exit {code}); see its messages above")
    if config is not None and not serve:
        built = config.parent / "site"
        target = Path(site_dir).resolve() if site_dir else root / str(site_config(root).get("site_dir") or "site")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), str(target))
    return generator


def _signature(root: Path) -> tuple:
    """What the book is made of, cheaply: the count, newest modification and total size of the lab's files."""
    count = newest = size = 0
    for top in ("experiments", "papers", "docs", "feeds"):
        for dirpath, dirnames, filenames in os.walk(root / top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "models"]
            for name in filenames:
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except OSError:
                    continue
                count, newest, size = count + 1, max(newest, st.st_mtime_ns), size + st.st_size
    for name in ("mkdocs.yml", "lab.yaml"):
        try:
            newest = max(newest, (root / name).stat().st_mtime_ns)
        except OSError:
            pass
    return count, newest, size


def _serve_zensical(ws, argv, config: Path, env, warn, progress, every: float = 1.5) -> None:
    """`zensical serve` on the rendered book, rendered again (only what changed is written) when the lab changes."""
    import time

    proc = subprocess.Popen(argv, cwd=config.parent, env=env)
    try:
        seen = _signature(ws.root)
        while proc.poll() is None:
            time.sleep(every)
            now = _signature(ws.root)
            if now != seen:
                seen = now
                try:
                    prepare_zensical(ws, warn=warn, progress=progress, again=True)
                except LabError as e:
                    warn(f"lab: {e}")
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
