"""The printable certificate: one landscape A4 PDF page drawn with reportlab's canvas."""

from __future__ import annotations

import io
import threading
import unicodedata
from pathlib import Path
from typing import Literal

from reportlab.lib.colors import Color, HexColor, black, white
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from lms.domain.certificates.html_page import display_date
from lms.domain.certificates.qr import QUIET_ZONE, qr_code
from lms.domain.certificates.view import CertificateView

PAGE_WIDTH, PAGE_HEIGHT = (float(side) for side in landscape(A4))
MARGIN = 70.0  # left and right edge of the text, in points
CONTENT_WIDTH = PAGE_WIDTH - 2 * MARGIN
# The printed QR symbol (quiet zone excluded): phones read 35-45 mm codes from arm's length.
QR_SYMBOL: float = 36 * mm

INK = HexColor("#1d2430")
MUTED = HexColor("#5b6472")
ACCENT = HexColor("#1f3a5f")
LINK = HexColor("#1a56a8")
RED = HexColor("#b3261e")

# DejaVu Sans covers Latin, Greek and Cyrillic (and much more); it ships with the package under
# names of our own so another registration of "DejaVuSans" in the process cannot swap the files.
REGULAR = "LmsDejaVuSans"
BOLD = "LmsDejaVuSans-Bold"
_FONT_DIR = Path(__file__).with_name("fonts")
# reportlab's built-in CID fonts (not embedded: viewers use their own CJK fonts) for what DejaVu
# lacks. Han characters read as Japanese in text that has kana and as Korean in text with Hangul.
CHINESE = "STSong-Light"
JAPANESE = "HeiseiMin-W3"
KOREAN = "HYSMyeongJo-Medium"


def _register_fonts() -> dict[str, frozenset[int]]:
    """Registers the fonts with reportlab and returns each TrueType font's character coverage."""
    coverage: dict[str, frozenset[int]] = {}
    for name, file in ((REGULAR, "DejaVuSans.ttf"), (BOLD, "DejaVuSans-Bold.ttf")):
        font = TTFont(name, str(_FONT_DIR / file))
        pdfmetrics.registerFont(font)
        # Glyph 0 is .notdef: a code point mapped to it is not covered.
        coverage[name] = frozenset(
            code for code, glyph in font.face.charToGlyph.items() if glyph != 0
        )
    for name in (CHINESE, JAPANESE, KOREAN):
        pdfmetrics.registerFont(UnicodeCIDFont(name))
    return coverage


# Registered once, at import (the import lock makes that thread-safe).
_COVERAGE = _register_fonts()
# A registered TTFont keeps each open document's glyph subsets in its own mutable state, and
# reportlab says one font object must not serve two documents at the same time: renders (in worker
# threads) take turns. That costs no parallelism: reportlab is pure Python and holds the GIL.
_RENDERING = threading.Lock()

Run = tuple[str, str, bool]  # text, font name, drawn bold by stroking (CID fonts have no bold)


def render_pdf(view: CertificateView) -> bytes:
    """The certificate as a one-page landscape A4 PDF. The same view gives the same bytes."""
    with _RENDERING:
        return _render(view)


def _render(view: CertificateView) -> bytes:
    buffer = io.BytesIO()
    # invariant: fixed creation date and document id, so the output depends on the view alone.
    canvas = Canvas(
        buffer, pagesize=(PAGE_WIDTH, PAGE_HEIGHT), invariant=1, pageCompression=1, lang="en"
    )
    learner, course = _clean(view.learner_name), _clean(view.course_title)
    issuer = _clean(view.issuer_name)
    canvas.setTitle(f"Certificate of completion: {course}")
    canvas.setAuthor(issuer)
    canvas.setSubject(f"{learner} completed {course}")
    canvas.setCreator(issuer)

    _draw_frame(canvas)
    if view.status == "REVOKED":
        _draw_revoked(canvas, view)
    _draw_body(canvas, view, learner, course, issuer)
    _draw_footer(canvas, view, issuer)

    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _draw_frame(canvas: Canvas) -> None:
    canvas.setStrokeColor(ACCENT)
    canvas.setLineWidth(2.5)
    canvas.rect(20, 20, PAGE_WIDTH - 40, PAGE_HEIGHT - 40, stroke=1, fill=0)
    canvas.setLineWidth(0.75)
    canvas.rect(27, 27, PAGE_WIDTH - 54, PAGE_HEIGHT - 54, stroke=1, fill=0)


def _draw_revoked(canvas: Canvas, view: CertificateView) -> None:
    """A red banner along the top and a diagonal stamp across the page (drawn first and
    translucent, so the text stays legible): a revoked certificate must not pass for a valid one,
    even printed in grey."""
    when = f" on {display_date(view.revoked_at)}" if view.revoked_at is not None else ""
    canvas.setFillColor(RED)
    canvas.rect(27, PAGE_HEIGHT - 59, PAGE_WIDTH - 54, 32, stroke=0, fill=1)
    _draw_text(
        canvas,
        f"REVOKED{when}. This certificate is no longer valid.",
        bold=True,
        size=13,
        y=PAGE_HEIGHT - 48,
        color=white,
    )
    canvas.saveState()
    canvas.translate(PAGE_WIDTH / 2, PAGE_HEIGHT / 2 - 20)
    canvas.rotate(22)
    canvas.setFillColor(RED)
    canvas.setStrokeColor(RED)
    canvas.setFillAlpha(0.2)
    canvas.setStrokeAlpha(0.45)
    canvas.setLineWidth(6)
    width = _width("REVOKED", BOLD, 110)
    canvas.roundRect(-width / 2 - 24, -34, width + 48, 128, 18, stroke=1, fill=0)
    canvas.setFont(BOLD, 110)
    canvas.drawCentredString(0, 0, "REVOKED")
    canvas.restoreState()


def _draw_body(
    canvas: Canvas, view: CertificateView, learner: str, course: str, issuer: str
) -> None:
    # Each block has a line budget and a smallest size, so whatever the names, the last line's
    # baseline stays above y = 172 (two 34 pt name lines, three 22 pt title lines), clear of the
    # footer's QR code (up to y = 170, right of the centred text) and details (up to y = 157).
    y = _draw_fitted(
        canvas, issuer, bold=True, top=PAGE_HEIGHT - 70, max_size=13, min_size=8, color=ACCENT
    )
    y -= 48
    _draw_text(canvas, "Certificate of Completion", bold=True, size=30, y=y, color=ACCENT)
    y -= 36
    _draw_text(canvas, "This certifies that", bold=False, size=13, y=y, color=MUTED)
    y = _draw_fitted(canvas, learner, bold=True, top=y - 14, max_size=34, min_size=16, max_lines=2)
    y -= 34
    _draw_text(canvas, "has successfully completed the course", bold=False, size=13, y=y)
    y = _draw_fitted(canvas, course, bold=True, top=y - 12, max_size=22, min_size=11, max_lines=3)
    creator = _clean(view.creator_name or "")
    if creator:
        text = f"created by {creator}"
        y = _draw_fitted(canvas, text, bold=False, top=y - 12, max_size=12, min_size=8)
    y -= 22
    issued = f"Issued on {display_date(view.issued_at)}"
    _draw_text(canvas, issued, bold=False, size=12, y=y, color=MUTED)


def _draw_footer(canvas: Canvas, view: CertificateView, issuer: str) -> None:
    qr_left = _draw_qr(canvas, view.verify_url)
    # The details column stops short of the QR code's quiet zone.
    width = qr_left - MARGIN - 20
    rows: list[tuple[str, str, bool, Color]] = [
        ("ISSUED BY", issuer, True, INK),
        ("CERTIFICATE NUMBER", view.serial_hash, False, INK),
        ("VERIFY AT", view.verify_url, False, LINK),
    ]
    y = 150.0
    for label, value, bold, color in rows:
        _draw_text(canvas, label, bold=False, size=7.5, y=y, align="left", color=MUTED)
        y -= 13
        size, lines = _fit(_clean(value), bold=bold, width=width, max_size=10, min_size=6.5)
        line = lines[0] if lines else ""
        ink = _draw_text(canvas, line, bold=bold, size=size, y=y, align="left", color=color)
        if color is LINK:
            canvas.linkURL(view.verify_url, (MARGIN, y - 3, MARGIN + ink, y + size), thickness=0)
        y -= 27


def _draw_qr(canvas: Canvas, url: str) -> float:
    """Draws `url`'s QR code in the bottom right corner, a clickable link too; returns the left
    edge of its quiet zone."""
    code = qr_code(url)
    module = QR_SYMBOL / code.size
    side = module * (code.size + 2 * QUIET_ZONE)
    # The symbol's right edge lines up with the text's; the quiet zone reaches into the margin.
    left, bottom = PAGE_WIDTH - MARGIN - side + QUIET_ZONE * module, 50.0
    canvas.setFillColor(white)
    canvas.rect(left, bottom, side, side, stroke=0, fill=1)
    path = canvas.beginPath()
    for row, column, length in code.runs:
        top = bottom + side - (row + QUIET_ZONE) * module
        path.rect(left + (column + QUIET_ZONE) * module, top - module, length * module, module)
    canvas.setFillColor(black)
    canvas.drawPath(path, stroke=0, fill=1)
    canvas.linkURL(url, (left, bottom, left + side, bottom + side), thickness=0)
    _draw_text(
        canvas, "Scan to verify", bold=False, size=8, y=bottom - 10, x=left + side / 2, color=MUTED
    )
    return left


def _draw_fitted(
    canvas: Canvas,
    text: str,
    *,
    bold: bool,
    top: float,
    max_size: float,
    min_size: float,
    max_lines: int = 1,
    color: Color = INK,
) -> float:
    """Draws `text` centred, as large as fits in `max_lines` lines, the first line's baseline
    its size below `top`; returns the last line's baseline."""
    size, lines = _fit(
        text,
        bold=bold,
        width=CONTENT_WIDTH,
        max_size=max_size,
        min_size=min_size,
        max_lines=max_lines,
    )
    y = top - size
    for i, line in enumerate(lines):
        if i:
            y -= size * 1.2
        _draw_text(canvas, line, bold=bold, size=size, y=y, color=color)
    return y


def _draw_text(
    canvas: Canvas,
    text: str,
    *,
    bold: bool,
    size: float,
    y: float,
    x: float | None = None,
    align: Literal["center", "left"] = "center",
    color: Color = INK,
) -> float:
    """Draws one line, switching fonts run by run; centred on `x` (default: the page) or starting
    at the left margin. Returns its width."""
    runs = _runs(text, bold)
    width = sum(_width(part, font, size) for part, font, _ in runs)
    if align == "left":
        start = MARGIN if x is None else x
    else:
        start = (PAGE_WIDTH / 2 if x is None else x) - width / 2
    canvas.saveState()
    canvas.setFillColor(color)
    canvas.setStrokeColor(color)
    canvas.setLineWidth(size * 0.035)
    line = canvas.beginText(start, y)
    for part, font, stroked in runs:
        line.setFont(font, size)
        line.setTextRenderMode(2 if stroked else 0)
        line.textOut(part)
    canvas.drawText(line)
    canvas.restoreState()
    return width


def _fit(
    text: str, *, bold: bool, width: float, max_size: float, min_size: float, max_lines: int = 1
) -> tuple[float, list[str]]:
    """The size and lines to set `text` in: one line shrunk to three quarters of `max_size` if
    that fits, else more lines, down to `min_size` on the last allowed count; what still does
    not fit is cut with an ellipsis."""
    floor = max(min_size, max_size * 0.75)
    for allowed in range(1, max_lines + 1):
        size, lowest = max_size, (min_size if allowed == max_lines else floor)
        while size >= lowest:
            lines = _wrap(text, bold, size, width)
            if len(lines) <= allowed:
                return size, lines
            size -= 0.5
    lines = _wrap(text, bold, min_size, width)
    last = lines[max_lines - 1]
    while last and _line_width(last + "\u2026", bold, min_size) > width:
        last = last[:-1]
    return min_size, [*lines[: max_lines - 1], last.rstrip() + "\u2026"]


def _wrap(text: str, bold: bool, size: float, width: float) -> list[str]:
    """Greedy wrapping at spaces; a word longer than a line (a URL, CJK text without spaces) is
    broken between characters."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if _line_width(candidate, bold, size) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while len(word) > 1 and _line_width(word, bold, size) > width:
            cut = 1
            while cut < len(word) and _line_width(word[: cut + 1], bold, size) <= width:
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines


def _line_width(text: str, bold: bool, size: float) -> float:
    return sum(_width(part, font, size) for part, font, _ in _runs(text, bold))


def _width(text: str, font: str, size: float) -> float:
    return float(pdfmetrics.stringWidth(text, font, size))


def _runs(text: str, bold: bool) -> list[Run]:
    """`text` cut into runs of one font: DejaVu where its cmap has the character, else the CJK
    font for the text's script, whose glyphs (or at worst its blank) keep the text extractable."""
    face = BOLD if bold else REGULAR
    covered = _COVERAGE[face]
    fallback = _cjk_font(text)
    runs: list[Run] = []
    for char in text:
        font = face if ord(char) in covered else fallback
        if runs and runs[-1][1] == font:
            runs[-1] = (runs[-1][0] + char, font, runs[-1][2])
        else:
            runs.append((char, font, bold and font != face))
    return runs


def _cjk_font(text: str) -> str:
    for char in text:
        code = ord(char)
        if 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F:
            return JAPANESE
    for char in text:
        code = ord(char)
        if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
            return KOREAN
    return CHINESE


def _clean(text: str) -> str:
    """One line of composed characters: line breaks and other control characters, which names
    may carry, would draw as boxes or overprint."""
    words = unicodedata.normalize("NFC", text).split()
    return " ".join("".join(c for c in word if unicodedata.category(c) != "Cc") for word in words)
