"""Jetty's one settings file: everything comes from the environment, with defaults that run on one machine.

Embedded defaults: SQLite, local files, kombu's filesystem broker, an in-memory channel layer and the offline
``scripted`` model. ``DATABASE_URL``, ``REDIS_URL`` and ``S3_BUCKET`` switch to PostgreSQL, Redis and S3.
Bad values fail loudly at start-up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None


DEBUG = env_bool("DEBUG", False)
VAR_DIR = Path(env_str("JETTY_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG and env_bool("JETTY_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured("SECRET_KEY must be set in production")
    # One machine, no configuration: keep a generated key beside the data so restarts keep sessions and secrets.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        import secrets

        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()

# Encryption of provider keys and collection secrets at rest. Comma-separated Fernet keys, newest first, so keys
# can be rotated; without it a key is derived from SECRET_KEY.
JETTY_ENCRYPTION_KEYS = [k for k in env_str("JETTY_ENCRYPTION_KEYS").split(",") if k]

CSRF_TRUSTED_ORIGINS = [o for o in env_str("CSRF_TRUSTED_ORIGINS").split(",") if o]
PUBLIC_URL = env_str("JETTY_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")


def public_host(url: str) -> str:
    """The host name of an http(s) URL, as ALLOWED_HOSTS spells it (IPv6 in brackets, no port)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(f"JETTY_PUBLIC_URL must be an http(s) URL with a host, got {url!r}")
    return f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname


# The hosts this site answers for (anything else is a 400, and the WebSocket origin check uses the same list):
# the public URL's host and loopback (sandboxes' gateway relay, health probes), plus JETTY_ALLOWED_HOSTS.
ALLOWED_HOSTS = list(
    dict.fromkeys(
        [public_host(PUBLIC_URL), "127.0.0.1", "localhost", "[::1]"]
        + [h.strip() for h in env_str("JETTY_ALLOWED_HOSTS", env_str("ALLOWED_HOSTS")).split(",") if h.strip()]
    )
)

# Behind a proxy that terminates TLS. The proxy must set X-Forwarded-Proto (and strip it from clients' requests).
JETTY_HTTPS = env_bool("JETTY_HTTPS", False)
if JETTY_HTTPS:
    if not PUBLIC_URL.startswith("https://"):
        raise ImproperlyConfigured(f"JETTY_HTTPS=true needs an https JETTY_PUBLIC_URL, got {PUBLIC_URL!r}")
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("JETTY_HSTS_SECONDS", 31536000)
    SECURE_SSL_REDIRECT = env_bool("JETTY_SSL_REDIRECT", False)
    # Sandboxes call the gateway over plain HTTP on the host (the unix socket, JETTY_SANDBOX_GATEWAY_URL) and
    # balancers probe /healthz without TLS: a redirect would break both.
    SECURE_REDIRECT_EXEMPT = [r"^v1/", r"^healthz$"]
if PUBLIC_URL.startswith("https://"):
    # Cookies that carry a session never travel over plain HTTP when the site is served over TLS.
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    _public_origin = "https://" + PUBLIC_URL.removeprefix("https://").split("/", 1)[0]
    if _public_origin not in CSRF_TRUSTED_ORIGINS:
        CSRF_TRUSTED_ORIGINS.append(_public_origin)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_htmx",
    "csp",
    "axes",
    "orgs",
    "trajectories",
    "runs",
    "evals",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "runs.middleware.RunTokenFence",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "orgs.api_errors.ApiErrorMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Every page's Content-Security-Policy: scripts and styles from this site only, no plugins, no framing, forms post
# here only. Inline style attributes stay allowed (templates and plotly use them); inline script never is.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Login throttling (django-axes) on /login/ and /admin/login/: after JETTY_LOGIN_FAILURE_LIMIT failures for one
# username, or from one address, that username or address is refused for JETTY_LOGIN_COOLOFF_MINUTES (0: until an
# admin unlocks it, in the admin's "Access attempts" or with `manage.py axes_reset`). API tokens are not affected.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("JETTY_LOGIN_FAILURE_LIMIT", 10)
if AXES_FAILURE_LIMIT < 1:
    raise ImproperlyConfigured("JETTY_LOGIN_FAILURE_LIMIT must be 1 or more")
_login_cooloff_minutes = env_float("JETTY_LOGIN_COOLOFF_MINUTES", 15.0)
if _login_cooloff_minutes < 0:
    raise ImproperlyConfigured("JETTY_LOGIN_COOLOFF_MINUTES must be 0 (until unlocked) or more")
AXES_COOLOFF_TIME = _login_cooloff_minutes / 60 or None  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Never wipe failures on a success: a guesser's own login from the same address would reset the count against its
# victim (axes resets by username OR address). Failures expire with the cool-off instead.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_TEMPLATE = "orgs/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "orgs.web.login_client_ip"
# How many reverse proxies in front of the site append to X-Forwarded-For (0: the peer's address is the client's).
JETTY_PROXY_COUNT = env_int("JETTY_PROXY_COUNT", 0)

ROOT_URLCONF = "jetty_site.urls"
ASGI_APPLICATION = "jetty_site.asgi.application"
WSGI_APPLICATION = "jetty_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "orgs.web.org_context",
            ],
            "builtins": ["trajectories.templatetags.jetty_ui"],
        },
    },
]

# Database: SQLite beside the data by default, anything dj-database-url understands via DATABASE_URL.
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    # Connections close at the end of each request by default: under daphne every request runs its sync code in a
    # thread of its own, and a connection kept open for reuse stays with that thread (the load benchmark ran
    # PostgreSQL out of connections in seconds with 60). Use a pooler (PgBouncer) in front for reuse.
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "jetty.sqlite3"),
            "TEST": {"NAME": str(VAR_DIR / "test-jetty.sqlite3")},
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat write to one file: WAL and immediate transactions keep them from tripping over locks.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Served straight from the apps' and the project's static folders, so a server started without collectstatic
# (tests, development) serves the UI's scripts too.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = VAR_DIR / "media"

# Object storage: local files by default, any S3-compatible store when S3_BUCKET is set.
S3_BUCKET = env_str("S3_BUCKET")
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
            "region_name": env_str("S3_REGION", "us-east-1"),
            "access_key": env_str("S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("S3_SECRET_ACCESS_KEY") or None,
            "file_overwrite": False,
            "querystring_expire": 3600,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Broker and channel layer: Redis when REDIS_URL is set, otherwise kombu's filesystem transport (it carries
# tasks between processes) and an in-process channel layer (live views fall back to polling).
REDIS_URL = env_str("REDIS_URL")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"visibility_timeout": 3600}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    _broker_dir = VAR_DIR / "broker"
    (_broker_dir / "queue").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Exchange tables (which queue a routing key reaches) beside the queue, not in the working directory.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# One file declares every periodic task, the queues and the routes that send periodic tasks to their own queue.
from runs.schedule import (  # noqa: E402,F401
    CELERY_BEAT_SCHEDULE,
    CELERY_TASK_DEFAULT_QUEUE,
    CELERY_TASK_QUEUES,
    CELERY_TASK_ROUTES,
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["orgs.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "orgs.api_errors.drf_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["orgs.throttling.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["orgs.api_errors.JSONParser", "rest_framework.parsers.MultiPartParser"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Jetty API",
    "DESCRIPTION": "OpenAI-compatible gateway and agent runner. Authenticate with `Authorization: Bearer <token>`.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "runs.gateway.openapi.add_gateway_paths",
        "orgs.api_errors.add_error_responses",
    ],
}

# The model gateway.
JETTY_MAX_BODY_BYTES = env_int("JETTY_MAX_BODY_BYTES", 32 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = JETTY_MAX_BODY_BYTES
JETTY_GATEWAY_TIMEOUT_S = env_float("JETTY_GATEWAY_TIMEOUT_S", 600.0)
JETTY_SPOOL_DIR = Path(env_str("JETTY_SPOOL_DIR", str(VAR_DIR / "spool")))
JETTY_SPOOL_DIR.mkdir(parents=True, exist_ok=True)
JETTY_RECORD_FLUSH_S = env_float("JETTY_RECORD_FLUSH_S", 0.2)
JETTY_REDACT_MIN_CHARS = env_int("JETTY_REDACT_MIN_CHARS", 1024)
# How long a process may reuse a token/model resolution: revocations take effect within this many seconds.
JETTY_AUTH_CACHE_S = env_float("JETTY_AUTH_CACHE_S", 5.0)
# Requests per API token per window, counted across the API and the gateway in every process (Redis when
# REDIS_URL is set, the database otherwise); 0 turns the limit off. Over it: 429 with Retry-After.
JETTY_RATE_LIMIT_REQUESTS = env_int("JETTY_RATE_LIMIT_REQUESTS", 600)
JETTY_RATE_LIMIT_WINDOW_S = env_float("JETTY_RATE_LIMIT_WINDOW_S", 60.0)
if JETTY_RATE_LIMIT_REQUESTS < 0 or JETTY_RATE_LIMIT_WINDOW_S <= 0:
    raise ImproperlyConfigured("JETTY_RATE_LIMIT_REQUESTS must be 0 or more and JETTY_RATE_LIMIT_WINDOW_S above 0")
# A sandbox's run token has a limit of its own, per run, in the same window (0 turns it off).
JETTY_RUN_RATE_LIMIT_REQUESTS = env_int("JETTY_RUN_RATE_LIMIT_REQUESTS", 300)
if JETTY_RUN_RATE_LIMIT_REQUESTS < 0:
    raise ImproperlyConfigured("JETTY_RUN_RATE_LIMIT_REQUESTS must be 0 or more")

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/runs/"
LOGOUT_REDIRECT_URL = "/login/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"LiteLLM": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}
# Forward OpenAI-wire providers' calls byte for byte (litellm still resolves provider, endpoint and key); off sends
# every call through litellm.acompletion.
JETTY_GATEWAY_DIRECT = env_bool("JETTY_GATEWAY_DIRECT", True)

# Sandboxes.
JETTY_SANDBOX_BACKEND = env_str("JETTY_SANDBOX_BACKEND", "auto")
if JETTY_SANDBOX_BACKEND not in ("auto", "bubblewrap", "docker"):
    raise ImproperlyConfigured("JETTY_SANDBOX_BACKEND must be auto, bubblewrap or docker")
JETTY_SANDBOX_ROOT = Path(env_str("JETTY_SANDBOX_ROOT", str(VAR_DIR / "sandboxes")))
JETTY_SANDBOX_USER = env_str("JETTY_SANDBOX_USER", "jetty-sandbox")
# Sandbox limits a run gets unless it asks for others (`jetty.limits`, a runbook's `limits`), and the most it may ask.
JETTY_SANDBOX_LIMITS = {
    "cpus": env_float("JETTY_SANDBOX_CPUS", 1.0),
    "memory_mb": env_int("JETTY_SANDBOX_MEMORY_MB", 2048),
    "pids": env_int("JETTY_SANDBOX_PIDS", 512),
    "disk_mb": env_int("JETTY_SANDBOX_DISK_MB", 4096),
}
JETTY_SANDBOX_MAX_LIMITS = {
    "cpus": env_float("JETTY_SANDBOX_MAX_CPUS", 4.0),
    "memory_mb": env_int("JETTY_SANDBOX_MAX_MEMORY_MB", 8192),
    "pids": env_int("JETTY_SANDBOX_MAX_PIDS", 4096),
    "disk_mb": env_int("JETTY_SANDBOX_MAX_DISK_MB", 20480),
}
# Model calls an agent run may make through the gateway unless it asks for another budget (`jetty.limits.model_calls`,
# a runbook's `limits.model_calls`), and the most it may ask: past it the run is stopped as a user error.
# Connections one sandbox may hold open to the gateway at once (its own socket in front of daphne's; more wait).
JETTY_SANDBOX_GATEWAY_CONNECTIONS = env_int("JETTY_SANDBOX_GATEWAY_CONNECTIONS", 64)
if JETTY_SANDBOX_GATEWAY_CONNECTIONS < 1:
    raise ImproperlyConfigured("JETTY_SANDBOX_GATEWAY_CONNECTIONS must be 1 or more")
# The contract check's verification script (runs/contract.py): its wall time, in seconds.
JETTY_CONTRACT_TIMEOUT_S = env_int("JETTY_CONTRACT_TIMEOUT_S", 120)
if JETTY_CONTRACT_TIMEOUT_S < 1:
    raise ImproperlyConfigured("JETTY_CONTRACT_TIMEOUT_S must be 1 or more")
# Workspace snapshots (file contents a run's file changes keep, for diffs and the replay's workspace) a run stores
# at most; past it, changes are still recorded, without their content.
JETTY_RUN_MAX_SNAPSHOT_BYTES = env_int("JETTY_RUN_MAX_SNAPSHOT_BYTES", 256 * 1024 * 1024)
if JETTY_RUN_MAX_SNAPSHOT_BYTES < 0:
    raise ImproperlyConfigured("JETTY_RUN_MAX_SNAPSHOT_BYTES must be 0 or more")
JETTY_RUN_MODEL_CALLS = env_int("JETTY_RUN_MODEL_CALLS", 1000)
JETTY_RUN_MAX_MODEL_CALLS = env_int("JETTY_RUN_MAX_MODEL_CALLS", 10_000)
if not 1 <= JETTY_RUN_MODEL_CALLS <= JETTY_RUN_MAX_MODEL_CALLS:
    raise ImproperlyConfigured("JETTY_RUN_MODEL_CALLS must be from 1 to JETTY_RUN_MAX_MODEL_CALLS")
# bubblewrap sandboxes whose memory, pid and CPU cgroups cannot be made fail to start (a platform fault) instead of
# running without limits. Docker applies its own limits.
JETTY_REQUIRE_CGROUPS = env_bool("JETTY_REQUIRE_CGROUPS", False)
# Where sandboxes reach the model gateway (with network on; network off goes through a unix socket relay).
JETTY_SANDBOX_GATEWAY_URL = env_str("JETTY_SANDBOX_GATEWAY_URL", f"{PUBLIC_URL}/v1")
# The pinned agent CLIs (scripts/install-agents), mounted read-only into every sandbox.
JETTY_AGENTS_DIR = env_str("JETTY_AGENTS_DIR", "/opt/jetty/agents")
# Other CLIs run through the generic adapter: a JSON object of name -> config (runs/agents/clis.py GenericCli).
JETTY_GENERIC_AGENTS: dict = json.loads(os.environ.get("JETTY_GENERIC_AGENTS") or "{}")
# A running agent run whose worker has not sent a heartbeat for this long is handed to another worker.
JETTY_RUN_STALLED_S = env_float("JETTY_RUN_STALLED_S", 60.0)
# How long a run may sit queued before the sweeper sends its message again (the broker may have lost it).
JETTY_QUEUED_RESEND_S = env_float("JETTY_QUEUED_RESEND_S", 600.0)
# How long `POST /api/v1/run-sync/…` waits for the run to end before answering 202 with its current state.
JETTY_RUN_SYNC_WAIT_S = env_float("JETTY_RUN_SYNC_WAIT_S", 900.0)
# Fault injection for the crash tests: a worker SIGKILLs itself right after this workflow step has finished.
JETTY_FAULT_KILL_AFTER_STEP = env_str("JETTY_FAULT_KILL_AFTER_STEP", "")
# Webhooks: attempts and backoff (seconds before the second attempt, doubling after).
JETTY_WEBHOOK_MAX_ATTEMPTS = env_int("JETTY_WEBHOOK_MAX_ATTEMPTS", 6)
JETTY_WEBHOOK_BACKOFF_S = env_float("JETTY_WEBHOOK_BACKOFF_S", 5.0)
JETTY_WEBHOOK_TIMEOUT_S = env_float("JETTY_WEBHOOK_TIMEOUT_S", 10.0)
# How late a delivery attempt may be before the sweeper sends it again (its message may have been lost with Redis).
JETTY_WEBHOOK_RESEND_S = env_float("JETTY_WEBHOOK_RESEND_S", 600.0)
# Finished runs older than this many days are deleted daily, with their files (0 keeps everything).
JETTY_RETENTION_DAYS = env_int("JETTY_RETENTION_DAYS", 0)
if JETTY_RETENTION_DAYS < 0:
    raise ImproperlyConfigured("JETTY_RETENTION_DAYS must be 0 (off) or a number of days")
JETTY_MAX_UPLOAD_BYTES = env_int("JETTY_MAX_UPLOAD_BYTES", 256 * 1024 * 1024)

# Fair sharing between orgs (0 turns a limit off). Runs over the concurrency limit wait, queued, for one of the
# org's runs to end; keep it below the workers' slots so another org always finds one free. Beyond the queued-runs
# limit new runs are refused (429). Events past the per-run limit are dropped, with one event that says so.
JETTY_ORG_MAX_CONCURRENT_RUNS = env_int("JETTY_ORG_MAX_CONCURRENT_RUNS", 4)
JETTY_ORG_MAX_QUEUED_RUNS = env_int("JETTY_ORG_MAX_QUEUED_RUNS", 1000)
JETTY_ORG_MAX_EVENTS_PER_RUN = env_int("JETTY_ORG_MAX_EVENTS_PER_RUN", 100_000)
# An event a platform writer stores that does not fit its kind's schema (trajectories.schemas): raise (tests, CI),
# or keep it as a `log` naming the problem and log the error (production: a writer's bug never loses a trajectory).
JETTY_STRICT_EVENTS = env_bool("JETTY_STRICT_EVENTS", False)
# One ingest or import body at most this big (413 before it is parsed), at most this many at once per org and web
# process (429 beyond), and bodies over JETTY_INGEST_OFFLOAD_BYTES are parsed and written in one of
# JETTY_INGEST_PROCESSES helper processes, never in the web process (its event loop serves every other request).
JETTY_ORG_MAX_INGEST_BYTES = env_int("JETTY_ORG_MAX_INGEST_BYTES", 32 * 1024 * 1024)
JETTY_ORG_MAX_CONCURRENT_INGESTS = env_int("JETTY_ORG_MAX_CONCURRENT_INGESTS", 1)
JETTY_INGEST_OFFLOAD_BYTES = env_int("JETTY_INGEST_OFFLOAD_BYTES", 1024 * 1024)
JETTY_INGEST_PROCESSES = env_int("JETTY_INGEST_PROCESSES", 2)
# Bytes an org may keep in files: run artifacts, ingested artifacts and uploads (413 beyond).
JETTY_ORG_MAX_STORED_BYTES = env_int("JETTY_ORG_MAX_STORED_BYTES", 50 * 1024**3)
for _name in (
    "JETTY_ORG_MAX_CONCURRENT_RUNS",
    "JETTY_ORG_MAX_QUEUED_RUNS",
    "JETTY_ORG_MAX_EVENTS_PER_RUN",
    "JETTY_ORG_MAX_INGEST_BYTES",
    "JETTY_ORG_MAX_CONCURRENT_INGESTS",
    "JETTY_ORG_MAX_STORED_BYTES",
    "JETTY_INGEST_OFFLOAD_BYTES",
):
    if globals()[_name] < 0:
        raise ImproperlyConfigured(f"{_name} must be 0 (no limit) or more")
if JETTY_INGEST_PROCESSES < 1:
    raise ImproperlyConfigured("JETTY_INGEST_PROCESSES must be 1 or more")
# The gateway's unix socket (daphne listens on it too): sandboxes with network off reach the gateway only here.
# Network-on sandboxes share the host's network namespace (and reach its loopback services) instead of getting
# their own through slirp4netns: only for hosts where slirp4netns cannot run.
JETTY_SANDBOX_HOST_NETWORK = env_bool("JETTY_SANDBOX_HOST_NETWORK", False)
JETTY_GATEWAY_SOCKET = env_str("JETTY_GATEWAY_SOCKET", str(VAR_DIR / "run" / "gateway.sock"))
JETTY_DOCKER_HOST = env_str("JETTY_DOCKER_HOST", env_str("DOCKER_HOST", "unix:///var/run/jetty-docker/docker.sock"))
JETTY_IMAGE_VERSION = env_str("JETTY_IMAGE_VERSION", "2")
# The outbound policy (orgs/outbound.py): internal receivers the server may call for tenants (webhooks, HTTP
# steps, OTLP export, an org's provider api_base), as comma-separated hosts, IPs or CIDRs, each optionally with
# `:port` (`[v6]:port`). Empty: only public addresses. Operator-set endpoints (JETTY_OTLP_ENDPOINT,
# <PROVIDER>_API_BASE) are trusted and need no entry.
JETTY_OUTBOUND_ALLOW = [e.strip() for e in env_str("JETTY_OUTBOUND_ALLOW").split(",") if e.strip()]
try:
    from orgs.outbound import parse_allow

    parse_allow(JETTY_OUTBOUND_ALLOW)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# OpenTelemetry export of runs (OTLP over HTTP): where spans go when a request names no endpoint, with the headers
# (``name=value,name=value``) sent only there; the ``service.name`` the spans carry.
JETTY_OTLP_ENDPOINT = env_str("JETTY_OTLP_ENDPOINT")
JETTY_OTLP_HEADERS = dict(
    pair.split("=", 1) for pair in env_str("JETTY_OTLP_HEADERS").split(",") if pair.strip() and "=" in pair
)
JETTY_OTLP_SERVICE_NAME = env_str("JETTY_OTLP_SERVICE_NAME", "jetty")
JETTY_OTLP_TIMEOUT_S = env_float("JETTY_OTLP_TIMEOUT_S", 10.0)
if JETTY_OTLP_ENDPOINT and not JETTY_OTLP_ENDPOINT.startswith(("http://", "https://")):
    raise ImproperlyConfigured("JETTY_OTLP_ENDPOINT must be an http(s) URL, such as http://collector:4318/v1/traces")
