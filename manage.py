#!/usr/bin/env python
"""Django's command-line utility. Puts platform/ (the source root) on the path first."""

import os
import sys
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent / "platform"


def main() -> None:
    sys.path.insert(0, str(SOURCE_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
