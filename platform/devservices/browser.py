"""Headless Chromium for the browser tests (placeholder until the installer lands)."""

from __future__ import annotations

import shutil
from collections.abc import Callable


def ensure_chromium(say: Callable[[str], None]) -> str | None:
    return shutil.which("chromium")
