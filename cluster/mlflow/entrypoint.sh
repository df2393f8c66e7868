#!/bin/sh
# Starts `mlflow server` from Docker secrets (files under /run/secrets), so that no password is
# in the compose file, the image, the container's command line or `docker inspect`.
# A secret file that is missing, unreadable or empty stops it: the server never starts with an
# empty admin password.
set -eu
SECRETS_DIR="${SECRETS_DIR:-/run/secrets}"
secret() {
    value=""
    if [ -r "$SECRETS_DIR/$1" ]; then value="$(tr -d '\r\n' < "$SECRETS_DIR/$1")"; fi
    if [ -z "$value" ]; then
        echo "entrypoint.sh: secret $1 ($SECRETS_DIR/$1) is missing, unreadable or empty; not starting" >&2
        exit 2
    fi
    printf '%s' "$value"
}

# Assigned before export: a failed command substitution in `export X=$(...)` would not stop
# the script.
admin_password="$(secret mlflow_admin_password)"
flask_secret="$(secret mlflow_flask_secret_key)"
postgres_password="$(secret postgres_password)"
export MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/basic_auth.ini
export MLFLOW_AUTH_ADMIN_PASSWORD="$admin_password"
export MLFLOW_FLASK_SERVER_SECRET_KEY="$flask_secret"
# Read by `mlflow server` from its environment (--backend-store-uri's variable).
export MLFLOW_BACKEND_STORE_URI="postgresql://mlflow:$postgres_password@postgres:5432/mlflow"

# MLflow accepts Host headers for localhost and private IP addresses by default; a DNS name
# that clients use (mlflow.internal) must be listed: MLFLOW_ALLOWED_HOSTS="mlflow.internal:*".
if [ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]; then
    set -- --allowed-hosts "$MLFLOW_ALLOWED_HOSTS"
fi

# MLflow's job runner (a pool of consumer processes, each importing MLflow as the server starts)
# serves its GenAI jobs; sweeps use none. MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true turns it on.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

# The container's own address on the compose network; the host publishes it only on
# MLFLOW_BIND_ADDRESS (a private address).
exec mlflow server \
    --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlflow/artifacts}" \
    --serve-artifacts \
    --host "$(hostname -i | cut -d' ' -f1)" --port 5000 \
    --workers "${MLFLOW_WORKERS:-4}" \
    --app-name basic-auth "$@"
