"""Links from experiments to papers: the papers block of each linked experiment's `report.md`.

The front matter's `experiments` is the truth for links. Each linked experiment's `report.md` shows its papers
between `<!-- lab:papers -->` and `<!-- /lab:papers -->` (a `## Papers` section is appended when the markers are
missing); lab rebuilds only what lies between the markers.
"""

from __future__ import annotations

import re

from lab.core.fsutil import atomic_write_text, read_text
from lab.core.note import escape_markdown
from lab.papers.notes import lock, notes

PAPERS_START = "<!-- lab:papers -->"
PAPERS_END = "<!-- /lab:papers -->"
_PAPERS_RE = re.compile(re.escape(PAPERS_START) + r"(.*?)" + re.escape(PAPERS_END), re.S)


def papers_block(workspace, exp_name: str) -> str:
    """The Markdown list of the papers whose notes name `exp_name`, between the markers."""
    lines = []
    for n in notes(workspace):
        if exp_name in n.experiments:
            title = escape_markdown(str(n.meta.get("title") or n.key))
            arxiv_id = " ".join(str(n.meta.get("arxiv_id") or n.key).split())
            if not re.fullmatch(r"[A-Za-z0-9./-]+", arxiv_id):  # a hand-edited note may hold anything: text, not markup
                arxiv_id = escape_markdown(arxiv_id)
            lines.append(f"- [{title}](../../papers/{n.key}.md) (arXiv:{arxiv_id})")
    inner = "\n\n" + "\n".join(lines) + "\n\n" if lines else "\n"
    return f"{PAPERS_START}{inner}{PAPERS_END}"


def sync_report(workspace, exp_name: str) -> bool:
    """Rebuild the papers block of `experiments/EXP/report.md` from the notes; return whether the file changed.

    Only the text between the markers changes; when they are missing, a `## Papers` section holding them is
    appended at the end (a missing report is created with just that section)."""
    exp = workspace.experiment(exp_name)
    path = exp.report_path
    text = read_text(path) if path.exists() else ""
    block = papers_block(workspace, exp_name)
    if _PAPERS_RE.search(text):
        new = _PAPERS_RE.sub(lambda m: block, text, count=1)
    else:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        new = f"{text}{sep}## Papers\n\n{block}\n"
    if new == text:
        return False
    atomic_write_text(path, new)
    return True


def sync_all(workspace) -> list[str]:
    """Rebuild the papers block of every experiment that has linked papers or a block already (offline)."""
    named = {e for n in notes(workspace) for e in n.experiments}
    changed = []
    with lock(workspace):
        for exp in workspace.experiments():
            has_block = exp.report_path.exists() and PAPERS_START in read_text(exp.report_path)
            if (exp.name in named or has_block) and sync_report(workspace, exp.name):
                changed.append(exp.name)
    return changed
