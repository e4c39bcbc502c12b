"""A form a client uploaded, as the services see it: its text fields and its file part, already
on local disk (the HTTP edge streamed it there, lms.api.uploads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ReceivedUpload:
    fields: dict[str, str]  # the text fields
    path: Path | None  # the file part on disk (the caller owns it), None without a file part
    filename: str | None  # the client's name for it: informational, never trusted
    size: int  # bytes of the file part

    def discard(self) -> None:
        """Remove the temp file (idempotent); the caller does this when it does not keep it."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
