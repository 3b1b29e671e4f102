"""Settings for the test suite: PostgreSQL and Redis (never SQLite or a fake Redis), fixed test keys."""

import os

# Set before base.py reads them. Tests get their own Redis database, and each test session its
# own key prefix, so neither a running demo stack nor a second test session is ever touched.
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/propdesk")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("REDIS_KEY_PREFIX", f"propdesk-test-{os.getpid()}")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "dGVzdC1vbmx5LWZlcm5ldC1rZXktMzItYnl0ZXMhISE=")
# No reconciliation gate: tests (and the end-to-end stacks, which inherit this environment) place
# orders on accounts no reconciliation has looked at yet. Tests of the gate turn it on.
os.environ.setdefault("RECONCILIATION_MAX_AGE_SECONDS", "0")

from config.settings.base import *  # noqa: F403

ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# Service and API tests run the whole chain in-process: a task enqueued on commit runs at once.
# End-to-end tests start real Celery workers with their own settings instead.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
RECONCILIATION_MAX_AGE = None

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
