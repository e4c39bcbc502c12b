"""Real client generators on the served OpenAPI document: TypeScript types, a Python client."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import Outside
from tests.flows import unique_email
from tests.helpers import child_env
from tests.integration.learning.helpers import course_with_lessons
from tests.support.smtp import code_in

ROOT = Path(__file__).resolve().parents[2]
TYPESCRIPT = ROOT / "tests" / "clients" / "typescript"
PYTHON = ROOT / "tests" / "clients" / "python"
# Fields client.ts reads or sends: with any of them renamed in the generated types, tsc must fail.
RENAMED = ("accessToken", "expiresIn", "creator", "positionSeconds", "verifyUrl")


class GeneratorWarning(UserWarning):
    """A client generator had something to say about the served document."""


def run(command: list[str], cwd: Path, timeout: float, **env: str) -> tuple[int, str]:
    """Exit status and the output (stdout and stderr together) of a tool."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=timeout,
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return result.returncode, result.stdout


@contextlib.contextmanager
def install_lock(folder: Path) -> Iterator[None]:
    """One installer at a time: concurrent test sessions share node_modules and the venv."""
    with (folder / ".install.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def digest(*files: Path, salt: str = "") -> str:
    hashed = hashlib.sha256(salt.encode())
    for file in files:
        hashed.update(file.read_bytes())
    return hashed.hexdigest()


def ensure_installed(stamp: Path, wanted: str, install: list[list[str]], cwd: Path) -> None:
    """Run the `install` commands unless `stamp` says they ran for these inputs already."""
    with install_lock(cwd):
        if stamp.is_file() and stamp.read_text() == wanted:
            return
        for command in install:
            status, output = run(command, cwd=cwd, timeout=600)
            assert status == 0, f"{' '.join(command)} failed in {cwd}:\n{output}"
        stamp.write_text(wanted)


def surface(tool: str, problems: list[str]) -> None:
    if problems:
        warnings.warn(GeneratorWarning(f"{tool}: " + "\n".join(problems)), stacklevel=2)


@pytest.fixture
async def served_document(client: httpx.AsyncClient) -> bytes:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    return response.content


# --- TypeScript: openapi-typescript types and a typed client that tsc must accept -------------


def tsc(project: Path) -> tuple[int, str]:
    return run(
        ["npx", "--no", "--", "tsc", "--noEmit", "--pretty", "false", "-p", str(project)],
        cwd=TYPESCRIPT,
        timeout=120,
    )


def test_typescript_client_compiles_against_generated_types(
    served_document: bytes, tmp_path: Path
) -> None:
    """openapi-typescript and tsc (versions pinned in tests/clients/typescript/package-lock.json)
    on the served document; then the same with fields client.ts uses renamed: tsc must object.

    Needs Node.js 18+ with npm. The first run fetches the packages from the npm registry
    (`npm ci`, a few seconds) into tests/clients/typescript/node_modules (git-ignored); later runs
    reuse it until package.json or package-lock.json change. To regenerate the types by hand:
    `cd tests/clients/typescript && LMS_OPENAPI_URL=... npm run generate && npm run typecheck`.
    """
    missing = [tool for tool in ("node", "npm", "npx") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not found: install Node.js 18+ with npm "
            "(apt-get install nodejs npm) to check the TypeScript client"
        )
    ensure_installed(
        TYPESCRIPT / "node_modules" / ".lms-installed",
        digest(TYPESCRIPT / "package.json", TYPESCRIPT / "package-lock.json"),
        [["npm", "ci", "--no-audit", "--no-fund"]],
        cwd=TYPESCRIPT,
    )
    # A project of its own per run, so concurrent sessions never share generated files.
    for name in ("client.ts", "tsconfig.json"):
        shutil.copy(TYPESCRIPT / name, tmp_path / name)
    document, types = tmp_path / "openapi.json", tmp_path / "generated" / "openapi.d.ts"
    document.write_bytes(served_document)
    status, output = run(
        ["npx", "--no", "--", "openapi-typescript", str(document), "-o", str(types)],
        cwd=TYPESCRIPT,
        timeout=120,
        NO_COLOR="1",
    )
    assert status == 0 and types.is_file(), f"openapi-typescript failed:\n{output}"
    surface("openapi-typescript", [line for line in output.splitlines() if "warn" in line.lower()])

    status, output = tsc(tmp_path)
    assert status == 0, f"tsc rejects tests/clients/typescript/client.ts:\n{output}"

    # Proof that the script leans on the generated types rather than on `any`.
    text = types.read_text()
    for name in RENAMED:
        text, count = re.subn(rf"\b{name}(\??):", rf"{name}Renamed\1:", text)
        assert count, f"no field {name} in the generated types"
    types.write_text(text)
    status, output = tsc(tmp_path)
    assert status != 0, "tsc accepts client.ts with renamed fields: the document does not type it"
    unnoticed = [name for name in RENAMED if f"'{name}'" not in output]
    assert not unnoticed, f"tsc did not notice {unnoticed} renamed:\n{output}"


# --- Python: an openapi-python-client package driving a real `lms serve` ----------------------


@pytest.fixture
def generator_python() -> Path:
    """The interpreter of a venv with openapi-python-client and its locked dependencies (they pin
    pydantic, typer and ruff, so never the project's .venv); rebuilt when the lock changes."""
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(uv).is_file():
        pytest.skip("uv not found: `make test` installs it into .tools/ (or pip install uv)")
    venv = PYTHON / ".venv"
    python = venv / "bin" / "python"
    requirements = PYTHON / "requirements.txt"
    pip_sync = [uv, "pip", "sync", "--quiet", "--require-hashes", f"--python={python}"]
    ensure_installed(
        venv / ".lms-installed",
        digest(requirements, salt=f"{sys.base_prefix} {sys.version}"),
        [
            [uv, "venv", "--clear", "--quiet", "--python", sys.executable, str(venv)],
            [*pip_sync, str(requirements)],
        ],
        cwd=PYTHON,
    )
    return python


def summarise_generator_output(output: str) -> list[str]:
    """openapi-python-client's warnings: each distinct problem once, with the operations it hit
    and the smallest schema it quoted."""
    hits: dict[str, tuple[list[str], str]] = {}
    for block in output.split("\nWARNING ")[1:]:
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        operation = lines[0].removeprefix("parsing ").split(" within ")[0]
        # Its messages print some values as object reprs: without them equal problems group.
        problem = re.sub(r"\s*<openapi_python_client[^>]*>", "", " ".join(lines[1:2]))
        quoted = " ".join(line for line in lines[2:] if not line.startswith("If you believe"))
        operations, schema = hits.setdefault(problem, ([], quoted))
        if operation not in operations:
            operations.append(operation)
        if len(quoted) < len(schema):
            hits[problem] = (operations, quoted)
    return [
        f"{problem} in {len(operations)} operation(s) ({', '.join(sorted(operations)[:3])}, ...); "
        f"schema: {schema[:300]}"
        for problem, (operations, schema) in hits.items()
    ]


@pytest.fixture
def python_client(served_lms: str, generator_python: Path, tmp_path: Path) -> Path:
    """A folder holding `lms_client`, generated from the document `served_lms` serves."""
    document = httpx.get(f"{served_lms}/schema/openapi.json", timeout=30)
    assert document.status_code == 200, document.text
    (tmp_path / "openapi.json").write_bytes(document.content)
    generated = tmp_path / "generated"
    status, output = run(
        [
            str(generator_python.parent / "openapi-python-client"),
            "generate",
            "--path",
            str(tmp_path / "openapi.json"),
            "--output-path",
            str(generated / "lms_client"),
            "--meta",
            "none",
            "--overwrite",
        ],
        cwd=tmp_path,
        timeout=180,
        # Its post-generation hooks run `ruff`: the one pinned beside it, not whatever is on PATH.
        PATH=f"{generator_python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    assert status == 0 and (generated / "lms_client").is_dir(), output
    surface("openapi-python-client", summarise_generator_output(output))
    return generated


async def test_generated_python_client_signs_up_and_earns_a_certificate(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user,  # type: ignore[no-untyped-def]
    outside: Outside,
    served_lms: str,
    generator_python: Path,
    python_client: Path,
) -> None:
    """openapi-python-client (pinned with its dependencies in tests/clients/python/requirements.txt)
    generates a client from the document a real `lms serve` serves; tests/clients/python/journey.py
    drives that server with it: register, verify-email with the mailed code, complete-profile,
    /auth/me, the catalog page by page, enroll, heartbeat, complete, verify the certificate.

    Needs uv (`make test` has one): the first run builds tests/clients/python/.venv (git-ignored)
    from the PyPI packages the lock names, later runs reuse it until the lock changes.
    """
    creator, admin = await make_user("CREATOR"), await make_user("ADMIN")
    for title in ("Compilers from scratch", "Type systems"):
        await course_with_lessons(api, db, creator, admin, [60.0], title=title)

    email = unique_email("generated")
    journey = await asyncio.create_subprocess_exec(
        str(generator_python),
        str(PYTHON / "journey.py"),
        served_lms,
        email,
        env=child_env(PYTHONPATH=str(python_client)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert journey.stdout is not None
    try:
        registered = await asyncio.wait_for(journey.stdout.readline(), 60)
        code = code_in(await outside.mailbox.wait_for(email)) if registered else ""
        out, err = await asyncio.wait_for(journey.communicate(f"{code}\n".encode()), 120)
    finally:
        if journey.returncode is None:
            journey.kill()
            await journey.wait()
    log = (python_client.parent / "lms-serve.log").read_text(errors="replace")
    assert journey.returncode == 0, f"{err.decode()}\n--- lms serve:\n{log[-3000:]}"

    assert json.loads(registered)["step"] == "registered"
    report = json.loads(out.decode().splitlines()[-1])
    assert report["step"] == "done" and report["role"] == "LEARNER", report
    assert report["tokenType"].lower() == "bearer"
    name = (await db.fetchval("SELECT name FROM users WHERE id = $1", creator.id)) or ""
    assert report["pages"] == [[f"Type systems by {name}"], [f"Compilers from scratch by {name}"]]
    assert report["lessons"] == ["Lesson 1"] and report["progress"] == 100
    assert report["valid"] is True and report["status"] == "VALID" and not report["unknownValid"]
    assert report["verifyUrl"].startswith("https://lms.example.test/")
