"""Build the Granian server for `lms serve` from granian.toml (Granian reads no config file itself).

The file's [server] table holds Granian constructor arguments by name; [http1] and [http2] hold
HTTP settings. Address and port always come from LMS_HOST / LMS_PORT (or --host/--port), so one
file serves every environment.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tomllib
from enum import Enum
from pathlib import Path
from typing import Any

from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes, TaskImpl
from granian.http import HTTP1Settings, HTTP2Settings
from granian.log import LogLevels
from granian.server.common import AbstractServer

from lms.errors import StartupError
from lms.observability.logs import logging_dict_config
from lms.settings import Settings

DEFAULT_CONFIG = Path("granian.toml")
_ENUMS: dict[str, type[Enum]] = {
    "interface": Interfaces,
    "http": HTTPModes,
    "runtime_mode": RuntimeModes,
    "loop": Loops,
    "task_impl": TaskImpl,
    "log_level": LogLevels,
}
# Set by us, not by the file: the app target, where to listen, and logging (our JSON format).
_RESERVED = {
    "target",
    "address",
    "port",
    "factory",
    "log_dictconfig",
    "http1_settings",
    "http2_settings",
}


def load_granian_config(path: Path | None) -> dict[str, Any]:
    """The [server], [http1] and [http2] tables of granian.toml; {} when there is no file."""
    if path is None:
        if not DEFAULT_CONFIG.exists():
            return {}
        path = DEFAULT_CONFIG
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise StartupError(f"Granian config {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise StartupError(f"Granian config {path} is not valid TOML: {exc}") from None
    unknown_tables = set(data) - {"server", "http1", "http2"}
    if unknown_tables:
        raise StartupError(
            f"{path}: unknown table(s) {sorted(unknown_tables)}; use [server], [http1], [http2]"
        )
    return data


def _server_kwargs(table: dict[str, Any], path_hint: str) -> dict[str, Any]:
    accepted = set(inspect.signature(Granian.__init__).parameters) - {"self"} - _RESERVED
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in accepted:
            raise StartupError(f"{path_hint}: [server] {key} is not a Granian setting we accept")
        if key in _ENUMS:
            try:
                value = _ENUMS[key](value)
            except ValueError:
                choices = ", ".join(str(m.value) for m in _ENUMS[key])
                raise StartupError(
                    f"{path_hint}: [server] {key} must be one of {choices}"
                ) from None
        kwargs[key] = value
    return kwargs


def _dataclass_settings(cls: type[Any], table: dict[str, Any], name: str, path_hint: str) -> Any:
    try:
        return cls(**table)
    except TypeError as exc:
        raise StartupError(f"{path_hint}: [{name}] {exc}") from None


def build_server(
    settings: Settings, *, config_path: Path | None = None, workers: int | None = None
) -> AbstractServer[Any]:
    config_path = config_path or settings.granian_config
    data = load_granian_config(config_path)
    hint = str(config_path or DEFAULT_CONFIG)
    kwargs = _server_kwargs(data.get("server", {}), hint)
    if workers is not None:
        kwargs["workers"] = workers
    if "http1" in data:
        kwargs["http1_settings"] = _dataclass_settings(HTTP1Settings, data["http1"], "http1", hint)
    if "http2" in data:
        kwargs["http2_settings"] = _dataclass_settings(HTTP2Settings, data["http2"], "http2", hint)
    kwargs.setdefault("interface", Interfaces.ASGI)
    return Granian(
        "lms.app:serve_app",
        factory=True,
        address=settings.host,
        port=settings.port,
        log_dictconfig=logging_dict_config(settings.log_level, settings.log_format),
        **kwargs,
    )


def prepare_multiprocess_metrics(settings: Settings) -> None:
    """Give Granian's workers one fresh directory to share Prometheus samples through (set in
    this process's environment, which the workers inherit)."""
    metrics_dir = settings.data_dir / "metrics" / str(settings.port)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
