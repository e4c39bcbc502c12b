"""granian.toml is read, validated and handed to Granian; mistakes are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from granian.constants import Interfaces, Loops, RuntimeModes

from lms.errors import StartupError
from lms.server import build_server
from lms.settings import load_settings


@pytest.fixture
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_settings({"LMS_DATA_DIR": str(tmp_path), "LMS_PORT": "8765"})


def test_the_shipped_granian_toml_builds_a_server(settings, project_root: Path) -> None:  # type: ignore[no-untyped-def]
    server = build_server(settings, config_path=project_root / "granian.toml")
    assert server.interface == Interfaces.ASGI
    assert server.loop == Loops.uvloop
    assert server.runtime_mode == RuntimeModes.st
    assert server.workers == 2
    assert (server.bind_addr, server.bind_port) == ("127.0.0.1", 8765)
    assert server.http1_settings is not None and server.http1_settings.keep_alive


def test_workers_flag_overrides_the_file(settings, project_root: Path) -> None:  # type: ignore[no-untyped-def]
    server = build_server(settings, config_path=project_root / "granian.toml", workers=1)
    assert server.workers == 1


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nworkerz = 2\n", "workerz is not a Granian setting"),
        ("[server]\nport = 9000\n", "port is not a Granian setting"),
        ('[server]\nloop = "fastest"\n', "loop must be one of"),
        ("[servers]\nworkers = 2\n", "unknown table"),
        ("[server\n", "not valid TOML"),
        ("[http1]\nkeepalive = true\n", "[http1]"),
    ],
)
def test_mistakes_are_reported(settings, tmp_path: Path, toml: str, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "granian.toml"
    path.write_text(toml)
    with pytest.raises(StartupError) as caught:
        build_server(settings, config_path=path)
    assert message in str(caught.value)


def test_missing_explicit_file(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StartupError, match="does not exist"):
        build_server(settings, config_path=tmp_path / "nope.toml")
