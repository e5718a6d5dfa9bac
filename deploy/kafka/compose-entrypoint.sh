#!/bin/sh
# Entrypoint of the `kafka` service in docker-compose.yml (image apache/kafka): the same broker
# as `reglink stack up` in scram mode (reglink/devstack/stack.py).
#
#  1. server.properties = deploy/kafka/server.properties + server-scram.properties (the
#     overlay the local stack renders) + server-compose.properties (listeners only), with the
#     same placeholders filled in; mode 0600 (it holds the admin password).
#  2. Storage formatted once, with one `--add-scram SCRAM-SHA-512=[name=...,password=...]` per
#     principal of $KAFKA_PRINCIPALS (the SCRAM users live in the metadata log, as locally).
#  3. admin-client.properties for the healthcheck (admin principal), then the broker.
#
# Passwords come from KAFKA_PASSWORD_<PRINCIPAL> (`reglink compose-env` writes them to .env).
# KAFKA_HOME, REGLINK_DEPLOY_DIR and REGLINK_KAFKA_CONF default to the container's paths
# (tests/unit/test_compose_consistency.py runs this script outside a container).
set -eu
kafka_home="${KAFKA_HOME:-/opt/kafka}"
deploy="${REGLINK_DEPLOY_DIR:-/deploy/kafka}"
conf="${REGLINK_KAFKA_CONF:-/tmp/reglink-kafka}"

: "${KAFKA_PRINCIPALS:?KAFKA_PRINCIPALS is not set}"
: "${CLUSTER_ID:?CLUSTER_ID is not set}"
: "${KAFKA_PORT:?}" "${KAFKA_CONTROLLER_PORT:?}" "${KAFKA_INTERNAL_PORT:?}" "${KAFKA_LOG_DIRS:?}"

pw_of() {  # pw_of connector-hotel -> value of $KAFKA_PASSWORD_CONNECTOR_HOTEL
  var="KAFKA_PASSWORD_$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')"
  eval "val=\${$var:-}"
  if [ -z "$val" ]; then
    echo "kafka: $var is empty: run \`reglink compose-env\` next to docker-compose.yml" >&2
    exit 1
  fi
  printf '%s' "$val"
}

umask 077
mkdir -p "$conf"
admin_pw="$(pw_of admin)"
sed -e "s|\${KAFKA_PORT}|$KAFKA_PORT|g" \
    -e "s|\${KAFKA_CONTROLLER_PORT}|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|\${KAFKA_INTERNAL_PORT}|$KAFKA_INTERNAL_PORT|g" \
    -e "s|\${KAFKA_LOG_DIRS}|$KAFKA_LOG_DIRS|g" \
    -e "s|\${ADMIN_PASSWORD}|$admin_pw|g" \
    "$deploy/server.properties" "$deploy/server-scram.properties" \
    "$deploy/server-compose.properties" > "$conf/server.properties"
if grep -v '^[[:space:]]*#' "$conf/server.properties" | grep -q '\${'; then
  echo "kafka: unrendered placeholder in server.properties" >&2
  exit 1
fi

set --
for name in $KAFKA_PRINCIPALS; do
  pw="$(pw_of "$name")" || exit 1
  set -- "$@" --add-scram "SCRAM-SHA-512=[name=$name,password=$pw]"
done
mkdir -p "$KAFKA_LOG_DIRS"
"$kafka_home"/bin/kafka-storage.sh format --ignore-formatted -t "$CLUSTER_ID" \
  -c "$conf/server.properties" "$@"

cat > "$conf/admin-client.properties" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
PROPS

exec "$kafka_home"/bin/kafka-server-start.sh "$conf/server.properties"
