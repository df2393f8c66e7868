#!/usr/bin/env bash
# A throwaway MLflow tracking server backed by PostgreSQL on this machine: the team set-up
# (cluster/mlflow/docker-compose.yaml) in miniature, for trying it and for tests/test_cluster.py.
#
#   cluster/mlflow/start-local.sh [DIR]         # DIR defaults to ./mlflow-local
#
# It starts, and stops again on Ctrl-C or SIGTERM:
#   - PostgreSQL (initdb on first use) in DIR/pgdata, listening on 127.0.0.1:$PG_PORT only,
#     with a database and role `mlflow` whose password is generated into DIR/secrets;
#   - `mlflow server` with that database as its backend store, DIR/artifacts as its artifact
#     store (served through the server: --serve-artifacts), MLflow's basic-auth app
#     (--app-name basic-auth), bound to $MLFLOW_HOST:$MLFLOW_PORT (127.0.0.1:5000).
#
# Log in as user `admin` with the password in DIR/secrets/admin_password (or the one you set
# in $MLFLOW_AUTH_ADMIN_PASSWORD before the first start):
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 MLFLOW_TRACKING_USERNAME=admin
#   export MLFLOW_TRACKING_PASSWORD="$(cat DIR/secrets/admin_password)"
#
# Settings (environment): MLFLOW_HOST (127.0.0.1), MLFLOW_PORT (5000), PG_PORT (54329),
# MLFLOW_WORKERS (1), PG_BIN (the directory holding initdb/pg_ctl; found if unset).
# Needs the PostgreSQL server binaries (Debian: apt-get install postgresql) and the project
# installed with the `server` extra (psycopg). As root, PostgreSQL runs as the `postgres` user,
# which must be able to reach DIR.
#
# Who can get in: everything under DIR is private to the user running this script (umask 077:
# the secrets, the artifact store, the basic-auth database, the logs), and PostgreSQL's data
# and socket directories to the user it runs as. PostgreSQL's Unix socket takes peer
# authentication only (the OS user must be the database superuser), its TCP port only the
# `mlflow` role's password; other local users reach neither. DIR itself is 0700 (0711 as root,
# so that `postgres` can pass through it to its own directories).
set -euo pipefail
umask 077

DIR="$(mkdir -p "${1:-mlflow-local}" && cd "${1:-mlflow-local}" && pwd)"
if [[ $EUID -eq 0 ]]; then chmod 711 "$DIR"; else chmod 700 "$DIR"; fi
MLFLOW_HOST="${MLFLOW_HOST:-127.0.0.1}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"
PG_PORT="${PG_PORT:-54329}"
MLFLOW_WORKERS="${MLFLOW_WORKERS:-1}"

case "$MLFLOW_HOST" in
    0.0.0.0|::|"[::]") echo "start-local.sh: refusing MLFLOW_HOST=$MLFLOW_HOST (every interface);" \
                            "use 127.0.0.1 or a private address" >&2; exit 2 ;;
esac

if [[ -z "${PG_BIN:-}" ]]; then
    # Debian keeps the server binaries off PATH, in /usr/lib/postgresql/<version>/bin.
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [[ -z "$PG_BIN" ]] && command -v initdb >/dev/null; then
        PG_BIN="$(dirname "$(command -v initdb)")"
    fi
fi
if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
    echo "start-local.sh: PostgreSQL server binaries not found (apt-get install postgresql, or set PG_BIN)" >&2
    exit 2
fi

# PostgreSQL refuses to run as root: run its commands as `postgres` then.
as_pg() {
    if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

new_secret() {  # a random URL-safe string, written once to DIR/secrets/$1 (mode 600)
    local f="$DIR/secrets/$1"
    if [[ ! -s "$f" ]]; then
        (umask 077; python -c 'import secrets; print(secrets.token_urlsafe(24))' > "$f")
    fi
    cat "$f"
}

mkdir -p "$DIR/secrets" "$DIR/artifacts" "$DIR/pgrun"  # pgrun: socket and server log
chmod 700 "$DIR/secrets" "$DIR/artifacts" "$DIR/pgrun"
PG_PASSWORD="$(new_secret pg_password)"
if [[ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" && ! -s "$DIR/secrets/admin_password" ]]; then
    (umask 077; printf '%s\n' "$MLFLOW_AUTH_ADMIN_PASSWORD" > "$DIR/secrets/admin_password")
fi
ADMIN_PASSWORD="$(new_secret admin_password)"
FLASK_SECRET="$(new_secret flask_secret_key)"

PGDATA="$DIR/pgdata"
if [[ $EUID -eq 0 ]]; then
    mkdir -p "$PGDATA"
    chown postgres "$PGDATA" "$DIR/pgrun"
    chmod 700 "$PGDATA"
    if ! runuser -u postgres -- test -w "$PGDATA"; then
        echo "start-local.sh: the postgres user cannot reach $PGDATA (a parent directory is private)" >&2
        exit 2
    fi
fi
# The database superuser is the OS user PostgreSQL runs as, so that peer authentication lets
# this script (and only it) in through the socket.
PG_SUPERUSER="$(as_pg id -un)"
PSQL=(as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/pgrun" -p "$PG_PORT" -U "$PG_SUPERUSER")

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    # Local socket: peer (the OS user must be the superuser), in a directory only that user
    # can enter; TCP: password (SCRAM) only, and only on 127.0.0.1 (listen_addresses below).
    as_pg "$PG_BIN/initdb" -D "$PGDATA" -U "$PG_SUPERUSER" -E UTF8 --auth-local=peer \
        --auth-host=scram-sha-256 >"$DIR/initdb.log"
fi

as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$DIR/pgrun/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $DIR/pgrun -c unix_socket_permissions=0700" start >/dev/null

MLFLOW_PID=""
stop() {
    trap - EXIT INT TERM
    if [[ -n "$MLFLOW_PID" ]]; then
        kill -TERM -- "-$MLFLOW_PID" 2>/dev/null || true   # mlflow and its uvicorn workers
        wait "$MLFLOW_PID" 2>/dev/null || true
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
}
trap stop EXIT INT TERM

if [[ -z "$("${PSQL[@]}" -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'mlflow'")" ]]; then
    # The password goes through stdin, not the process list.
    "${PSQL[@]}" -d postgres <<SQL
CREATE ROLE mlflow LOGIN PASSWORD '$PG_PASSWORD';
CREATE DATABASE mlflow OWNER mlflow;
SQL
fi

# The basic-auth app's own settings: users and permissions in a SQLite file beside the data.
cat > "$DIR/basic_auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = sqlite:///$DIR/basic_auth.db
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# Each password check is a slow hash on purpose (~3.5 s a request measured on a busy 2-core
# machine): remember a good login for 5 minutes, per worker, so a sweep's thousands of
# requests do not each pay it. A changed password reaches other workers within that time.
auth_cache_ttl_seconds = 300
INI

# Secrets reach mlflow through its environment, never its command line (which `ps` shows).
export MLFLOW_AUTH_CONFIG_PATH="$DIR/basic_auth.ini"
export MLFLOW_AUTH_ADMIN_PASSWORD="$ADMIN_PASSWORD"
export MLFLOW_FLASK_SERVER_SECRET_KEY="$FLASK_SECRET"
export MLFLOW_BACKEND_STORE_URI="postgresql://mlflow:$PG_PASSWORD@127.0.0.1:$PG_PORT/mlflow"

echo "MLflow: http://$MLFLOW_HOST:$MLFLOW_PORT (user admin, password in $DIR/secrets/admin_password)"
echo "  backend store: postgresql://mlflow:***@127.0.0.1:$PG_PORT/mlflow; artifacts: $DIR/artifacts"
# MLflow's job runner (a pool of consumer processes, each importing MLflow as the server starts)
# serves its GenAI jobs; sweeps use none. MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true turns it on.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
# Its own process group, so that stopping it stops uvicorn's workers too.
setsid mlflow server \
    --artifacts-destination "$DIR/artifacts" --serve-artifacts \
    --host "$MLFLOW_HOST" --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS" \
    --app-name basic-auth &
MLFLOW_PID=$!
wait "$MLFLOW_PID"
