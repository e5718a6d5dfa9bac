#!/bin/sh
# Entrypoint of the `redis` service in docker-compose.yml (image redis:7): the same Redis as
# `reglink stack up` in scram mode (reglink/devstack/stack.py).
#
#  1. redis.conf = deploy/redis/redis.conf (AOF, same template) with the container's port and
#     data dir, listening on the compose network instead of loopback;
#  2. + the ACL users of deploy/redis/compose-users.acl (default user off; admin, worker,
#     console), each password only as its SHA-256 (#hash), from REDIS_PASSWORD_<USER>
#     (`reglink compose-env` writes them to .env); mode 0600;
#  3. the image's own entrypoint, which drops root and runs redis-server on that file.
#
# REGLINK_DEPLOY_DIR, REGLINK_REDIS_CONF, REDIS_CONTAINER_PORT, REDIS_DATA_DIR and REDIS_EXEC
# default to the container's paths, port and command (tests/unit/test_compose_consistency.py
# runs this script outside a container, on a free port).
set -eu
deploy="${REGLINK_DEPLOY_DIR:-/deploy/redis}"
conf="${REGLINK_REDIS_CONF:-/tmp/reglink-redis/redis.conf}"
port="${REDIS_CONTAINER_PORT:-6379}"
data="${REDIS_DATA_DIR:-/data}"

hash_of() {  # hash_of worker -> SHA-256 hex of $REDIS_PASSWORD_WORKER
  var="REDIS_PASSWORD_$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')"
  eval "val=\${$var:-}"
  if [ -z "$val" ]; then
    echo "redis: $var is empty: run \`reglink compose-env\` next to docker-compose.yml" >&2
    exit 1
  fi
  printf '%s' "$val" | sha256sum | cut -d' ' -f1
}

umask 077
mkdir -p "$(dirname "$conf")"
h_admin="$(hash_of admin)"
h_worker="$(hash_of worker)"
h_console="$(hash_of console)"
{
  sed -e "s|\${REDIS_PORT}|$port|g" -e "s|\${REDIS_DIR}|$data|g" "$deploy/redis.conf"
  echo
  # The default user is off with no password flag (resetpass), so protected mode does not
  # refuse the other containers; every user needs its password.
  echo "# --- docker compose: reachable on the compose network; only ACL users below ---"
  echo "bind * -::*"
  echo
  grep -v '^[[:space:]]*#' "$deploy/compose-users.acl" \
    | sed -e "s|\${REDIS_HASH_ADMIN}|$h_admin|g" -e "s|\${REDIS_HASH_WORKER}|$h_worker|g" \
          -e "s|\${REDIS_HASH_CONSOLE}|$h_console|g"
} > "$conf"
if grep -v '^[[:space:]]*#' "$conf" | grep -q '\${'; then
  echo "redis: unrendered placeholder in redis.conf" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ] && id redis >/dev/null 2>&1; then
  chown -R redis:redis "$(dirname "$conf")"
fi
exec ${REDIS_EXEC:-docker-entrypoint.sh} redis-server "$conf"
