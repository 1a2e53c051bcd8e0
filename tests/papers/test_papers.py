"""Paper notes: arXiv ids, fetching from a loopback server of recorded arXiv answers, notes, links, BibTeX."""

from __future__ import annotations

import pytest

from helpers import LabCLI
from fixture_server import free_port
from lab.core import frontmatter
from lab.papers.ids import parse_id
from lab.errors import BadInput, LabError
from lab.papers.notes import LAB_KEYS


@pytest.fixture
def arxiv_env(server, tmp_path, monkeypatch):
    env = {
        "LAB_ARXIV_API_URL": f"{server.url}/api/query",
        "LAB_ARXIV_PDF_URL": f"{server.url}/pdf",
        "LAB_ARXIV_MIN_INTERVAL": "0",
        "LAB_ARXIV_BACKOFF": "0",
        "LAB_ARXIV_TIMEOUT": "5",
        "LAB_CACHE_DIR": str(tmp_path / "cache"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def lab(lab_root, arxiv_env):
    cli = LabCLI(lab_root)

    def run(*args, **kwargs):
        return cli(*args, env={**arxiv_env, **kwargs.pop("env", {})}, **kwargs)

    return run


def papers(root):
    return sorted(p.name for p in (root / "papers").iterdir())


def read_note(root, key):
    return frontmatter.read(root / "papers" / f"{key}.md")


# ---- ids ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, canonical, version",
    [
        ("2301.12345", "2301.12345", None),
        ("2301.12345v2", "2301.12345", 2),
        ("arXiv:2301.12345", "2301.12345", None),
        ("arxiv: 2301.12345v3", "2301.12345", 3),
        ("https://arxiv.org/abs/2301.12345v2", "2301.12345", 2),
        ("https://arxiv.org/pdf/2301.12345.pdf", "2301.12345", None),
        ("https://arxiv.org/pdf/2301.12345v4", "2301.12345", 4),
        ("http://export.arxiv.org/abs/1412.6980", "1412.6980", None),
        (" 0704.0001 ", "0704.0001", None),
        ("hep-th/9901001", "hep-th/9901001", None),
        ("math.GT/0309136", "math/0309136", None),
        ("https://arxiv.org/abs/astro-ph/0601001v1", "astro-ph/0601001", 1),
        ("quant-ph/0201082v1", "quant-ph/0201082", 1),
    ],
)
def test_id_forms(text, canonical, version):
    aid = parse_id(text)
    assert (aid.id, aid.version) == (canonical, version)
    assert aid.key == canonical.replace("/", "_")


@pytest.mark.parametrize(
    "text, why",
    [
        ("abc", "expected e.g."),
        ("0808.05394", "4-digit"),  # before 1501 numbers have four digits
        ("1501.1234", "5-digit"),
        ("2313.12345", "month 13"),
        ("2300.12345", "month 00"),
        ("0000.0000", "month 00"),
        ("2301.00000", "not be zero"),
        ("0703.1234", "0704"),
        ("2301.12345v0", "expected e.g."),
        ("foo-bar/9901001", "not an arXiv archive"),
        ("hep-th/9913001", "month 13"),
        ("hep-th/9901000", "not be zero"),
        ("hep-th/0801001", "1991 to March 2007"),
        ("https://example.org/abs/2301.12345", "expected e.g."),
    ],
)
def test_malformed_ids_are_refused(text, why):
    with pytest.raises(BadInput, match=why):
        parse_id(text)


def test_malformed_id_exits_2_and_sends_nothing(lab, lab_root, server):
    proc = lab("note", "1605.08386", "2301.1234x", check=2)
    assert proc.stderr.count("\n") == 1 and "malformed arXiv id '2301.1234x'" in proc.stderr
    assert server.requests == [] and papers(lab_root) == []


# ---- fetching and notes ------------------------------------------------------------------------------------


def test_new_style_id_makes_a_note(lab, lab_root, server):
    proc = lab("note", "1605.08386", check=0)
    path = lab_root / "papers" / "1605.08386.md"
    assert proc.stdout.strip() == str(path)
    assert server.api_requests() == ["1605.08386"]
    meta, body = read_note(lab_root, "1605.08386")
    assert tuple(meta) == LAB_KEYS
    assert meta["arxiv_id"] == "1605.08386" and meta["version"] == 1
    assert meta["title"] == "Heat-bath random walks with Markov bases"
    assert meta["authors"] == ["Caprice Stanley", "Tobias Windisch"]
    assert meta["published"] == "2016-05-26T17:59:46+00:00" and meta["updated"] == meta["published"]
    assert meta["primary_category"] == "math.CO" and meta["categories"] == ["math.CO", "math.ST"]
    assert meta["comment"] == "20 pages, 3 figures" and meta["doi"] is None and meta["journal_ref"] is None
    assert meta["url"] == "https://arxiv.org/abs/1605.08386"
    assert meta["pdf_url"] == "https://arxiv.org/pdf/1605.08386v1"
    assert meta["tags"] == [] and meta["experiments"] == [] and meta["added_at"].endswith("+00:00")
    assert "> Graphs on lattice points are studied" in body
    assert body.rstrip().endswith("## Notes")
    assert not [p for p in (lab_root / "papers").iterdir() if p.name.startswith(".")]  # no temp files left


def test_versioned_id(lab, lab_root, server):
    lab("note", "arXiv:2104.12255v1", check=0)
    assert server.api_requests() == ["2104.12255v1"]
    meta, body = read_note(lab_root, "2104.12255")
    assert meta["arxiv_id"] == "2104.12255" and meta["version"] == 1
    assert meta["title"] == "0"  # a real title that YAML must keep a string
    # The real abstract holds `x*0 = 0` and `$35,000`: escaped for Markdown, read back as the same text.
    assert "x\\*0 = 0" in body
    from lab.papers.notes import abstract_of

    assert "for all x, x*0 = 0, i.e." in abstract_of(body) and "$35,000" in abstract_of(body)


@pytest.mark.parametrize("given, key, asked", [
    ("astro-ph/0601001", "astro-ph_0601001", "astro-ph/0601001"),
    ("https://arxiv.org/abs/quant-ph/0201082v1", "quant-ph_0201082", "quant-ph/0201082v1"),
])
def test_old_style_ids(lab, lab_root, server, given, key, asked):
    lab("note", given, check=0)
    assert server.api_requests() == [asked]
    meta, body = read_note(lab_root, key)
    assert meta["arxiv_id"] == asked.split("v")[0] if "v1" in asked else asked
    assert meta["url"] == f"https://arxiv.org/abs/{meta['arxiv_id']}"
    assert papers(lab_root) == [f"{key}.md"]


def test_two_ids_in_one_request(lab, lab_root, server):
    proc = lab("note", "1605.08386", "https://arxiv.org/abs/1707.08567", "--json", check=0)
    assert server.api_requests() == ["1605.08386,1707.08567"]
    import json

    rows = json.loads(proc.stdout)
    assert [r["arxiv_id"] for r in rows] == ["1605.08386", "1707.08567"] and all(r["created"] for r in rows)
    assert papers(lab_root) == ["1605.08386.md", "1707.08567.md"]


def test_two_ids_one_unknown_recorded_answer(arxiv_env, server):
    # The recorded two-id answer: arXiv knows 1707.08567 but not 0808.05394 (a number too long for 2008,
    # which lab itself would refuse; sent raw here as a careless client would).
    from lab.papers.client import fetch

    found, missing = fetch(["0808.05394", "1707.08567"])
    assert list(found) == ["1707.08567"] and missing == ["0808.05394"]
    paper = found["1707.08567"]
    assert paper.title.startswith("Proceedings of Workshop AEW10") and paper.primary_category == "cs.IT"


def test_pre_2025_response_format(lab, lab_root):
    lab("note", "1111.2011v2", "--tag", "physics", check=0)
    meta, body = read_note(lab_root, "1111.2011")
    assert meta["title"] == "Quantum Criticality for Extended Nodes on a Bethe Lattice in the Large Connectivity Limit"
    assert meta["doi"] == "10.1103/PhysRevB.85.115117"
    assert meta["journal_ref"] == "Phys. Rev. B 85, 115117 (2012)"
    assert meta["primary_category"] == "cond-mat.str-el" and meta["version"] == 2
    assert meta["authors"][1] == "Adrian Del Maestro"
    quote = [line for line in body.splitlines() if line.startswith("> ")]
    assert len(quote) == 1 and "  " not in quote[0]  # whitespace normalised into one paragraph
    assert quote[0].startswith("> Theoretical description of anisotropic systems")


def test_malformed_id_that_slipped_through_gets_arxivs_400(arxiv_env, server):
    from lab.papers.client import fetch

    with pytest.raises(LabError, match=r"HTTP 400 for abc: incorrect id format for abc"):
        fetch(["abc"])
    assert server.api_requests() == ["abc"]  # a 400 is not retried


def test_unknown_id_is_not_found(lab, lab_root, server, arxiv_env):
    proc = lab("note", "2301.99999", check=1)
    assert proc.stderr.strip() == "lab: error: not found on arXiv: 2301.99999"
    assert papers(lab_root) == []
    from lab.papers.client import fetch

    assert fetch(["0000.0000"]) == ({}, ["0000.0000"])  # the recorded empty answer


def test_known_and_unknown_together(lab, lab_root):
    proc = lab("note", "1605.08386", "2301.99999", check=1)
    assert "not found on arXiv: 2301.99999" in proc.stderr
    assert papers(lab_root) == ["1605.08386.md"]


def test_server_down(lab, lab_root):
    proc = lab("note", "1605.08386", env={"LAB_ARXIV_API_URL": f"http://127.0.0.1:{free_port()}/api/query"}, check=1)
    assert proc.stderr.count("\n") == 1 and "cannot reach arXiv at http://127.0.0.1:" in proc.stderr
    assert papers(lab_root) == []


def test_answer_that_is_not_a_feed(lab, lab_root, server):
    proc = lab("note", "1605.08386", env={"LAB_ARXIV_API_URL": f"{server.url}/page.html"}, check=1)
    assert proc.stderr.count("\n") == 1 and "is not an arXiv Atom feed (text/html)" in proc.stderr
    assert papers(lab_root) == []


def test_timeout(lab, lab_root, server):
    server.delay = 3
    proc = lab("note", "1605.08386", env={"LAB_ARXIV_TIMEOUT": "0.5"}, check=1)
    assert proc.stderr.count("\n") == 1 and "did not answer within 0.5 s" in proc.stderr
    assert papers(lab_root) == []


def test_server_errors_are_retried_then_reported(lab, lab_root, server):
    server.api_script = [500, 503, 500, 502]
    proc = lab("note", "1605.08386", env={"LAB_ARXIV_RETRIES": "3"}, check=1)
    assert proc.stderr.strip().splitlines()[-1] == "lab: error: arXiv answered HTTP 502 for 1605.08386"
    assert proc.stderr.count("retrying") == 3 and len(server.api_requests()) == 4
    assert papers(lab_root) == []


def test_429_then_success(lab, lab_root, server):
    server.api_script = [429]
    proc = lab("note", "1605.08386", check=0)
    assert "HTTP 429; retrying" in proc.stderr and len(server.api_requests()) == 2
    assert papers(lab_root) == ["1605.08386.md"]


def test_pacing_holds_across_clients(tmp_path):
    # Two Pacers on one file stand for two lab processes; time is simulated, nothing is timed.
    from lab.papers.client import Pacer

    now = [1000.0]
    waits = []

    def sleep(s):
        waits.append(round(s, 3))
        now[0] += s

    path = tmp_path / "last"
    first, second = (Pacer(path, 3.0, clock=lambda: now[0], sleep=sleep) for _ in range(2))
    first.run(lambda: None)
    now[0] += 1.0
    second.run(lambda: None)
    assert waits == [2.0]
    now[0] += 10
    first.run(lambda: None)
    assert waits == [2.0]
    assert float(path.read_text()) == now[0]


def test_pacing_file_is_shared_by_processes(lab, tmp_path):
    lab("note", "1605.08386", check=0)
    stamp = tmp_path / "cache" / "arxiv-last-request"
    assert float(stamp.read_text()) > 0


# ---- refresh, links, data-not-markup -----------------------------------------------------------------------


def test_refresh_keeps_what_the_user_wrote(lab, lab_root, server):
    lab("new", "exp1", check=0)
    lab("new", "exp2", check=0)
    lab("note", "1605.08386", "--exp", "exp1", "--tag", "mcmc", check=0)
    path = lab_root / "papers" / "1605.08386.md"
    meta, body = frontmatter.read(path)
    added_at = meta["added_at"]
    meta["rating"] = 5
    meta["title"] = "my edited title"
    body = body.replace("## Notes\n", "## Notes\n\nRead on the train. *Key idea*: heat-bath moves.\n") + "\nA trailing thought.\n"
    path.write_text(frontmatter.render(meta, body))

    lab("note", "https://arxiv.org/pdf/1605.08386v1.pdf", "--exp", "exp2", "--tag", "graphs", check=0)
    meta2, body2 = frontmatter.read(path)
    assert papers(lab_root) == ["1605.08386.md"]
    assert meta2["rating"] == 5 and list(meta2)[-1] == "rating"
    assert meta2["title"] == "Heat-bath random walks with Markov bases"  # lab owns the metadata
    assert meta2["tags"] == ["mcmc", "graphs"] and meta2["experiments"] == ["exp1", "exp2"]
    assert meta2["added_at"] == added_at
    assert "Read on the train. *Key idea*: heat-bath moves." in body2 and body2.endswith("A trailing thought.\n")
    assert body2.count("<!-- lab:abstract") == 1 and body2.count("## Notes") == 1
    for exp in ("exp1", "exp2"):
        assert "[Heat-bath random walks with Markov bases](../../papers/1605.08386.md)" in (lab_root / "experiments" / exp / "report.md").read_text()


def test_report_links_touch_only_the_block(lab, lab_root):
    lab("new", "exp1", check=0)
    report = lab_root / "experiments" / "exp1" / "report.md"
    original = report.read_text() + "\nMy conclusion, by hand.\n"
    report.write_text(original)
    lab("note", "1605.08386", "--exp", "exp1", check=0)
    text = report.read_text()
    assert text.startswith(original) and text.count("<!-- lab:papers -->") == 1
    assert text[len(original):].startswith("\n## Papers\n\n<!-- lab:papers -->\n")
    # The user moves the block and writes after it; a second paper goes inside the block, nothing else moves.
    moved = text[len(original):].replace("## Papers\n\n", "")
    mine = "# exp1 by hand\n\nIntro.\n\n## Reading\n" + moved + "\nAfter the block.\n"
    report.write_text(mine)
    lab("note", "1111.2011", "--exp", "exp1", check=0)
    after = report.read_text()
    head, block, tail = after.partition("<!-- lab:papers -->")
    assert head == "# exp1 by hand\n\nIntro.\n\n## Reading\n\n" and tail.endswith("<!-- /lab:papers -->\n\nAfter the block.\n")
    assert "papers/1605.08386.md" in tail and "papers/1111.2011.md" in tail
    # Unlinking by hand in the note's front matter, then --sync, rebuilds the block offline.
    path = lab_root / "papers" / "1111.2011.md"
    meta, body = frontmatter.read(path)
    meta["experiments"] = []
    path.write_text(frontmatter.render(meta, body))
    lab("note", "--sync", env={"LAB_ARXIV_API_URL": "http://127.0.0.1:9/none"}, check=0)
    assert "1111.2011" not in report.read_text() and "1605.08386" in report.read_text()


def test_offline_links_existing_note(lab, lab_root, server):
    lab("new", "exp1", check=0)
    lab("note", "1605.08386", check=0)
    before = len(server.requests)
    lab("note", "1605.08386", "--exp", "exp1", "--offline", check=0)
    assert len(server.requests) == before
    meta, body = read_note(lab_root, "1605.08386")
    assert meta["experiments"] == ["exp1"] and "> Graphs on lattice points" in body
    proc = lab("note", "1707.08567", "--offline", check=2)
    assert "--offline needs existing notes" in proc.stderr


def test_unknown_experiment_is_bad_input(lab, lab_root, server):
    proc = lab("note", "1605.08386", "--exp", "nope", check=2)
    assert "no experiment 'nope'" in proc.stderr and server.requests == [] and papers(lab_root) == []


def test_broken_note_front_matter_is_refused_before_fetching(lab, lab_root, server):
    (lab_root / "papers" / "1605.08386.md").write_text("---\ntitle: [unclosed\n---\nmine\n")
    proc = lab("note", "1605.08386", check=2)
    assert "1605.08386.md" in proc.stderr and "not valid YAML" in proc.stderr and server.requests == []
    assert (lab_root / "papers" / "1605.08386.md").read_text() == "---\ntitle: [unclosed\n---\nmine\n"


def test_fetched_text_is_shown_as_text(lab_root):
    import markdown

    from lab.papers.client import Paper
    from lab.papers.notes import write_note
    from lab.core.workspace import Workspace

    evil = 'A <script>alert("x")</script> *bold* [link](javascript:alert(1)) `code` &amp; $\\alpha_1$ <img src=x onerror=alert(2)>'
    paper = Paper("2301.12345", 1, "# Not a <b>heading</b>", ["A. Author"], None, None, "cs.LG", ["cs.LG"],
                  None, None, None, "https://arxiv.org/abs/2301.12345", "https://arxiv.org/pdf/2301.12345v1", abstract=evil)
    result = write_note(Workspace(lab_root), paper)
    meta, body = frontmatter.read(result.path)
    assert meta["title"] == "# Not a <b>heading</b>"  # the front matter keeps plain text
    from lab.papers.notes import abstract_of

    assert abstract_of(body) == evil
    html = markdown.markdown(body)
    assert "<script" not in html and "<img" not in html and "<em>" not in html and "<a " not in html and "<code>" not in html
    assert "&lt;script&gt;" in html or "&lt;script>" in html


def test_bib(lab, lab_root):
    lab("new", "exp1", check=0)
    lab("note", "1111.2011v2", "--exp", "exp1", "--tag", "physics", check=0)
    lab("note", "astro-ph/0601001", check=0)
    out = lab("bib", "--exp", "exp1", check=0).stdout
    assert out.startswith("@misc{arXiv:1111.2011,\n") and out.count("@misc") == 1
    for line in ("eprint = {1111.2011}", "archivePrefix = {arXiv}", "primaryClass = {cond-mat.str-el}",
                 "doi = {10.1103/PhysRevB.85.115117}", "author = {James M. Murray and Adrian Del Maestro and Zlatko Tesanovic}",
                 "year = {2011}"):
        assert line in out
    everything = lab("bib", check=0).stdout
    assert "@misc{arXiv:astro-ph/0601001," in everything and everything.count("@misc") == 2
    assert lab("bib", "--tag", "nothing-tagged", check=0).stdout == ""
    assert "no experiment 'zzz'" in lab("bib", "--exp", "zzz", check=2).stderr


def test_note_help_has_example(lab):
    out = lab("note", "--help", check=0).stdout
    assert "Example" in out and "lab note" in out


def test_heavy_imports_stay_behind_the_commands():
    import subprocess
    import sys

    code = (
        "import sys, lab.cli.app, lab.cli.papers, lab.papers.notes, lab.papers.feeds, lab.papers.ids, lab.papers.client; "
        "bad = [m for m in ('arxiv', 'feedparser', 'requests', 'lxml') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- notes keep the user's front matter as written; one Note model ------------------------------------------


def test_refresh_keeps_the_users_front_matter_text(lab, lab_root, server):
    """A comment, `room: 0123` (octal to YAML 1.1), `model_ver: 1.10`, `yes`, a flow list and CRLF line endings
    survive a refresh byte for byte; only lab's own keys change, where they stand."""
    lab("new", "exp1", check=0)
    lab("note", "1605.08386", check=0)
    path = lab_root / "papers" / "1605.08386.md"
    text = path.read_text()
    head, _, rest = text.partition("\ntags: []\n")
    mine = (
        "# Read for the reading group; ask Ana about the proof\n"
        "room: 0123\n"
        "model_ver: 1.10\n"
        "reviewed: yes\n"
        "venue: [NeurIPS,  'workshop']   # not sure\n"
    )
    text = head + "\n" + mine + "tags: []\n" + rest
    text = text.replace("title: Heat-bath random walks with Markov bases", "title: my title  # lab may change this")
    text = text.replace("## Notes\n", "## Notes\n\nMy *own* words.\n")
    crlf = text.replace("\n", "\r\n").encode()
    path.write_bytes(crlf)

    lab("note", "1605.08386", "--exp", "exp1", "--tag", "mcmc", check=0)
    after = path.read_bytes()
    assert b"\n" not in after.replace(b"\r\n", b"")  # CRLF kept everywhere, lab's new lines included
    for line in mine.splitlines():
        assert (line + "\r\n").encode() in after
    assert b"title: Heat-bath random walks with Markov bases  # lab may change this\r\n" in after
    assert b"tags:\r\n- mcmc\r\n" in after and b"experiments:\r\n- exp1\r\n" in after
    assert b"My *own* words.\r\n" in after
    # Nothing else moved: the only differences are lab's keys that changed.
    import difflib

    diff = [d for d in difflib.ndiff(crlf.decode().split("\r\n"), after.decode().split("\r\n")) if d[0] in "+-"]
    assert diff == ["- title: my title  # lab may change this",
                    "+ title: Heat-bath random walks with Markov bases  # lab may change this",
                    "- tags: []", "+ tags:", "+ - mcmc", "- experiments: []", "+ experiments:", "+ - exp1"], diff
    from lab.papers.notes import Note

    note = Note.read(path)
    assert note.meta["room"] == 83 and note.meta["reviewed"] is True  # what YAML reads; the text is the user's
    assert note.experiments == ["exp1"] and note.tags == ["mcmc"]

    # A refresh that changes nothing writes nothing.
    before = path.stat().st_mtime_ns
    lab("note", "1605.08386", "--exp", "exp1", check=0)
    assert path.read_bytes() == after and path.stat().st_mtime_ns == before


def test_refresh_adds_missing_lab_keys_next_to_their_neighbours(lab_root):
    from lab.core.workspace import Workspace
    from lab.papers.client import Paper
    from lab.papers.notes import LAB_KEYS, Note, write_note

    path = lab_root / "papers" / "2301.12345.md"
    path.parent.mkdir(exist_ok=True)
    path.write_text("---\n# mine\narxiv_id: '2301.12345'\nmy_key: 0x1F\n---\n\nOnly my notes.\n")
    paper = Paper("2301.12345", 2, "T", ["A. B"], "2023-01-01T00:00:00+00:00", None, "cs.LG", ["cs.LG"], None, None,
                  None, "https://arxiv.org/abs/2301.12345", "https://arxiv.org/pdf/2301.12345v2", abstract="x")
    write_note(Workspace(lab_root), paper, tags=["t"])
    text = path.read_text()
    assert text.startswith("---\n# mine\narxiv_id: '2301.12345'\nversion: 2\ntitle: T\n")
    assert "my_key: 0x1F\n---\n\nOnly my notes.\n" in text  # no abstract block: the body is left as it is
    note = Note.read(path)
    assert list(note.meta)[: len(LAB_KEYS)] == list(LAB_KEYS) and note.meta["my_key"] == 31
    assert note.tags == ["t"] and note.abstract is None and note.notes_markdown == "Only my notes."


def test_note_model_public_api(lab, lab_root):
    lab("note", "1605.08386", check=0)
    from lab.papers.notes import Note, notes
    from lab.core.workspace import Workspace

    path = lab_root / "papers" / "1605.08386.md"
    path.write_text(path.read_text().replace("## Notes\n", "## Notes\n\nSee *Figure 2*.\n"))
    note = Note.read(path)
    assert (note.key, note.arxiv_id, note.title) == ("1605.08386", "1605.08386", "Heat-bath random walks with Markov bases")
    assert note.authors[0] == "Caprice Stanley" and note.url == "https://arxiv.org/abs/1605.08386"
    assert note.abstract.startswith("Graphs on lattice points are studied") and "\\" not in note.abstract
    assert note.notes_markdown == "See *Figure 2*."
    assert [n.key for n in notes(Workspace(lab_root))] == ["1605.08386"]


def test_note_that_cannot_be_edited_in_place_is_refused_before_fetching(lab, lab_root, server):
    path = lab_root / "papers" / "1605.08386.md"
    path.write_text("---\n{arxiv_id: '1605.08386', mine: 1}\n---\nmine\n")
    proc = lab("note", "1605.08386", check=2)
    assert "1605.08386.md" in proc.stderr and "in place" in proc.stderr and server.requests == []
    assert path.read_text() == "---\n{arxiv_id: '1605.08386', mine: 1}\n---\nmine\n"


# ---- ids with non-ASCII digits, arXiv's own identifier tests ----------------------------------------------


def _id_fixture():
    import json

    from helpers import FIXTURES

    return json.loads((FIXTURES / "arxiv-ids" / "ids.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("text, canonical, source", _id_fixture()["good"])
def test_real_good_ids(text, canonical, source):
    assert parse_id(text).id == canonical


@pytest.mark.parametrize("text, why", _id_fixture()["good_elsewhere_refused_here"] + _id_fixture()["bad"])
def test_real_bad_ids_are_refused_in_one_line(text, why):
    with pytest.raises(BadInput) as e:
        parse_id(text)
    assert "malformed arXiv id" in str(e.value) and "\n" not in str(e.value)


def test_full_width_digits_are_read_as_ascii_and_said_so(lab, lab_root, server):
    proc = lab("note", "１６０５.０８３８６", check=0)
    assert server.api_requests() == ["1605.08386"]
    assert "read '１６０５.０８３８６' as '1605.08386'" in proc.stderr
    assert papers(lab_root) == ["1605.08386.md"]


def test_other_non_ascii_digits_are_refused_locally(lab, lab_root, server):
    proc = lab("note", "1605.08386", "gr-qc/۹۷۰۶123", check=2)
    assert proc.stderr.count("\n") == 1 and "gr-qc/۹۷۰۶123" in proc.stderr and "not an ASCII digit" in proc.stderr
    assert server.requests == [] and papers(lab_root) == []


def test_abs_url_with_arxiv_prefix_is_accepted():
    aid = parse_id("https://arxiv.org/abs/arXiv:physics/9707012")
    assert (aid.id, aid.version) == ("physics/9707012", None)


def test_timeout_is_a_deadline_for_the_whole_request(lab, lab_root, server):
    """A server that trickles one byte every 0.5 s never lets a socket read time out; the deadline still holds."""
    import time

    server.trickle = 0.5
    start = time.monotonic()
    proc = lab("note", "1605.08386", env={"LAB_ARXIV_TIMEOUT": "2"}, check=1)
    elapsed = time.monotonic() - start
    assert proc.stderr.count("\n") == 1 and "did not answer within 2 s" in proc.stderr
    assert papers(lab_root) == []
    # The whole answer would take minutes at this pace; lab gives up at about the timeout (plus its start-up).
    assert elapsed < 10, elapsed


# ---- BibTeX that LaTeX can read ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "title, expected",
    [
        ("Costs below $5 per GPU-hour", "Costs below \\$5 per GPU-hour"),
        ("Costs below $5 per GPU-hour and $10 a day", "Costs below \\$5 per GPU-hour and \\$10 a day"),
        ("Improved bounds for $k<n$ and $n>2$", "Improved bounds for $k<n$ and $n>2$"),
        ("$\\alpha_1$-stable laws", "$\\alpha_1$-stable laws"),
        ("snake_case names, 100% of #1 & more", "snake\\_case names, 100\\% of \\#1 \\& more"),
        ("A trailing backslash \\", "A trailing backslash \\textbackslash{}"),
        ("{Unbalanced brace", "\\textbraceleft{}Unbalanced brace"),
        ("x^2 in text", "x\\^{}2 in text"),
        ("{\\em Emphasis} and \\\"Ubersetzung", "{\\em Emphasis} and \\\"Ubersetzung"),
    ],
)
def test_bib_escapes_what_latex_needs_outside_math(lab_root, title, expected):
    from lab.core.workspace import Workspace
    from lab.papers.client import Paper
    from lab.papers.bibtex import bibtex
    from lab.papers.notes import write_note

    paper = Paper("2301.12345", 1, title, ["Ana_B. Author"], "2023-01-01T00:00:00+00:00", None, "cs.LG", ["cs.LG"],
                  None, None, None, "https://arxiv.org/abs/2301.12345", "https://arxiv.org/pdf/2301.12345v1", abstract="x")
    write_note(Workspace(lab_root), paper)
    out = bibtex(Workspace(lab_root))
    assert f"  title = {{{{{expected}}}}},\n" in out
    assert "author = {Ana\\_B. Author}" in out
    # What BibTeX needs whatever the title: balanced braces in every entry.
    depth = 0
    for ch in out:
        depth += (ch == "{") - (ch == "}")
        assert depth >= 0
    assert depth == 0


@pytest.mark.parametrize(
    "source, values, expected",
    [
        # An unchanged value keeps its text (flow style, quoting, comment); a changed one keeps its line comment.
        ("tags: [a]  # mine\nexperiments: []\n", {"tags": ["a"], "experiments": ["e"]}, "tags: [a]  # mine\nexperiments:\n- e\n"),
        ("tags: [] # c\r\nroom: 0123\r\n", {"tags": ["t"]}, "tags:\r\n- t # c\r\nroom: 0123\r\n"),
        # Comments and blank lines after a block list stay where they are.
        ("tags:\n- a\n\n# about the room\nroom: 0123\n", {"tags": ["a", "b"]}, "tags:\n- a\n- b\n\n# about the room\nroom: 0123\n"),
        # A missing key goes after its neighbour in LAB_KEYS; a missing first key goes on top.
        ("# top\ntitle: T\n", {"arxiv_id": "1", "version": 2, "title": "T"}, "arxiv_id: '1'\nversion: 2\n# top\ntitle: T\n"),
        ("", {"arxiv_id": "1"}, "arxiv_id: '1'\n"),
    ],
)
def test_update_front_matter_in_place(source, values, expected):
    from lab.papers.frontedit import update_front_matter

    assert update_front_matter(source, values) == expected
