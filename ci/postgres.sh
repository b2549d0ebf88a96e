#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (a real server, never a mock).
#
#   eval "$(bash ci/postgres.sh start)"    # prints `export` lines: the URL and the server's directory
#   trap 'bash ci/postgres.sh stop' EXIT   # stops the server and removes its directory
#   bash ci/postgres.sh bindir             # the directory of initdb/pg_ctl (installs them if missing)
#   bash ci/postgres.sh status             # exit 0 while the server of $SESSIONSD_TEST_PG_DIR runs
#
# `start` installs Debian's `postgresql` package when initdb/pg_ctl are missing,
# runs the server as an unprivileged user (it refuses to run as root): the
# `postgres` user when it exists, else a `sessionsd-pg` system user created here.
# The cluster lives in a new temporary directory and listens on a Unix socket
# there only (no TCP); fsync is off (a throwaway cluster needs no durability).
# It creates the database `sessionsd_test` and prints:
#
#   export SESSIONSD_TEST_POSTGRES_URL='postgresql://postgres@/sessionsd_test?host=/tmp/sessionsd-pg.XXXXXX'
#   export SESSIONSD_TEST_PG_DIR='/tmp/sessionsd-pg.XXXXXX'
#   export SESSIONSD_TEST_PG_BINDIR='/usr/lib/postgresql/15/bin'
#
# Everything else (progress, timings) goes to stderr, so `eval "$(...)"` sees
# only the exports.  Idempotent: `start` while the server of
# $SESSIONSD_TEST_PG_DIR runs prints the same lines again; `stop` when there is
# nothing to stop does nothing.  `stop DIR` stops the server of DIR.
# SESSIONSD_TEST_PG_INSTALL=0 never installs (the tests' own fallback uses it).
set -euo pipefail

DB_NAME="${SESSIONSD_TEST_PG_DB:-sessionsd_test}"
SUPERUSER=postgres

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

find_bindir() {
    if [ -n "${SESSIONSD_TEST_PG_BINDIR:-}" ] && [ -x "$SESSIONSD_TEST_PG_BINDIR/pg_ctl" ]; then
        echo "$SESSIONSD_TEST_PG_BINDIR"
        return 0
    fi
    local dir best=""
    # Debian keeps the server binaries off PATH, one directory per major version.
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ] || continue
        best="$(printf '%s\n%s\n' "$best" "$dir" | sed '/^$/d' | sort -V | tail -n 1)"
    done
    if [ -z "$best" ] && command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        best="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
    fi
    [ -n "$best" ] || return 1
    echo "$best"
}

install_postgres() {
    if [ "${SESSIONSD_TEST_PG_INSTALL:-1}" = "0" ]; then
        say "initdb/pg_ctl not found (and SESSIONSD_TEST_PG_INSTALL=0: not installing them)"
        return 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        say "initdb/pg_ctl not found and not root: cannot install Debian's postgresql package"
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        say "initdb/pg_ctl not found and no apt-get to install them"
        return 1
    fi
    local started
    started="$(now)"
    say "installing Debian's postgresql package..."
    # No default cluster: the package would otherwise initdb and start one
    # (on TCP port 5432) that nothing here uses.
    mkdir -p /etc/postgresql-common
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    fi
    export DEBIAN_FRONTEND=noninteractive
    local apt_opts=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    if ! apt-get install "${apt_opts[@]}" --no-install-recommends postgresql >&2; then
        apt-get update -q >&2
        apt-get install "${apt_opts[@]}" --no-install-recommends postgresql >&2
    fi
    say "installed in $(elapsed "$started") s"
}

cmd_bindir() {
    local bindir
    if ! bindir="$(find_bindir)"; then
        install_postgres
        bindir="$(find_bindir)" || { say "postgresql installed but no initdb/pg_ctl found"; return 1; }
    fi
    echo "$bindir"
}

# The user that owns and runs the cluster: never root.
server_user() {
    if [ "$(id -u)" -ne 0 ]; then
        id -un
        return 0
    fi
    local user="${SESSIONSD_TEST_PG_USER:-}"
    if [ -z "$user" ]; then
        if id -u postgres >/dev/null 2>&1; then
            user=postgres
        else
            user=sessionsd-pg
        fi
    fi
    if ! id -u "$user" >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$user" >&2
    fi
    echo "$user"
}

# Run a command as the server user (directly when we are that user).
as_user() {
    local user="$1"
    shift
    if [ "$(id -un)" = "$user" ]; then
        "$@"
    else
        runuser -u "$user" -- "$@"
    fi
}

url_for() {
    printf 'postgresql://%s@/%s?host=%s' "$SUPERUSER" "$DB_NAME" "$1"
}

print_exports() {
    local dir="$1" bindir="$2"
    printf "export SESSIONSD_TEST_POSTGRES_URL='%s'\n" "$(url_for "$dir")"
    printf "export SESSIONSD_TEST_PG_DIR='%s'\n" "$dir"
    printf "export SESSIONSD_TEST_PG_BINDIR='%s'\n" "$bindir"
}

is_running() {
    local dir="$1" bindir="$2"
    [ -n "$dir" ] && [ -f "$dir/data/postmaster.pid" ] || return 1
    local user
    user="$(stat -c %U "$dir/data")"
    as_user "$user" "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

cmd_start() {
    local started bindir
    started="$(now)"
    bindir="$(cmd_bindir)"
    local existing="${SESSIONSD_TEST_PG_DIR:-}"
    if [ -n "$existing" ] && is_running "$existing" "$bindir"; then
        say "server already running in $existing"
        print_exports "$existing" "$bindir"
        return 0
    fi
    local user dir
    user="$(server_user)"
    # A short path: a Unix socket path is limited to ~107 bytes.
    dir="$(mktemp -d "${SESSIONSD_TEST_PG_TMP:-/tmp}/sessionsd-pg.XXXXXX")"
    chmod 755 "$dir"
    chown "$user:" "$dir" 2>/dev/null || chown "$user" "$dir"
    if ! as_user "$user" "$bindir/initdb" -D "$dir/data" -U "$SUPERUSER" --auth=trust \
            --encoding=UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        say "initdb failed"
        return 1
    fi
    cat >>"$dir/data/postgresql.conf" <<EOF

# ci/postgres.sh: a throwaway test cluster
listen_addresses = ''
unix_socket_directories = '$dir'
unix_socket_permissions = 0777
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 64MB
EOF
    if ! as_user "$user" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >&2; then
        cat "$dir/server.log" >&2 || true
        rm -rf "$dir"
        say "pg_ctl start failed"
        return 1
    fi
    if ! as_user "$user" "$bindir/psql" -X -q -h "$dir" -U "$SUPERUSER" -d postgres \
            -c "CREATE DATABASE $DB_NAME" >&2; then
        as_user "$user" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >&2 || true
        rm -rf "$dir"
        say "CREATE DATABASE failed"
        return 1
    fi
    say "server $("$bindir/postgres" --version) running in $dir as $user ($(elapsed "$started") s)"
    print_exports "$dir" "$bindir"
}

cmd_stop() {
    local dir="${1:-${SESSIONSD_TEST_PG_DIR:-}}"
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then
        return 0
    fi
    case "$(basename "$dir")" in
        sessionsd-pg.*) ;;
        *) say "refusing to remove $dir: not a directory made by ci/postgres.sh"; return 1 ;;
    esac
    if [ -f "$dir/data/postmaster.pid" ]; then
        local bindir user
        bindir="$(find_bindir)" || bindir=""
        user="$(stat -c %U "$dir/data")"
        if [ -n "$bindir" ]; then
            as_user "$user" "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
                || as_user "$user" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 \
                || true
        fi
    fi
    rm -rf "$dir"
}

cmd_status() {
    local bindir
    bindir="$(find_bindir)" || return 1
    is_running "${1:-${SESSIONSD_TEST_PG_DIR:-}}" "$bindir"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop "${2:-}" ;;
    status) cmd_status "${2:-}" ;;
    bindir) cmd_bindir ;;
    *)
        echo "usage: bash ci/postgres.sh start|stop [DIR]|status [DIR]|bindir" >&2
        exit 2
        ;;
esac
