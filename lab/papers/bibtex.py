"""BibTeX for paper notes: `lab bib` (`@misc` entries with eprint, archivePrefix, primaryClass, doi)."""

from __future__ import annotations

from lab.core.note import as_list
from lab.papers.notes import notes


# Control symbols LaTeX knows (`\&`, `\"o`, `\,` ...): a backslash before one of these is kept as written.
_CONTROL_SYMBOLS = set("&%$#_{}'\"`^~=.,;:!\\ ()[]-/@|<>*+")
_MATH_PAIRS = {"\\(": "\\)", "\\[": "\\]"}


def _math_end(text: str, i: int) -> int | None:
    """Where the math that starts at `text[i]` (`$`, `$$`, `\\(` or `\\[`) ends (the index after it), or None.

    A `$` opens math only with a non-space right after it and closes it only with a non-space right before it
    and no digit right after it (pandoc's rule), so `Costs below $5 per GPU-hour and $10 a day` is text."""
    pair = text[i : i + 2]
    if pair in _MATH_PAIRS:
        end = text.find(_MATH_PAIRS[pair], i + 2)
        return None if end < 0 else end + 2
    if pair == "$$":
        end = text.find("$$", i + 2)
        return None if end < 0 or end == i + 2 else end + 2
    if i + 1 >= len(text) or text[i + 1].isspace():
        return None
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == "$":
            if not text[j - 1].isspace() and not (j + 1 < len(text) and text[j + 1].isdigit()):
                return j + 1
        j += 1
    return None


def _unmatched_braces(text: str) -> set[int]:
    """Positions of braces without a partner, counted as BibTeX counts them: every brace, escaped or not."""
    stack, unmatched = [], set()
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}":
            if stack:
                stack.pop()
            else:
                unmatched.add(i)
    return unmatched | set(stack)


_LONE_BRACE = {("{", False): "\\textbraceleft{}", ("}", False): "\\textbraceright{}", ("{", True): "\\lbrace ", ("}", True): "\\rbrace "}


def _with_lone_braces(segment: str, start: int, unmatched: set[int], math: bool) -> str:
    """`segment` (at `start` in the text) with each brace BibTeX would find unbalanced (and a backslash before
    it) written as a command without braces of its own."""
    out, k = [], 0
    while k < len(segment):
        pos = start + k
        if segment[k] == "\\" and k + 1 < len(segment) and pos + 1 in unmatched:
            out.append(_LONE_BRACE[(segment[k + 1], math)])
            k += 2
        elif pos in unmatched:
            out.append(_LONE_BRACE[(segment[k], math)])
            k += 1
        else:
            out.append(segment[k])
            k += 1
    return "".join(out)


def _bib_value(text: str) -> str:
    """A field value that LaTeX and BibTeX read as the text it is.

    Balanced math (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`), LaTeX commands (`\\alpha`, `{\\em x}`) and control
    symbols (`\\"o`, `\\&`) are kept as written; outside math `_ % & # $` get a backslash, `^` becomes `\\^{}`,
    a backslash that starts nothing (a trailing one, say) becomes `\\textbackslash{}`, and a brace without
    its partner (BibTeX counts escaped braces too) becomes `\\textbraceleft{}` (`\\lbrace` in math), so every
    entry keeps BibTeX's braces balanced."""
    text = str(text)
    unmatched = _unmatched_braces(text)
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "$" or text[i : i + 2] in _MATH_PAIRS:
            end = _math_end(text, i)
            if end is not None:
                out.append(_with_lone_braces(text[i:end], i, unmatched, math=True))
                i = end
                continue
            if ch == "$":
                out.append("\\$")
                i += 1
                continue
        if ch == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt.isascii() and nxt.isalpha():
                j = i + 1
                while j < len(text) and text[j].isascii() and text[j].isalpha():
                    j += 1
                out.append(text[i:j])
                i = j
            elif nxt in "{}" and nxt and i + 1 in unmatched:
                out.append(_LONE_BRACE[(nxt, False)])
                i += 2
            elif nxt and nxt in _CONTROL_SYMBOLS:
                out.append(text[i : i + 2])
                i += 2
            else:
                out.append("\\textbackslash{}")
                i += 1
            continue
        if ch in "_%&#":
            out.append("\\" + ch)
        elif ch == "^":
            out.append("\\^{}")
        elif ch in "{}" and i in unmatched:
            out.append(_LONE_BRACE[(ch, False)])
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def bibtex_entry(meta: dict) -> str:
    aid = str(meta.get("arxiv_id") or "")
    fields = [
        ("title", "{" + _bib_value(meta.get("title") or "") + "}"),
        ("author", " and ".join(_bib_value(a) for a in as_list(meta.get("authors")))),
        ("year", str(meta.get("published") or "")[:4]),
        ("eprint", aid),
        ("archivePrefix", "arXiv"),
        ("primaryClass", meta.get("primary_category") or ""),
    ]
    if meta.get("doi"):
        fields.append(("doi", str(meta["doi"])))
    if meta.get("journal_ref"):
        fields.append(("note", _bib_value(meta["journal_ref"])))
    fields.append(("url", meta.get("url") or f"https://arxiv.org/abs/{aid}"))
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields if value)
    return f"@misc{{arXiv:{aid},\n{body}\n}}\n"


def bibtex(workspace, exps=(), tags=()) -> str:
    """BibTeX (`@misc` with eprint, archivePrefix, primaryClass, doi) for the notes linked to any of `exps` and
    tagged with any of `tags` (no filter: every note)."""
    exps, tags = list(exps or ()), list(tags or ())
    for name in exps:
        workspace.experiment(name)
    chosen = [
        n for n in notes(workspace)
        if n.meta.get("arxiv_id")
        and (not exps or set(exps) & set(n.experiments))
        and (not tags or set(tags) & set(n.tags))
    ]
    return "\n".join(bibtex_entry(n.meta) for n in chosen)
