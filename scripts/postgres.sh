#!/usr/bin/env bash
# A local PostgreSQL for the team backends (MLflow backend store, Optuna storage, the promotion
# lock, the service's template store), from Debian's packages. Idempotent.
#
#   bash scripts/postgres.sh start   # installs postgresql if missing, starts a cluster, prints
#                                    # SPEAKEROPS_TEST_POSTGRES_URL=postgresql://...
#   bash scripts/postgres.sh stop
#
# PGDATA (default /tmp/speakerops-pg) and PGPORT (default 55432) choose the cluster; it listens
# on 127.0.0.1 only, with a database `speakerops` owned by the `postgres` role (trust auth on
# loopback: a development and CI server, not a production one).
set -euo pipefail
PGDATA=${PGDATA:-/tmp/speakerops-pg}
PGPORT=${PGPORT:-55432}
action=${1:-start}

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  return 1
}

as_pg() {  # the server refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if ! BIN=$(bindir); then
  if [ "$(id -u)" = 0 ]; then
    echo "speakerops postgres: installing Debian's postgresql" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)
    BIN=$(bindir)
  else
    echo "speakerops postgres: PostgreSQL is not installed: sudo apt-get install postgresql" >&2
    exit 1
  fi
fi

case "$action" in
  start)
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
      mkdir -p "$PGDATA"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA"
      as_pg "$BIN/initdb" -D "$PGDATA" -U postgres -A trust --no-instructions >/dev/null
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDATA -c max_connections=200" start >/dev/null
    fi
    as_pg "$BIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='speakerops'" | grep -q 1 \
      || as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres speakerops
    echo "SPEAKEROPS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$PGPORT/speakerops"
    ;;
  stop)
    as_pg "$BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
