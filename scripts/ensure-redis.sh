#!/usr/bin/env bash
# Make sure Redis answers at REDIS_URL; start a private redis-server when the default address
# is free and one is installed; otherwise say how to get one.
set -euo pipefail
url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
python="${1:-.venv/bin/python}"
ping() { "$python" -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_timeout=1).ping()" "$url" 2>/dev/null; }
ping && exit 0
if [ "$url" != "redis://127.0.0.1:6379/0" ] && [ -n "${REDIS_URL:-}" ]; then
  echo "Redis is not reachable at REDIS_URL=$url. Start it there, or unset REDIS_URL to use a private one." >&2
  exit 1
fi
if command -v redis-server >/dev/null 2>&1; then
  mkdir -p var
  echo "Starting a private redis-server on 127.0.0.1:6379 (data in var/, log var/redis.log)."
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$(pwd)/var" --logfile "$(pwd)/var/redis.log" --pidfile "$(pwd)/var/redis.pid"
  for _ in $(seq 50); do ping && exit 0; sleep 0.1; done
fi
cat >&2 <<MSG
propdesk needs Redis (Celery broker, live updates, last prices) and none answers at $url.
Install one and run this again:
  Debian/Ubuntu: sudo apt-get install redis-server
  macOS:         brew install redis && brew services start redis
or point REDIS_URL at a Redis you already run.
MSG
exit 1
