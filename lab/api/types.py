"""The typed records the Python API returns: experiments, settings, search and related results, notes, queue entries.

Plain frozen dataclasses over what lab's files and index hold; each `to_dict()` gives the form `lab ... --json`
prints, so a notebook and a script agree with the CLI. Runs have their own module (lab.api.runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Experiment:
    """An experiment: a directory `experiments/NAME/` with its settings and its report."""

    name: str
    title: str
    tags: tuple[str, ...]
    path: Path
    settings: tuple[str, ...]  # the names of its settings (a sweep's members as `sweep[i]`)


@dataclass(frozen=True)
class Setting:
    """One setting of an experiment: `id` is `EXP/NAME`, `path` its file, `values` the resolved settings (jsonnet
    evaluated, a sweep member expanded)."""

    experiment: str
    name: str
    path: Path
    values: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.experiment}/{self.name}"


@dataclass(frozen=True)
class SearchResult:
    """One search hit, as `lab search --json` prints it: `type` (experiment, setting, run, paper, feed), `id`,
    `title`, `section` (the heading the text is under, or None), `snippet` (matched words in `**`), `path`
    (relative to the lab's root), `score` (fused, 0-2), `match` ("keyword", "semantic" or both); for a paper found
    in its PDF's full text, `page` (1-based) and `passage` (the best passage's text), else None."""

    type: str
    id: str
    title: str
    section: str | None
    snippet: str
    path: str
    score: float
    match: tuple[str, ...]
    page: int | None = None
    passage: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchResult:
        return cls(type=d["type"], id=d["id"], title=d["title"], section=d.get("section"), snippet=d["snippet"],
                   path=d["path"], score=d["score"], match=tuple(d["match"]), page=d.get("page"),
                   passage=d.get("passage"))

    def to_dict(self) -> dict[str, Any]:
        """The result as `lab search --json` prints it."""
        return {"type": self.type, "id": self.id, "title": self.title, "section": self.section,
                "snippet": self.snippet, "path": self.path, "score": self.score, "match": list(self.match),
                "page": self.page, "passage": self.passage}


class SearchResults(list[SearchResult]):
    """The results of `Lab.search`, best first, with `warnings` (lines the CLI prints on stderr: a damaged index
    rebuilt, semantic search off and why, how much of the lab has vectors so far)."""

    def __init__(self, results: list[SearchResult], warnings: list[str]):
        super().__init__(results)
        self.warnings = warnings


@dataclass(frozen=True)
class Related:
    """A paper, feed item or experiment close to an experiment, as `lab related --json` prints it; `linked`:
    a paper already linked to that experiment."""

    type: str
    id: str
    title: str
    path: str
    score: float
    match: tuple[str, ...]
    linked: bool

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Related:
        return cls(type=d["type"], id=d["id"], title=d["title"], path=d["path"], score=d["score"],
                   match=tuple(d["match"]), linked=bool(d["linked"]))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "title": self.title, "path": self.path, "score": self.score,
                "match": list(self.match), "linked": self.linked}


@dataclass(frozen=True)
class Note:
    """A paper note written or refreshed by `Lab.note`: its arXiv id, file, title, and whether it is new."""

    arxiv_id: str
    path: Path
    title: str
    created: bool


@dataclass(frozen=True)
class Submitted:
    """What `Lab.run` did with one setting: `action` is queued, skipped (its last run succeeded with the same
    settings and command), already queued or already running; `executor` local or slurm, with its job id."""

    id: str
    experiment: str
    setting: str
    action: str
    executor: str
    job_id: int | None = None
    slurm_job_id: str | None = None
    log: str | None = None
    entry: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # the executor's own entry

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Submitted:
        job = d.get("job_id")
        slurm = d.get("slurm_job_id")
        return cls(id=d["id"], experiment=d.get("experiment") or d["id"].split("/", 1)[0],
                   setting=d.get("setting") or d["id"].split("/", 1)[-1], action=d["action"],
                   executor=d.get("executor") or "local", job_id=job if isinstance(job, int) else None,
                   slurm_job_id=None if slurm is None else str(slurm),
                   log=None if d.get("log") is None else str(d["log"]), entry=dict(d))
