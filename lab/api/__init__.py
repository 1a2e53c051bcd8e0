"""lab's Python API: `lab.open()` gives a `Lab`, and everything the `lab` command does is a method of it.

    import lab
    l = lab.open("path/to/lab")               # None: $LAB_ROOT, else the nearest directory above with experiments/
    l.runs(experiment="exp1").to_pandas()     # one row per run: settings and final metrics as columns
    l.search("learning rate warmup")          # typed results, the same as `lab search --json`

The methods return typed records (lab.api.types, lab.api.runs), never print, and raise lab's own errors:
`lab.LabError` (`lab.BadInput` for bad input) with a one-line message saying what is wrong and where. The CLI
(lab/cli/) is these calls plus formatting. Importing this module is cheap; each method imports what it needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.api.runs import Attempt, Environment, Git, Run, Runs
from lab.api.types import Experiment, Note, Related, SearchResult, SearchResults, Setting, Submitted

if TYPE_CHECKING:
    from lab.core.workspace import Workspace

__all__ = ["Lab", "open", "Attempt", "Environment", "Experiment", "Git", "Note", "Related", "Run", "Runs",
           "SearchResult", "SearchResults", "Setting", "Submitted"]


def open(root: str | os.PathLike[str] | None = None) -> Lab:  # noqa: A001 (lab.open, as sqlite3.connect)
    """The lab at `root`, found as the `lab` command finds it: `root`, else `$LAB_ROOT`, else the nearest
    directory above the current one that holds `experiments/`. BadInput when there is none."""
    from lab.core.workspace import Workspace

    return Lab(Workspace.find(root))


class Lab:
    """A lab on disk: its experiments, settings, runs, papers and search index."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace

    @property
    def root(self) -> Path:
        """The lab's root directory (absolute)."""
        return Path(self.workspace.root)

    def __repr__(self) -> str:
        return f"Lab({str(self.root)!r})"

    # -- experiments and settings -----------------------------------------------------------------------------

    def experiments(self) -> list[Experiment]:
        """Every experiment, in natural order (exp2 before exp10). One whose report or settings cannot be read
        raises BadInput naming the file (`lab list` shows it with the error instead)."""
        from lab.core.settings import list_settings

        out = []
        for exp in self.workspace.experiments():
            out.append(Experiment(name=exp.name, title=exp.title(), tags=tuple(exp.tags()), path=Path(exp.dir),
                                  settings=tuple(s.name for s in list_settings(exp))))
        return out

    def experiment(self, name: str) -> Experiment:
        """One experiment by name (BadInput when there is none)."""
        from lab.core.settings import list_settings

        exp = self.workspace.experiment(name)
        return Experiment(name=exp.name, title=exp.title(), tags=tuple(exp.tags()), path=Path(exp.dir),
                          settings=tuple(s.name for s in list_settings(exp)))

    def settings(self, experiment: str) -> list[Setting]:
        """The settings of `experiment`, resolved (jsonnet evaluated, sweeps expanded), in natural order."""
        from lab.core.settings import list_settings

        exp = self.workspace.experiment(experiment)
        return [Setting(experiment=exp.name, name=s.name, path=Path(s.path), values=dict(s.resolve()))
                for s in list_settings(exp)]

    # -- runs -------------------------------------------------------------------------------------------------

    def runs(self, experiment: str | None = None, *, state: str | Iterable[str] | None = None,
             setting: str | None = None, where: Mapping[str, Any] | None = None) -> Runs:
        """The latest run of each setting that has run (or is queued), newest records read from the files.

        `experiment`: only that experiment's. `state`: only runs in that state (or any of several: "succeeded",
        ["failed", "interrupted"]). `setting`: only settings of that name (a glob: "lr-*"). `where`: only runs
        whose settings have these values (dotted names reach into nested settings: {"model.layers": 2}).
        """
        from lab.core.fsutil import natural_key
        from lab.core.settings import check_setting_name
        from lab.runs.record import read_record_file
        from lab.runs.state import STATES

        states = _states(state, STATES)
        if setting is not None and not any(c in setting for c in "*?["):
            check_setting_name(setting)
        exps = [self.workspace.experiment(experiment)] if experiment is not None else self.workspace.experiments()
        found = Runs()
        for exp in exps:
            if not exp.runs_dir.is_dir():
                continue
            paths = [p for p in exp.runs_dir.glob("*.json")
                     if not p.name.endswith(".settings.json") and not p.name.startswith(".")]
            for path in sorted(paths, key=lambda p: natural_key(p.stem)):
                if setting is not None and not fnmatchcase(path.stem, setting):
                    continue
                rec = read_record_file(path)
                if rec is None:
                    continue
                run = Run.from_record(path, rec)
                if states is not None and run.state not in states:
                    continue
                if where and not _matches(run.settings, where):
                    continue
                found.append(run)
        return found

    def run(self, *targets: str, rerun: bool = False, stop_on_failure: bool = False, executor: str | None = None,
            parallel: bool = False) -> list[Submitted]:
        """Queue the settings of `targets` (`EXP` for all its settings, `EXP/SETTING` for one) and make sure they
        run in the background, as `lab run` does; with no targets, resume the queue after `stop()`. Every setting
        is checked first (nothing is queued if one is bad). `executor`: "local" or "slurm" (default: the
        experiment's). `wait(...)` blocks until they end."""
        from lab.runs.control import submit

        if executor not in (None, "local", "slurm"):
            from lab.errors import BadInput

            raise BadInput(f"executor must be 'local' or 'slurm', not {executor!r}")
        entries = submit(self.workspace, list(targets), rerun=rerun, stop_on_failure=stop_on_failure,
                         executor=executor, parallel=parallel)
        return [Submitted.from_dict(e) for e in entries]

    def wait(self, submitted: Iterable[Submitted], on_progress: Callable[[list[dict[str, Any]]], None] | None = None) -> Runs:
        """Block until the runs `run()` queued end (or the queue is stopped); return those runs as they are now.
        `on_progress(views)` is called at every poll with one dict a run (state, progress, metrics)."""
        from lab.runs.control import wait

        items = [s for s in submitted if s.action != "skipped"]
        wait(self.workspace, [s.entry for s in items], on_progress=on_progress)
        ids = {s.id for s in items}
        return Runs(r for r in self.runs() if r.id in ids)

    def stop(self, now: bool = False, grace: float = 10.0) -> dict[str, Any]:
        """Stop the queue (no other job starts); `now` also ends the running jobs (SIGTERM, SIGKILL after
        `grace` seconds) and records them cancelled. Returns {"runner", "running", "cancelled", "queued"}."""
        from lab.runs.control import stop

        return dict(stop(self.workspace, now=now, grace=grace))

    def cancel(self, *targets: str) -> dict[str, Any]:
        """Remove the queued jobs of `targets` (`EXP` or `EXP/SETTING`) from the queue; their records say
        cancelled. Returns {"cancelled": [ids], "running": [ids left running]}."""
        from lab.runs.control import cancel

        return dict(cancel(self.workspace, list(targets)))

    def compare(self, experiment: str, metric: str | None = None, mode: str | None = None,
                metrics: list[str] | None = None, all_metrics: bool = False) -> dict[str, Any]:
        """`lab compare EXP --json`: the settings that differ between the runs, their final metrics and the best
        run (by `metric`, `mode` "max" or "min"; default: the experiment's own choice). `metrics`: these metric
        columns; `all_metrics`: every metric, bookkeeping included."""
        from lab.book.table import runs_table

        table = runs_table(self.workspace.experiment(experiment), metric=metric, mode=mode, metrics=metrics,
                           all_metrics=all_metrics)
        return dict(table.to_json())

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """`lab diff A B --json`: why two runs (`EXP/SETTING`, `EXP/SETTING@ATTEMPT`) differ: settings, command,
        code, inputs, packages and metrics."""
        from lab.runs.diff import diff_runs

        return dict(diff_runs(self.workspace, a, b))

    # -- search and papers ------------------------------------------------------------------------------------

    def search(self, text: str, *, type: str | None = None, exp: str | None = None, tag: str | None = None,
               limit: int = 20, mode: str | None = None) -> SearchResults:
        """Search experiments, reports, settings, runs, paper notes and feed items, as `lab search` does (the
        index is brought up to date with the files first). `mode`: "hybrid" (words and meaning), "keyword" or
        "semantic"; None: hybrid where semantic search can run, else keyword. `type`: experiment, setting, run,
        paper or feed. The results equal `lab search --json`'s; lines the CLI would print on stderr are in
        `.warnings`."""
        from lab.search.searcher import search

        said: list[str] = []
        found = search(self.root, text, type=type, exp=exp, tag=tag, limit=limit, mode=mode, say=said.append)
        return SearchResults([SearchResult.from_dict(r) for r in found.results], [*found.warnings, *said])

    def related(self, experiment: str, limit: int = 10, mode: str | None = None,
                say: Callable[[str], None] | None = None) -> list[Related]:
        """The papers, feed items and other experiments closest to `experiment` (its title, tags, question,
        report and settings), as `lab related` finds them; `mode` as in `search`. `say(line)` gets the lines
        the CLI prints on stderr (how much of the lab has vectors so far)."""
        from lab.search.related import related

        if mode is not None and mode not in ("hybrid", "keyword", "semantic"):
            from lab.errors import BadInput

            raise BadInput(f"mode must be 'hybrid', 'keyword' or 'semantic', not {mode!r}")
        exp = self.workspace.experiment(experiment)
        found = related(self.root, exp.name, limit=limit, semantic=mode != "keyword", say=say or (lambda line: None))
        if mode == "semantic":
            found = [r for r in found if "semantic" in r["match"]]
        return [Related.from_dict(r) for r in found]

    def note(self, *ids: str, exp: str | Iterable[str] = (), tags: Iterable[str] = (), offline: bool = False,
             pdf: bool = True, progress: Callable[[str], None] | None = None) -> list[Note]:
        """Keep arXiv papers `ids` (any form: 2301.12345, arXiv:2301.12345v2, an abs or pdf URL) as notes in
        `papers/`, linked to the experiments `exp` and tagged `tags`, as `lab note` does. A note written again
        keeps everything its owner wrote. `offline`: only add links and tags to existing notes. `pdf`: also keep
        the paper's PDF and index its full text (unless lab.yaml's `papers: full_text: false` turns that off)."""
        from lab.papers.intake import note

        if not ids:
            from lab.errors import BadInput

            raise BadInput("give at least one arXiv id, e.g. note('2301.12345')")
        exps = [exp] if isinstance(exp, str) else list(exp)
        written = note(self.workspace, list(ids), exps=exps, tags=list(tags), offline=offline, pdf=pdf, progress=progress)
        return [Note(arxiv_id=w.arxiv_id, path=Path(w.path), title=w.title, created=w.created) for w in written]


def _states(state: str | Iterable[str] | None, known: Iterable[str]) -> set[str] | None:
    if state is None:
        return None
    wanted = {state} if isinstance(state, str) else set(state)
    unknown = sorted(wanted - set(known))
    if unknown:
        from lab.errors import BadInput

        raise BadInput(f"no run state {unknown[0]!r} (states: {', '.join(known)})")
    return wanted


def _matches(settings: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    from lab.core.settings import flatten

    flat = flatten(settings)
    return all(key in flat and flat[key] == value for key, value in where.items())
