#!/usr/bin/env python3
"""Keyflow's two commands, needing nothing but Python 3.11:

    python3 dev.py run     # set up and run the whole platform locally
    python3 dev.py test    # set up and run the whole test suite

The first call creates .venv/ and installs requirements-dev.txt into it; later calls reuse
it until a requirements file changes. Then it re-runs itself inside .venv.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
VENV = REPO_ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".keyflow-requirements"
REQUIREMENTS = ["requirements.txt", "requirements-dev.txt"]


def requirements_digest() -> str:
    digest = hashlib.sha256()
    for name in REQUIREMENTS:
        digest.update((REPO_ROOT / name).read_bytes())
    return digest.hexdigest()


def base_python() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if found:
        return found
    sys.exit("Keyflow needs Python 3.11 (python3.11 was not found on PATH).")


def ensure_venv() -> None:
    digest = requirements_digest()
    if VENV_PYTHON.exists() and STAMP.exists() and STAMP.read_text() == digest:
        return
    if not VENV_PYTHON.exists():
        print("[keyflow] Creating .venv …", flush=True)
        subprocess.run([base_python(), "-m", "venv", str(VENV)], check=True)
    print("[keyflow] Installing requirements into .venv (first run only) …", flush=True)
    subprocess.run(
        [str(VENV_PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q",
         "-r", str(REPO_ROOT / "requirements-dev.txt")],
        check=True,
    )
    STAMP.write_text(digest)


def main() -> int:
    in_venv = Path(sys.prefix).resolve() == VENV.resolve()
    if not in_venv:
        ensure_venv()
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
    sys.path.insert(0, str(REPO_ROOT / "platform"))
    from devservices.launcher import main as launch

    return launch(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
