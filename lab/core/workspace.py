"""The lab root and its experiments.

A lab root is a directory holding `experiments/` and `papers/`. Each experiment is a directory
`experiments/EXP/` with `settings/` (one file per run), `logs/`, `models/`, `runs/` (run records, written by
lab) and `report.md` (Markdown with YAML front matter: `title`, `tags`, `command`).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from lab.core import frontmatter, layout
from lab.core.fsutil import create_exclusive, read_text
from lab.core.names import MAX_NAME_BYTES, NAME_PATTERN, check_file_name, check_name, is_name, shown  # noqa: F401  (re-exported)
from lab.errors import BadInput

NAME_RE = re.compile(NAME_PATTERN)  # kept for callers that match text; the rule itself is lab.core.names

# What `lab init` adds to .gitignore: derived state, never the user's files.
GITIGNORE_LINES = layout.GITIGNORE

MKDOCS_YML = """\
# The lab book: `mkdocs build --strict` (or `lab book`) publishes experiments/ and papers/.
# The lab plugin generates every page at build time; docs/ holds only your own extra pages (optional).
site_name: {name} lab book
docs_dir: docs
theme:
  name: material
  features:
    - navigation.indexes
    - navigation.sections
plugins:
  - search
  - lab
markdown_extensions:
  - tables
  - toc:
      permalink: true
"""

REPORT_TEMPLATE = """\
---
title: {title}
tags: []
# The program each setting runs, split as a shell would and run without one, from the lab root.
# Placeholders: {{settings}} (the path of the resolved settings JSON), {{flags}} (the settings as --key=value
# flags), {{settings.KEY}} (one value), {{output_dir}}, {{name}} (the setting), {{python}}.
# Empty: lab's own transformers training program (python -m lab.train {{settings}}).
command: {command}
---

# {title}

## Question

What do we want to learn, and why?

## Setup

Data, model, and what the settings vary.

## Results

<!-- lab:results -->
<!-- /lab:results -->

## Conclusion

"""


def find_root(root: str | os.PathLike | None = None, cwd: Path | None = None) -> Path:
    """The lab root: `root` if given, else `$LAB_ROOT`, else the nearest ancestor holding `experiments/`."""
    return Path(layout.find_root(root, None if cwd is None else os.fspath(cwd)))


@dataclass(frozen=True)
class Experiment:
    """One experiment directory."""

    workspace: "Workspace"
    name: str

    @cached_property
    def dir(self) -> Path:
        return self.workspace.experiments_dir / self.name

    @property
    def settings_dir(self) -> Path:
        return self.dir / layout.SETTINGS

    @property
    def logs_dir(self) -> Path:
        return self.dir / layout.LOGS

    @property
    def models_dir(self) -> Path:
        return self.dir / layout.MODELS

    @property
    def runs_dir(self) -> Path:
        return self.dir / layout.RUNS

    @property
    def report_path(self) -> Path:
        return self.dir / layout.REPORT

    def meta(self) -> dict:
        """The report's front matter ({} when the report is missing or has none)."""
        if not self.report_path.exists():
            return {}
        meta, _ = frontmatter.read(self.report_path)
        return meta

    def title(self) -> str:
        return str(self.meta().get("title") or self.name)

    def tags(self) -> list[str]:
        tags = self.meta().get("tags") or []
        return [str(t) for t in tags] if isinstance(tags, list) else [str(tags)]

    def command_template(self) -> str | None:
        """The `command` of the report's front matter, or None for lab's own training program."""
        command = self.meta().get("command")
        if command is None or (isinstance(command, str) and not command.strip()):
            return None
        if not isinstance(command, str):
            raise BadInput(f"{self.report_path}: 'command' must be a string such as 'python run.py {{settings}}'")
        return command


class Workspace:
    """A lab root."""

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()

    @classmethod
    def find(cls, root: str | os.PathLike | None = None) -> "Workspace":
        return cls(find_root(root))

    @cached_property
    def experiments_dir(self) -> Path:
        return self.root / layout.EXPERIMENTS

    @cached_property
    def papers_dir(self) -> Path:
        return self.root / layout.PAPERS

    @cached_property
    def state_dir(self) -> Path:
        """Lab's own derived and runtime state (index, queue, locks): `.lab/`, ignored by git."""
        return self.root / layout.STATE

    @cached_property
    def config(self) -> dict:
        """The optional workspace configuration `lab.yaml` at the root ({} when absent)."""
        import yaml

        path = self.root / layout.CONFIG
        if not path.exists():
            return {}
        try:
            data = yaml.safe_load(read_text(path)) or {}
        except yaml.YAMLError as e:
            raise BadInput(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise BadInput(f"{path}: must be a mapping of keys to values")
        return data

    def experiment(self, name: str, must_exist: bool = True) -> Experiment:
        check_name(name)
        exp = Experiment(self, name)
        if must_exist and not exp.dir.is_dir():
            from lab.core.keys import unknown_name

            known = [e.name for e in self.experiments()]
            raise BadInput(f"no experiment {name!r} in {self.experiments_dir}{unknown_name(name, known, 'experiments')}")
        return exp

    def experiments(self) -> list[Experiment]:
        from lab.core.fsutil import natural_key

        if not self.experiments_dir.is_dir():
            return []
        names = [p.name for p in self.experiments_dir.iterdir() if p.is_dir() and is_name(p.name)]
        return [Experiment(self, n) for n in sorted(names, key=natural_key)]

    def new_experiment(self, name: str, source: str | None = None, title: str | None = None) -> Experiment:
        """Make `experiments/NAME/` with its directories and a report (titled `title`, default NAME); `source`
        copies another's settings and command."""
        exp = self.experiment(name, must_exist=False)
        if exp.dir.exists():
            raise BadInput(f"experiment {name!r} already exists: {exp.dir}")
        origin = self.experiment(source) if source is not None else None
        command = origin.command_template() if origin else None
        staging = self.experiments_dir / f".{name}.new"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        try:
            for sub in (layout.SETTINGS, layout.LOGS, layout.MODELS):
                (staging / sub).mkdir()
            if origin is not None:
                for f in sorted(origin.settings_dir.iterdir()):
                    if f.is_file() and f.suffix in (*layout.SETTING_SUFFIXES, *layout.BASE_SUFFIXES):
                        shutil.copy2(f, staging / layout.SETTINGS / f.name)
            report = REPORT_TEMPLATE.format(title=name, command=_yaml_scalar(command) if command else "")
            if title and title.strip():
                title = " ".join(title.split())
                report = report.replace(f"title: {name}\n", f"title: {_yaml_scalar(title)}\n", 1)
                report = report.replace(f"\n# {name}\n", f"\n# {title}\n", 1)
            if origin is not None:
                report = report.replace("## Setup\n", f"## Setup\n\nA variant of [{origin.name}](../{origin.name}/report.md).\n", 1)
            (staging / layout.REPORT).write_text(report, encoding="utf-8")
            # One rename makes the experiment appear whole, or not at all.
            os.rename(staging, exp.dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return exp


def _yaml_scalar(value: str) -> str:
    import yaml

    return yaml.safe_dump(value, default_style=None, width=1000).strip().removesuffix("...").strip()


def enclosing_lab(directory: Path) -> Path | None:
    """The lab root that `directory` lies inside (an ancestor holding experiments/), or None."""
    for parent in Path(directory).parents:
        if (parent / layout.EXPERIMENTS).is_dir():
            return parent
    return None


def init(directory: Path | str) -> list[Path]:
    """Make a lab in `directory`; return the paths created. Existing files are never touched."""
    root = Path(directory).resolve()
    if root.exists() and not root.is_dir():
        raise BadInput(f"{root} exists and is not a directory")
    outer = enclosing_lab(root)
    if outer is not None:
        raise BadInput(f"{root} is inside the lab {outer}; a lab in a lab is never found from inside it. "
                       f"Work in that one (lab --root {outer} new NAME), or make the new lab elsewhere (lab init DIR)")
    created: list[Path] = []
    for sub in (layout.EXPERIMENTS, layout.PAPERS, layout.DOCS):
        d = root / sub
        if not d.is_dir():
            d.mkdir(parents=True)
            created.append(d)
    # mkdocs needs docs_dir to exist, also in a fresh clone of the lab: git keeps no empty directory.
    if create_exclusive(root / layout.DOCS / ".gitkeep", ""):
        created.append(root / layout.DOCS / ".gitkeep")
    if create_exclusive(root / layout.MKDOCS_YML, MKDOCS_YML.format(name=root.name)):
        created.append(root / layout.MKDOCS_YML)
    gitignore = root / ".gitignore"
    old = read_text(gitignore) if gitignore.exists() else ""
    existing = old.splitlines()
    missing = [line for line in GITIGNORE_LINES if line not in existing]
    if missing:
        prefix = "" if not existing or old.endswith("\n") else "\n"
        with gitignore.open("a", encoding="utf-8") as f:
            f.write(prefix + "# lab: derived files\n" + "\n".join(missing) + "\n")
        created.append(gitignore)
    return created
