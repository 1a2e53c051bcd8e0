"""The lab's file layout: every place lab reads or writes inside a lab root, spelled once.

    ROOT/
      experiments/EXP/   settings/ (S.json, S.jsonnet, B.libsonnet), logs/, models/, runs/, report.md
      papers/            paper notes (Markdown with YAML front matter), subdirectories allowed; KEY.pdf
                         beside a note KEY.md is its full text (ignored by git unless lab.yaml says)
      feeds/             feeds.json; items/FEED.jsonl
      docs/, mkdocs.yml  the lab book's own pages and its configuration
      lab.yaml           optional configuration
      .lab/              lab's derived and runtime state (index, queue, locks, caches), ignored by git

`INDEXED` says which files the search index holds, and every part of search (the scan, `kind_of`, the watcher)
reads it from there: a new kind of indexed file is one row here, plus how `lab.search.documents` reads it.
Plain strings and `os` only: the search and status fast path imports this module.
"""

from __future__ import annotations

import os

EXPERIMENTS = "experiments"
PAPERS = "papers"
FEEDS = "feeds"
FEED_ITEMS = f"{FEEDS}/items"
DOCS = "docs"
MKDOCS_YML = "mkdocs.yml"
CONFIG = "lab.yaml"
STATE = ".lab"
INDEX = f"{STATE}/index.db"
QUEUE = f"{STATE}/queue.db"  # the run queue (lab.runs.local.queue)
WATCH_LOG = f"{STATE}/watch.log"
FULLTEXT = f"{STATE}/fulltext"  # the text extracted from the PDFs under papers/ (lab.core.pdftext), derived

# Inside .lab/, by name (each module joins them to the workspace's state_dir).
QUEUE_DB = "queue.db"  # the run queue (lab.runs.local.queue)
RUNNER_LOCK = "runner.lock"  # exactly one runner (lab.runs.local.lock)
RUNNER_LOG = "runner.log"  # the runner's diary (lab.runs.local.diary)
LANES = "lanes.json"  # the live runner's lanes (lab.runs.local.info)
JOBS = "jobs"  # the job-file protocol (lab.runs.local.jobfiles)
TEST_KILL_FIRED = "test-kill-fired"  # the tests' fault hook fired (lab.runs.local.faults)
STATUS_CACHE = "status-cache"  # lab status's summaries (lab.runs.statuscache)
INPUT_HASHES = "input-hashes.tsv"  # the hashes of run inputs (lab.runs.inputs)
SLURM = "slurm"  # the Slurm executor's files (lab.runs.slurm): jobs/, out/, chain, drained
SLURM_JOBS = f"{SLURM}/jobs"
SLURM_OUT = f"{SLURM}/out"

# Inside experiments/EXP/.
SETTINGS = "settings"
LOGS = "logs"
MODELS = "models"
RUNS = "runs"
REPORT = "report.md"
SETTING_SUFFIXES = (".json", ".jsonnet")  # one setting each
BASE_SUFFIXES = (".libsonnet",)  # jsonnet bases that settings import

# What `lab init` adds to .gitignore: derived state, never the user's files.
GITIGNORE = [f"{STATE}/", "site/", f"{EXPERIMENTS}/*/{MODELS}/"]


class Indexed:
    """One kind of indexed file: the directory it lives in (`*` is any one experiment) and how it is named."""

    __slots__ = ("kind", "dir", "parts", "names", "suffixes", "exclude", "tree", "whole")

    def __init__(self, kind, dir, *, names=(), suffixes=(), exclude=None, tree=False, whole=False):
        self.kind = kind
        self.dir = dir
        self.parts = dir.split("/")
        self.names = names  # exact file names (stat'ed by name, the directory never listed)
        self.suffixes = suffixes
        self.exclude = exclude  # a suffix that is not this kind after all
        self.tree = tree  # in subdirectories too
        self.whole = whole  # lab replaces these files whole (a new directory entry), never edits them in place

    def holds(self, name: str) -> bool:
        """Whether a file called `name` in this kind's directory is of this kind."""
        if self.names:
            return name in self.names
        return name.endswith(self.suffixes) and not (self.exclude and name.endswith(self.exclude))


INDEXED = (
    Indexed("report", f"{EXPERIMENTS}/*", names=(REPORT,)),
    Indexed("setting", f"{EXPERIMENTS}/*/{SETTINGS}", suffixes=SETTING_SUFFIXES),
    Indexed("base", f"{EXPERIMENTS}/*/{SETTINGS}", suffixes=BASE_SUFFIXES),
    Indexed("run", f"{EXPERIMENTS}/*/{RUNS}", suffixes=(".json",), exclude=".settings.json", whole=True),
    Indexed("paper", PAPERS, suffixes=(".md", ".MD", ".Md", ".mD"), tree=True),
    Indexed("fulltext", PAPERS, suffixes=(".pdf", ".PDF"), tree=True),  # a paper's PDF, beside its note
    Indexed("feed", FEED_ITEMS, suffixes=(".jsonl",)),
)


def _places() -> list[tuple]:
    """The indexed directories, each once: (dir, names, suffixes, exclude, tree, whole), kinds sharing one merged."""
    places: dict[str, list] = {}
    for k in INDEXED:
        if k.dir in places:
            place = places[k.dir]
            assert (place[3], place[4], place[5]) == (k.exclude, k.tree, k.whole), f"{k.dir}: kinds disagree"
            place[1] += k.names
            place[2] += k.suffixes
        else:
            places[k.dir] = [k.dir, k.names, k.suffixes, k.exclude, k.tree, k.whole]
    return [tuple(p) for p in places.values()]


PLACES = _places()


def _matches(parts: list[str], pattern: list[str]) -> bool:
    for part, want in zip(parts, pattern):
        if part != want and (want != "*" or not part or part[0] == "."):
            return False
    return True


def kind_of(rel: str) -> str | None:
    """Which kind of indexed file `rel` (a POSIX path relative to the lab root) is, or None."""
    parts = rel.split("/")
    name = parts.pop()
    if not name or name[0] == "." or any(p[:1] == "." for p in parts):
        return None
    for k in INDEXED:
        n = len(k.parts)
        if (len(parts) == n or (k.tree and len(parts) > n)) and _matches(parts, k.parts) and k.holds(name):
            return k.kind
    return None


def leads_to_index(rel: str) -> bool:
    """Whether directory `rel` (relative to the root, "" for the root) holds indexed files or leads to some."""
    parts = rel.split("/") if rel else []
    if any(p[:1] == "." for p in parts):
        return False
    for k in INDEXED:
        n = len(k.parts)
        if (len(parts) <= n or k.tree) and _matches(parts, k.parts):
            return True
    return False


def index_dirs(root: str) -> list[str]:
    """Every directory under `root` that holds indexed files or leads to some (relative, "" first), for the
    experiments there are now: what a watcher of the lab watches. An experiment's settings/ or runs/ is named even
    before it exists (the watcher skips what is missing; its parent's events announce it)."""
    found = {""}
    experiments = None
    for k in INDEXED:
        head, star, tail = k.dir.partition("*")
        if star:
            found.update(_prefixes(head.rstrip("/")))  # watched even while it holds no experiment
            if experiments is None:
                experiments = _subdirs(os.path.join(root, EXPERIMENTS))
            dirs = [f"{head}{name}{tail}" for name in experiments]
        else:
            dirs = [k.dir]
        for d in dirs:
            found.update(_prefixes(d))
            if k.tree:
                for top, dirnames, _ in os.walk(os.path.join(root, d)):
                    dirnames[:] = [n for n in dirnames if n[0] != "."]
                    rel = os.path.relpath(top, root).replace(os.sep, "/")
                    found.update(f"{rel}/{n}" for n in dirnames)
    return sorted(found)


def _prefixes(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _subdirs(path: str) -> list[str]:
    try:
        return [e.name for e in os.scandir(path) if e.name[0] != "." and e.is_dir()]
    except OSError:
        return []


def find_root(root: str | None = None, cwd: str | None = None) -> str:
    """The lab root: `root` if given, else `$LAB_ROOT`, else the nearest ancestor holding `experiments/`."""
    from lab.errors import NotALab

    if root is None:
        root = os.environ.get("LAB_ROOT") or None
    if root is not None:
        path = os.path.realpath(os.path.expanduser(os.fspath(root)))
        if not os.path.isdir(os.path.join(path, EXPERIMENTS)):
            raise NotALab(f"{path} is not a lab (no {EXPERIMENTS}/ directory); run 'lab init {path}' first")
        return path
    here = os.path.realpath(cwd or os.getcwd())
    candidate = here
    while True:
        if os.path.isdir(os.path.join(candidate, EXPERIMENTS)):
            return candidate
        parent = os.path.dirname(candidate)
        if parent == candidate:
            break
        candidate = parent
    raise NotALab(f"not inside a lab (no {EXPERIMENTS}/ here or above {here}); run 'lab init' or pass --root DIR")
