"""Queue a message in the caller's transaction; the dispatcher delivers it after commit.

Writing the message with the state change that caused it (a code issued, an application
decided) means a crash between the two cannot send a mail about something that did not happen,
nor forget one about something that did.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from lms.db.queries import outbox as sql
from lms.db.tables import MessageChannel
from lms.integrations.mail import Email
from lms.integrations.sms import Sms
from lms.observability.logs import request_id_var


async def queue_email(
    conn: asyncpg.Connection, email: Email, *, purpose: str, expires_at: datetime | None = None
) -> None:
    await sql.enqueue(
        conn,
        channel=MessageChannel.EMAIL.value,
        recipient=email.to,
        subject=email.subject,
        body_text=email.text,
        body_html=email.html,
        purpose=purpose,
        expires_at=expires_at,
        request_id=request_id_var.get(),
    )


async def queue_sms(
    conn: asyncpg.Connection, sms: Sms, *, purpose: str, expires_at: datetime | None = None
) -> None:
    await sql.enqueue(
        conn,
        channel=MessageChannel.SMS.value,
        recipient=sms.to,
        subject="",
        body_text=sms.body,
        body_html=None,
        purpose=purpose,
        expires_at=expires_at,
        request_id=request_id_var.get(),
    )
