"""A paper's page and the reading list: fetched text everywhere, escaped, linked only when http(s)."""

from __future__ import annotations

from urllib.parse import quote

from lab.book.sources import Paper
from lab.book.text import date, ext_link, front, h, md, plural, safe_url, str_list, when
from lab.core.workspace import NAME_RE
from lab.errors import LabError
from lab.papers.ids import parse_id

READING_PER_FEED = 15


def arxiv_id_of(text):
    """The ArxivId `text` names, by lab.papers.ids's rules, or None (fetched text may hold anything)."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return parse_id(text.strip())
    except LabError:
        return None


class PaperPages:
    """The paper pages and the reading list of a Book (a mixin: the links and the lab come from Book)."""

    # --- the reading list ---

    def reading_list(self) -> str:
        """The newest items of each feed, each marked when it has a paper note, else with the `lab note` that keeps
        it. Feed text is fetched text: escaped, and linked only when the link is http(s)."""
        from lab.papers.feeds import Feeds

        here = "reading-list/index.md"
        out = [front("Reading list"), "# Reading list\n"]
        feeds_ = Feeds(self.ws)
        try:
            feeds = feeds_.load()
        except LabError as e:
            self.warn(f"lab: the reading list is empty: {e}")
            return "\n".join(out + [f"_The feeds could not be read: {md(e)}_\n"])
        if not feeds:
            return "\n".join(out + ["_No feeds yet: add one with `lab feed add cs.CL`, then `lab feed pull`._\n"])
        keys = {p.key for p in self.papers}
        out.append(f"The newest items of each feed ({READING_PER_FEED} at most; `lab feed pull` brings new ones). "
                   "✓ marks an item that has a paper note; `lab note ID` keeps one.\n")
        for feed in feeds:
            name = str(feed.get("name"))
            try:
                items = [i for i in feeds_.items(name) if isinstance(i, dict)] if NAME_RE.fullmatch(name) else []
            except (LabError, OSError, UnicodeDecodeError) as e:
                self.warn(f"lab: feed {name}: {e}")
                items = []
            items.sort(key=lambda i: (str(i.get("published") or i.get("added_at") or ""), str(i.get("added_at") or "")), reverse=True)
            pulled = f", last pulled {h(when(feed.get('last_pull')))}" if feed.get("last_pull") else ""
            out.append(f"## {md(name)}\n")
            out.append(f'<p class="lab-feed-info">{plural(len(items), "item")}{pulled}'
                       + (f' · <a href="{h(safe_url(feed.get("url")))}">feed</a>' if safe_url(feed.get("url")) else "") + "</p>\n")
            if not items:
                out.append("_No items yet: `lab feed pull`._\n")
                continue
            lis = [self._reading_item(item, keys, here) for item in items[:READING_PER_FEED]]
            out.append('<ul class="lab-reading"> ' + " ".join(lis) + " </ul>\n")
        return "\n".join(out) + "\n"

    def _reading_item(self, item: dict, keys: set[str], here: str) -> str:
        title = " ".join(str(item.get("title") or item.get("id") or "untitled").split())
        link = safe_url(item.get("link"))
        head = ext_link(link, title) if link else h(title)
        aid = arxiv_id_of(item.get("arxiv_id"))
        mark = ""
        if aid:
            key = aid.key
            if key in keys:
                mark = f' <span class="lab-kept" title="has a paper note">✓ {self.a(here, f"papers/{key}.md", "note")}</span>'
            else:
                mark = f" <code>lab note {h(aid.versioned)}</code>"
        authors = str_list(item.get("authors"))
        meta = [h(", ".join(authors[:3]) + (" et al." if len(authors) > 3 else ""))] if authors else []
        if date(item.get("published")):
            meta.append(h(date(item.get("published"))))
        summary = " ".join(str(item.get("summary") or "").split())
        if len(summary) > 280:
            summary = summary[:277].rsplit(" ", 1)[0] + " …"
        parts = [f"<li>{head}{mark}"]
        if meta:
            parts.append(f'<br><span class="lab-meta">{" · ".join(meta)}</span>')
        if summary:
            parts.append(f'<br><span class="lab-summary">{h(summary)}</span>')
        return " ".join(parts) + "</li>"

    # --- a paper ---

    def fulltext_cell(self, p: Paper) -> str:
        """`indexed for search: 8 pages, 5,432 words · PDF`: the PDF linked only where `book: publish` names it."""
        from lab.book.sources import published_pdf

        found = p.fulltext or {}
        if found.get("pages"):
            cell = f"indexed for search: {plural(found['pages'], 'page')}, {found['words']:,} words"
        else:
            cell = "not indexed" + (f" ({h(found['problem'])})" if found.get("problem") else "")
        if published_pdf(self.publish, p.key):
            cell += " · " + self.a(f"papers/{p.key}.md", f"papers/{p.key}.pdf", "PDF")
        return cell

    def paper_page(self, p: Paper) -> str:
        # The metadata is fetched text: one raw HTML table, every value escaped, no Markdown reads it.
        rows = []
        arxiv_id = p.text("arxiv_id").strip()
        version = p.text("version").strip().removeprefix("v")
        aid = arxiv_id_of(arxiv_id)
        if aid is not None:
            full = aid.versioned if aid.version or not version.isdigit() else f"{aid.id}v{version}"
            rows.append(("arXiv", ext_link(f"https://arxiv.org/abs/{full}", full)))
        elif arxiv_id:
            rows.append(("arXiv", h(arxiv_id)))
        if p.authors():
            rows.append(("authors", h(", ".join(p.authors()))))
        for key in ("published", "updated"):
            if p.text(key):
                rows.append((key, h(date(p.text(key)))))
        cats = str_list(p.meta.get("categories"))
        primary = p.text("primary_category")
        if primary or cats:
            rows.append(("categories", h(", ".join(dict.fromkeys(([primary] if primary else []) + cats)))))
        doi = p.text("doi").strip()
        if doi:
            rows.append(("DOI", ext_link("https://doi.org/" + quote(doi, safe="/:;()._-"), doi)))
        for key in ("journal_ref", "comment"):
            if p.text(key).strip():
                rows.append((key.replace("_", " "), h(p.text(key))))
        links = [ext_link(u, label) for label, u in (("abstract page", safe_url(p.meta.get("url"))), ("PDF", safe_url(p.meta.get("pdf_url")))) if u]
        if links:
            rows.append(("links", " · ".join(links)))
        if p.added_at():
            rows.append(("added", h(when(p.added_at()))))
        if p.fulltext is not None:
            rows.append(("full text", self.fulltext_cell(p)))
        out = [front(p.title()), f"# {md(p.title())}\n"]
        if rows:
            out.append('<table><tbody> ' + " ".join(f"<tr> <th>{k}</th> <td>{v}</td> </tr>" for k, v in rows) + " </tbody></table>\n")
        if p.tags():
            out.append("Tags: " + self.tag_links(p.tags(), "../") + "\n")
        if p.abstract.strip():
            # Plain text from the note's abstract block, escaped once, as one raw HTML paragraph: Markdown never reads it.
            out += ["## Abstract\n", f'<p class="lab-abstract">{h(p.abstract)}</p>\n']
        out += ["## Notes\n", (p.notes.strip() or "_No notes yet._") + "\n"]
        out.append("## Experiments\n")
        names = p.experiments()
        out.append("\n".join(f"- {self.exp_link(n, '../')}" + (f": {md(self.by_name[n].title)}" if n in self.by_name else "") for n in names)
                   if names else "_Not linked to an experiment yet: `lab note " + md(arxiv_id or p.key) + " --exp EXP`._")
        return "\n".join(out) + "\n"

