"""Reading back what the service renders: PDF text and QR codes, and pages as Chromium draws them
(screenshots kept under test-artifacts/ for people to look at)."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pypdf
import pypdfium2
import pytest
import zxingcpp
from PIL import Image  # Pillow comes with reportlab

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def decode_qr(pixels: np.ndarray[Any, Any]) -> list[str]:
    return [
        b.text for b in zxingcpp.read_barcodes(pixels) if b.format == zxingcpp.BarcodeFormat.QRCode
    ]


def pdf_qr_codes(data: bytes, *, scale: float = 2) -> list[str]:
    """The texts of the QR codes on the PDF's first page, rasterised as a printer would."""
    page = pypdfium2.PdfDocument(data)[0]
    return decode_qr(page.render(scale=scale, grayscale=True).to_numpy())


def screenshot(page: str, name: str) -> np.ndarray[Any, Any]:
    """The page as headless Chromium draws it, kept under test-artifacts/ for people to look at."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed: apt-get install chromium (CI installs it)")
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        html_file = Path(tmp) / "page.html"
        html_file.write_text(page, encoding="utf-8")
        profile = Path(tmp) / "profile"
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                "--window-size=1200,1600",
                f"--screenshot={target}",
                html_file.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    assert target.is_file(), f"chromium wrote no screenshot to {target}"
    with Image.open(target) as image:
        return np.asarray(image.convert("L"))
