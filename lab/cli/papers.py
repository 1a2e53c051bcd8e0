"""`lab note`, `lab feed add|list|pull|remove`, `lab bib`."""

from __future__ import annotations

import click

from lab.cli.app import echo_json, pass_lab


def _progress(message: str) -> None:
    click.echo(message, err=True)


@click.command("note")
@click.argument("ids", nargs=-1, metavar="ID...")
@click.option("--exp", "exps", multiple=True, metavar="EXP", help="Link the notes to experiment EXP (repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the notes (repeatable).")
@click.option("--offline", is_flag=True, help="Only add links and tags to existing notes; ask arXiv nothing.")
@click.option("--sync", "sync", is_flag=True, help="With no IDs: rebuild every report's papers block from the notes.")
@click.option("--pdf", "pdf_files", is_flag=True,
              help="The arguments are PDF files to keep as notes; with --sync: fetch the PDFs notes lack.")
@click.option("--no-pdf", is_flag=True, help="Keep only the metadata: no PDF, no full text.")
@click.option("--json", "as_json", is_flag=True, help="Print the notes written as JSON.")
@pass_lab
def note_cmd(lab, ids, exps, tags, offline, sync, pdf_files, no_pdf, as_json):
    """Keep arXiv papers ID... as notes papers/KEY.md, linked to experiments, with their full text.

    IDs come in any form: 2301.12345, 2301.12345v2, arXiv:2301.12345, https://arxiv.org/abs/2301.12345,
    https://arxiv.org/pdf/2301.12345.pdf, hep-th/9901001, math.GT/0309136. All go to arXiv in one request.
    Running it again for a paper refreshes the metadata and keeps everything you wrote.

    Each new paper's PDF is kept as papers/KEY.pdf (ignored by git unless lab.yaml says papers: {commit_pdfs:
    true}) and its text indexed page by page, so `lab search` finds passages inside it. --no-pdf, or
    papers: {full_text: false} in lab.yaml, skips that. --pdf FILE.pdf keeps a PDF that is not on arXiv.

    \b
    Examples:
      lab note 1706.03762 --exp exp1 --tag transformers
      lab note arXiv:1810.04805v2 https://arxiv.org/abs/1907.11692
      lab note --pdf ~/Downloads/paper.pdf --exp exp1
      lab note --sync            (rebuild the reports' papers blocks)
      lab note --sync --pdf      (fetch the PDFs of notes that have none)
    """
    from lab.errors import BadInput
    from lab.papers.intake import NotFoundOnArxiv, note, note_pdf, sync_pdfs
    from lab.papers.links import sync_all

    ws = lab.workspace
    if pdf_files and no_pdf:
        raise BadInput("--pdf and --no-pdf contradict each other")
    if sync:
        if ids or exps or tags:
            raise BadInput("--sync takes no ids, --exp or --tag")
        if pdf_files:
            kept = sync_pdfs(ws, progress=_progress)
            _progress(f"kept {kept} PDF(s)")
            return
        changed = sync_all(ws)
        _progress(f"updated the papers block of {', '.join(changed)}" if changed else "every report's papers block is up to date")
        return
    if not ids:
        raise BadInput("give at least one arXiv id, e.g. lab note 2301.12345 (see 'lab note --help')")
    if pdf_files:
        if offline:
            raise BadInput("--pdf takes local files; --offline is for existing arXiv notes")
        _print([note_pdf(ws, f, exps=exps, tags=tags, progress=_progress) for f in ids], as_json, ws)
        return
    try:
        written = note(ws, ids, exps=exps, tags=tags, offline=offline, pdf=not no_pdf, progress=_progress)
    except NotFoundOnArxiv as e:
        _print(e.written, as_json, ws)
        raise
    _print(written, as_json, ws)


def _print(written, as_json, ws):
    if as_json:
        echo_json([{"arxiv_id": r.arxiv_id, "path": str(r.path), "title": r.title, "created": r.created} for r in written])
    else:
        for r in written:
            click.echo(str(r.path))


@click.command("bib")
@click.option("--exp", "exps", multiple=True, metavar="EXP", help="Only papers linked to EXP (repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only papers tagged TAG (repeatable).")
@pass_lab
def bib_cmd(lab, exps, tags):
    """Print BibTeX (@misc with eprint, archivePrefix, primaryClass, doi) for the paper notes.

    \b
    Examples:
      lab bib --exp exp1 > refs.bib
      lab bib --tag transformers
    """
    from lab.papers.bibtex import bibtex

    text = bibtex(lab.workspace, exps=exps, tags=tags)
    if not text:
        _progress("no paper notes match")
        return
    click.echo(text, nl=False)


@click.group("feed")
def feed_cmd():
    """Follow RSS/Atom feeds (arXiv categories, lab blogs): add, list, pull, remove.

    Feeds live in feeds/feeds.json and their items in feeds/items/NAME.jsonl; `lab note ID` turns an item's
    arXiv id into a note.

    \b
    Example:
      lab feed add cs.CL
      lab feed add https://bair.berkeley.edu/blog/feed.xml --name bair
      lab feed pull
    """


@feed_cmd.command("add")
@click.argument("source", metavar="URL|CATEGORY")
@click.option("--name", metavar="NAME", help="The feed's name (default: derived from the category or URL).")
@pass_lab
def feed_add(lab, source, name):
    """Add a feed: an RSS/Atom URL, or an arXiv category such as cs.CL (its arXiv RSS feed).

    \b
    Examples:
      lab feed add cs.LG
      lab feed add https://huggingface.co/blog/feed.xml --name hf
    """
    from lab.papers.feeds import Feeds

    feed = Feeds(lab.workspace).add(source, name=name)
    click.echo(feed["name"])
    _progress(f"added feed {feed['name']} ({feed['url']}); next: lab feed pull {feed['name']}")


@feed_cmd.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: name, url, items, last_pull, last_error.")
@pass_lab
def feed_list(lab, as_json):
    """List the feeds with their item counts, last pull and last error.

    \b
    Example:
      lab feed list --json
    """
    from lab.papers.feeds import Feeds

    rows = Feeds(lab.workspace).listing()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        _progress("no feeds yet; add one with: lab feed add cs.CL")
        return
    for r in rows:
        state = f"error: {r['last_error']}" if r["last_error"] else f"pulled {r['last_pull']}" if r["last_pull"] else "never pulled"
        click.echo(f"{r['name']}\t{r['items']} items\t{state}\t{r['url']}")


@feed_cmd.command("pull")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: per feed, items added, total, error.")
@pass_lab
def feed_pull(lab, name, as_json):
    """Fetch new items of feed NAME (default: every feed). A failing feed is reported and the others go on;
    the exit status is 1 when any failed.

    \b
    Examples:
      lab feed pull
      lab feed pull arxiv-cs.CL
    """
    from lab.errors import LabError
    from lab.papers.feeds import Feeds

    results = Feeds(lab.workspace).pull(name, progress=_progress)
    if as_json:
        echo_json([{"name": r.name, "added": r.added, "items": r.total, "not_modified": r.not_modified, "error": r.error} for r in results])
    else:
        for r in results:
            for item in r.new_items:
                click.echo(f"{r.name}\t{item['arxiv_id'] or item['link'] or ''}\t{item['title']}")
    failed = [r for r in results if r.error]
    if failed:
        raise LabError(f"{len(failed)} of {len(results)} feeds failed: " + "; ".join(f"{r.name}: {r.error}" for r in failed))
    if not results:
        _progress("no feeds yet; add one with: lab feed add cs.CL")


@feed_cmd.command("remove")
@click.argument("name")
@pass_lab
def feed_remove(lab, name):
    """Remove feed NAME and its items file.

    \b
    Example:
      lab feed remove arxiv-cs.CL
    """
    from lab.papers.feeds import Feeds

    Feeds(lab.workspace).remove(name)
    _progress(f"removed feed {name}")
