"""Certificate rendering: the PDF and the public HTML page, their text, layout and QR codes."""

from __future__ import annotations

import dataclasses
import io
import re
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pypdf
import pypdfium2
import pytest

from lms.domain.certificates.html_page import display_date, verification_page
from lms.domain.certificates.pdf import render_pdf
from lms.domain.certificates.qr import QUIET_ZONE, qr_code, qr_svg
from lms.domain.certificates.view import CertificateView
from tests.support.documents import decode_qr, pdf_qr_codes, pdf_text, screenshot

SERIAL = "3f9a" * 16
VERIFY_URL = f"https://lms.example.test/certificates/verify/{SERIAL}"
HOSTILE = "<script>alert(1)</script> \"quoted\" 'single' & <b>bold</b>"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
A4_LONG, A4_SHORT = 841.89, 595.28


def make_view(**changes: Any) -> CertificateView:
    view = CertificateView(
        serial_hash=SERIAL,
        learner_name="Ada Lovelace",
        course_title="Introduction to Distributed Systems",
        creator_name="Grace Hopper",
        issued_at=datetime(2026, 11, 30, 23, 30, tzinfo=UTC),
        status="VALID",
        revoked_at=None,
        verify_url=VERIFY_URL,
        issuer_name="Open LMS Academy",
        issuer_url="https://lms.example.test",
    )
    return dataclasses.replace(view, **changes)


def revoked(**changes: Any) -> CertificateView:
    return make_view(status="REVOKED", revoked_at=datetime(2026, 12, 3, 9, tzinfo=UTC), **changes)


def flat(text: str) -> str:
    """Whitespace-insensitive text: extraction puts line breaks where the layout wraps."""
    return " ".join(text.split())


def pdf_annotations(data: bytes) -> list[Any]:
    annots = pypdf.PdfReader(io.BytesIO(data)).pages[0]["/Annots"]
    assert isinstance(annots, pypdf.generic.ArrayObject)
    return [a.get_object() for a in annots]


# -- the QR code ------------------------------------------------------------------------------


def test_qr_code_decodes_to_the_url() -> None:
    code = qr_code(VERIFY_URL)
    side = code.size + 2 * QUIET_ZONE
    pixels = np.full((side, side), 255, dtype=np.uint8)
    for row, column, length in code.runs:
        pixels[row + QUIET_ZONE, column + QUIET_ZONE : column + QUIET_ZONE + length] = 0
    assert decode_qr(np.kron(pixels, np.ones((6, 6), dtype=np.uint8))) == [VERIFY_URL]
    assert qr_code(VERIFY_URL) == code  # the same URL gives the same symbol


def test_qr_svg_is_an_inline_element_of_the_requested_size() -> None:
    svg = qr_svg(VERIFY_URL, size_px=300)
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg
    assert 'width="300"' in svg and 'height="300"' in svg
    side = qr_code(VERIFY_URL).size + 2 * QUIET_ZONE
    assert f'viewBox="0 0 {side} {side}"' in svg


# -- the PDF ----------------------------------------------------------------------------------


def test_pdf_is_one_landscape_a4_page_with_the_certificate() -> None:
    data = render_pdf(make_view())
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert float(box.width) == pytest.approx(A4_LONG, abs=0.5)
    assert float(box.height) == pytest.approx(A4_SHORT, abs=0.5)
    text = flat(pdf_text(data))
    for expected in (
        VERIFY_URL,
        SERIAL,
        "Ada Lovelace",
        "Introduction to Distributed Systems",
        "Grace Hopper",
        "Open LMS Academy",
        "30 November 2026",
    ):
        assert expected in text
    assert "REVOKED" not in text
    assert reader.metadata is not None
    assert reader.metadata.title == "Certificate of completion: Introduction to Distributed Systems"
    assert reader.metadata.author == "Open LMS Academy"
    assert reader.metadata.subject == "Ada Lovelace completed Introduction to Distributed Systems"


def test_pdf_date_is_the_utc_day() -> None:
    late_evening_in_new_york = datetime.fromisoformat("2026-11-30T21:00:00-05:00")
    text = flat(pdf_text(render_pdf(make_view(issued_at=late_evening_in_new_york))))
    assert "1 December 2026" in text
    assert display_date(late_evening_in_new_york) == "1 December 2026"


def test_pdf_links_to_the_verification_page() -> None:
    links = [a for a in pdf_annotations(render_pdf(make_view())) if a["/Subtype"] == "/Link"]
    uris = {a["/A"]["/URI"] for a in links}
    assert len(links) == 2  # the printed URL and the QR code
    assert uris == {VERIFY_URL}


def test_pdf_without_creator_leaves_the_line_out() -> None:
    text = flat(pdf_text(render_pdf(make_view(creator_name=None))))
    assert "created by" not in text
    assert "Ada Lovelace" in text


def test_revoked_pdf_is_marked_with_its_date() -> None:
    text = flat(pdf_text(render_pdf(revoked())))
    assert "REVOKED on 3 December 2026" in text
    assert "no longer valid" in text


def test_pdf_is_deterministic_and_small() -> None:
    first, second = render_pdf(make_view()), render_pdf(make_view())
    assert first == second
    assert len(first) < 120_000  # fonts are subset, not embedded whole (1.4 MB)


@pytest.mark.parametrize(
    "name",
    [
        "Ζωή Κωνσταντίνου",
        "Дмитрий Шостакович",
        "Éloïse Nuñez-Søren Ångström Łukasz Żółć",
        "Zoe\u0308 Bjo\u0308rk",  # decomposed umlauts: composed (NFC) before drawing
        HOSTILE,
    ],
)
def test_pdf_names_survive_extraction(name: str) -> None:
    text = flat(pdf_text(render_pdf(make_view(learner_name=name, creator_name=name))))
    assert flat(unicodedata.normalize("NFC", name)) in text


@pytest.mark.parametrize(
    "name", ["王小明", "山田 はなこ", "김민준", "Ада 王 Lovelace", "Ada 🚀 Lovelace"]
)
def test_pdf_names_without_dejavu_glyphs_are_present(name: str) -> None:
    data = render_pdf(make_view(learner_name=name, course_title=f"{name} 入門"))
    text = flat(pdf_text(data))
    assert flat(name) in text
    assert f"{flat(name)} 入門" in text


def test_pdf_control_characters_in_names_are_dropped() -> None:
    text = pdf_text(render_pdf(make_view(learner_name="Ada\n\tLovelace\x00\x07")))
    assert "Ada Lovelace" in text
    assert "\x00" not in text and "\x07" not in text


def char_boxes(data: bytes) -> list[tuple[str, tuple[float, float, float, float]]]:
    page = pypdfium2.PdfDocument(data)[0]
    textpage = page.get_textpage()
    text = textpage.get_text_range()
    return [
        (text[i], textpage.get_charbox(i))
        for i in range(textpage.count_chars())
        if i < len(text) and not text[i].isspace()
    ]


def qr_box(data: bytes) -> tuple[float, float, float, float]:
    """The QR code's area: the link annotation that is a square."""
    for annotation in pdf_annotations(data):
        left, bottom, right, top = (float(v) for v in annotation["/Rect"])
        if abs((right - left) - (top - bottom)) < 1:
            return left, bottom, right, top
    raise AssertionError("no square link annotation (the QR code)")


@pytest.mark.parametrize("status", ["VALID", "REVOKED"])
def test_pdf_long_texts_stay_inside_the_frame_and_off_the_qr_code(status: str) -> None:
    words = "Advanced Practical Foundations of Distributed Consensus, Replication and Recovery"
    title = " ".join([words] * 5)[:300].strip()
    assert len(title) >= 299
    name = "Maximiliana Alexandra Wilhelmina Konstantinopoulou-Habsburg-Lothringen von Württemberg"
    view = (revoked if status == "REVOKED" else make_view)(
        learner_name=name, course_title=title, creator_name=name, issuer_name=name
    )
    data = render_pdf(view)
    text = flat(pdf_text(data))
    assert title in text and name in text

    qr_left, qr_bottom, qr_right, qr_top = qr_box(data)
    assert 35 <= (qr_top - qr_bottom) * 25.4 / 72 <= 50  # millimetres, quiet zone included
    for char, (left, bottom, right, top) in char_boxes(data):
        assert 27 <= left <= right <= A4_LONG - 27, char
        assert 27 <= bottom <= top <= A4_SHORT - 27, char
        overlaps_qr = left < qr_right and right > qr_left and bottom < qr_top and top > qr_bottom
        assert not overlaps_qr, char


def test_pdf_text_too_long_for_any_size_is_cut_with_an_ellipsis() -> None:
    data = render_pdf(make_view(course_title="Endless " * 200))
    text = flat(pdf_text(data))
    assert "Endless Endless" in text and "\u2026" in text
    for char, (left, _, right, _) in char_boxes(data):
        assert 27 <= left <= right <= A4_LONG - 27, char


@pytest.mark.parametrize("view", [make_view(), revoked()], ids=["valid", "revoked"])
def test_pdf_qr_code_scans_to_the_verify_url(view: CertificateView) -> None:
    assert pdf_qr_codes(render_pdf(view)) == [view.verify_url]


# -- the HTML page ----------------------------------------------------------------------------


def test_valid_page_says_verified_and_shows_the_certificate() -> None:
    page = verification_page(make_view(), SERIAL)
    assert page.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in page and '<meta charset="utf-8">' in page
    assert '<meta name="robots" content="noindex">' in page
    assert "<title>Verified certificate: Introduction to Distributed Systems" in page
    assert "Verified" in page and "@media print" in page
    for expected in (
        "Ada Lovelace",
        "Introduction to Distributed Systems",
        "Grace Hopper",
        "30 November 2026",
        "Open LMS Academy",
        SERIAL,
        VERIFY_URL,
    ):
        assert expected in page
    assert "<svg " in page and "Revoked" not in page
    # Self-contained: nothing is loaded from elsewhere.
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert "url(" not in page and "@import" not in page


def test_page_without_creator_has_no_creator_row() -> None:
    assert "Created by" not in verification_page(make_view(creator_name=None), SERIAL)


def test_revoked_page_is_marked_and_not_green() -> None:
    page = verification_page(revoked(), SERIAL)
    assert '<body class="revoked">' in page
    assert "Revoked certificate" in page and "3 December 2026" in page
    assert "no longer valid" in page
    assert "&#10003; Verified" not in page
    assert "Revoked certificate:" in page.split("<title>")[1].split("</title>")[0]


def test_unknown_page_says_no_such_certificate_and_echoes_the_serial_safely() -> None:
    page = verification_page(None, "<script>alert(1)</script>")
    assert "No certificate with this number exists" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page and "<svg" not in page
    assert '<meta name="robots" content="noindex">' in page

    long = verification_page(None, "a" * 5000)
    assert "a" * 100 + "\u2026" in long and "a" * 101 not in long


@pytest.mark.parametrize("view", [make_view(), revoked()], ids=["valid", "revoked"])
def test_page_escapes_every_value(view: CertificateView) -> None:
    hostile = dataclasses.replace(
        view,
        learner_name=HOSTILE,
        course_title=HOSTILE,
        creator_name=HOSTILE,
        issuer_name=HOSTILE,
        serial_hash=HOSTILE,
        verify_url='https://lms.example.test/v/"><script>alert(1)</script>?a=1&b=2',
        issuer_url='javascript:alert(1)"',
    )
    page = verification_page(hostile, hostile.serial_hash)
    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;quoted&quot; &#x27;single&#x27; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "javascript:" not in page  # not a web address: the issuer is not linked
    assert "?a=1&amp;b=2" in page


@pytest.mark.parametrize(
    "view", [make_view(), revoked(), None], ids=["valid", "revoked", "unknown"]
)
def test_page_discloses_no_email_address(view: CertificateView | None) -> None:
    assert not EMAIL.search(verification_page(view, SERIAL))


@pytest.mark.parametrize(
    ("view", "name"),
    [(make_view(), "certificate-verify-valid.png"), (revoked(), "certificate-verify-revoked.png")],
    ids=["valid", "revoked"],
)
def test_page_qr_code_scans_in_a_browser_screenshot(view: CertificateView, name: str) -> None:
    pixels = screenshot(verification_page(view, view.serial_hash), name)
    assert pixels.shape == (1600, 1200)
    assert pixels.std() > 10, "the screenshot is blank"
    assert decode_qr(pixels) == [view.verify_url]


def test_pdf_renders_the_same_in_concurrent_threads() -> None:
    views = [make_view(learner_name=f"Learner {i} Ζωή 王{i}") for i in range(8)]
    expected = [render_pdf(view) for view in views]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(render_pdf, views * 3)) == expected * 3
