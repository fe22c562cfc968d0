"""gunicorn settings for the web tier: ASGI through uvicorn workers, so blocking waits and
SSE streams hold no thread per client.

    gunicorn -c platform/config/gunicorn_conf.py config.asgi:application

This file is read by gunicorn, not Django; the few knobs below come from the environment.
"""

import os

chdir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")  # platform/
bind = os.environ.get("KEYFLOW_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("KEYFLOW_WEB_WORKERS", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
# Streams and blocking runs last as long as a run (KEYFLOW_BLOCKING_TIMEOUT); gunicorn's
# timeout is about a silent worker, which an async worker never is while its loop runs.
timeout = int(os.environ.get("KEYFLOW_WEB_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
accesslog = "-" if os.environ.get("KEYFLOW_ACCESS_LOG", "") == "true" else None
forwarded_allow_ips = os.environ.get("KEYFLOW_FORWARDED_ALLOW_IPS", "127.0.0.1")
