"""The one `env` object every settings module reads from (django-environ)."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# A local .env (written by `make run` on first use) fills in what the shell does not set;
# real environment variables always win.
if (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"), overwrite=False)
