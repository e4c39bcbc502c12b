"""The learner's journey for load testers' own runs, with Locust: browse the catalog, search,
open a course, enroll, watch its lessons with a heartbeat every 5 s, complete them, and verify
the certificate. `make bench` does not use it (it measures one endpoint at a time with wrk);
this mixes them as real learners would, with their pauses.

Locust is not a dependency of the project: run it from an environment of its own, e.g.

    uvx locust -f bench/locustfile.py --host http://127.0.0.1:8000
    # or: python -m venv /tmp/locust && /tmp/locust/bin/pip install locust
    #     /tmp/locust/bin/locust -f bench/locustfile.py --host http://127.0.0.1:8000

then open http://127.0.0.1:8089 (or add --headless -u 200 -r 20 -t 5m).

Learners: LOCUST_TOKENS names a file of access tokens, one per line (each simulated user takes
the next one). Seeded learners (python -m bench.seed ...) can sign in for it, a login each
(lms.domain.auth.logins), with the server's database and secret:

    LMS_JWT_SECRET=... DATABASE_URL=... .venv/bin/python -c "import bench.locustfile as l; \\
        l.write_tokens('tokens.txt', 1000)"

Without tokens the users only browse and search (anonymous). Other settings: LOCUST_HEARTBEAT
(seconds between heartbeats, default 5), LOCUST_WATCH (heartbeats per lesson before it is
completed, default 6; a real lesson would need duration / 5). The API's per-client search limit
(LMS_SEARCH_RATE_LIMIT) counts every simulated user from one address as one client: raise it on
the server under test, or it answers 429.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

try:
    from locust import HttpUser, between, task
except ImportError:  # imported without Locust (lint, write_tokens): keep the module importable
    HttpUser = object  # type: ignore[assignment,misc]

    def between(_low: float, _high: float) -> Any:
        return None

    def task(weight: Any = 1) -> Any:
        if callable(weight):
            return weight
        return lambda function: function


SEARCH_WORDS = (
    "python",
    "javascript",
    "data",
    "design",
    "docker",
    "machine learning",
    "photography",
    "marketing",
    "guitar",
    "cooking",
    "excel",
    "kubernetes",
    "spanish",
    "finance",
    "writing",
)
HEARTBEAT_SECONDS = float(os.environ.get("LOCUST_HEARTBEAT", "5"))
HEARTBEATS_PER_LESSON = int(os.environ.get("LOCUST_WATCH", "6"))

_tokens_lock = threading.Lock()
_tokens: Any = None


def next_token() -> str | None:
    """The next learner token of LOCUST_TOKENS (cycling), or None to stay anonymous."""
    global _tokens
    with _tokens_lock:
        if _tokens is None:
            path = os.environ.get("LOCUST_TOKENS")
            lines = Path(path).read_text().split() if path else []
            _tokens = itertools.cycle(lines) if lines else iter(())
        return next(_tokens, None)


class Learner(HttpUser):  # type: ignore[misc,valid-type]
    """One learner: browses and searches, then (with a token) takes a course to its end."""

    wait_time = between(1, 5)

    def on_start(self) -> None:
        self.token = next_token()
        self.headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.courses: list[str] = []

    # browsing

    @task(5)
    def browse(self) -> None:
        with self.client.get("/courses", name="/courses", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return
            page = response.json()
        self.courses = [item["id"] for item in page["items"]] or self.courses
        cursor = page.get("nextCursor")
        for _ in range(random.randint(0, 3)):  # noqa: S311 - simulated behaviour
            if not cursor:
                break
            response = self.client.get(f"/courses?cursor={cursor}", name="/courses?cursor")
            if response.status_code != 200:
                break
            cursor = response.json().get("nextCursor")

    @task(2)
    def search(self) -> None:
        word = random.choice(SEARCH_WORDS)  # noqa: S311 - simulated behaviour
        response = self.client.get("/courses", params={"q": word}, name="/courses?q")
        if response.status_code == 200:
            self.courses = [item["id"] for item in response.json()["items"]] or self.courses

    @task(2)
    def open_course(self) -> None:
        if self.courses:
            course = random.choice(self.courses)  # noqa: S311 - simulated behaviour
            self.client.get(f"/courses/{course}", name="/courses/:id")

    # learning: enroll, watch with heartbeats, complete, verify the certificate

    @task(1)
    def take_a_course(self) -> None:
        if not self.token or not self.courses:
            return
        course_id = random.choice(self.courses)  # noqa: S311 - simulated behaviour
        response = self.client.get(f"/courses/{course_id}", name="/courses/:id")
        if response.status_code != 200:
            return
        lessons = response.json().get("lessons", [])
        enrolled = self.client.post(
            f"/courses/{course_id}/enroll", headers=self.headers, name="/courses/:id/enroll"
        )
        if enrolled.status_code not in (200, 201, 409):
            return
        certificate = None
        for lesson in lessons:
            position = 0.0
            duration = float(lesson.get("durationSeconds") or 600)
            for _ in range(HEARTBEATS_PER_LESSON):
                self._sleep(HEARTBEAT_SECONDS)
                position = min(position + HEARTBEAT_SECONDS, duration)
                self.client.post(
                    f"/lessons/{lesson['id']}/progress",
                    json={"positionSeconds": round(position, 3)},
                    headers=self.headers,
                    name="/lessons/:id/progress",
                )
            done = self.client.post(
                f"/lessons/{lesson['id']}/complete",
                headers=self.headers,
                name="/lessons/:id/complete",
            )
            if done.status_code == 200:
                certificate = done.json().get("certificate") or certificate
        if certificate:
            self.client.get(
                f"/certificates/verify/{certificate['serialHash']}",
                name="/certificates/verify/:serial",
            )

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)  # Locust monkey-patches time.sleep: other users run meanwhile


def write_tokens(path: str, count: int) -> None:
    """Access tokens of `count` seeded learners, each of a login of its own opened for it (run
    with the project's environment, with DATABASE_URL and LMS_JWT_SECRET of the server under
    test), one per line in `path`."""
    import asyncio

    import asyncpg

    from bench.seed import BENCH_EMAIL_DOMAIN
    from lms.domain.auth.logins import open_logins
    from lms.settings import load_settings

    settings = load_settings(dict(os.environ))

    async def learners() -> list[str]:
        conn = await asyncpg.connect(os.environ["DATABASE_URL"])
        try:
            rows = await conn.fetch(
                "SELECT id FROM users WHERE role = 'LEARNER' AND is_active "
                "AND email LIKE $1 ORDER BY random() LIMIT $2",
                f"%@{BENCH_EMAIL_DOMAIN}",
                count,
            )
            logins = await open_logins(
                conn, settings, [r["id"] for r in rows], user_agent="bench.locustfile"
            )
            return [login.access_token for login in logins]
        finally:
            await conn.close()

    tokens = asyncio.run(learners())
    Path(path).write_text("\n".join(tokens) + "\n")
    print(f"{len(tokens)} learner tokens in {path} (valid for the token lifetime, ~15 minutes)")
