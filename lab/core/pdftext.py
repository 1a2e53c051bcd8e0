"""The text of the PDFs kept under `papers/`, page by page: extracted with pypdf, cached as derived state.

`extract(path)` reads one PDF (pypdf, BSD-licensed and maintained) and gives its pages' text, cleaned for
search: ligatures spelled out (NFKC: `ﬁ` -> `fi`), private-use glyphs dropped, words hyphenated at a line end
joined (`cau-` `tion` -> `caution`), runs of spaces collapsed. What cannot be read is one line in `problem`,
never an exception: a file that is not a PDF (an HTML error page served as `application/pdf`), an encrypted
or damaged one, a decompression bomb (pypdf's own output limits), a scan without a text layer, text that is
private-use glyphs only. Long PDFs stop at a page cap (`MAX_PAGES`) and at a deadline, and say so.

The extracted text is derived state, `.lab/fulltext/<the PDF's path under papers/>.json` (with the PDF's size
and mtime, so a changed PDF is read again, and its passages as lab.core.passages cuts them: `passages`); deleting `.lab/` loses nothing, the PDFs are the truth. The search
index reads the cache (`cached`) and, for PDFs not extracted yet, runs `python -m lab.core.pdftext ROOT PDF...`
in a child process (`extract_in_child`), so that `lab search` never imports pypdf itself. `lab note` extracts
in process, as it keeps the PDF.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

from lab.core import layout

MAX_PAGES = 300  # a 1,000-page volume of proceedings is indexed up to here, and said so (`LAB_PDF_MAX_PAGES`)
DEADLINE_S = 60.0  # per PDF
CHILD_TIMEOUT_S = 300.0  # for one `python -m lab.core.pdftext` run over many PDFs
_PRIVATE = re.compile("[\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd]")
_HYPHEN = re.compile(r"(\w)-\n(\w)")
_SPACES = re.compile(r"[ \t\u00a0]+")
# The stamp arXiv prints down the margin of every PDF it serves ("arXiv:1111.2011v2 [cond-mat.str-el] 2 Apr 2012"):
# kept out of the text, where it would glue itself to a word. (lab note --pdf finds the id before cleaning.)
_ARXIV_STAMP = re.compile(r"arXiv:\s?(\S+v\d+)\s+\[[\w.-]+\]\s+\d{1,2}\s+\w{3}\s+\d{4}")


def clean(text: str) -> tuple[str, int]:
    """`text` ready for search, and how many private-use glyphs were dropped from it."""
    import unicodedata

    text = unicodedata.normalize("NFKC", _ARXIV_STAMP.sub(" ", text))
    text, private = _PRIVATE.subn("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _HYPHEN.sub(lambda m: m.group(1) + m.group(2) if m.group(2).islower() else m.group(0), text)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip(), private


class _Runs:
    """pypdf's text visitor for page 1: each run of text with its size as printed (the font size times the text
    and page matrices' scale) and its baseline; `title()` is the text of the lines set in the largest size (the
    title; small capitals and a wrapped title included, the authors' line after it not), or None."""

    def __init__(self):
        self.runs: list[tuple[float, int, str]] = []

    def __call__(self, text, cm, tm, font_dict, font_size) -> None:
        if not text:
            return
        a, b = tm[0] * cm[0] + tm[1] * cm[2], tm[0] * cm[1] + tm[1] * cm[3]
        c, d = tm[2] * cm[0] + tm[3] * cm[2], tm[2] * cm[1] + tm[3] * cm[3]
        size = abs(font_size or 0) * abs(a * d - b * c) ** 0.5
        self.runs.append((size, round(tm[4] * cm[1] + tm[5] * cm[3] + cm[5]), text))

    def title(self) -> str | None:
        runs = [r for r in self.runs if not _ARXIV_STAMP.search(r[2]) and not _ARXIV_ID.search(r[2])]
        worded = [r for r in runs if _WORD.search(r[2])]
        if not worded:
            return None
        top = max(size for size, _, _ in worded)
        lines = {y for size, y, _ in worded if size >= top - 0.6}
        title = " ".join("".join(text for _, y, text in runs if y in lines).split())
        if len(lines) > 4 or len(title.split()) < 2 or len(title) > 300:
            return None  # no title set apart by its size: the caller falls back to the first lines
        return title


_WORD = re.compile(r"[^\W\d_]{2}")
_ARXIV_ID = re.compile(r"arXiv:\s?\d")


def extract(path, max_pages: int | None = None, deadline_s: float = DEADLINE_S) -> dict:
    """{"pages": [text of page 1, ...], "page_count": pages in the file, "problem": one line or None}, and
    "arxiv_stamp" (the id in arXiv's margin stamp on page 1) and "title" (the lines of page 1 set in its largest
    type) when there are."""
    out: dict = {"pages": [], "page_count": 0, "problem": None}
    if max_pages is None:
        max_pages = int(os.environ.get("LAB_PDF_MAX_PAGES") or MAX_PAGES)
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError as e:
        out["problem"] = f"cannot read it: {e.strerror or e}"
        return out
    if b"%PDF-" not in head:
        what = head.lstrip()[:40].decode("ascii", "replace").split("\n")[0]
        looks = "an HTML page" if b"<html" in head.lower() or b"<!doctype" in head.lower() else f"it starts with {what!r}"
        out["problem"] = f"not a PDF ({looks})"
        return out
    try:
        import pypdf
        from pypdf.errors import FileNotDecryptedError, LimitReachedError, PyPdfError
    except ImportError:
        out["problem"] = "pypdf is not installed (pip install pypdf)"
        return out
    import logging

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # lab says what went wrong, in one line
    start = time.monotonic()
    private = 0
    try:
        reader = pypdf.PdfReader(path, strict=False)
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    out["problem"] = "encrypted (it needs a password): no text to index"
                    return out
            except (FileNotDecryptedError, NotImplementedError, PyPdfError):
                out["problem"] = "encrypted (it needs a password): no text to index"
                return out
        count = len(reader.pages)
        out["page_count"] = count
        for number, page in enumerate(reader.pages, 1):
            if number > max_pages:
                out["problem"] = f"{count} pages: only the first {max_pages} are indexed"
                break
            if time.monotonic() - start > deadline_s:
                out["problem"] = f"extraction stopped after {deadline_s:g} s, at page {number} of {count}"
                break
            try:
                runs = _Runs() if number == 1 else None
                raw = page.extract_text(visitor_text=runs) or ""
                if runs is not None and runs.title():
                    out["title"] = clean(runs.title())[0]
                stamp = _ARXIV_STAMP.search(raw) if number == 1 else None
                if stamp:
                    out["arxiv_stamp"] = stamp.group(1)  # the id arXiv served this PDF as
                if not raw.strip():
                    page.get_contents() and page.get_contents().get_data()  # pypdf's extract_text hides a bomb
                text, dropped = clean(raw)
            except LimitReachedError:
                raise
            except Exception as e:  # one damaged page: the others still count
                text, dropped = "", 0
                out.setdefault("page_problems", []).append(f"page {number}: {type(e).__name__}")
            private += dropped
            out["pages"].append(text)
    except LimitReachedError:
        out["problem"] = "a stream decompresses past pypdf's limit (a decompression bomb?): not indexed"
        out["pages"] = []
        return out
    except FileNotDecryptedError:
        out["problem"] = "encrypted (it needs a password): no text to index"
        return out
    except Exception as e:  # pypdf raises many types for a damaged file; none may stop lab
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        out["problem"] = f"damaged PDF, cannot be read ({reason})"
        out["pages"] = []
        return out
    if not any(out["pages"]) and out["problem"] is None:
        if private:
            out["problem"] = "its text is private-use glyphs only (fonts without a Unicode map): nothing to index"
        else:
            out["problem"] = "no text layer (a scanned PDF?): nothing to index"
    return out


# ---- The cache under .lab/fulltext/ ------------------------------------------------------------------------


def cache_path(root, rel: str) -> str:
    """Where the text of PDF `rel` (relative to the root, `papers/...`) is kept."""
    inner = rel[len(layout.PAPERS) + 1 :] if rel.startswith(layout.PAPERS + "/") else rel
    return os.path.join(os.fspath(root), layout.FULLTEXT, inner.replace("/", "__") + ".json")


def _stamp(root, rel: str):
    st = os.stat(os.path.join(os.fspath(root), rel))
    return st.st_size, st.st_mtime_ns


def cached(root, rel: str) -> dict | None:
    """The kept extraction of PDF `rel`, or None when there is none for the PDF as it is now."""
    try:
        size, mtime = _stamp(root, rel)
        with open(cache_path(root, rel), encoding="utf-8") as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("size") != size or entry.get("mtime_ns") != mtime:
        return None
    return entry


def fresh(root, rel: str) -> bool:
    """Whether the kept text of PDF `rel` is that of the PDF as it is now (reads the entry's head only)."""
    try:
        size, mtime = _stamp(root, rel)
        with open(cache_path(root, rel), encoding="utf-8") as f:
            head = f.read(len(rel) * 4 + 200)
    except OSError:
        return False
    return f'"size": {size}, "mtime_ns": {mtime},' in head


def store(root, rel: str, result: dict) -> dict:
    """Keep `result` (from `extract`) as the text of PDF `rel` as it is now; return the entry kept."""
    from lab.core.fsutil import atomic_write_text

    from lab.core import passages

    size, mtime = _stamp(root, rel)
    entry = {"pdf": rel, "size": size, "mtime_ns": mtime, **result,
             "passages": {"version": passages.VERSION, "cut": passages.pdf_passages(result.get("pages") or [])}}
    path = cache_path(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(path, json.dumps(entry, ensure_ascii=False))
    return entry


def ensure(root, rel: str) -> dict:
    """The text of PDF `rel`: from the cache, else extracted now (in this process) and kept."""
    entry = cached(root, rel)
    if entry is None:
        entry = store(root, rel, extract(os.path.join(os.fspath(root), rel)))
    return entry


def summary(root, note_rel: str) -> dict | None:
    """What the book shows of a note's full text: {"pdf": the PDF's path, "pages": pages indexed, "words": words
    indexed, "problem": one line or None}, or None when the note has no PDF. Reads the kept text only (no
    extraction: a PDF not extracted yet shows as 0 pages)."""
    pdf_rel = note_rel.rsplit(".", 1)[0] + ".pdf"
    if not os.path.isfile(os.path.join(os.fspath(root), pdf_rel)):
        return None
    entry = cached(root, pdf_rel) or {}
    pages = entry.get("pages") or []
    return {"pdf": pdf_rel, "pages": sum(1 for p in pages if p), "words": sum(len(p.split()) for p in pages),
            "problem": entry.get("problem")}


def extract_in_child(root, rels: list[str], timeout: float = CHILD_TIMEOUT_S) -> str | None:
    """Extract the PDFs `rels` in a child process (the caller never imports pypdf); None, or why it failed.

    The child leads a process group of its own, with a worker per core when there are many PDFs (a lab's
    first index of a library of PDFs, or after `.lab/` was deleted); at the deadline the whole group is
    stopped, so no worker outlives it holding the pipe this process reads."""
    import subprocess

    from lab.core.process import terminate_group

    if not rels:
        return None
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "lab.core.pdftext", os.fspath(root), *rels],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
    except OSError as e:
        return f"cannot start the PDF text extractor: {e}"
    try:
        _, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        terminate_group(child.pid, grace=1.0)
        child.communicate()
        return f"extracting the text of {len(rels)} PDF(s) took over {timeout:g} s; the rest is read next time"
    except BaseException:  # Ctrl-C: the extractor stops too
        terminate_group(child.pid, grace=1.0)
        child.wait()
        raise
    if child.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return f"the PDF text extractor failed: {lines[-1] if lines else child.returncode}"
    return None


def _ensure_quietly(root, rel: str) -> None:
    try:
        ensure(root, rel)
    except OSError:
        pass  # vanished meanwhile: the index sees that on its own


def main(argv: list[str]) -> int:
    root, rels = argv[0], argv[1:]
    from lab.core.process import usable_cores

    workers = min(len(rels) // 4, usable_cores())
    if workers < 2:
        for rel in rels:
            _ensure_quietly(root, rel)
        return 0
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        for _ in pool.map(_ensure_quietly, [root] * len(rels), rels, chunksize=4):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
