"""The one place that reads the process environment.

In development (KEYFLOW_ENV unset or "development") values missing from the environment
fall back to `.data/runtime.env`, which the dev launcher writes while it runs the embedded
services, so `python manage.py shell` in a second terminal finds the same database.
Production never reads that file.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("KEYFLOW_DATA_DIR", REPO_ROOT / ".data"))
RUNTIME_ENV_FILE = DATA_DIR / "runtime.env"

ENVIRONMENTS = ("development", "test", "production")


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values


class Env:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self.name = self._environ.get("KEYFLOW_ENV", "development")
        if self.name not in ENVIRONMENTS:
            raise ImproperlyConfigured(
                f"KEYFLOW_ENV={self.name!r} is not one of {', '.join(ENVIRONMENTS)}."
            )
        self._fallback = {} if self.is_production else _read_env_file(RUNTIME_ENV_FILE)

    @property
    def is_production(self) -> bool:
        return self.name == "production"

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self._environ.get(name)
        if value is None or value == "":
            value = self._fallback.get(name)
        if value is None or value == "":
            return default
        return value

    def required(self, name: str, hint: str) -> str:
        value = self.str(name)
        if value is None:
            raise ImproperlyConfigured(f"{name} is not set. {hint}")
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        value = self.str(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true or false).")

    def int(self, name: str, default: int) -> int:
        return self._number(name, default, int, "an integer")

    def float(self, name: str, default: float) -> float:
        return self._number(name, default, float, "a number")

    def _number(self, name: str, default, parse, what: str):
        value = self.str(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={value!r} is not {what}.") from None

    def list(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self.str(name)
        if value is None:
            return list(default or [])
        return [item.strip() for item in value.split(",") if item.strip()]


env = Env()
