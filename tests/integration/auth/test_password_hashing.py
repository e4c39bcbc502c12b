"""argon2 (64 MiB and some 100 ms of CPU a hash) runs in a small executor of its own with a
bounded queue: a flood of sign-ins is refused with 503 rather than piling up, it cannot stall the
file I/O and other work of the default thread pool, and requests that cannot succeed (a verified
address, a rate-limited one, a wrong reset code) never reach it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from lms.domain.auth.passwords import hashing_executor
from lms.integrations.storage import LocalVideoStorage
from lms.settings import Settings
from tests.conftest import Outside
from tests.flows import (
    STRONG_PASSWORD,
    bearer,
    profile,
    register_and_verify,
    sign_up,
    unique_email,
)
from tests.support.smtp import code_in

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
# However slow the machine, a request that is not stuck ends long before this; it only turns a
# hang (the behaviour under test going wrong) into a failure instead of a stuck run.
HANG_GUARD_SECONDS = 60


class Account(Protocol):
    email: str
    password: str


MakeUser = Callable[..., Awaitable[Account]]


@contextlib.asynccontextmanager
async def hashing_saturated() -> AsyncIterator[None]:
    """Every thread and queue place of the password-hashing executor taken by a job that waits
    until the block ends."""
    executor = hashing_executor()
    release = threading.Event()
    jobs = [asyncio.ensure_future(executor.run(release.wait)) for _ in range(executor.capacity)]
    await asyncio.sleep(0)  # let them take their places
    try:
        yield
    finally:
        release.set()
        await asyncio.gather(*jobs)


def assert_busy(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["detail"]


async def test_sign_in_does_not_wait_for_the_default_thread_pool(
    api: httpx.AsyncClient, make_user: MakeUser
) -> None:
    """Every thread of the event loop's default pool (file I/O, PDF rendering, zxcvbn) is busy:
    a sign-in, which hashes, completes all the same, because argon2 runs elsewhere."""
    user = await make_user()
    loop = asyncio.get_running_loop()
    release = threading.Event()
    # More jobs than the default pool ever has threads (min(32, cores + 4)): all of them busy.
    blockers = [loop.run_in_executor(None, release.wait) for _ in range(33)]
    try:
        login = api.post("/auth/login", json={"email": user.email, "password": user.password})
        response = await asyncio.wait_for(login, HANG_GUARD_SECONDS)
        assert not any(b.done() for b in blockers)  # it finished while the pool was still busy
    finally:
        release.set()
        await asyncio.gather(*blockers)
    assert response.status_code == 200, response.text


async def test_a_saturated_hashing_executor_refuses_at_once_and_file_io_goes_on(
    api: httpx.AsyncClient, make_user: MakeUser, settings: Settings, tmp_path: Path
) -> None:
    user = await make_user()
    key = f"lessons/{uuid.uuid4()}/v1.mp4"
    shutil.copyfile(FIXTURES / "tiny.mp4", tmp_path / "upload.part")
    storage = LocalVideoStorage(settings)
    await storage.save(tmp_path / "upload.part", key=key)
    url = urlsplit(storage.playback_url(key, ttl_seconds=600))
    right = {"email": user.email, "password": user.password}

    async with hashing_saturated():
        # Refused without queueing: the answer comes while every hashing job is still held.
        login = await asyncio.wait_for(api.post("/auth/login", json=right), HANG_GUARD_SECONDS)
        assert_busy(login)
        unknown = {"email": unique_email(), "password": "whatever-pass"}
        assert_busy(await api.post("/auth/login", json=unknown))
        # The default pool is free: a video is read from disk meanwhile.
        video = await asyncio.wait_for(api.get(f"{url.path}?{url.query}"), HANG_GUARD_SECONDS)
        assert video.status_code == 200 and video.content == (FIXTURES / "tiny.mp4").read_bytes()
    # Once the flood is over, sign-in works, and the refusals locked nothing.
    assert (await api.post("/auth/login", json=right)).status_code == 200


async def test_register_refuses_before_hashing(api: httpx.AsyncClient, outside: Outside) -> None:
    """A verified address (409) and a rate-limited one (429) are refused while hashing is
    saturated: they never asked for a hash. A request that can succeed does, and gets 503."""
    taken = unique_email()
    await sign_up(api, outside.mailbox, taken)
    fresh = unique_email()
    assert (await api.post("/auth/register", json={"email": fresh})).status_code == 201
    async with hashing_saturated():
        verified = await api.post(
            "/auth/register", json={"email": taken, "password": STRONG_PASSWORD}
        )
        assert verified.status_code == 409, verified.text
        # A code went to `fresh` a moment ago: one per 30 s.
        throttled = await api.post(
            "/auth/register", json={"email": fresh, "password": STRONG_PASSWORD}
        )
        assert throttled.status_code == 429, throttled.text
        weak = await api.post(
            "/auth/register", json={"email": unique_email(), "password": "a" * 12}
        )
        assert weak.status_code == 400, weak.text
        newcomer = unique_email()
        busy = await api.post(
            "/auth/register", json={"email": newcomer, "password": STRONG_PASSWORD}
        )
        assert_busy(busy)
    # The refusal used up nothing: the newcomer registers at once, no 30 s wait.
    again = await api.post("/auth/register", json={"email": newcomer, "password": STRONG_PASSWORD})
    assert again.status_code == 201, again.text


async def test_complete_profile_refuses_before_hashing(
    api: httpx.AsyncClient, outside: Outside
) -> None:
    """A profile completed already, a username taken, a weak password: refused while hashing is
    saturated, so none of them asked for a hash."""
    completed = await register_and_verify(api, outside.mailbox, unique_email())
    first = await api.post(
        "/auth/complete-profile", json=profile("taken_name"), headers=bearer(completed)
    )
    assert first.status_code == 200, first.text
    pending = await register_and_verify(api, outside.mailbox, unique_email())
    async with hashing_saturated():
        again = await api.post("/auth/complete-profile", json=profile(), headers=bearer(completed))
        assert again.status_code == 409 and "complete" in again.json()["detail"], again.text
        taken = await api.post(
            "/auth/complete-profile", json=profile("taken_name"), headers=bearer(pending)
        )
        assert taken.status_code == 409 and "taken" in taken.json()["detail"], taken.text
        weak = await api.post(
            "/auth/complete-profile", json=profile(password="123456789012"), headers=bearer(pending)
        )
        assert weak.status_code == 400, weak.text
        assert_busy(
            await api.post("/auth/complete-profile", json=profile(), headers=bearer(pending))
        )
    finished = await api.post("/auth/complete-profile", json=profile(), headers=bearer(pending))
    assert finished.status_code == 200, finished.text


async def test_reset_password_checks_the_code_before_the_new_password(
    api: httpx.AsyncClient, outside: Outside
) -> None:
    email = unique_email()
    await sign_up(api, outside.mailbox, email)
    assert (await api.post("/user-auth/forgot-password", json={"email": email})).status_code == 202
    code = code_in(await outside.mailbox.wait_for(email, count=2))
    wrong_code = f"{(int(code) + 1) % 10**6:06d}"
    async with hashing_saturated():
        # A wrong code is answered as such, whatever the password, and costs neither zxcvbn's
        # estimate nor a hash (it is answered while hashing is saturated).
        for password in ("123456789012", "violet-harbour-lantern-7"):
            wrong = await api.post(
                "/user-auth/reset-password",
                json={"email": email, "otp": wrong_code, "newPassword": password},
            )
            assert wrong.status_code == 400 and "wrong code" in wrong.json()["detail"], wrong.text
        # The right code with a weak password: the password is refused and the code survives.
        weak = await api.post(
            "/user-auth/reset-password",
            json={"email": email, "otp": code, "newPassword": "123456789012"},
        )
        assert weak.status_code == 400 and "password" in weak.json()["detail"], weak.text
        # The right code with a good password needs a hash: busy, and the code survives again.
        assert_busy(
            await api.post(
                "/user-auth/reset-password",
                json={"email": email, "otp": code, "newPassword": "violet-harbour-lantern-7"},
            )
        )
    done = await api.post(
        "/user-auth/reset-password",
        json={"email": email, "otp": code, "newPassword": "violet-harbour-lantern-7"},
    )
    assert done.status_code == 200, done.text
    login = {"email": email, "password": "violet-harbour-lantern-7"}
    assert (await api.post("/auth/login", json=login)).status_code == 200


async def test_two_resets_with_one_code_let_one_through(
    api: httpx.AsyncClient, outside: Outside
) -> None:
    """The code is spent in the transaction that sets the password: of two concurrent resets
    with it, one sets its password and the other is refused."""
    email = unique_email()
    await sign_up(api, outside.mailbox, email)
    await api.post("/user-auth/forgot-password", json={"email": email})
    code = code_in(await outside.mailbox.wait_for(email, count=2))
    passwords = ["violet-harbour-lantern-7", "copper-meadow-whistle-3"]
    answers = await asyncio.gather(
        *(
            api.post(
                "/user-auth/reset-password",
                json={"email": email, "otp": code, "newPassword": p},
            )
            for p in passwords
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 400], [a.text for a in answers]
    winner = passwords[[a.status_code for a in answers].index(200)]
    for password in passwords:
        login = await api.post("/auth/login", json={"email": email, "password": password})
        assert login.status_code == (200 if password == winner else 401), login.text
