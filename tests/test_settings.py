"""Base settings refuse to start without secrets unless DEBUG is on; storage and logic run in UTC.

Each case imports config.settings.base in a fresh interpreter. config/env.py fills missing
variables from /work/main/.env when it exists, but never overrides one that is set, even to "":
so variables are set to "" explicitly, or the settings package is copied to a folder with no .env.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

PROJECT = Path(__file__).resolve().parent.parent
SCRIPT = (
    "from django.conf import settings; "
    "print(settings.TIME_ZONE, settings.USE_TZ, settings.DEBUG, bool(settings.SECRET_KEY), "
    "bool(settings.FIELD_ENCRYPTION_KEY), sep='|')"
)
SECRETS = ("SECRET_KEY", "FIELD_ENCRYPTION_KEY")


def run_settings(*, root: Path, cwd: Path, **overrides: str | None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    environment.update(DJANGO_SETTINGS_MODULE="config.settings.base", PYTHONPATH=str(root))
    for name, value in overrides.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def settings_copy(tmp_path: Path) -> Path:
    """The settings package alone, in a folder with no .env: unset variables stay unset."""
    shutil.copytree(PROJECT / "config", tmp_path / "config", ignore=shutil.ignore_patterns("__pycache__"))
    assert not (tmp_path / ".env").exists()
    return tmp_path


def test_missing_secret_key_stops_the_process_when_debug_is_off(tmp_path):
    result = run_settings(root=PROJECT, cwd=tmp_path, DEBUG="", SECRET_KEY="", FIELD_ENCRYPTION_KEY="")

    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off." in result.stderr


def test_missing_secrets_stop_the_process_when_debug_is_unset(settings_copy):
    result = run_settings(root=settings_copy, cwd=settings_copy, DEBUG=None, SECRET_KEY=None, FIELD_ENCRYPTION_KEY=None)

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off." in result.stderr


def test_missing_field_encryption_key_stops_the_process_when_debug_is_off(tmp_path):
    result = run_settings(root=PROJECT, cwd=tmp_path, DEBUG="0", SECRET_KEY="a-real-secret", FIELD_ENCRYPTION_KEY="")

    assert result.returncode != 0
    assert "ImproperlyConfigured: FIELD_ENCRYPTION_KEY must be set when DEBUG is off." in result.stderr


def test_debug_imports_with_development_defaults(settings_copy):
    result = run_settings(root=settings_copy, cwd=settings_copy, DEBUG="1", SECRET_KEY=None, FIELD_ENCRYPTION_KEY=None)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "UTC|True|True|True|True"


def test_debug_imports_with_empty_secrets_in_the_real_project(tmp_path):
    result = run_settings(root=PROJECT, cwd=tmp_path, DEBUG="1", SECRET_KEY="", FIELD_ENCRYPTION_KEY="")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "UTC|True|True|True|True"


def test_production_like_environment_imports_in_utc(tmp_path):
    result = run_settings(root=PROJECT, cwd=tmp_path, DEBUG="0", SECRET_KEY="s3cret", FIELD_ENCRYPTION_KEY="k3y")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "UTC|True|False|True|True"


def test_test_settings_run_in_utc_with_aware_datetimes():
    assert settings.TIME_ZONE == "UTC"
    assert settings.USE_TZ is True
