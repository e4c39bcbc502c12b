"""Webhooks end to end: the admin API, Standard Webhooks signatures checked by the reference
library on a loopback receiver, delivery by the worker over NATS JetStream, order, retries,
a receiver killed in the middle of a burst, automatic disabling, and an API a dead receiver
cannot slow down."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest

from lms.db.engine import open_pool
from lms.db.queries import event_cursors
from lms.db.queries.events import LOG_KEEPS_SECONDS
from lms.domain.events.delivery import WebhookDeliverer, run_deliverer
from lms.domain.events.dispatcher import EventDispatcher
from lms.domain.events.log import record_event
from lms.domain.events.webhooks import WebhookSink
from lms.settings import Settings
from tests.conftest import TestUser
from tests.helpers import eventually
from tests.integration.faults.processes import log_tail, service_env, spawn, stop
from tests.integration.learning.helpers import course_with_lessons
from tests.support.webhook_receiver import WebhookReceiver


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    async def holds() -> bool:
        return check()

    await eventually(holds, within=within, what=what)


@contextlib.asynccontextmanager
async def delivering(
    db: asyncpg.Pool, settings: Settings, *, stop: asyncio.Event | None = None
) -> AsyncIterator[WebhookDeliverer]:
    """A webhook worker in this process, as `lms worker` runs one: the event dispatcher (which
    fans events out to the endpoints) and the deliverer."""
    assert settings.nats_url
    nc = await nats.connect(settings.nats_url)
    stop = stop or asyncio.Event()
    dispatcher = EventDispatcher(db, [WebhookSink(None, settings)], poll_seconds=0.1)
    dispatcher.start()
    deliverer = WebhookDeliverer(db, settings)
    task = asyncio.create_task(run_deliverer(nc, deliverer, settings, stop, sweep_seconds=0.2))
    try:
        yield deliverer
    finally:
        stop.set()
        await task
        await dispatcher.stop()
        await nc.close()


@contextlib.contextmanager
def worker_thread(settings: Settings) -> Iterator[None]:
    """A webhook worker on an event loop and pool of its own, as `lms worker` is a process of
    its own: what it does cannot hold up the API's event loop."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()

    async def main() -> None:
        assert settings.database_url
        pool = await open_pool(settings.database_url, settings)
        try:
            async with delivering(pool, settings, stop=stop):
                ready.set()
                await stop.wait()
        finally:
            await pool.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = WebhookReceiver()
    server.start()
    yield server
    server.stop()


async def register(
    api: httpx.AsyncClient, admin: TestUser, receiver: WebhookReceiver, events: list[str]
) -> dict[str, Any]:
    response = await api.post(
        "/admin/webhooks",
        json={"url": receiver.url, "events": events, "description": "test receiver"},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    receiver.secret = body["secret"]
    return body


async def test_admin_manages_endpoints_and_bad_input_changes_nothing(
    api: httpx.AsyncClient, admin: TestUser, learner: TestUser, receiver: WebhookReceiver
) -> None:
    created = await register(api, admin, receiver, ["enrollment.created", "course.published"])
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["events"] == ["course.published", "enrollment.created"]
    assert created["disabledAt"] is None and created["createdAt"]
    listed = (await api.get("/admin/webhooks", headers=admin.headers)).json()
    assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]
    one = await api.get(f"/admin/webhooks/{created['id']}", headers=admin.headers)
    assert one.status_code == 200 and "secret" not in one.json()

    for body, why in [
        ({"url": receiver.url, "events": ["course.exploded"]}, "unknown event type"),
        ({"url": receiver.url, "events": []}, ""),
        ({"url": "http://10.1.2.3/hook", "events": ["course.published"]}, "private"),
        ({"url": "http://169.254.169.254/", "events": ["course.published"]}, "metadata"),
        ({"url": "ftp://example.com/", "events": ["course.published"]}, "http"),
        ({"url": "http://[::1]:8080/", "events": ["course.published"]}, "loopback"),
    ]:
        refused = await api.post("/admin/webhooks", json=body, headers=admin.headers)
        assert refused.status_code == 400, (body, refused.text)
        assert why in refused.text, refused.text
    assert len((await api.get("/admin/webhooks", headers=admin.headers)).json()) == 1
    assert (await api.get("/admin/webhooks", headers=learner.headers)).status_code == 403

    patched = await api.patch(
        f"/admin/webhooks/{created['id']}",
        json={"events": ["lesson.completed"], "enabled": False},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["events"] == ["lesson.completed"]
    assert patched.json()["disabledReason"] == "disabled by an admin"
    enabled = await api.patch(
        f"/admin/webhooks/{created['id']}", json={"enabled": True}, headers=admin.headers
    )
    assert enabled.json()["disabledAt"] is None and enabled.json()["disabledReason"] is None
    assert (
        await api.patch(f"/admin/webhooks/{created['id']}", json={}, headers=admin.headers)
    ).status_code == 400
    gone = await api.delete(f"/admin/webhooks/{created['id']}", headers=admin.headers)
    assert gone.status_code == 204
    assert (
        await api.get(f"/admin/webhooks/{created['id']}", headers=admin.headers)
    ).status_code == 404
    missing = f"/admin/webhooks/{uuid.uuid4()}/deliveries/{uuid.uuid4()}/retry"
    assert (await api.post(missing, headers=admin.headers)).status_code == 404


async def test_events_arrive_signed_in_order_with_the_event_id_and_can_be_sent_again(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    settings: Settings,
    admin: TestUser,
    creator: TestUser,
    learner: TestUser,
    receiver: WebhookReceiver,
) -> None:
    endpoint = await register(api, admin, receiver, ["enrollment.created", "course.published"])
    async with delivering(db, settings):
        course, _ = await course_with_lessons(api, db, creator, admin, [None])
        enrolled = await api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
        assert enrolled.status_code == 201
        await until(lambda: len(receiver.received) == 2, 15, "both events delivered")
        events = await db.fetch(
            "SELECT id, type FROM events WHERE type <> 'course.submitted' ORDER BY seq"
        )
        assert receiver.ids() == [str(e["id"]) for e in events]
        assert [r.type for r in receiver.received] == ["course.published", "enrollment.created"]
        assert receiver.received[1].data["enrollmentId"] == enrolled.json()["id"]
        assert receiver.rejected == []

        log_path = f"/admin/webhooks/{endpoint['id']}/deliveries"

        async def logged() -> bool:  # successes are written together, a moment after
            log = await api.get(log_path, headers=admin.headers)
            assert log.status_code == 200, log.text
            return all(d["status"] == "DELIVERED" for d in log.json()["items"])

        await eventually(logged, within=10, what="both logged as delivered")
        items = (await api.get(log_path, headers=admin.headers)).json()["items"]
        assert {(d["status"], d["attempt"], d["responseStatus"]) for d in items} == {
            ("DELIVERED", 1, 200)
        }
        first = next(d for d in items if d["type"] == "course.published")
        retried = await api.post(
            f"/admin/webhooks/{endpoint['id']}/deliveries/{first['id']}/retry",
            headers=admin.headers,
        )
        assert retried.status_code == 202
        await until(lambda: len(receiver.received) == 3, 15, "the retry delivered")
        assert receiver.ids()[2] == first["eventId"]  # the same webhook-id again
        assert receiver.received[2].body == receiver.received[0].body

        async def settled() -> bool:
            pending = await api.get(
                f"/admin/webhooks/{endpoint['id']}/deliveries?status=PENDING",
                headers=admin.headers,
            )
            return bool(pending.json()["items"] == [])

        await eventually(settled, within=10, what="the retry recorded as delivered")
        again = await db.fetchrow(
            "SELECT attempts FROM webhook_deliveries WHERE id = $1", uuid.UUID(first["id"])
        )
        assert again["attempts"] == 2

    metrics = (await api.get("/metrics")).text
    label = f'endpoint="{endpoint["id"]}"'
    assert f'lms_webhook_deliveries_total{{{label},outcome="delivered"}}' in metrics
    assert f"lms_webhook_queue_depth{{{label}}} 0.0" in metrics
    assert "lms_webhook_delivery_latency_seconds_count" in metrics
    assert "lms_events_undispatched 0.0" in metrics


async def test_a_queued_delivery_is_listed_before_its_first_attempt_under_the_id_it_keeps(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    settings: Settings,
    admin: TestUser,
    creator: TestUser,
    receiver: WebhookReceiver,
) -> None:
    endpoint = await register(api, admin, receiver, ["course.submitted", "course.published"])
    log_path = f"/admin/webhooks/{endpoint['id']}/deliveries"
    await course_with_lessons(api, db, creator, admin, [None])
    # Fanned out, no deliverer yet: the queue holds them, the log has no row of its own.
    assert await EventDispatcher(db, [WebhookSink(None, settings)]).dispatch_once() >= 2
    queued = (await api.get(f"{log_path}?status=PENDING", headers=admin.headers)).json()
    assert sorted((d["type"], d["status"], d["attempt"]) for d in queued["items"]) == [
        ("course.published", "PENDING", 0),
        ("course.submitted", "PENDING", 0),
    ]
    assert (await api.get(f"{log_path}?status=DELIVERED", headers=admin.headers)).json()[
        "items"
    ] == []
    assert await db.fetchval("SELECT count(*) FROM webhook_deliveries") == 0

    async with delivering(db, settings):
        await until(lambda: len(receiver.received) == 2, 15, "both delivered")

        async def logged() -> bool:
            rows = await db.fetch("SELECT status FROM webhook_deliveries")
            return [r["status"] for r in rows] == ["DELIVERED"] * 2

        await eventually(logged, within=10, what="both logged as delivered")
    done = (await api.get(log_path, headers=admin.headers)).json()["items"]
    assert {d["id"] for d in done} == {d["id"] for d in queued["items"]}  # the same ids
    assert {(d["status"], d["attempt"], d["responseStatus"]) for d in done} == {
        ("DELIVERED", 1, 200)
    }
    assert await db.fetchval("SELECT count(*) FROM webhook_queue") == 0

    # A delivery whose event the housekeeper has since forgotten cannot be sent again: 409,
    # and nothing is queued.
    from lms.housekeeping import sweep_once

    await db.execute("UPDATE events SET occurred_at = now() - interval '40 days'")
    await sweep_once(db)
    assert await db.fetchval("SELECT count(*) FROM events") == 0
    forgotten = await api.post(f"{log_path}/{done[0]['id']}/retry", headers=admin.headers)
    assert forgotten.status_code == 409, forgotten.text
    assert "older than the event log keeps" in forgotten.json()["detail"]
    assert await db.fetchval("SELECT count(*) FROM webhook_queue") == 0
    assert (await api.get(log_path, headers=admin.headers)).json()["items"] == done  # unchanged


async def test_an_endpoint_failing_for_long_is_disabled_with_the_reason_and_loses_nothing(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    settings: Settings,
    admin: TestUser,
    creator: TestUser,
    receiver: WebhookReceiver,
) -> None:
    endpoint = await register(api, admin, receiver, ["course.submitted", "course.published"])
    receiver.answer = 302  # a redirect is not followed: a failure like a 500
    impatient = dataclasses.replace(settings, webhook_disable_after_seconds=1)
    async with delivering(db, impatient):
        await course_with_lessons(api, db, creator, admin, [None])

        async def disabled() -> bool:
            row = await db.fetchrow("SELECT disabled_at FROM webhook_endpoints")
            return row["disabled_at"] is not None

        await eventually(disabled, within=20, what="the endpoint disabled")
        shown = (await api.get(f"/admin/webhooks/{endpoint['id']}", headers=admin.headers)).json()
        assert "redirects are not followed" in shown["disabledReason"]
        assert "every delivery failed since" in shown["disabledReason"]
        assert shown["consecutiveFailures"] >= 2 and shown["failingSince"]
        log = await api.get(f"/admin/webhooks/{endpoint['id']}/deliveries", headers=admin.headers)
        head = next(d for d in log.json()["items"] if d["type"] == "course.submitted")
        assert head["status"] == "PENDING" and head["responseStatus"] == 302
        assert head["attempt"] >= 2
        assert receiver.received == []

        receiver.answer = 200
        await api.patch(
            f"/admin/webhooks/{endpoint['id']}", json={"enabled": True}, headers=admin.headers
        )
        await until(lambda: len(receiver.received) == 2, 15, "both events delivered")
        assert [r.type for r in receiver.received] == ["course.submitted", "course.published"]


async def test_a_delivery_that_fails_waits_at_the_head_and_nothing_overtakes_it(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    settings: Settings,
    admin: TestUser,
    creator: TestUser,
    receiver: WebhookReceiver,
) -> None:
    """An endpoint reads the event log from its own place. A delivery that fails moves to the
    head of its queue with the place past it; the next drains send the queue first, so the
    events after it wait, and once the receiver takes it they follow in order."""
    endpoint = await register(api, admin, receiver, ["course.submitted", "course.published"])
    await course_with_lessons(api, db, creator, admin, [None])
    await course_with_lessons(api, db, creator, admin, [None])
    dispatcher = EventDispatcher(db, [WebhookSink(None, settings)])
    assert await dispatcher.dispatch_once() == 4  # two courses, submitted and published
    assert await db.fetchval("SELECT count(*) FROM webhook_queue") == 0  # nothing fanned out
    order = [
        str(r["id"])
        for r in await db.fetch(
            "SELECT id FROM events WHERE type IN ('course.submitted', 'course.published')"
            " ORDER BY xid, seq"
        )
    ]
    listed = (
        await api.get(f"/admin/webhooks/{endpoint['id']}/deliveries", headers=admin.headers)
    ).json()["items"]
    assert sorted(d["eventId"] for d in listed) == sorted(order)
    assert {(d["status"], d["attempt"]) for d in listed} == {("PENDING", 0)}

    fast = dataclasses.replace(settings, webhook_retry_base_ms=50, webhook_retry_max_seconds=1)
    deliverer = WebhookDeliverer(db, fast)
    receiver.answer = 500
    await deliverer.drain(uuid.UUID(endpoint["id"]))
    assert receiver.received == []
    head = await db.fetchrow("SELECT event_id, attempts FROM webhook_queue")
    assert str(head["event_id"]) == order[0] and head["attempts"] == 1
    # The first event's delivery, under the id it was listed with, failed once.
    log_rows = (
        await api.get(f"/admin/webhooks/{endpoint['id']}/deliveries", headers=admin.headers)
    ).json()["items"]
    first = next(d for d in log_rows if d["eventId"] == order[0])
    assert first["id"] == next(d["id"] for d in listed if d["eventId"] == order[0])
    assert (first["status"], first["attempt"], first["responseStatus"]) == ("PENDING", 1, 500)

    await asyncio.sleep(1.1)  # the backoff
    await deliverer.drain(uuid.UUID(endpoint["id"]))  # fails again: still nothing overtakes
    assert receiver.received == []
    receiver.answer = 200
    await asyncio.sleep(1.1)
    await deliverer.drain(uuid.UUID(endpoint["id"]))
    assert receiver.ids() == order
    assert await db.fetchval("SELECT count(*) FROM webhook_queue") == 0
    done = (
        await api.get(f"/admin/webhooks/{endpoint['id']}/deliveries", headers=admin.headers)
    ).json()["items"]
    assert {d["id"] for d in done} == {d["id"] for d in listed}  # the ids they were listed with
    assert sorted((d["eventId"], d["status"]) for d in done) == sorted(
        (event_id, "DELIVERED") for event_id in order
    )


async def test_an_endpoint_disabled_longer_than_the_log_keeps_gets_what_the_log_still_has(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    settings: Settings,
    admin: TestUser,
    receiver: WebhookReceiver,
) -> None:
    """Its place no longer holds every tick since it was disabled: the ticks older than the log
    keeps go (but the newest of them), and once enabled it starts after the oldest tick left,
    with no read per tick gone."""
    endpoint = await register(api, admin, receiver, ["course.published"])
    endpoint_id = uuid.UUID(endpoint["id"])
    await db.execute(
        "UPDATE webhook_endpoints SET disabled_at = now() - interval '40 days' WHERE id = $1",
        endpoint_id,
    )
    dispatcher = EventDispatcher(db, [WebhookSink(None, settings)])
    for _ in range(3):  # three ticks, each an event, all older than the log keeps
        await record_event(db, "course.published", {"courseId": uuid.uuid4()})
        assert await dispatcher.dispatch_once() == 1
    await db.execute("UPDATE event_ticks SET created_at = now() - interval '40 days'")
    recent = await record_event(db, "course.published", {"courseId": uuid.uuid4()})
    assert await dispatcher.dispatch_once() == 1
    ticks = await db.fetchval("SELECT count(*) FROM event_ticks")
    await event_cursors.forget_passed_ticks(db, LOG_KEEPS_SECONDS)
    left = [r["id"] for r in await db.fetch("SELECT id FROM event_ticks ORDER BY id")]
    assert len(left) == 2 < ticks  # the newest old tick and the recent one
    enabled = await api.patch(
        f"/admin/webhooks/{endpoint['id']}", json={"enabled": True}, headers=admin.headers
    )
    assert enabled.status_code == 200
    await WebhookDeliverer(db, settings).drain(endpoint_id)
    assert receiver.ids() == [str(recent)]
    assert await event_cursors.unread_count(db, f"webhook:{endpoint_id}") == 0


async def many_learners(db: asyncpg.Pool, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    rows = await db.fetch(
        """
        INSERT INTO users (email, username, password_hash, full_name, name, role,
                           email_verified, is_profile_complete, is_active)
        SELECT 'burst-' || $2 || '-' || i || '@example.test', 'burst_' || $2 || '_' || i, 'x',
               'Burst ' || i, 'Burst ' || i, 'LEARNER', true, true, true
        FROM generate_series(1, $1) AS i
        RETURNING email
        """,
        n,
        tag,
    )
    return [r["email"] for r in rows]


@pytest.mark.slow
async def test_a_receiver_killed_mid_burst_gets_every_event_once_back(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    settings: Settings,
    admin: TestUser,
    creator: TestUser,
    receiver: WebhookReceiver,
) -> None:
    n = 1000
    await register(api, admin, receiver, ["enrollment.created"])
    course, _ = await course_with_lessons(api, db, creator, admin, [None])
    emails = await many_learners(db, n)
    async with delivering(db, settings):

        async def burst() -> None:
            for chunk in range(0, n, 100):
                response = await api.post(
                    f"/admin/courses/{course['id']}/enrollments",
                    json={"emails": emails[chunk : chunk + 100]},
                    headers=admin.headers,
                )
                assert response.status_code == 200, response.text

        sending = asyncio.create_task(burst())
        await until(lambda: len(receiver.received) >= 150, 60, "the burst under way")
        receiver.stop()  # killed mid-burst
        killed_at = len(receiver.received)
        await sending
        await asyncio.sleep(1.5)  # down for a while: attempts fail, backoff grows
        receiver.start()  # back, on the same port
        await until(lambda: len(set(receiver.ids())) >= n, 120, "every event delivered")

    recorded = [
        str(r["id"])
        for r in await db.fetch(
            "SELECT id FROM events WHERE type = 'enrollment.created' ORDER BY seq"
        )
    ]
    assert len(recorded) == n  # N events in
    ids = receiver.ids()
    assert set(ids) == set(recorded)  # N distinct ids delivered, 0 lost
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == recorded  # in order, the receiver's outage notwithstanding
    bodies: dict[str, bytes] = {}
    for r in receiver.received:  # a duplicate carries the same id and the same event
        assert bodies.setdefault(r.id, r.body) == r.body
    assert killed_at < n
    assert receiver.rejected == []


@pytest.mark.slow
async def test_a_slow_or_failing_receiver_never_slows_the_api(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    settings: Settings,
    admin: TestUser,
    creator: TestUser,
    make_user: Any,
    receiver: WebhookReceiver,
) -> None:
    course, _ = await course_with_lessons(api, db, creator, admin, [None])
    learners = [await make_user("LEARNER") for _ in range(80)]
    worker = worker_thread(settings)
    worker.__enter__()

    async def enroll_all(users: list[TestUser]) -> float:
        started = time.perf_counter()
        for user in users:
            response = await api.post(f"/courses/{course['id']}/enroll", headers=user.headers)
            assert response.status_code == 201
        return time.perf_counter() - started

    baseline = await enroll_all(learners[:40])

    async def all_dispatched() -> bool:
        return not await event_cursors.unread_count(db, "dispatch")

    # Those events are fanned out before the endpoints exist: they are not theirs.
    await eventually(all_dispatched, within=10, what="the first enrollments dispatched")
    receiver.delay = 5.0  # slower than LMS_WEBHOOK_TIMEOUT: every attempt times out
    await register(api, admin, receiver, ["enrollment.created"])
    failing = WebhookReceiver(answer=500)
    failing.start()
    try:
        await register(api, admin, failing, ["enrollment.created"])
        with_dead_receivers = await enroll_all(learners[40:])
        await eventually(all_dispatched, within=10, what="the second enrollments dispatched")

        async def both_tried() -> bool:
            tried = await db.fetchval(
                "SELECT count(DISTINCT endpoint_id) FROM webhook_deliveries WHERE attempts > 0"
            )
            return bool(tried == 2)

        await eventually(both_tried, within=15, what="both receivers tried")
    finally:
        worker.__exit__(None, None, None)
        failing.stop()
    assert with_dead_receivers < baseline * 1.5 + 0.5, (baseline, with_dead_receivers)
    # What each endpoint has still to receive: the delivery that failed, at the head of its
    # queue, and the events after its place in the log.
    parked = await db.fetchval("SELECT count(*) FROM webhook_queue")
    unread = await db.fetchval(
        "SELECT sum(lms_events_unread('webhook:' || id, events)) FROM webhook_endpoints"
    )
    assert parked == 2
    assert parked + unread == 80  # 40 events x 2 endpoints, none lost, none delivered
    assert not await db.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE status = 'DELIVERED'"
    )


async def test_lms_worker_dispatches_and_delivers_what_the_api_only_recorded(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    settings: Settings,
    admin: TestUser,
    creator: TestUser,
    learner: TestUser,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    """The API writes the event row and nothing more (its requests never pay for the fan-out);
    a real `lms worker` process dispatches it and delivers it."""
    await register(api, admin, receiver, ["enrollment.created"])
    course, _ = await course_with_lessons(api, db, creator, admin, [None])
    enrolled = await api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
    assert enrolled.status_code == 201
    event_id = await db.fetchval("SELECT id FROM events WHERE type = 'enrollment.created'")
    await asyncio.sleep(1.0)  # the API's own background work would have dispatched it by now
    recorded = await db.fetchval("SELECT count(*) FROM events")
    assert await event_cursors.unread_count(db, "dispatch") == recorded  # none dispatched
    assert settings.database_url and settings.nats_url and settings.jwt_secret
    env = service_env(
        database_url=settings.database_url,
        nats_url=settings.nats_url,
        data_dir=tmp_path,
        jwt_secret=settings.jwt_secret,
        LMS_WEBHOOK_ALLOW="127.0.0.1/32",
    )
    log = tmp_path / "worker.log"
    worker = spawn(env, "worker", log=log)
    try:
        await until(lambda: bool(receiver.received), 90, "the worker's delivery")
    finally:
        stop(worker)
    assert receiver.ids() == [str(event_id)], log_tail(log)
    assert receiver.rejected == []
