"""arXiv identifiers: every form people paste, checked locally by arXiv's own rules.

New style (April 2007 on): `YYMM.NNNN` up to 1412 and `YYMM.NNNNN` from 1501, month 01-12, number not all
zeros, optional `vN`. Old style (1991 to March 2007): `archive[.SUBJECT]/YYMMNNN`, with a known archive,
month 01-12 and number not zero. Both may come as `arXiv:ID`, as abs/pdf/html URLs, with a `.pdf` suffix.

Only ASCII digits make an id. Full-width forms (`１６０５.０８３８６`, typed with a CJK input method) are
normalised to ASCII first, and `parse_ids` says so through its `progress` callback; any other non-ASCII digit
(`gr-qc/۹۷۰۶123`) is refused by name, so nothing arXiv would not recognise is ever sent. A leading `/`, a
doubled `/`, a trailing `/` and an upper-case archive (`HEP-TH//9901001`, accepted by arXiv's own parser) are tolerated;
`arXiv:` may also follow the URL's path (`https://arxiv.org/abs/arXiv:physics/9707012`, which arXiv redirects).

The canonical id is unversioned; for old-style ids it drops the subject class (`math.GT/0309136` is the paper
`math/0309136`), so one paper is one note whatever form was given. The note key replaces `/` with `_`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

from lab.errors import BadInput

# The archives of old-style identifiers (arXiv's identifier scheme, before April 2007).
OLD_ARCHIVES = frozenset(
    """acc-phys adap-org alg-geom ao-sci astro-ph atom-ph bayes-an chao-dyn chem-ph cmp-lg comp-gas cond-mat
    cs dg-ga funct-an gr-qc hep-ex hep-lat hep-ph hep-th math math-ph mtrl-th nlin nucl-ex nucl-th patt-sol
    physics plasm-ph q-alg q-bio quant-ph solv-int supr-con""".split()
)

# Archives that exist today (for category names such as `cs.CL` or `hep-th` in `lab feed add`).
ARCHIVES = OLD_ARCHIVES | {"econ", "eess", "q-fin", "stat"}

# re.ASCII: `\d` is 0-9 only (in str patterns it would match any Unicode digit, such as Arabic-Indic ones).
_NEW = re.compile(r"(?P<yymm>\d{4})\.(?P<num>\d{4,5})(?:v(?P<v>[1-9]\d*))?", re.ASCII)
_OLD = re.compile(
    r"(?P<archive>[a-z]+(?:-[a-z]+)?)(?:\.(?P<subject>[A-Za-z]+(?:-[A-Za-z]+)?))?/+(?P<yymm>\d{4})(?P<num>\d{3})"
    r"(?:v(?P<v>[1-9]\d*))?",
    re.ASCII,
)
_URL = re.compile(
    r"(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|html|format)/(?P<rest>[^?#]+?)/?(?:[?#].*)?",
    re.IGNORECASE,
)
_PREFIX = re.compile(r"arxiv:\s*", re.IGNORECASE)
CATEGORY_RE = re.compile(r"(?P<archive>[a-z]+(?:-[a-z]+)?)(?:\.(?P<subject>[A-Za-z]+(?:-[A-Za-z]+)?))?")


@dataclass(frozen=True)
class ArxivId:
    """A checked arXiv identifier: `id` is canonical and unversioned, `version` is None when not given."""

    id: str
    version: int | None = None

    @property
    def key(self) -> str:
        """The note's file stem: the canonical id with `/` replaced by `_`."""
        return self.id.replace("/", "_")

    @property
    def versioned(self) -> str:
        return f"{self.id}v{self.version}" if self.version else self.id

    def __str__(self) -> str:
        return self.versioned


def _check_new(m: re.Match, text: str) -> ArxivId:
    yymm, num = m["yymm"], m["num"]
    if not 1 <= int(yymm[2:]) <= 12:
        raise BadInput(f"malformed arXiv id {text!r}: month {yymm[2:]} is not 01-12")
    if int(yymm) < 704:
        raise BadInput(f"malformed arXiv id {text!r}: new-style ids start in 0704 (April 2007)")
    digits = 4 if int(yymm) <= 1412 else 5
    if len(num) != digits:
        raise BadInput(f"malformed arXiv id {text!r}: ids of {yymm} have a {digits}-digit number")
    if int(num) == 0:
        raise BadInput(f"malformed arXiv id {text!r}: the number must not be zero")
    return ArxivId(f"{yymm}.{num}", int(m["v"]) if m["v"] else None)


def _check_old(m: re.Match, text: str) -> ArxivId:
    archive, yymm, num = m["archive"], m["yymm"], m["num"]
    if archive not in OLD_ARCHIVES:
        raise BadInput(f"malformed arXiv id {text!r}: {archive!r} is not an arXiv archive")
    yy, mm = int(yymm[:2]), int(yymm[2:])
    if not 1 <= mm <= 12:
        raise BadInput(f"malformed arXiv id {text!r}: month {yymm[2:]} is not 01-12")
    if not (yy >= 91 or yy <= 7) or (yy == 7 and mm > 3):
        raise BadInput(f"malformed arXiv id {text!r}: old-style ids run from 1991 to March 2007")
    if int(num) == 0:
        raise BadInput(f"malformed arXiv id {text!r}: the number must not be zero")
    return ArxivId(f"{archive}/{yymm}{num}", int(m["v"]) if m["v"] else None)


# Full-width ASCII forms (U+FF01-U+FF5E) and the ideographic space: what a CJK input method types.
_FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000]")


def ascii_form(text: str) -> str:
    """`text` with full-width characters replaced by their ASCII forms (`１６０５．０８３８６` -> `1605.08386`);
    raise BadInput naming any other non-ASCII digit, which no arXiv id has."""
    text = _FULL_WIDTH.sub(lambda m: unicodedata.normalize("NFKC", m.group(0)), str(text))
    for ch in text:
        if not ch.isascii() and (ch.isdigit() or unicodedata.category(ch) == "Nd"):
            name = unicodedata.name(ch, f"U+{ord(ch):04X}")
            raise BadInput(
                f"malformed arXiv id {text.strip()!r}: {ch!r} ({name}) is not an ASCII digit; arXiv ids use 0-9"
            )
    return text


def parse_id(text: str) -> ArxivId:
    """Check one pasted arXiv id (any form) and return it; raise BadInput (exit 2) when it is malformed."""
    raw = str(text).strip()
    s = ascii_form(raw).strip()
    url = _URL.fullmatch(s)
    if url:
        s = url["rest"]
    s = _PREFIX.sub("", s, count=1) if _PREFIX.match(s) else s
    if s.lower().endswith(".pdf"):
        s = s[:-4]
    s = s.strip("/")
    if "/" in s:
        archive, _, rest = s.partition("/")
        s = f"{archive.lower() if archive.isupper() else archive}/{rest}"
    m = _NEW.fullmatch(s)
    if m:
        return _check_new(m, raw)
    m = _OLD.fullmatch(s)
    if m:
        return _check_old(m, raw)
    raise BadInput(
        f"malformed arXiv id {raw!r}: expected e.g. 2301.12345, 2301.12345v2, arXiv:2301.12345, "
        "https://arxiv.org/abs/2301.12345 or hep-th/9901001"
    )


def parse_ids(texts, progress: Callable[[str], None] | None = None) -> list[ArxivId]:
    """Check every id before anything is sent; the same paper given twice counts once (the last version wins).
    An id given with full-width characters is read as its ASCII form, and `progress` is told so."""
    seen: dict[str, ArxivId] = {}
    for text in texts:
        aid = parse_id(text)
        if progress is not None and not str(text).strip().isascii():
            progress(f"read {str(text).strip()!r} as {ascii_form(str(text)).strip()!r} (full-width characters written in ASCII)")
        seen[aid.id] = aid
    return list(seen.values())


def from_entry_id(entry_id: str) -> ArxivId | None:
    """The id in an API entry's `<id>` (`http://arxiv.org/abs/1605.08386v1`) or a feed guid
    (`oai:arXiv.org:2604.22002v1`); None when it is not an arXiv paper id."""
    s = re.sub(r"^oai:arxiv\.org:", "", str(entry_id).strip(), flags=re.IGNORECASE)
    try:
        return parse_id(s)
    except BadInput:
        return None


def category_of(text: str) -> str | None:
    """`cs.CL` (or `hep-th`) when `text` names an arXiv category, else None."""
    m = CATEGORY_RE.fullmatch(text.strip())
    if m and m["archive"] in ARCHIVES:
        return text.strip()
    return None
