"""``gatewayd render``, run as an operator runs it: files in, a fax TIFF out."""

from __future__ import annotations

from pathlib import Path

from tests import documents
from tests.conftest import ROOT, gatewayd
from tests.faxcheck import assert_fax, pages

DOCS = ROOT / "tests" / "data" / "docs"


def test_documents_and_a_cover_page_into_one_fax(tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(documents.dense_text_pdf(2))
    note = tmp_path / "note.txt"
    note.write_text("Plain text, with Umlauts: äöü.\n" * 10)
    out = tmp_path / "fax.tif"
    result = gatewayd("render", str(pdf), str(DOCS / "photo.jpg"), str(note), "-o", str(out),
                      "--resolution", "normal", "--paper", "letter", "--cover", "--to",
                      "+4940123456", "--subject", "Q3 report", "--note", "-",
                      stdin="Two documents, as promised.")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("5 pages, " + f"{out.stat().st_size:,} bytes "
                                          "(normal, Letter, G4)")  # fmt: skip
    assert_fax(out, count=5, resolution=98, paper="letter")
    assert all(page.any() for page in pages(out))


def test_g3_on_request(tmp_path: Path) -> None:
    out = tmp_path / "fax.tif"
    result = gatewayd("render", str(DOCS / "three-pages.pdf"), "-o", str(out),
                      "--compression", "g3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_fax(out, count=3, g3=True)


def test_what_cannot_be_faxed_is_one_line_and_exit_1(tmp_path: Path) -> None:
    out = tmp_path / "fax.tif"
    cases = [
        ((str(DOCS / "archive.zip"),), "archive.zip: not a document gatewayd can fax"),
        ((str(DOCS / "encrypted.pdf"),), "the PDF is password-protected"),
        ((str(tmp_path / "missing.pdf"),), "missing.pdf: cannot be read"),
        (("--cover",), "--cover needs --to NUMBER"),
        ((), "nothing to render"),
    ]
    for arguments, reason in cases:
        result = gatewayd("render", *arguments, "-o", str(out))
        assert result.returncode == 1, (arguments, result.stderr)
        assert reason in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1  # a reason, not a traceback
    assert not out.exists()
