#!/usr/bin/env bash
# First `make run`: a local .env with DEBUG on and fresh random secrets (never committed).
set -euo pipefail
[ -f .env ] && exit 0
python="${1:-.venv/bin/python}"
secret=$("$python" -c "import secrets; print(secrets.token_urlsafe(50))")
fernet=$("$python" -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")
cat > .env <<ENV
# Written by \`make run\` for local demo use. Real environment variables override these.
DEBUG=1
SECRET_KEY=$secret
FIELD_ENCRYPTION_KEY=$fernet
ENV
echo "Wrote .env (DEBUG=1, new SECRET_KEY and FIELD_ENCRYPTION_KEY)."
