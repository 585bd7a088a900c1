#!/usr/bin/env bash
# Runs a service command on a fresh database of the test PostgreSQL, dropped when it ends.
#
#   with_test_db.sh COMMAND [ARG...]     runs COMMAND ARG... --db "<conninfo of the new database>"
#
# SIGTERM stops the command and drops the database. Needs MERCATO_TEST_PG (./tests/run sets it).
set -euo pipefail

: "${MERCATO_TEST_PG:?MERCATO_TEST_PG is not set: run the suite with ./tests/run}"
db="t_withdb_$$"
admin="$MERCATO_TEST_PG dbname=postgres"
child=""

cleanup() {
        if [ -n "$child" ]; then
                kill -TERM "$child" 2>/dev/null || true
                wait "$child" 2>/dev/null || true
        fi
        psql "$admin" -qXc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 143' TERM INT

psql "$admin" -qXc "CREATE DATABASE $db" >/dev/null
"$@" --db "$MERCATO_TEST_PG dbname=$db" &
child=$!
wait "$child"
