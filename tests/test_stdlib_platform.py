"""`platform/` is a source root, never a package: the stdlib `platform` module must win."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_platform_is_the_stdlib_module_in_the_test_process():
    import platform

    assert platform.system() in ("Linux", "Darwin", "Windows")
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()
    assert Path(platform.__file__).parent != REPO_ROOT / "platform"


@pytest.mark.parametrize(
    "argv",
    [
        [sys.executable, "manage.py", "shell", "-c", "import platform; print(platform.system())"],
        [sys.executable, "-c", "import config.celery_app, platform; print(platform.system())"],
    ],
    ids=["manage.py", "celery app"],
)
def test_platform_is_the_stdlib_module_in_other_processes(argv):
    result = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] in ("Linux", "Darwin", "Windows")
