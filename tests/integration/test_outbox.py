"""The email/SMS outbox end to end: real SMTP and a fake Twilio on loopback, outages and retries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
import httpx
import pytest
from litestar import Litestar

from lms.integrations.mail import Email, make_mailer
from lms.integrations.sms import Sms, make_sms_sender
from lms.messaging.dispatcher import BATCH, OutboxDispatcher, masked_recipient
from lms.messaging.outbox import queue_email, queue_sms
from lms.settings import Settings
from tests.flows import bearer, unique_email
from tests.support.sms_provider import SmsProvider, code_in_sms
from tests.support.smtp import Mailbox, code_in

PHONE = "+14155550123"
LATER_PHONE = "+14155550199"


class Outside(Protocol):
    """The `outside` fixture (tests.conftest.Outside), typed here without importing conftest."""

    mailbox: Mailbox
    sms: SmsProvider


async def wait_for_row(
    db: asyncpg.Pool,
    recipient: str,
    ready: Callable[[asyncpg.Record], bool],
    *,
    within: float = 10.0,
) -> asyncpg.Record:
    """The outbox row for `recipient` once `ready(row)` holds, polling."""
    deadline = time.monotonic() + within
    row: asyncpg.Record | None = None
    while time.monotonic() < deadline:
        row = await db.fetchrow("SELECT * FROM outbound_messages WHERE recipient = $1", recipient)
        if row is not None and ready(row):
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"outbox row for {recipient} never got ready: {dict(row or {})}")


def sent(row: asyncpg.Record) -> bool:
    return bool(row["status"] == "SENT")


async def test_an_smtp_outage_delays_the_code_but_neither_fails_nor_loses_it(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    outside.mailbox.refuse_with = "451 4.3.0 try again later"
    email = unique_email("outage")
    response = await api.post("/auth/register", json={"email": email})
    assert response.status_code == 201, response.text

    failing = await wait_for_row(
        db, email, lambda r: r["attempts"] >= 1 and r["last_error"] is not None
    )
    assert failing["status"] == "PENDING" and failing["channel"] == "EMAIL"
    assert "451" in failing["last_error"] or "try again" in failing["last_error"]
    assert failing["body_text"] and failing["sent_at"] is None
    assert failing["next_attempt_at"] > failing["created_at"]
    assert outside.mailbox.to(email) == []

    outside.mailbox.refuse_with = None
    mail = await outside.mailbox.wait_for(email, within=10.0)
    done = await wait_for_row(db, email, sent)
    assert done["body_text"] is None and done["body_html"] is None
    assert done["last_error"] is None and done["sent_at"] is not None
    assert done["attempts"] >= 2 and done["locked_until"] is None
    assert len(outside.mailbox.to(email)) == 1

    verified = await api.post("/auth/verify-email", json={"email": email, "otp": code_in(mail)})
    assert verified.status_code == 200, verified.text
    assert verified.json()["verified"] is True


async def test_register_with_a_phone_number_texts_a_code_that_verifies_the_phone(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool, settings: Settings
) -> None:
    email = unique_email("sms")
    response = await api.post("/auth/register", json={"email": email, "phoneNumber": PHONE})
    assert response.status_code == 201, response.text

    sms = await outside.sms.wait_for(PHONE)
    assert sms["To"] == PHONE
    assert sms["From"] == settings.sms_from == "+15005550006"
    sms_code = code_in_sms(sms)
    row = await wait_for_row(db, PHONE, sent)
    assert row["channel"] == "SMS" and row["body_text"] is None
    assert outside.sms.requests == 1

    mail_code = code_in(await outside.mailbox.wait_for(email))
    verified = await api.post("/auth/verify-email", json={"email": email, "otp": mail_code})
    assert verified.status_code == 200, verified.text
    phone = await api.post(
        "/auth/verify-phone",
        json={"phoneNumber": PHONE, "otp": sms_code},
        headers=bearer(verified.json()["profileToken"]),
    )
    assert phone.status_code == 200, phone.text
    assert phone.json()["phoneVerified"] is True


async def test_an_sms_provider_outage_is_retried_until_delivered(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    outside.sms.fail_with = 500
    response = await api.post(
        "/auth/register", json={"email": unique_email("sms500"), "phoneNumber": PHONE}
    )
    assert response.status_code == 201, response.text
    failing = await wait_for_row(
        db, PHONE, lambda r: r["attempts"] >= 1 and r["last_error"] is not None
    )
    assert failing["status"] == "PENDING" and "500" in failing["last_error"]
    assert outside.sms.requests >= 1 and outside.sms.messages == []

    outside.sms.fail_with = None
    sms = await outside.sms.wait_for(PHONE, within=10.0)
    assert len(code_in_sms(sms)) == 6
    done = await wait_for_row(db, PHONE, sent)
    assert done["attempts"] >= 2 and done["last_error"] is None and done["body_text"] is None
    assert len(outside.sms.to(PHONE)) == 1
    metrics = (await api.get("/metrics")).text
    assert 'lms_outbound_messages_total{channel="SMS",outcome="retry"}' in metrics
    assert 'lms_outbound_messages_total{channel="SMS",outcome="sent"}' in metrics


async def test_an_sms_refused_with_400_fails_for_good_without_retries(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    outside.sms.fail_with = 400
    email = unique_email("sms400")
    response = await api.post("/auth/register", json={"email": email, "phoneNumber": PHONE})
    assert response.status_code == 201, response.text

    failed = await wait_for_row(db, PHONE, lambda r: r["status"] == "FAILED")
    assert "400" in failed["last_error"]
    assert failed["attempts"] == 1 and failed["sent_at"] is None
    assert failed["body_text"] is None  # the code does not linger in a dead message
    requests = outside.sms.requests
    assert requests == 1

    # A later text that must go out, due only after the first two retry delays (1 s, 2 s) would
    # have passed: the dispatcher takes due messages oldest first, so by the time this one is
    # delivered and settled, any retry of the refused one would have been claimed (and counted)
    # before it.
    outside.sms.fail_with = None
    async with db.acquire() as conn, conn.transaction():
        await queue_sms(conn, Sms(LATER_PHONE, "Sent after the refusal."), purpose="test")
        await conn.execute(
            "UPDATE outbound_messages SET next_attempt_at = now() + interval '3 seconds'"
            " WHERE recipient = $1",
            LATER_PHONE,
        )
    await outside.sms.wait_for(LATER_PHONE)
    await wait_for_row(db, LATER_PHONE, sent)
    still = await db.fetchrow("SELECT * FROM outbound_messages WHERE id = $1", failed["id"])
    assert still is not None and still["status"] == "FAILED" and still["attempts"] == 1
    assert outside.sms.requests == requests + 1  # the later text's, and no other
    assert outside.sms.to(PHONE) == []
    # The email of the same registration is unaffected.
    await outside.mailbox.wait_for(email)
    await wait_for_row(db, email, sent)


async def test_an_expired_message_is_failed_and_never_sent(
    api: httpx.AsyncClient, app: Litestar, outside: Outside, db: asyncpg.Pool
) -> None:
    stale, fresh = unique_email("stale"), unique_email("fresh")
    past = datetime.now(UTC) - timedelta(minutes=1)
    async with db.acquire() as conn, conn.transaction():
        await queue_email(
            conn, Email(stale, "Old code", "Your code is 111111."), purpose="test", expires_at=past
        )
        await queue_email(
            conn,
            Email(fresh, "New code", "Your code is 222222."),
            purpose="test",
            expires_at=datetime.now(UTC) + timedelta(minutes=5),
        )
    app.state.ctx.outbox.wake()

    failed = await wait_for_row(db, stale, lambda r: r["status"] == "FAILED")
    assert "expired" in failed["last_error"] and failed["sent_at"] is None
    assert failed["body_text"] is None and failed["purpose"] == "test"
    await outside.mailbox.wait_for(fresh)  # the dispatcher did run
    await wait_for_row(db, fresh, sent)
    assert outside.mailbox.to(stale) == []


async def test_two_dispatchers_deliver_each_message_exactly_once(
    api: httpx.AsyncClient,
    app: Litestar,
    outside: Outside,
    db: asyncpg.Pool,
    settings: Settings,
) -> None:
    """A second API process's dispatcher races the app's: SKIP LOCKED splits the work and nothing
    goes out twice. More than one batch is queued so that neither can take it all in one claim."""
    second = OutboxDispatcher(
        db,
        make_mailer(settings.smtp_url, settings.email_from),
        make_sms_sender(settings.sms_url, settings.sms_from),
    )
    total = BATCH + 10
    recipients = [unique_email(f"bulk{i}") for i in range(total)]
    claimed_by_second = 0
    done = asyncio.Event()

    async def second_process() -> None:
        nonlocal claimed_by_second
        while not done.is_set():
            claimed_by_second += await second.deliver_due()
            await asyncio.sleep(0.005)

    racer = asyncio.create_task(second_process())
    try:
        async with db.acquire() as conn, conn.transaction():
            for i, recipient in enumerate(recipients):
                await queue_email(
                    conn, Email(recipient, f"Bulk {i}", f"Message number {i}."), purpose="test"
                )
        app.state.ctx.outbox.wake()
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            settled = await db.fetchval(
                "SELECT count(*) FROM outbound_messages WHERE status <> 'PENDING'"
            )
            if settled == total:
                break
            await asyncio.sleep(0.02)
        done.set()
        await racer

        rows = await db.fetch("SELECT * FROM outbound_messages")
        assert len(rows) == total and all(r["status"] == "SENT" for r in rows), [
            (r["recipient"], r["status"], r["last_error"]) for r in rows
        ]
        assert all(r["attempts"] == 1 for r in rows)  # each claimed once, by one of the two
        assert 0 < claimed_by_second < total  # both dispatchers took a share
        received = [m for m in outside.mailbox.messages if m["To"] in recipients]
        assert len(received) == total
        assert sorted(str(m["To"]) for m in received) == sorted(recipients)
        for i, recipient in enumerate(recipients):
            (only,) = outside.mailbox.to(recipient)
            assert only["Subject"] == f"Bulk {i}"
    finally:
        done.set()
        if not racer.done():
            racer.cancel()
        await asyncio.gather(racer, return_exceptions=True)
        await second.stop()


async def test_the_message_carries_the_request_id_of_the_request_that_queued_it(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool
) -> None:
    email = unique_email("rid")
    response = await api.post("/auth/register", json={"email": email})
    assert response.status_code == 201
    request_id = response.headers["X-Request-ID"]
    assert request_id
    row = await db.fetchrow("SELECT request_id FROM outbound_messages WHERE recipient = $1", email)
    assert row is not None and row["request_id"] == request_id

    # A caller's own id (from a gateway) is kept and carried into the outbox.
    traced = unique_email("rid2")
    response = await api.post(
        "/auth/register", json={"email": traced}, headers={"X-Request-ID": "gw-trace.42:abc"}
    )
    assert response.status_code == 201 and response.headers["X-Request-ID"] == "gw-trace.42:abc"
    row = await db.fetchrow("SELECT request_id FROM outbound_messages WHERE recipient = $1", traced)
    assert row is not None and row["request_id"] == "gw-trace.42:abc"
    await outside.mailbox.wait_for(traced)
    await wait_for_row(db, traced, sent)


async def test_delivery_logs_name_only_the_mail_domain_or_the_numbers_end(
    api: httpx.AsyncClient, outside: Outside, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    email = unique_email("privacy")
    with caplog.at_level(logging.INFO, logger="lms.outbox"):
        assert (await api.post("/auth/register", json={"email": email})).status_code == 201
        await wait_for_row(db, email, sent)
    lines = [r.getMessage() for r in caplog.records if r.name == "lms.outbox"]
    assert any("sent to …@example.test" in line for line in lines), lines
    assert not any(email in line or email.split("@")[0] in line for line in lines), lines
    assert masked_recipient("SMS", PHONE) == "…23"
