#!/usr/bin/env bash
# Local stack without Docker: Apache Kafka (KRaft, jars from Maven Central) + Redis (AOF).
#
#   deploy/stack.sh up|down|status     same as `reglink stack up|down|status`
#   deploy/stack.sh topics             wait for Kafka, then create every reglink topic
#
# The one implementation lives in reglink/devstack/stack.py (config templates in deploy/kafka and
# deploy/redis); this script only finds the project's Python so it works without an activated
# virtualenv. Settings come from REGLINK_* variables; the jar cache from REGLINK_CACHE
# (default ~/.cache/reglink).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmd="${1:-}"
case "$cmd" in
  up|down|status|topics) shift ;;
  *) echo "usage: $0 up|down|status|topics" >&2; exit 2 ;;
esac

if [[ -x "$root/.venv/bin/python" ]]; then
  py="$root/.venv/bin/python"
elif command -v python3 >/dev/null && python3 -c 'import reglink' 2>/dev/null; then
  py=python3
else
  echo "stack.sh: no Python with reglink installed; run \`make setup\` first" >&2
  exit 2
fi

cd "$root"
if [[ "$cmd" == topics ]]; then
  exec "$py" -m reglink.devstack.stack topics "$@"
fi
exec "$py" -m reglink.cli stack "$cmd" "$@"
