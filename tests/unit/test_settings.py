"""Settings parsing: defaults, validation errors as one clear line, secrets kept out of messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lms.errors import StartupError
from lms.settings import Settings, load_settings, markdown_table, redact_url, specs


def test_defaults_without_environment() -> None:
    settings = load_settings({})
    assert settings.database_url is None and settings.nats_url is None
    assert settings.port == 8000 and settings.host == "127.0.0.1"
    assert settings.data_dir == Path(".lms").absolute()
    assert settings.whisper_device == "auto"
    assert settings.cors_origins == ()


def test_values_are_read() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://u:p@db:5432/lms",
            "NATS_URL": "nats://n1:4222,nats://n2:4222",
            "LMS_PORT": "9000",
            "LMS_CORS_ORIGINS": "https://a.test, https://b.test ,",
            "LMS_WHISPER_DEVICE": "CUDA",
            "LMS_DATA_DIR": "/var/lib/lms",
        }
    )
    assert settings.port == 9000
    assert settings.cors_origins == ("https://a.test", "https://b.test")
    assert settings.whisper_device == "cuda"
    assert settings.data_dir == Path("/var/lib/lms")
    assert settings.media_dir == Path("/var/lib/lms/media")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LMS_PORT": "eighty"}, "LMS_PORT must be an integer"),
        ({"LMS_PORT": "70000"}, "LMS_PORT must be between 1 and 65535"),
        ({"DATABASE_URL": "mysql://root@db/lms"}, "DATABASE_URL must be a postgresql://"),
        ({"NATS_URL": "http://nats:4222"}, "NATS_URL must be a nats://"),
        ({"LMS_WHISPER_DEVICE": "tpu"}, "LMS_WHISPER_DEVICE must be one of auto, cpu, cuda"),
        ({"CLOUDINARY_URL": "https://x"}, "CLOUDINARY_URL must be a cloudinary://"),
        ({"LMS_CURRENCY": "dollars"}, "LMS_CURRENCY must be a three-letter ISO 4217 code"),
        ({"LMS_CURRENCY": "JPY"}, "LMS_CURRENCY: jpy is not counted in hundredths"),
        ({"LMS_STRIPE_API_BASE": "ftp://stripe"}, "LMS_STRIPE_API_BASE must be a http://"),
    ],
)
def test_bad_values_are_refused_with_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(StartupError) as caught:
        load_settings(env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_currency_is_kept_in_lower_case() -> None:
    assert load_settings({"LMS_CURRENCY": "EUR"}).currency == "eur"
    assert load_settings({}).currency == "usd"


def test_passwords_never_appear_in_errors() -> None:
    with pytest.raises(StartupError) as caught:
        load_settings({"DATABASE_URL": "mysql://root:hunter2secret@db/lms"})
    assert "hunter2secret" not in str(caught.value)
    assert redact_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert redact_url("postgresql://h/db") == "postgresql://h/db"


def test_child_environment_round_trips() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://h/db", "NATS_URL": "nats://h:4222"})
    again = load_settings(settings.to_environ())
    assert (again.database_url, again.nats_url, again.port) == (
        settings.database_url,
        settings.nats_url,
        settings.port,
    )


def test_importing_lms_leaves_the_environment_alone() -> None:
    """Importing the package (and building the app's modules) changes no environment variable:
    only commands that need one (migrations, for Piccolo) set it for themselves."""
    script = (
        "import os; before = dict(os.environ); "
        "import lms, lms.app, lms.cli, lms.worker, lms.db.engine, lms.db.tables; "
        "after = dict(os.environ); "
        "changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)); "
        "print(','.join(changed))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PICCOLO_CONF"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_the_readme_table_is_the_declared_settings() -> None:
    """Each setting is declared once (lms.settings); the README shows exactly that table."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert markdown_table() in readme, (
        "README's settings table is stale: paste python -m lms.settings"
    )
    variables = {spec.env for _, spec in specs()}
    assert len(variables) == len(specs())  # one variable, one setting


def test_every_declared_default_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings({})
    assert defaults == Settings(log_format=defaults.log_format)
    assert defaults.log_format in ("json", "text")


def test_log_format_follows_the_terminal_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert load_settings({}).log_format == "text"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert load_settings({}).log_format == "json"
    assert load_settings({"LMS_LOG_FORMAT": "TEXT"}).log_format == "text"
