"""The public verification page of a certificate: one self-contained, printable HTML document."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from lms.domain.certificates.qr import qr_svg
from lms.domain.certificates.view import CertificateView

# Month names are spelled here rather than with strftime("%B"), which follows the process locale.
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# A serial comes from the URL of an unknown certificate, so anyone can make it any length: the
# page echoes at most this many characters of it (real serials are 64).
_MAX_ECHOED_SERIAL = 100

# Inline only: the page must render the same offline, from a saved file and on paper. The fonts
# are whatever the reader's system has; nothing is fetched.
_CSS = """
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6472; --line: #d9dee5; }
* { box-sizing: border-box; }
html { background: #eef1f5; }
body { margin: 0; padding: 32px 16px; color: var(--ink);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans",
    Arial, sans-serif; }
main { max-width: 760px; margin: 0 auto; background: #fff; border: 1px solid var(--line);
  border-radius: 12px; box-shadow: 0 2px 12px rgba(20, 30, 50, .08); overflow: hidden; }
.status { padding: 20px 32px; color: #fff; }
.status h1 { margin: 0; font-size: 26px; line-height: 1.25; }
.status p { margin: 4px 0 0; }
.valid .status { background: #1e7a46; }
.revoked .status { background: #b3261e; }
.unknown .status { background: #4a5361; }
.body { padding: 24px 32px 28px; }
.hint { margin: 20px 0 0; }
.lead { margin: 0 0 4px; color: var(--muted); }
.learner { margin: 0; font-size: 30px; line-height: 1.2; overflow-wrap: anywhere; }
.course { margin: 6px 0 20px; font-size: 21px; font-weight: 600; overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 8px 20px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono",
  monospace; font-size: 14px; word-break: break-all; }
.verify { display: flex; gap: 24px; align-items: center; margin-top: 24px; padding-top: 24px;
  border-top: 1px solid var(--line); }
.verify svg { flex: none; width: 180px; height: 180px; }
.verify p { margin: 0 0 6px; }
a { color: #1a56a8; }
footer { padding: 14px 32px; border-top: 1px solid var(--line); color: var(--muted);
  font-size: 14px; }
@media (max-width: 560px) {
  .verify { flex-direction: column; align-items: flex-start; }
  dl { grid-template-columns: 1fr; gap: 0; }
  dd { margin-bottom: 8px; }
}
@page { size: auto; margin: 15mm; }
@media print {
  html, body { background: #fff; padding: 0; font-size: 11pt; }
  main { max-width: none; border: 1px solid #999; border-radius: 0; box-shadow: none;
    break-inside: avoid; }
  .status { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  .verify svg { width: 40mm; height: 40mm; }
  a { color: inherit; text-decoration: none; }
}
"""


def display_date(moment: datetime) -> str:
    """A date as people read it, in UTC: "30 November 2026" (a naive value is taken as UTC)."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return f"{utc.day} {_MONTHS[utc.month - 1]} {utc.year}"


def verification_page(view: CertificateView | None, serial_hash: str) -> str:
    """The HTML5 document answering "is this certificate genuine?" for `serial_hash`: verified,
    revoked, or unknown when `view` is None. Every value from the view or the URL is escaped."""
    if view is None:
        return _document("unknown", "Certificate not found", _unknown_body(serial_hash))
    if view.status == "REVOKED":
        revoked = (
            f"It was revoked on {display_date(view.revoked_at)} and is no longer valid."
            if view.revoked_at is not None
            else "It has been revoked and is no longer valid."
        )
        banner = (
            "<h1>&#10007; Revoked certificate</h1>"
            f"<p>This certificate was issued by {escape(view.issuer_name)}. {revoked}</p>"
        )
        title = f"Revoked certificate: {view.course_title} - {view.learner_name}"
        return _document("revoked", title, _certificate_body(view, banner))
    banner = (
        "<h1>&#10003; Verified</h1>"
        f"<p>This certificate is genuine and valid, issued by {escape(view.issuer_name)}.</p>"
    )
    title = f"Verified certificate: {view.course_title} - {view.learner_name}"
    return _document("valid", title, _certificate_body(view, banner))


def _document(state: str, title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f'<body class="{state}">\n<main>\n{body}\n</main>\n</body>\n</html>\n'
    )


def _certificate_body(view: CertificateView, banner: str) -> str:
    rows: list[tuple[str, str]] = []
    if view.creator_name:
        rows.append(("Created by", escape(view.creator_name)))
    rows.append(("Issued on", escape(display_date(view.issued_at))))
    if view.status == "REVOKED":
        rows.append(("Status", "<strong>Revoked</strong>"))
        if view.revoked_at is not None:
            rows.append(("Revoked on", escape(display_date(view.revoked_at))))
    else:
        rows.append(("Status", "<strong>Valid</strong>"))
    rows.append(("Issued by", _issuer(view)))
    rows.append(("Certificate number", f'<span class="mono">{escape(view.serial_hash)}</span>'))
    details = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    url = escape(view.verify_url)
    return (
        f'<header class="status" role="status">{banner}</header>\n'
        '<div class="body">\n'
        '<p class="lead">This certifies that</p>\n'
        f'<p class="learner"><strong>{escape(view.learner_name)}</strong></p>\n'
        '<p class="lead">completed the course</p>\n'
        f'<p class="course">{escape(view.course_title)}</p>\n'
        f"<dl>{details}</dl>\n"
        '<section class="verify">\n'
        f"{qr_svg(view.verify_url)}\n"
        "<div><p>Scan the code or open this address to check the certificate at any time:</p>\n"
        f'<p class="mono"><a href="{url}">{url}</a></p></div>\n'
        "</section>\n</div>\n"
        "<footer>This page shows the certificate as recorded by its issuer right now; "
        "a printed copy is only as current as the date it was printed.</footer>"
    )


def _issuer(view: CertificateView) -> str:
    name = escape(view.issuer_name)
    # The issuer URL comes from configuration, but only a web address becomes a link.
    if view.issuer_url.startswith(("https://", "http://")):
        return f'<a href="{escape(view.issuer_url)}">{name}</a>'
    return name


def _unknown_body(serial_hash: str) -> str:
    serial = serial_hash[:_MAX_ECHOED_SERIAL]
    if len(serial_hash) > _MAX_ECHOED_SERIAL:
        serial += "\u2026"
    return (
        '<header class="status" role="status"><h1>Certificate not found</h1>'
        "<p>No certificate with this number exists.</p></header>\n"
        '<div class="body">\n<dl><dt>Certificate number</dt>'
        f'<dd><span class="mono">{escape(serial)}</span></dd></dl>\n'
        '<p class="hint">Check that the link or the number was copied in full, or ask the '
        "person who gave it to you for the link to their certificate.</p>\n</div>"
    )
