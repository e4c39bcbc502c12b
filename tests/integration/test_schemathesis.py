"""Schemathesis against a real `lms serve`: every operation of the served OpenAPI document, in all
its phases (examples, coverage, fuzzing, stateful), once as a learner, once as a creator and once
as an admin. No answer may be a 5xx, and every answer must be one the document lists for the
operation, with the content type and body schema it gives.

The run is bounded by time (SCHEMATHESIS_SECONDS per role) and seeded, so a failure can be
replayed: the command, the seed and schemathesis' own report are in the assertion message, and
its JUnit report lands in the test's temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest

from lms.settings import Settings
from tests.conftest import Outside, ServerUrls, TestUser
from tests.integration.courses.helpers import published_course
from tests.integration.learning.helpers import course_with_lessons, enroll
from tests.integration.served import lms_serving

# Per role; the fuzzing and stateful phases repeat until it is spent. Raise it for a deeper run.
SECONDS = int(os.environ.get("SCHEMATHESIS_SECONDS", "25"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20261130"))
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
# The auth limits are for people; schemathesis sends hundreds of sign-ins a minute from one
# address, and a wall of 429s would leave the logic behind them unexercised.
FUZZING_LIMITS = {"LMS_AUTH_RATE_LIMIT": "100000", "LMS_SEARCH_RATE_LIMIT": "1000000"}


def schemathesis(base_url: str, user: TestUser, report: Path) -> tuple[int, str, list[str]]:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{base_url}/schema/openapi.json",
        "--phases=examples,coverage,fuzzing,stateful",
        f"--checks={','.join(CHECKS)}",
        f"--max-time={SECONDS}",
        f"--seed={SEED}",
        # One worker: hypothesis describes its filters with ast.parse, which CPython 3.11.7 can
        # refuse from concurrent threads ("AST constructor recursion depth mismatch").
        "--workers=1",
        "--request-timeout=30",
        "--suppress-health-check=all",
        "--report=junit",
        f"--report-junit-path={report}",
        "--output-truncate=true",
        "-H",
        f"Authorization: Bearer {user.token}",
    ]
    result = subprocess.run(
        command,
        cwd=report.parent,  # its own state (.schemathesis/, .hypothesis/) stays out of the tree
        capture_output=True,
        text=True,
        timeout=SECONDS * 4 + 120,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )
    return result.returncode, result.stdout + result.stderr, command


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user,  # type: ignore[no-untyped-def]
    database_url: str,
    server_urls: ServerUrls,
    settings: Settings,
    outside: Outside,
    tmp_path: Path,
) -> None:
    learner = await make_user("LEARNER")
    creator = await make_user("CREATOR")
    admin = await make_user("ADMIN")
    # Something for each role to find: a published course with lessons the learner is enrolled
    # in, and a draft of the creator's.
    published, _ = await course_with_lessons(api, db, creator, admin, [120.0, 60.0])
    await enroll(api, learner, published["id"])
    draft = await api.post(
        "/courses",
        json={"title": "A draft", "description": "Still being written", "price": 10},
        headers=creator.headers,
    )
    assert draft.status_code == 201, draft.text
    # And a priced course the learner has an order of (checkout, orders, refunds).
    priced = await published_course(api, creator, admin, price="19.99")
    ordered = await api.post(f"/courses/{priced['id']}/checkout", headers=learner.headers)
    assert ordered.status_code == 201, ordered.text

    failures = []
    with lms_serving(
        database_url=database_url,
        nats_url=server_urls.nats,
        settings=settings,
        outside=outside,
        folder=tmp_path,
        **FUZZING_LIMITS,
    ) as base_url:
        for user in (learner, creator, admin):
            report = tmp_path / f"schemathesis-{user.role.lower()}.xml"
            status, output, command = schemathesis(base_url, user, report)
            if status != 0:
                failures.append(
                    f"as {user.role} (exit {status}): {' '.join(command[:-2])} "
                    f"-H 'Authorization: Bearer ...'\n{output[-6000:]}"
                )
    log = (tmp_path / "lms-serve.log").read_text(errors="replace")
    server_errors = [line for line in log.splitlines() if '"level":"error"' in line]
    assert not failures, (
        "\n\n".join(failures) + "\nserver errors:\n" + "\n".join(server_errors[-20:])
    )
