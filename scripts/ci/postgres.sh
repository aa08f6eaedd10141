#!/usr/bin/env bash
# Start (or reuse) the throwaway PostgreSQL server the test suite runs against.
#
# Prints one line on stdout, the SQLAlchemy URL of a superuser on that server:
#   postgresql+psycopg://modelarc@127.0.0.1:54329/postgres
# Everything else goes to stderr, so `url=$(scripts/ci/postgres.sh)` works.
#
# - Installs Debian's `postgresql` package if no /usr/lib/postgresql/*/bin/initdb exists.
# - The cluster lives in $MODELARC_PG_DIR (default /tmp/modelarc-pg), listens on 127.0.0.1 only,
#   trusts every local connection and runs with fsync off: it holds nothing worth keeping.
# - initdb refuses to run as root, so as root the server runs as the `postgres` system user
#   (created by the package; created here if missing). As anyone else it runs as that user.
# - Idempotent: a server already answering on the port is reused; two runs at once are serialised.
set -euo pipefail

PORT="${MODELARC_PG_PORT:-54329}"
BASE="${MODELARC_PG_DIR:-/tmp/modelarc-pg}"
ROLE="${MODELARC_PG_ROLE:-modelarc}"
DATA="$BASE/data"
LOG="$BASE/server.log"

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_bindir() {
    # The newest major version that has the server tools (a client-only install has no initdb).
    local dir best="" best_version=0 version
    for dir in /usr/lib/postgresql/*/bin; do
        version=${dir#/usr/lib/postgresql/}
        version=${version%%/*}
        [[ $version =~ ^[0-9]+$ && -x $dir/initdb && -x $dir/pg_ctl ]] || continue
        if ((version > best_version)); then best=$dir best_version=$version; fi
    done
    echo "$best"
}

install_postgres() {
    log "no PostgreSQL server binaries under /usr/lib/postgresql; installing Debian's postgresql package"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "PostgreSQL is not installed and this user cannot run apt-get; install 'postgresql' or set MODELARC_TEST_POSTGRES_URL"
        sudo=(sudo -n)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q >&2
    # policy-rc.d/--no-start are not needed: on a machine without systemd the package's own
    # cluster simply does not start, and we never use it.
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends postgresql >&2
}

BIN=$(find_bindir)
if [[ -z "$BIN" ]]; then
    install_postgres
    BIN=$(find_bindir)
    [[ -n "$BIN" ]] || die "installed postgresql but found no initdb under /usr/lib/postgresql/*/bin"
fi

# Who runs the server.
if [[ $(id -u) -eq 0 ]]; then
    RUN_AS=postgres
    if ! id "$RUN_AS" >/dev/null 2>&1; then
        log "creating system user $RUN_AS"
        useradd --system --home-dir "$BASE" --shell /usr/sbin/nologin "$RUN_AS"
    fi
    # cd /: the server user usually cannot read the caller's working directory.
    as_server_user() { (cd / && runuser -u "$RUN_AS" -- "$@"); }
else
    RUN_AS=$(id -un)
    as_server_user() { "$@"; }
fi

URL="postgresql+psycopg://$ROLE@127.0.0.1:$PORT/postgres"

server_answers() {
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2
}

check_role() {
    # Proves the server on the port is one we can use, not some other program's.
    "$BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U "$ROLE" -d postgres -tAc \
        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user" 2>/dev/null | grep -qx t
}

mkdir -p "$BASE"
# Serialise concurrent runs (two `make test` at once) around the check-then-start below.
exec 9>"$BASE.lock"
flock -w 120 9 || die "timed out waiting for $BASE.lock"

if server_answers; then
    check_role || die "a server answers on 127.0.0.1:$PORT but role '$ROLE' cannot connect as superuser; stop it or set MODELARC_PG_PORT"
    log "reusing the server already running on 127.0.0.1:$PORT"
    echo "$URL"
    exit 0
fi

chown "$RUN_AS" "$BASE"
chmod 0700 "$BASE"

if [[ ! -f "$DATA/PG_VERSION" ]]; then
    # A missing or half-made data directory: start over.
    rm -rf "$DATA"
    log "initdb $DATA (as $RUN_AS, superuser role '$ROLE', $("$BIN/postgres" --version))"
    as_server_user "$BIN/initdb" --pgdata="$DATA" --username="$ROLE" --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 --no-instructions >&2 \
        || as_server_user "$BIN/initdb" --pgdata="$DATA" --username="$ROLE" --auth=trust \
            --encoding=UTF8 --locale=C --no-instructions >&2
    cat >>"$DATA/postgresql.conf" <<EOF

# modelarc test server (scripts/ci/postgres.sh): loopback only, nothing here needs to survive a crash.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$BASE'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
fi

log "starting PostgreSQL on 127.0.0.1:$PORT (log: $LOG)"
# 9>&-: the server must not inherit the lock, or it would hold it for as long as it runs.
if ! as_server_user "$BIN/pg_ctl" --pgdata="$DATA" --log="$LOG" --wait --timeout=60 start >&2 9>&-; then
    tail -n 30 "$LOG" >&2 || true
    die "PostgreSQL did not start"
fi
server_answers || die "PostgreSQL started but does not answer on 127.0.0.1:$PORT"
check_role || die "PostgreSQL started but role '$ROLE' cannot connect"
echo "$URL"
