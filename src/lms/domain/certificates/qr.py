"""The QR code of a certificate's verification URL, as modules for the PDF and as inline SVG."""

from __future__ import annotations

import html
from dataclasses import dataclass

import segno

# Level M restores 15% damage: plenty for a page on a screen or a desk, and it keeps the symbol a
# version or two smaller than Q would, so each module is larger at the same printed size. The
# level is fixed (no boosting) so the same URL always gives the same symbol.
ERROR_LEVEL = "M"
# The light margin readers need around the symbol, in modules (the QR standard's 4). Renderers
# keep this area clear; it is not part of QrCode.size.
QUIET_ZONE = 4


@dataclass(frozen=True, slots=True)
class QrCode:
    """A QR symbol without its quiet zone: `size` modules a side, the dark modules given as
    horizontal runs (row, first column, length), top row first, so renderers draw few shapes."""

    size: int
    runs: tuple[tuple[int, int, int], ...]


def qr_code(url: str) -> QrCode:
    """The QR code (model 2, never Micro QR) encoding `url` as given."""
    symbol = segno.make_qr(url, error=ERROR_LEVEL, boost_error=False)
    runs: list[tuple[int, int, int]] = []
    for y, row in enumerate(symbol.matrix):
        x = 0
        while x < len(row):
            if row[x]:
                start = x
                while x < len(row) and row[x]:
                    x += 1
                runs.append((y, start, x - start))
            else:
                x += 1
    return QrCode(size=len(symbol.matrix), runs=tuple(runs))


def qr_svg(url: str, *, size_px: int = 240, label: str = "QR code of the verification link") -> str:
    """An inline `<svg>` element (no XML declaration) of `url`'s QR code, quiet zone included,
    `size_px` wide and high: black on an opaque white square, so dark themes cannot invert it."""
    code = qr_code(url)
    side = code.size + 2 * QUIET_ZONE
    path = "".join(
        f"M{x + QUIET_ZONE} {y + QUIET_ZONE}h{length}v1h-{length}z" for y, x, length in code.runs
    )
    # crispEdges keeps neighbouring modules from showing anti-aliased seams when scaled.
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side} {side}" '
        f'width="{size_px}" height="{size_px}" shape-rendering="crispEdges" role="img" '
        f'aria-label="{html.escape(label)}">'
        f'<rect width="{side}" height="{side}" fill="#fff"/>'
        f'<path fill="#000" d="{path}"/></svg>'
    )
