"""`manage.py check --deploy` with production settings reports nothing."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from cryptography.fernet import Fernet

from tests.e2e.conftest import REPO_ROOT


def deploy_check(**overrides: str) -> subprocess.CompletedProcess:
    """Run the check in a fresh process with a production environment (and nothing of the
    test settings), against the test run's database and Redis."""
    environ = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "KEYFLOW_ENV": "production",
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "KEYFLOW_FINGERPRINT_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "DJANGO_ALLOWED_HOSTS": "keyflow.example.com,.keyflow.example.com",
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_with_production_settings_reports_no_issue():
    result = deploy_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_check_deploy_does_report_a_weakened_production_setting():
    """The check above would notice: dropping HSTS in production is reported."""
    result = deploy_check(DJANGO_SECURE_HSTS_SECONDS="0")
    assert result.returncode != 0
    assert "security.W004" in result.stdout + result.stderr
