"""Full text: `lab note` keeps a paper's PDF, its text is indexed as passages with their pages, and every
kind of bad PDF is one line while the note is still written. Real PDFs (tests/fixtures/pdf/, provenance in its
README) served by the loopback arXiv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from helpers import FIXTURES, LabCLI

PDFS = FIXTURES / "pdf"
ARXIV_PDF = PDFS / "1111.2011v2.pdf"
# From section IV ("Corrections at finite N"), page 7 of arXiv:1111.2011v2.
SECTION_4 = "numerical factors have been dropped"


@pytest.fixture
def env(server, tmp_path):
    return {
        "LAB_ARXIV_API_URL": f"{server.url}/api/query",
        "LAB_ARXIV_PDF_URL": f"{server.url}/pdf",
        "LAB_ARXIV_MIN_INTERVAL": "0",
        "LAB_ARXIV_BACKOFF": "0",
        "LAB_ARXIV_RETRIES": "0",
        "LAB_ARXIV_TIMEOUT": "5",
        "LAB_CACHE_DIR": str(tmp_path / "cache"),
    }


@pytest.fixture
def lab(lab_root, env):
    cli = LabCLI(lab_root)

    def run(*args, **kwargs):
        return cli(*args, env={**env, **kwargs.pop("env", {})}, **kwargs)

    run.json = lambda *args, **kw: json.loads(run(*args, "--json", check=0, **kw).stdout)
    return run


def pdf_requests(server):
    return [r["path"] for r in server.requests if r["path"].startswith("/pdf/")]


def test_note_keeps_the_arxiv_pdf_and_search_finds_a_passage_with_its_page(lab, lab_root, server):
    proc = lab("note", "1111.2011v2", check=0)
    assert pdf_requests(server) == ["/pdf/1111.2011v2"]
    assert (lab_root / "papers" / "1111.2011.pdf").read_bytes() == ARXIV_PDF.read_bytes()
    assert "kept papers/1111.2011.pdf: 8 pages" in proc.stderr
    assert "*.pdf" in (lab_root / "papers" / ".gitignore").read_text()  # PDFs stay out of git by default
    results = lab.json("search", SECTION_4, "--mode", "keyword")
    top = results[0]
    assert (top["type"], top["id"], top["path"], top["page"]) == ("paper", "1111.2011", "papers/1111.2011.md", 7)
    assert top["section"] == "IV. CORRECTIONS AT FINITE N" and SECTION_4 in top["passage"].lower()
    assert [r["id"] for r in results].count("1111.2011") == 1  # one paper, one result: its best passage
    text = lab("search", SECTION_4, "--mode", "keyword", check=0).stdout
    assert "papers/1111.2011.md p. 7 §IV" in text
    # Ligatures spelled out ("diﬀerent" in the PDF), words hyphenated at a line end joined ("cau-" "tion").
    assert lab.json("search", "different natures of interactions", "--mode", "keyword")[0]["id"] == "1111.2011"
    assert lab.json("search", "exercise caution", "--mode", "keyword")[0]["page"] == 2


def test_no_pdf_keeps_the_old_behaviour(lab, lab_root, server):
    lab("note", "1111.2011v2", "--no-pdf", check=0)
    assert pdf_requests(server) == []
    assert sorted(p.name for p in (lab_root / "papers").iterdir()) == ["1111.2011.md"]
    assert lab.json("search", SECTION_4, "--mode", "keyword") == []


def test_full_text_off_in_lab_yaml(lab, lab_root, server):
    (lab_root / "lab.yaml").write_text("papers:\n  full_text: false\n")
    lab("note", "1111.2011v2", check=0)
    assert pdf_requests(server) == [] and not (lab_root / "papers" / "1111.2011.pdf").exists()


def test_commit_pdfs_in_lab_yaml_writes_no_gitignore(lab, lab_root):
    (lab_root / "lab.yaml").write_text("papers:\n  commit_pdfs: true\n")
    lab("note", "1111.2011v2", check=0)
    assert (lab_root / "papers" / "1111.2011.pdf").exists() and not (lab_root / "papers" / ".gitignore").exists()


def test_deleting_dot_lab_rebuilds_the_passages_from_the_kept_pdfs_without_pypdf_in_the_search(lab, lab_root):
    lab("note", "1111.2011v2", check=0)
    shutil.rmtree(lab_root / ".lab")
    code = (
        "import sys, json; from lab.cli.fast import run_search\n"
        f"run_search({str(lab_root)!r}, [{SECTION_4!r}], as_json=True, mode='keyword')\n"
        "print(json.dumps('pypdf' in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out, imported = proc.stdout.rsplit("\n", 2)[0], json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out)[0]["page"] == 7
    assert imported is False  # the text was extracted by a child process
    assert (lab_root / ".lab" / "fulltext" / "1111.2011.pdf.json").exists()


def _library(lab_root, n: int) -> list[str]:
    """n PDFs kept under papers/ as `lab note` keeps them (copies of the real fixtures), none extracted yet."""
    sources = [ARXIV_PDF, PDFS / "multicolumn.pdf", PDFS / "google-doc-document.pdf"]
    (lab_root / "papers").mkdir(exist_ok=True)
    rels = []
    for i in range(n):
        shutil.copy(sources[i % len(sources)], lab_root / "papers" / f"p{i:02d}.pdf")
        rels.append(f"papers/p{i:02d}.pdf")
    return rels


def test_many_pdfs_are_extracted_by_workers_in_the_child(lab_root):
    from lab.core import pdftext

    rels = _library(lab_root, 12)
    assert pdftext.extract_in_child(lab_root, rels) is None
    assert all(pdftext.fresh(lab_root, rel) for rel in rels)
    assert pdftext.cached(lab_root, "papers/p00.pdf")["passages"]["cut"]  # the passages kept with the text


def test_extraction_past_its_deadline_stops_every_worker_and_says_so(lab_root):
    from lab.core import pdftext

    rels = _library(lab_root, 40)
    problem = pdftext.extract_in_child(lab_root, rels, timeout=0.3)
    assert problem == "extracting the text of 40 PDF(s) took over 0.3 s; the rest is read next time"
    ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    assert f"lab.core.pdftext {lab_root}" not in ps  # the child and its workers, gone


def test_sync_pdf_fetches_the_pdfs_of_existing_notes(lab, lab_root, server):
    lab("note", "1111.2011v2", "--no-pdf", check=0)
    proc = lab("note", "--sync", "--pdf", check=0)
    assert pdf_requests(server) == ["/pdf/1111.2011v2"] and "kept 1 PDF(s)" in proc.stderr
    assert lab.json("search", SECTION_4, "--mode", "keyword")[0]["page"] == 7


def test_note_pdf_of_a_local_pdf_not_on_arxiv_makes_a_note_with_its_title(lab, lab_root, server):
    shutil.copy(PDFS / "google-doc-document.pdf", lab_root / "example.pdf")
    (lab_root / "experiments" / "exp1").mkdir(parents=True, exist_ok=True)
    lab("new", "exp1", check=None)
    out = lab.json("note", "--pdf", "example.pdf", "--exp", "exp1")
    assert out[0]["title"] == "PDF Example Document" and out[0]["created"]
    note = (lab_root / "papers" / "pdf-example-document.md").read_text()
    assert "title: PDF Example Document" in note and "exp1" in note
    assert (lab_root / "papers" / "pdf-example-document.pdf").exists()
    assert server.requests == []  # nothing asked of arXiv
    assert lab.json("search", "explicit is better than implicit", "--mode", "keyword")[0]["path"] == "papers/pdf-example-document.md"


def test_note_pdf_of_an_arxiv_pdf_links_its_arxiv_id(lab, lab_root):
    shutil.copy(ARXIV_PDF, lab_root / "downloaded.pdf")
    lab("note", "--pdf", "downloaded.pdf", check=0)
    note = (lab_root / "papers" / "1111.2011.md").read_text()
    assert "arxiv_id: '1111.2011'" in note and "Quantum Criticality for Extended Nodes on a Bethe Lattice" in note


@pytest.mark.parametrize("pdf, title", [
    ("1512.03385-page1.pdf", "Deep Residual Learning for Image Recognition"),  # the authors' line just below
    ("2010.11929-page1.pdf", "AN IMAGE IS WORTH 16X16 WORDS: TRANSFORMERS FOR IMAGE RECOGNITION AT SCALE"),
])
def test_note_pdf_takes_the_title_from_the_largest_type_on_page_one(lab, lab_root, pdf, title):
    shutil.copy(PDFS / pdf, lab_root / "paper.pdf")
    out = lab.json("note", "--pdf", "paper.pdf")
    assert out[0]["title"] == title


# ---- Bad input: one line each, the note written, nothing else lost -------------------------------------------


def _serve(server, body: bytes, content_type="application/pdf"):
    server.files["/pdf/1111.2011v2"] = (body, {"Content-Type": content_type})


def _one_line_and_the_note(proc, lab_root, words):
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if words in line]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (lab_root / "papers" / "1111.2011.md").exists()
    return lines[0]


def test_a_scanned_pdf_is_said_once_and_kept(lab, lab_root, server):
    _serve(server, (PDFS / "imagemagick-CCITTFaxDecode.pdf").read_bytes())
    line = _one_line_and_the_note(lab("note", "1111.2011v2"), lab_root, "no text layer")
    assert line.startswith("papers/1111.2011.pdf")
    assert (lab_root / "papers" / "1111.2011.pdf").exists()
    again = lab("note", "1111.2011v2")  # a refresh: the PDF is there, nothing said again
    assert "no text layer" not in again.stderr
    assert lab.json("search", "Bethe lattice", "--mode", "keyword")[0]["id"] == "1111.2011"  # the note still counts


def test_an_encrypted_pdf(lab, lab_root, server):
    _serve(server, (PDFS / "libreoffice-writer-password.pdf").read_bytes())
    _one_line_and_the_note(lab("note", "1111.2011v2"), lab_root, "encrypted")


def test_a_damaged_pdf(lab, lab_root, server):
    _serve(server, ARXIV_PDF.read_bytes()[:100_000])  # an interrupted download
    _one_line_and_the_note(lab("note", "1111.2011v2"), lab_root, "damaged PDF")
    assert lab.json("search", "Bethe lattice", "--mode", "keyword")[0]["id"] == "1111.2011"


def test_an_html_error_page_served_as_pdf_is_not_kept(lab, lab_root, server):
    _serve(server, b"<!DOCTYPE html><html><body><h1>Too many requests</h1></body></html>")
    _one_line_and_the_note(lab("note", "1111.2011v2"), lab_root, "not a PDF (an HTML page)")
    assert not (lab_root / "papers" / "1111.2011.pdf").exists()


def test_a_pdf_larger_than_the_cap(lab, lab_root):
    proc = lab("note", "1111.2011v2", env={"LAB_PDF_MAX_MB": "0.1"})
    _one_line_and_the_note(proc, lab_root, "larger than 0.1 MB")
    assert not (lab_root / "papers" / "1111.2011.pdf").exists()


def test_a_pdf_slower_than_the_deadline(lab, lab_root, server):
    server.pdf_delay = 3
    proc = lab("note", "1111.2011v2", env={"LAB_ARXIV_TIMEOUT": "1"})
    _one_line_and_the_note(proc, lab_root, "did not arrive within 1 s")


def test_a_decompression_bomb(lab, lab_root, server, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    from pypdf.generic import DecodedStreamObject, NameObject

    writer = pypdf.PdfWriter()
    page = writer.add_blank_page(612, 792)
    stream = DecodedStreamObject()
    stream.set_data(b"0 0 m\n" * 14_000_000)  # 84 MB of drawing commands, past pypdf's 75 MB limit
    page[NameObject("/Contents")] = writer._add_object(stream)
    page.compress_content_streams()
    bomb = tmp_path / "bomb.pdf"
    writer.write(bomb)
    assert bomb.stat().st_size < 2_000_000
    _serve(server, bomb.read_bytes())
    _one_line_and_the_note(lab("note", "1111.2011v2"), lab_root, "decompression bomb")


def test_a_thousand_page_pdf_stops_at_the_page_cap(lab, lab_root, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(ARXIV_PDF)
    writer = pypdf.PdfWriter()
    for i in range(1000):
        writer.add_page(reader.pages[i % 8])
    big = tmp_path / "proceedings.pdf"
    writer.write(big)
    proc = lab("note", "--pdf", str(big), env={"LAB_PDF_MAX_PAGES": "20"})
    assert proc.returncode == 0 and "1000 pages: only the first 20 are indexed" in proc.stderr
    entry = json.loads(next((lab_root / ".lab" / "fulltext").glob("*.json")).read_text())
    assert len(entry["pages"]) == 20


def test_ligatures_and_private_use_glyphs_are_cleaned():
    from lab.core.pdftext import clean

    assert clean("the diﬀerent eﬀective ﬁeld")[0] == "the different effective field"
    assert clean("\ue000\ue001\uf8ff") == ("", 3)
    assert clean("self-con-\nsistent and cau-\ntion, not Perron-\nFrobenius")[0] == "self-consistent and caution, not Perron-\nFrobenius"


def test_private_use_text_only_is_said(tmp_path, monkeypatch):
    """A PDF whose fonts map every glyph to the private-use area: nothing to index, said in one line."""
    from lab.core import pdftext

    pypdf = pytest.importorskip("pypdf")
    monkeypatch.setattr(pypdf.PageObject, "extract_text", lambda self, *a, **k: "\ue031\ue032\ue033 \ue034")
    out = pdftext.extract(PDFS / "multicolumn.pdf")
    assert out["problem"].startswith("its text is private-use glyphs only")


def test_the_book_says_a_papers_full_text_and_links_its_pdf_only_where_published(lab, lab_root, tmp_path):
    from lab.book.sources import fulltext
    from lab.core.workspace import Workspace

    lab("note", "1111.2011v2", check=0)
    (lab_root / "papers" / "1605.08386.md").write_text("---\ntitle: No PDF here\n---\n")
    found = fulltext(Workspace(lab_root), ["1111.2011", "1605.08386"])
    assert list(found) == ["1111.2011"] and found["1111.2011"]["pages"] == 8 and found["1111.2011"]["words"] > 3000

    lab("book", "--out", tmp_path / "private", check=0)
    row = (tmp_path / "private" / "papers" / "1111.2011.md").read_text().split("<th>full text</th>")[1].split("</tr>")[0]
    assert "indexed for search: 8 pages" in row and "PDF" not in row  # PDFs are not published by default
    assert not (tmp_path / "private" / "papers" / "1111.2011.pdf").exists()

    with open(lab_root / "lab.yaml", "a") as f:
        f.write("\nbook:\n  publish: ['papers/*.pdf']\n")
    lab("book", "--out", tmp_path / "public", check=0)
    row = (tmp_path / "public" / "papers" / "1111.2011.md").read_text().split("<th>full text</th>")[1].split("</tr>")[0]
    assert ">PDF</a>" in row
    assert (tmp_path / "public" / "papers" / "1111.2011.pdf").read_bytes() == (lab_root / "papers" / "1111.2011.pdf").read_bytes()


def test_related_work_finds_a_paper_by_its_full_text(lab, lab_root):
    from lab.search.related import related

    (lab_root / "experiments" / "exp1").mkdir(parents=True, exist_ok=True)
    (lab_root / "experiments" / "exp1" / "report.md").write_text(
        "---\ntitle: Coupled chains\n---\n\n## Question\n\nWhere does a double log divergence come from?\n"
    )
    (lab_root / "papers").mkdir(exist_ok=True)
    (lab_root / "papers" / "other.md").write_text("---\ntitle: Log-linear models\n---\n\nA log divergence of the likelihood.\n")
    lab("note", "1111.2011v2", check=0)  # its abstract says nothing of a double log divergence; page 7 does
    found = related(lab_root, "exp1", semantic=False)
    assert [r["id"] for r in found][:1] == ["1111.2011"] and found[0]["match"] == ["keyword"]
