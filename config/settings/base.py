"""Settings for every environment, read from the process environment (see README for each variable)."""

from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from config.env import BASE_DIR, env

# -- Core ---------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/ref/settings/
DEBUG = env.bool("DEBUG", default=False)


def _secret(name: str, debug_default: str) -> str:
    """A secret has a default only in DEBUG; anywhere else a missing secret stops the process."""
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return debug_default
    raise ImproperlyConfigured(f"{name} must be set when DEBUG is off.")


SECRET_KEY = _secret("SECRET_KEY", "dev-only-insecure-secret-key-do-not-use-in-production")
# Fernet key(s) for broker credentials at rest. Several keys, comma-separated, allow rotation:
# the first encrypts, all decrypt.
FIELD_ENCRYPTION_KEY = _secret("FIELD_ENCRYPTION_KEY", "ZGV2LW9ubHktZmVybmV0LWtleS0zMi1ieXRlcyEhISE=")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

TIME_ZONE = "UTC"  # storage and logic are UTC; trading-day code converts with zoneinfo where needed
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = False

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "simple_history",
    "channels",
    "brokers",
    "brokers.paper",
    "accounts",
    "orders",
    "risk",
    "signals_in",
    "dashboards",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

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
            ],
        },
    },
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboards:home"
LOGOUT_REDIRECT_URL = "login"

# -- Database -----------------------------------------------------------------
# The quick demo runs on a SQLite file; DATABASE_URL=postgres://... switches to PostgreSQL,
# which production and the test suite use.
(BASE_DIR / "var").mkdir(exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'propdesk.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, workers, beat, simulator) share the file: WAL lets readers run
    # beside a writer, IMMEDIATE takes the write lock up front so transactions queue instead of
    # failing with "database is locked" half way through.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
else:
    # Django's connection pool (psycopg_pool). daphne runs every request in a fresh thread, so a
    # per-thread persistent connection would be opened and thrown away on each request (~5-10 ms).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env.int("DB_POOL_MAX_SIZE", default=20),
        "timeout": 10,
    }

# -- Redis: Celery broker, channel layer, cache, last prices -------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Prefix for every key propdesk itself writes, so several stacks can share one Redis.
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="propdesk")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX,
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{REDIS_KEY_PREFIX}:asgi", "capacity": 1000, "expiry": 30},
    }
}

# -- Celery -------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:"}
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TASK_TIME_LIMIT = 5 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Sending orders to brokers has its own queue, so a send never waits behind a risk sweep or a
# mark-to-market run (the flatten orders of a breach least of all). A worker started without -Q
# takes both queues; the Procfile runs one worker per queue.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = (Queue("celery"), Queue("orders"), Queue("events"), Queue("reconcile"))
CELERY_TASK_ROUTES = {
    "orders.tasks.send_*": {"queue": "orders"},
    # What brokers push (acks, fills): booked by a listener of its own, off the send path.
    "brokers.tasks.ingest_broker_events_task": {"queue": "events"},
    "orders.tasks.book_broker_reports_task": {"queue": "events"},
    # Whole-account comparisons are slow broker round trips: never in front of risk or sends.
    "orders.tasks.reconcile_all_connections_task": {"queue": "reconcile"},
    "orders.tasks.reconcile_connection_task": {"queue": "reconcile"},
    "orders.tasks.reconcile_account_task": {"queue": "reconcile"},
    # A signal's fan-out places orders for many accounts: never behind a sweep or a reconciliation.
    "signals_in.tasks.fanout.*": {"queue": "orders"},
    "signals_in.tasks.copier.*": {"queue": "orders"},
}
# Without this Celery closes the database connections (and the whole pool) around every task;
# the pool's own checks replace a broken connection.
CELERY_DB_REUSE_MAX = 1000
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    # Safety net for orders whose broker answer never arrived (timeouts, a worker killed
    # between the broker call and recording its answer).
    "reconcile-unresolved-orders": {
        "task": "orders.tasks.reconcile_unresolved_orders_task",
        "schedule": timedelta(seconds=10),
    },
    "check-broker-health": {
        "task": "brokers.tasks.check_broker_health_task",
        "schedule": timedelta(seconds=30),
    },
    # The safety net under the price-driven checks: every active account, every few seconds.
    "risk-sweep": {"task": "risk.tasks.sweep_accounts_task", "schedule": timedelta(seconds=5)},
    # Acts only when an account's trade date is behind, so running every minute both hits
    # 17:00 Chicago and catches up after downtime.
    "roll-trade-date": {"task": "risk.tasks.roll_trade_date_task", "schedule": timedelta(seconds=60)},
    "enforce-trading-hours": {"task": "risk.tasks.enforce_trading_hours_task", "schedule": timedelta(seconds=10)},
    # Every account against its broker: orders, fills, positions (orders.reconciliation).
    "reconcile-accounts": {
        "task": "orders.tasks.reconcile_all_connections_task",
        "schedule": timedelta(seconds=30),
        "kwargs": {"trigger": "beat"},
    },
    # Each feed has its own interval; this asks which are due.
    "poll-prediction-feeds": {"task": "signals_in.tasks.feeds.poll_due_feeds_task", "schedule": timedelta(seconds=5)},
    # Every follower against its leader's desired state (fills also trigger it at once).
    "check-copier-followers": {
        "task": "signals_in.tasks.copier.check_all_followers_task",
        "schedule": timedelta(seconds=5),
    },
    # Reversals whose exit never filled fail after two minutes (and a lost entry task is redone).
    "expire-waiting-reversals": {
        "task": "signals_in.tasks.fanout.expire_waiting_exits_task",
        "schedule": timedelta(seconds=15),
    },
    # Time-driven automation rules (end-of-day close, time windows).
    "run-scheduled-rules": {
        "task": "signals_in.tasks.rules.run_scheduled_rules_task",
        "schedule": timedelta(seconds=30),
    },
}

# -- Webhooks -------------------------------------------------------------------
# How many proxies of ours sit in front of the app and append to X-Forwarded-For (0: none, the
# webhook source address is REMOTE_ADDR). Strategy IP allowlists depend on it being right.
WEBHOOK_TRUSTED_PROXIES = env.int("WEBHOOK_TRUSTED_PROXIES", default=0)

# -- Orders ------------------------------------------------------------------
# An order still SUBMITTED without any broker answer this long after the claim is asked about
# by client id; one the broker has never heard of after ORDER_LOST_AFTER is marked rejected.
# Orders stored together (a fan-out, a flatten) go to the broker in send tasks of at most this
# many, which the order workers take up side by side.
ORDER_SEND_BATCH_SIZE = env.int("ORDER_SEND_BATCH_SIZE", default=50)
ORDER_UNRESOLVED_AFTER = timedelta(seconds=env.int("ORDER_UNRESOLVED_AFTER_SECONDS", default=5))
ORDER_LOST_AFTER = timedelta(seconds=env.int("ORDER_LOST_AFTER_SECONDS", default=30))
# An account whose last reconciliation with its broker failed, or whose last good one is older
# than this, may only reduce exposure (risk.rules.reconciliation_allows). 0 turns the gate off.
# Four beat periods: one slow or failed run alone does not stop trading.
RECONCILIATION_MAX_AGE = (
    timedelta(seconds=seconds) if (seconds := env.int("RECONCILIATION_MAX_AGE_SECONDS", default=120)) else None
)

# Called on commit with fills={account_id: [fill ids]}, once per booked batch: apps downstream of
# orders (the copier, reversals waiting on their exit) hear of fills without orders importing them.
ORDER_FILL_LISTENERS = [
    "signals_in.tasks.fanout.fills_booked",
    "signals_in.tasks.copier.fills_booked",
]

# -- Paper venue ----------------------------------------------------------------
PAPER_BROKER_ENABLED = env.bool("PAPER_BROKER_ENABLED", default=True)
# Where the venue pushes order updates and fills (its "user stream"): the paper adapter's receiver.
PAPER_VENUE_PUSH = "brokers.adapters.paper.deliver_venue_events"
PAPER_TICKS_PER_SECOND = env.float("PAPER_TICKS_PER_SECOND", default=3.0)

# -- REST API -----------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: an unauthenticated call then gets 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["config.api.parsers.DecimalJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "config.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "COERCE_DECIMAL_TO_STRING": True,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "propdesk API",
    "DESCRIPTION": "Operations desk for multi-account futures trading.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# -- Static files ---------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# /static/ is served by Django's ASGI static handler in front of the app (config/asgi.py), so the
# platform runs without a collectstatic step; a deployment can put a proxy or CDN in front instead.

# -- Security -------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the order ticket reads it to send X-CSRFToken
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)

# -- Logging --------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
