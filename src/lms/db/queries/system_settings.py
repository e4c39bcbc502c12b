"""Queries on the single row of runtime settings (Piccolo's builder: a cold path)."""

from __future__ import annotations

import uuid
from typing import Any

from piccolo.columns import Column

from lms.db.builder import db_now
from lms.db.tables import SystemSettings
from lms.invariants import present

# The settings as RuntimeSettings reads them; the foreign key comes back as updated_by_id.
COLUMNS = (
    SystemSettings.registration_open,
    SystemSettings.otp_ttl_seconds,
    SystemSettings.otp_max_attempts,
    SystemSettings.completion_threshold_percent,
    SystemSettings.require_watch_to_complete,
    SystemSettings.max_upload_bytes,
    SystemSettings.updated_at,
    SystemSettings.updated_by,
)


async def read(*, lock: bool = False) -> dict[str, Any]:
    """The row; with `lock`, FOR UPDATE until the transaction ends (inside
    lms.db.builder.transaction())."""
    query = SystemSettings.select(*COLUMNS).where(SystemSettings.id == 1)
    if lock:
        query = query.lock_rows()
    row = await query.first()
    return present(row, "the system_settings row is created by migration 0002")


async def update(values: dict[str, object], actor_id: uuid.UUID) -> dict[str, Any]:
    """Set `values` (keyed by column name: Piccolo refuses a name that is not a column)."""
    changes: dict[Column | str, Any] = {name: value for name, value in values.items()}
    changes[SystemSettings.updated_at] = db_now()
    changes[SystemSettings.updated_by] = actor_id
    rows = await SystemSettings.update(changes).where(SystemSettings.id == 1).returning(*COLUMNS)
    return dict(rows[0])
