"""Settings to try proposed fixes without touching product code, e.g.

    python3 bench/run.py throughput --env DJANGO_SETTINGS_MODULE=bench.settings_tuned \
        --env BENCH_IGNORE_RESULT=1 --env DATABASE_CONN_MAX_AGE=0

BENCH_IGNORE_RESULT=1   CELERY_TASK_IGNORE_RESULT (nobody reads run tasks' Celery results)
BENCH_DB_POOL=N         psycopg connection pool of N per process, no persistent connections
                        (needs `pip install psycopg-pool`, not in requirements)
"""

import os

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES

if os.environ.get("BENCH_IGNORE_RESULT"):
    CELERY_TASK_IGNORE_RESULT = True

if os.environ.get("BENCH_DB_POOL"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2, "max_size": int(os.environ["BENCH_DB_POOL"]), "timeout": 10,
    }
