"""A real xAPI learning record store for the tests, Ralph (`ralph-malph`, file-system backend), run
as its own process on loopback, and an independent statement validator (npm
`@learninglocker/xapi-validation`, through node).

Both install themselves on first use, from the package registries, into git-ignored folders:
- tests/lrs/.venv from tests/lrs/requirements.txt (hash-locked). Ralph gets a venv of its own
  because `ralph-malph` 5.1.0 pins FastAPI/Starlette, click and huggingface-hub versions older than
  the project's lock: as a dev dependency it would downgrade what faster-whisper runs on.
- tests/lrs/validator/node_modules from its package-lock.json (`npm ci`).
Each is rebuilt only when its lock changes; a file lock keeps concurrent test sessions (pytest-xdist
workers) from installing at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from lms.netutil import free_port

ROOT = Path(__file__).resolve().parents[2]
LRS_DIR = ROOT / "tests" / "lrs"
VALIDATOR_DIR = LRS_DIR / "validator"
XAPI_VERSION = "1.0.3"


@contextlib.contextmanager
def _install_lock(folder: Path) -> Iterator[None]:
    with (folder / ".install.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _digest(*files: Path, salt: str = "") -> str:
    hashed = hashlib.sha256(salt.encode())
    for file in files:
        hashed.update(file.read_bytes())
    return hashed.hexdigest()


def _ensure_installed(stamp: Path, wanted: str, steps: list[list[str]], cwd: Path) -> None:
    with _install_lock(cwd):
        if stamp.is_file() and stamp.read_text() == wanted:
            return
        for step in steps:
            done = subprocess.run(
                step,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=600,
                check=False,
            )
            assert done.returncode == 0, f"{' '.join(step)} failed in {cwd}:\n{done.stdout}"
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(wanted)


def ralph_python() -> Path:
    """The interpreter of tests/lrs/.venv, with Ralph installed from its lock."""
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(uv).is_file():
        pytest.skip("uv not found: `make test` installs it into .tools/ (or pip install uv)")
    venv = LRS_DIR / ".venv"
    python = venv / "bin" / "python"
    requirements = LRS_DIR / "requirements.txt"
    _ensure_installed(
        venv / ".lms-installed",
        _digest(requirements, salt=f"{sys.base_prefix} {sys.version}"),
        [
            [uv, "venv", "--clear", "--quiet", "--python", sys.executable, str(venv)],
            [
                uv,
                "pip",
                "sync",
                "--quiet",
                "--require-hashes",
                f"--python={python}",
                str(requirements),
            ],
        ],
        cwd=LRS_DIR,
    )
    return python


def _ensure_validator() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm not found: install Node.js 18+ (apt-get install nodejs npm)")
    _ensure_installed(
        VALIDATOR_DIR / "node_modules" / ".lms-installed",
        _digest(VALIDATOR_DIR / "package.json", VALIDATOR_DIR / "package-lock.json"),
        [["npm", "ci", "--no-audit", "--no-fund"]],
        cwd=VALIDATOR_DIR,
    )


def xapi_problems(statements: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """For each statement, what @learninglocker/xapi-validation finds wrong (empty: conforms)."""
    _ensure_validator()
    done = subprocess.run(
        ["node", str(VALIDATOR_DIR / "validate.mjs")],  # noqa: S607 - node from PATH
        input=json.dumps(statements),
        cwd=VALIDATOR_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    problems: list[list[dict[str, str]]] = json.loads(done.stdout)
    return problems


@dataclass
class Ralph:
    """One Ralph LRS process with its own folder (credentials, statements) and port. `kill()`
    ends it abruptly (SIGKILL); `start()` brings it back on the same port and folder."""

    __test__ = False

    home: Path
    username: str = "lms"
    password: str = "lrs-test-password"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The LRS endpoint, as LMS_XAPI_ENDPOINT takes it (statements are under it)."""
        return f"http://127.0.0.1:{self.port}/xAPI"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "RALPH_APP_DIR": str(self.home / "app"),
            "RALPH_RUNSERVER_BACKEND": "fs",
            "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(self.home / "data"),
            "RALPH_SENTRY_DSN": "",
        }

    def create_credentials(self) -> None:
        (self.home / "app").mkdir(parents=True, exist_ok=True)
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                str(ralph_python().parent / "ralph"),
                "auth",
                "-u",
                self.username,
                "-p",
                self.password,
                "-s",
                "all",
                "-M",
                "mailto:lrs@lms.dev",
                "-w",
            ],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def start(self, within: float = 60.0) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        log = (self.home / "ralph.log").open("ab")
        self.process = subprocess.Popen(
            [str(ralph_python()), str(LRS_DIR / "serve.py"), "127.0.0.1", str(self.port)],
            env=self._env(),
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.home / "ralph.log").read_text()[-2000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/__lbheartbeat__", timeout=1).is_success:
                    return
            time.sleep(0.1)
        raise AssertionError(f"Ralph did not answer within {within} s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def _headers(self) -> dict[str, str]:
        return {"X-Experience-API-Version": XAPI_VERSION}

    def post(self, statements: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(
            f"{self.endpoint}/statements",
            json=statements,
            auth=self.auth,
            headers=self._headers(),
            timeout=30,
        )

    def statement(self, statement_id: str) -> dict[str, Any] | None:
        answer = httpx.get(
            f"{self.endpoint}/statements",
            params={"statementId": statement_id},
            auth=self.auth,
            headers=self._headers(),
            timeout=30,
        )
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        if "statements" in found:  # Ralph 5.1 answers a statementId query with a result page
            held: list[dict[str, Any]] = found["statements"]
            return held[0] if held else None
        return found

    def all_statements(self) -> list[dict[str, Any]]:
        """Every statement the LRS holds, through its API, page after page."""
        found: list[dict[str, Any]] = []
        url: str | None = f"{self.endpoint}/statements?limit=100"
        while url:
            answer = httpx.get(url, auth=self.auth, headers=self._headers(), timeout=60)
            answer.raise_for_status()
            page = answer.json()
            found.extend(page["statements"])
            more = page.get("more")
            url = f"http://127.0.0.1:{self.port}{more}" if more else None
        return found


@contextlib.contextmanager
def running_ralph(home: Path) -> Iterator[Ralph]:
    """A started Ralph in `home`, stopped afterwards."""
    ralph = Ralph(home)
    ralph.create_credentials()
    ralph.start()
    try:
        yield ralph
    finally:
        ralph.stop()
