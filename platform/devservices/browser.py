"""Headless Chromium for the browser tests: Debian's `chromium` package, installed on demand.

Browsers are never downloaded any other way (no `playwright install`): the distribution's
package is signed, updated with the system and works offline once installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

APT_UPDATE_TIMEOUT = 300
APT_INSTALL_TIMEOUT = 900
# Wait this long for another apt/dpkg run to release its lock instead of failing at once.
APT_LOCK_TIMEOUT = 120


def ensure_chromium(say: Callable[[str], None]) -> str | None:
    """Path of a Chromium binary, installing Debian's package when possible; None if not."""
    found = shutil.which("chromium")
    if found:
        return found
    reason = _cannot_install_reason()
    if reason:
        say(f"Chromium not found and {reason}: browser tests will be skipped.")
        return None
    return _apt_install_chromium(say)


def _cannot_install_reason() -> str | None:
    if not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        return "this is not a Debian-like system with apt-get"
    if os.geteuid() != 0:
        return "installing it needs root (run `apt-get install chromium` as root)"
    return None


def _apt_install_chromium(say: Callable[[str], None]) -> str | None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT}"]
    steps = [
        (["apt-get", *lock, "update", "-q"], APT_UPDATE_TIMEOUT),
        (["apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", "chromium"],
         APT_INSTALL_TIMEOUT),
    ]
    started = time.monotonic()
    say("Chromium not found; installing Debian's chromium package with apt-get …")
    for argv, timeout in steps:
        step_started = time.monotonic()
        say(f"  $ {' '.join(argv)}")
        try:
            done = subprocess.run(
                argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            say(f"Chromium install failed: `{' '.join(argv)}` took over {timeout}s: "
                "browser tests will be skipped.")
            return None
        except OSError as exc:
            say(f"Chromium install failed ({exc}): browser tests will be skipped.")
            return None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            say(f"Chromium install failed: `{' '.join(argv)}` exited {done.returncode} "
                f"({tail[0]}): browser tests will be skipped.")
            return None
        say(f"  done in {time.monotonic() - step_started:.0f}s")
    found = shutil.which("chromium")
    if not found:
        say("apt-get installed chromium but no `chromium` is on PATH: browser tests will be skipped.")
        return None
    say(f"Installed Chromium at {found} in {time.monotonic() - started:.0f}s.")
    return found
